"""A reference design for calibrating the flow: a free-running counter behind a stream.

Its numbers show what the device and the flow reach on the simplest possible datapath (one
carry chain between two registers), so the decoder's numbers can be read against them:
TOOLCHAIN measurements give ~290 MHz for 32 bits on an ECP5-25K.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

__all__ = ["Counter", "counter_verilog", "ANS_REFERENCE", "ans_reference_weights_per_site"]

#: The open-source Verilog ANS decoder subbit's is compared with (issue 26; measured in this flow:
#: yosys synth_ecp5, nextpnr-ecp5 25K CABGA381, speed grade 6, seeds 1-3, and in Icarus on 4,000
#: symbols): its LUT4 sites (560 LUT4 + 2 x 228 CCU2C), Fmax, and clocks per symbol on three sources
#: (its state machine takes 7 + s + 5r clocks a symbol: s the symbol's index in a linear search, r
#: the 4-bit nibbles read). ``fmax_mhz_by_grade``: its Fmax timed for ECP5 speed grades 6 and 8 (the
#: same netlist; grade 7 was not measured).
ANS_REFERENCE = {"lut4_sites": 1016, "fmax_mhz": 14.44, "fmax_mhz_by_grade": {6: 14.44, 8: 18.9},
                 "clocks_per_symbol": {"ternary": 8.01, "skewed 2.2-bit": 11.1, "uniform 4-bit": 19.5}}


def ans_reference_weights_per_site(source: str = "ternary", grade: int = 6) -> float | None:
    """The reference's weights/s per LUT4 site on ``source`` (its most favourable: ternary), timed
    for ECP5 speed grade ``grade``; None for a grade it was not measured at."""
    r = ANS_REFERENCE
    f = r["fmax_mhz_by_grade"].get(grade)
    return None if f is None else f * 1e6 / r["clocks_per_symbol"][source] / r["lut4_sites"]


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
