"""A reference design for calibrating the flow: a free-running counter behind a stream.

Its numbers show what the device and the flow reach on the simplest possible datapath (one
carry chain between two registers), so the decoder's numbers can be read against them:
TOOLCHAIN measurements give ~290 MHz for 32 bits on an ECP5-25K.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

__all__ = ["Counter", "counter_verilog"]


class Counter(wiring.Component):
    """Emits 0, 1, 2, ... (mod ``2**width``) on ``o``, one value per transfer.

    Members
    -------
    o : ``Out(stream.Signature(width))``
        ``valid`` rises one cycle after reset and stays high; the next value is loaded on every
        transfer. Latency 1 cycle, throughput 1 value per cycle.
    """

    def __init__(self, width: int = 32):
        if not isinstance(width, int) or not 1 <= width <= 1024:
            raise ValueError(f"counter width must be an integer in 1..1024, not {width!r}")
        self.width = width
        super().__init__({"o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.payload.eq(self.o.payload + self.o.valid), self.o.valid.eq(1)]
        return m


def counter_verilog(width: int = 32, name: str = "counter") -> str:
    """Verilog of :class:`Counter` with top module ``name``."""
    from amaranth.back import verilog
    return verilog.convert(Counter(width), name=name, emit_src=False)
