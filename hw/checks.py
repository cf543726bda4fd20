"""The end-of-layer checks: every state ends at L, and a layer reads exactly its payload."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import DecoderParams
from .status import layer_flags_layout

__all__ = ["LayerChecks"]


class LayerChecks(wiring.Component):
    """Checks each beat in S5 against its layer's end, and raises ``flags`` for the status.

    - ``final_state``: a lane's state used for the last time (``lastuse``) does not end at
      ``L = 2**16`` after renormalisation (corrupted payload or initial states).
    - ``payload_length``: a lane needs a word that is not its layer's (the window's word at
      its position carries the other bank as its tag, or the window holds no word there and
      the layer's payload has all been delivered): an overrun; or after the layer's last beat
      a word of the layer is left (an underrun: the word after the beat's words is its own).

    Each word in the window carries its layer's bank as a tag (bit 16), so the checks need
    no count of the layer's words.

    Members
    -------
    en : In(1)
        The datapath advances (S5's beat is finished on this clock).
    r5 : In(StructLayout({"valid": 1, "bank": 1, "last": 1, "lastuse": K}))
        The beat in S5.
    payload_done : In(2)
        Per bank: the end of the layer's payload has reached the window.
    occ : In(window_depth)
        The window's occupancy (``occ[i]``: more than i words held).
    pos : In(ArrayLayout(range(K + 1), K + 1))
        S5's word positions (:class:`~subbit.hw.words.WordPositions`); ``pos[K]``: the beat's
        total, the position of the word after its words.
    words : In(ArrayLayout(window_word_width, K + 1))
        The window's words at those positions.
    needs_word, final_ok : In(K)
        Each lane's S5 flags (:class:`~subbit.hw.lane.Lane`).
    flags : Out(layer_flags_layout)

    Latency: combinational from S5 (the status registers the flags); with the S4b stage the
    per-lane results are registered before they are combined across lanes (a clock more).
    """

    def __init__(self, params: DecoderParams, word_width: int):
        self.p = p = params
        K = p.lanes
        super().__init__({
            "en": In(1),
            "r5": In(data.StructLayout({"valid": 1, "bank": 1, "last": 1, "lastuse": K})),
            "payload_done": In(2),
            "occ": In(p.window_depth),
            "pos": In(data.ArrayLayout(range(K + 1), K + 1)),
            "words": In(data.ArrayLayout(word_width, K + 1)),
            "needs_word": In(K),
            "final_ok": In(K),
            "flags": Out(layer_flags_layout),
        })

    def elaborate(self, platform):
        m = Module()
        K = self.p.lanes
        en, r5m, words = self.en, self.r5, self.words
        # overrun: lane j needs a word of its layer at its position; the window holds one there
        # (`here`: position < level) of the other layer, or none after the layer's last
        overrun = Signal()
        ovr = []
        for j in range(K):
            here = self.occ.bit_select(self.pos[j], 1)
            ovr.append(self.needs_word[j] & Mux(here, words[j][16] != r5m.bank,
                                                self.payload_done.bit_select(r5m.bank, 1)))
        m.d.comb += overrun.eq(Cat(*ovr).any())
        # underrun: after the layer's last beat no word of it may remain (its last beat only
        # proceeds once the end of its payload has reached the window, see FlowControl)
        total = self.pos[K]
        underrun = self.occ.bit_select(total, 1) & (words[K][16] == r5m.bank)   # total < level
        at_l = self.final_ok
        if self.p.s4b:
            # registered per lane before they are combined across lanes
            bad_l, ovr_l = Signal(K), Signal(K + 1)
            m.d.sync += [bad_l.eq(Cat(*[en & r5m.valid & r5m.lastuse[j] & ~at_l[j] for j in range(K)])),
                         ovr_l.eq(Cat(*[r5m.valid & o for o in ovr], r5m.valid & r5m.last & underrun))]
            m.d.comb += self.flags.eq(Cat(ovr_l.any(), bad_l.any()))
        else:
            bad_final = Cat(*[r5m.lastuse[j] & ~at_l[j] for j in range(K)]).any()
            m.d.comb += self.flags.eq(Cat(r5m.valid & (overrun | (r5m.last & underrun)), en & r5m.valid & bad_final))
        return m
