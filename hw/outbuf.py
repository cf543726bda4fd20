"""Output buffer whose room for the next clock is known from its level alone."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutputBuffer"]


class OutputBuffer(wiring.Component):
    """A 3-entry FIFO in front of a stream output, for a writer with a registered clock enable.

    The writer does not handshake: it writes (``w_en``) at most once per clock
    and only when ``room`` was high on the previous clock. ``room`` means at
    most one entry is held, so even after a write this clock there is room
    for one more on the next: the writer can register its enable.

    The entries are a ring: an entry is written in place (at the write pointer,
    a register) and never moves, so ``w_data`` goes straight to the entries'
    data inputs (only the clock enables decode the pointer); ``o.payload`` is
    the entry at the read pointer (a 3-way mux of registers).

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
        n = self.DEPTH
        level = Signal(range(n + 1))
        wp = Signal(range(n))
        rp = Signal(range(n))
        entries = Array(Signal.like(self.w_data, name=f"entry{k}") for k in range(n))
        read = Signal()
        m.d.comb += [self.o.valid.eq(level != 0), self.o.payload.eq(entries[rp]),
                     read.eq(self.o.valid & self.o.ready), self.room.eq(level <= 1)]
        m.d.sync += level.eq(level + self.w_en - read)
        with m.If(read):
            m.d.sync += rp.eq(Mux(rp == n - 1, 0, rp + 1))
        with m.If(self.w_en):
            m.d.sync += [entries[wp].eq(self.w_data), wp.eq(Mux(wp == n - 1, 0, wp + 1))]
        return m
