"""Flow control: whether the whole datapath advances on the next clock, and what the window drops."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import DecoderParams
from .words import WordPositions

__all__ = ["FlowControl", "take_copies"]


def take_copies(params: DecoderParams) -> int:
    """Copies of the window's take register (S4b with the shift window: one for about 6 words)."""
    return -(-params.window_depth // 6) if params.s4b and not params.ring_window else 1


class FlowControl(wiring.Component):
    """Makes the datapath enable ``en``, a register, from registers only.

    The sequencer, the lanes, the window's take and the output all advance together on
    ``en``. Whether the next clock may advance is decided now:

    - the output buffer holds at most one beat (``room``: room for one more after this clock);
    - the beat that will sit in S5 has its words: the window holds 2K words now (at least K
      after this clock's take) if the datapath advances, K if it stalls; or the end of its
      layer's payload is in the window (a shortfall is then an overrun, flagged by the
      checks). A layer's last beat always waits for that end, so a layer never retires before
      its payload is complete. ``payload_done`` is a clock old here: it can only delay;
    - no error is held or being raised (``halt_next``).

    ``en`` is made in K + 1 equal registers, marked ``keep`` (``fpga/synth_*.ys`` keep them
    apart): ``en`` for the sequencer and the control logic, ``lane_en[j]`` for lane j's ring
    registers, multiplier and state read. With the S4b stage the window's take is a register
    too (``take``, and copies ``take_dup`` for the shift window's word groups), made a clock
    ahead from the next enable and the count, so the enable's fan-out does not drive the
    window's shifter; without S4b the take is ``en`` and S5's count.

    Members
    -------
    room : In(1)
        The output buffer's ``room``.
    occ : In(window_depth)
        The window's occupancy, a thermometer code (``occ[i]``: more than i words held).
    payload_done : In(2)
        Per bank: the end of the layer's payload has reached the window.
    r5_next, r5 : In(StructLayout({"valid": 1, "bank": 1, "last": 1}))
        The beat entering S5 if the datapath advances, and the one in S5.
    halt_next : In(1)
        An error is held or raised now (:class:`~subbit.hw.status.Status`).
    total, total_next : In(range(K + 1)), In(WordPositions.count_width(K))
        The words S5's beat takes, and the words of the beat entering S5
        (:class:`~subbit.hw.words.WordPositions`, at the width of their sum).
    en : Out(1)
    en_next : Out(1)
        ``params.early_activation`` only: the value ``en`` (and its copies) take on the next
        clock, for registers that act on next clock's ``en`` (the comparator table's
        activation, :class:`~subbit.hw.tables.SymbolTables`).
    lane_en : Out(K)
    take : Out(range(K + 1))
        Words the window drops this clock (those S5's beat takes, when it advances).
    take_dup : Out(ArrayLayout(range(K + 1), copies - 1))
        Only with more than one copy (:func:`take_copies`): equal to ``take``.

    Latency: ``en`` follows its conditions by a clock (the output buffer's third entry and the
    window's third beat of demand absorb that clock). Throughput: ``en`` can stay high
    every clock.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        K = p.lanes
        beat = data.StructLayout({"valid": 1, "bank": 1, "last": 1})
        copies = take_copies(p)
        super().__init__({
            "room": In(1),
            "occ": In(p.window_depth),
            "payload_done": In(2),
            "r5_next": In(beat),
            "r5": In(beat),
            "halt_next": In(1),
            "total": In(range(K + 1)),
            "total_next": In(WordPositions.count_width(K)),
            "en": Out(1),
            **({"en_next": Out(1)} if p.early_activation else {}),
            "lane_en": Out(K),
            "take": Out(range(K + 1)),
            **({"take_dup": Out(data.ArrayLayout(range(K + 1), copies - 1))} if copies > 1 else {}),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K = p.lanes
        en = Signal(name="advance", attrs={"keep": 1})    # the whole datapath advances (a register)
        # copies of `en` (registers made from the same next value): one per lane for its ring
        # registers, multiplier and state read, so the control logic's `en` drives few loads
        en_lane = [Signal(name=f"lane_advance{j}", attrs={"keep": 1}) for j in range(K)]
        m.d.comb += [self.en.eq(en), self.lane_en.eq(Cat(*en_lane))]

        def ok(r, words):
            done = self.payload_done.bit_select(r.bank, 1)
            return ~r.valid | done | (words & ~r.last)
        ok_go = ok(self.r5_next, self.occ[2 * K - 1])     # level >= 2K
        ok_stall = ok(self.r5, self.occ[K - 1])           # level >= K
        if p.s4b:
            go = Signal()
            m.d.comb += go.eq(self.room & Mux(en, ok_go, ok_stall))
            en_next = ~self.halt_next & go
            # the window's take, Mux(en, total, 0), as a register of its own (made from next
            # clock's `en` and `total`): keeps `en`'s fan-out off the window's shifter. Only with
            # S4b, where the count comes from registers: else it would join the multiplier's path.
            # The error flags stay off it: after an error (sticky until reset) the window's
            # contents no longer matter.
            takes = [Signal.like(self.total, name=f"take{c}", attrs={"keep": 1}) for c in range(take_copies(p))]
            take_next = Mux(go, Mux(en, self.total_next, self.total), 0)
            m.d.sync += [t.eq(take_next) for t in takes]
            m.d.comb += self.take.eq(takes[0])
            m.d.comb += [self.take_dup[c - 1].eq(takes[c]) for c in range(1, len(takes))]
        else:
            en_next = ~self.halt_next & self.room & Mux(en, ok_go, ok_stall)
            m.d.comb += self.take.eq(Mux(en, self.total, 0))
        m.d.sync += [e.eq(en_next) for e in [en, *en_lane]]
        if p.early_activation:
            m.d.comb += self.en_next.eq(en_next)
        return m
