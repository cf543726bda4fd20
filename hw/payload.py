"""The payload path from the parser to the word window: prefetch FIFO, end-of-layer markers."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .frontend import payload_layout
from .lane import window_word_width
from .params import DecoderParams
from .prefetch import PrefetchFIFO
from .sequencer import bank_strobe_layout

__all__ = ["PayloadFeed", "window_push_layout"]


def window_push_layout(params: DecoderParams) -> data.StructLayout:
    """A beat of words for the window (:class:`~subbit.hw.window.WordWindow`'s ``push``): each word
    tagged with its layer's bank (and with the ring window its "is 0" flag)."""
    return data.StructLayout({"data": data.ArrayLayout(unsigned(window_word_width(params)), params.words_per_beat),
                              "n": range(params.words_per_beat + 1)})


class PayloadFeed(wiring.Component):
    """Carries the parser's payload beats through the prefetch FIFO into the word window.

    Each word is tagged with its layer's bank (and, for the ring window, a "word is 0" flag
    made here, on the write side). A beat with ``end`` marks the end of a layer's payload:
    ``payload_done[bank]`` rises when it leaves the FIFO (and is cleared when the parser starts
    loading the bank again). An empty marker beat (a layer without payload) is taken at once
    and never enters the window, so a full window never blocks the end of a layer.

    Members
    -------
    i : In(stream.Signature(payload_layout(words_per_beat)))
        The parser's payload beats (``tag``: the layer's bank).
    o : Out(stream.Signature(window_push_layout(params)))
        Into the window.
    loading : In(bank_strobe_layout)
        The parser starts writing a bank (its next layer's payload is not done).
    payload_done : Out(2)
        Per bank: the end of its layer's payload has left the FIFO (a register).

    Latency: the prefetch FIFO's (:class:`~subbit.hw.prefetch.PrefetchFIFO`: three clocks,
    four deeper than 32 entries; ``prefetch=0``: none). Throughput: a beat per clock.
    Backpressure: the window's ``ready``, through the FIFO; the FIFO lets the parser run up to
    ``prefetch`` words ahead of the lanes.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        super().__init__({
            "i": In(stream.Signature(payload_layout(p.words_per_beat))),
            "o": Out(stream.Signature(window_push_layout(p))),
            "loading": In(bank_strobe_layout),
            "payload_done": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        if p.prefetch:
            m.submodules.prefetch = pf = PrefetchFIFO(self.i.payload.shape(), p.prefetch // p.words_per_beat,
                                                     lookahead=p.prefetch_lookahead)
            wiring.connect(m, wiring.flipped(self.i), pf.i)
            src_valid, src, src_ready = pf.o.valid, pf.o.payload, pf.o.ready
        else:
            src_valid, src, src_ready = self.i.valid, self.i.payload, self.i.ready
        # an empty marker beat is always taken, so a full window never blocks the end of a layer
        marker = src.n == 0
        win = self.o
        m.d.comb += [win.valid.eq(src_valid & ~marker), win.payload.n.eq(src.n),
                     src_ready.eq(win.ready | marker)]
        for k in range(p.words_per_beat):
            zero = [src.data[k] == 0] if p.ring_window else []      # the ring stores a "word is 0" flag too
            m.d.comb += win.payload.data[k].eq(Cat(src.data[k], src.tag, *zero))
        pay_done = Signal(2)
        with m.If(self.loading.we):
            m.d.sync += pay_done.bit_select(self.loading.bank, 1).eq(0)
        with m.If(src_valid & src_ready & src.end):
            m.d.sync += pay_done.bit_select(src.tag, 1).eq(1)
        m.d.comb += self.payload_done.eq(pay_done)
        return m
