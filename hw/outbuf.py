"""Output buffer whose room for the next clock is known from its level alone."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutputBuffer"]


class OutputBuffer(wiring.Component):
    """A 3-deep FIFO in front of a stream output, for a writer with a registered clock enable.

    The writer does not handshake: it writes (``w_en``) at most once per clock
    and only when ``room`` was high on the previous clock. ``room`` means at
    most one entry is held, so even after a write this clock there is room
    for one more on the next: the writer can register its enable.

    Members
    -------
    w_data : In(shape)
    w_en : In(1)
    o : Out(stream.Signature(shape))
    room : Out(1)
        ``level <= 1``; a register compare, independent of ``o.ready``.

    Latency: a written entry is on ``o`` the next clock. Throughput: one
    entry per clock with ``o.ready`` high.
    """

    DEPTH = 3

    def __init__(self, shape):
        super().__init__({"w_data": In(shape), "w_en": In(1), "o": Out(stream.Signature(shape)),
                          "room": Out(1)})

    def elaborate(self, platform):
        m = Module()
        level = Signal(range(self.DEPTH + 1))
        entries = Array(Signal.like(self.w_data, name=f"entry{k}") for k in range(self.DEPTH))
        read = Signal()
        m.d.comb += [self.o.valid.eq(level != 0), self.o.payload.eq(entries[0]),
                     read.eq(self.o.valid & self.o.ready), self.room.eq(level <= 1)]
        m.d.sync += level.eq(level + self.w_en - read)
        with m.If(read):
            m.d.sync += [entries[k].eq(entries[k + 1]) for k in range(self.DEPTH - 1)]
        with m.If(self.w_en):
            m.d.sync += entries[level - read].eq(self.w_data)
        return m
