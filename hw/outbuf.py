"""Two-entry output buffer that tells its writer, a clock ahead, whether it will have room."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutputBuffer"]


class OutputBuffer(wiring.Component):
    """A 2-deep FIFO in front of a stream output.

    The writer does not handshake: it writes (``w_en``) only when the
    buffer has room, and learns that a clock early from ``room_if_write`` /
    ``room_if_idle`` (room next clock if it writes / does not write now), so
    its own clock enable can be a register.

    Members
    -------
    w_data : In(shape)
    w_en : In(1)
    o : Out(stream.Signature(shape))
    room_if_write, room_if_idle : Out(1)
        Combinational from the level and ``o.ready``.

    Latency: a written entry is on ``o`` the next clock. Throughput: one
    entry per clock with ``o.ready`` high.
    """

    def __init__(self, shape):
        super().__init__({"w_data": In(shape), "w_en": In(1), "o": Out(stream.Signature(shape)),
                          "room_if_write": Out(1), "room_if_idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        level = Signal(range(3))
        second = Signal.like(self.w_data)
        head = self.o.payload
        read = Signal()
        m.d.comb += [self.o.valid.eq(level != 0), read.eq(self.o.valid & self.o.ready),
                     self.room_if_write.eq((level == 0) | ((level == 1) & read)),
                     self.room_if_idle.eq((level != 2) | read)]
        m.d.sync += level.eq(level + self.w_en - read)
        with m.If(read):
            m.d.sync += head.eq(second)
        with m.If(self.w_en):
            with m.If((level == 0) | ((level == 1) & read)):
                m.d.sync += head.eq(self.w_data)
            with m.Else():
                m.d.sync += second.eq(self.w_data)
        return m
