"""The designs the FPGA flows build (the decoder of given parameters, or the reference counter) and
the report of a synthesis run, in words (``subbit synth`` prints it)."""

from __future__ import annotations

import dataclasses
import os

from subbit.hw.params import DecoderParams
from subbit.model.errors import SubbitError

__all__ = ["DECODER_PARAMS", "decoder_kwargs", "default_multiplier", "default_fc_read", "default_window",
           "design_verilog", "format_report", "timing_line"]

#: The decoder's generator parameters: the fields of `DecoderParams`.
DECODER_PARAMS = tuple(f.name for f in dataclasses.fields(DecoderParams))


def decoder_kwargs(point: dict) -> dict:
    """The decoder's parameters among ``point``'s keys, those left at None dropped (they take the
    generator's and ``DecoderParams``' defaults)."""
    return {k: v for k, v in point.items() if k in DECODER_PARAMS and v is not None}


def default_multiplier(target: str) -> str:
    """The lane multiplier for a target (:attr:`Target.multiplier`: the ECP5 DSP with its registers on
    ECP5, portable elsewhere)."""
    from subbit.fpga.targets import get
    return get(target).multiplier


def default_fc_read(target: str) -> str | None:
    """The f/c read for a target (:attr:`Target.fc_read`; None: the decoder's default)."""
    from subbit.fpga.targets import get
    return get(target).fc_read


def default_window(target: str) -> str | None:
    """The payload window for a target (:attr:`Target.window`; None: the decoder's default)."""
    from subbit.fpga.targets import get
    return get(target).window


COUNTER_WIDTH = 32


def design_verilog(design: str = "decoder", **params) -> tuple[str, str]:
    """(Verilog, top module) of ``design``: ``"decoder"`` (``subbit.hw.verilog.generate(**params)``,
    parameters left out take the generator's defaults) or ``"counter"`` (the 32-bit reference
    counter of :mod:`subbit.fpga.reference`)."""
    if design == "counter":
        from subbit.fpga.reference import counter_verilog
        return counter_verilog(COUNTER_WIDTH), "counter"
    if design != "decoder":
        raise SubbitError(f"design must be 'decoder' or 'counter', not {design!r}")
    from subbit.hw import verilog
    return verilog.generate(**decoder_kwargs(params)), verilog.TOP


def timing_line(r: dict) -> str | None:
    """Whether the run met its target frequency, in words (None without place and route):
    ``timing met at 200 MHz (Fmax 214.30 MHz)`` or ``timing NOT met: Fmax 172.70 < target 200 MHz``;
    with several seeds, which of them met it when they disagree (the verdict is the median run's)."""
    if r.get("timing_met") is None:
        return None
    f, t = r["fmax_mhz"], r["freq_target_mhz"]
    notes = [f"Fmax {f:.2f} MHz"] if r["timing_met"] else []
    by_seed = r.get("timing_met_by_seed") or {}
    if len(by_seed) > 1:
        met = [str(s) for s, ok in by_seed.items() if ok]
        missed = [str(s) for s, ok in by_seed.items() if not ok]
        seeds = lambda ss: f"seed{'s' if len(ss) > 1 else ''} {', '.join(ss)}"  # noqa: E731
        notes.append(f"median run, seed {r['seed']}; met by {seeds(met)}, not by {seeds(missed)}"
                     if met and missed else "every seed met it" if met else "no seed met it")
    verdict = f"timing met at {t:g} MHz" if r["timing_met"] else f"timing NOT met: Fmax {f:.2f} < target {t:g} MHz"
    return verdict + (f" ({'; '.join(notes)})" if notes else "")


def format_report(r: dict) -> str:
    """A short human-readable table of a :func:`subbit.fpga.flow.synthesize` result."""
    from subbit.fpga.targets import get
    t = get(r["target"])
    by_type = r.get("luts_by_type") or {}
    rows = [("LUTs" if t.estimate else "LUT4 sites", r["luts"],
             t.luts_how + (": " + ", ".join(f"{k} {v}" for k, v in by_type.items()) if len(by_type) > 1 else "")),
            ("flip-flops", r["ffs"], ""),
            ("carry cells", r["carry"], " + ".join(t.carry)),
            ("DSP blocks", r["dsps"], ""),
            ("block RAMs", r["brams"], ""),
            ("LUT-RAM cells", r["lutram"], "")]
    if r.get("logic_cells") is not None:
        rows.append(("logic cells", r["logic_cells"], f"nextpnr {t.comb} used"
                     + (", scan wrapper included" if t.scan_wrapper else "")))
    if r["fmax_mhz"] is not None:
        by_seed = r.get("fmax_by_seed", {})
        how = f"nextpnr report, target {r['freq_target_mhz']:g} MHz" + \
            (f", speed grade {r['speed_grade']}" if r.get("speed_grade") is not None else "")
        if r.get("pnr_args"):
            how += f"; nextpnr {' '.join(r['pnr_args'])}"
        if len(by_seed) > 1:
            how += f"; median of seeds {', '.join(f'{s}: {f:.1f}' for s, f in by_seed.items())}"
        rows.append(("Fmax", f"{r['fmax_mhz']:.1f} MHz", how))
    rows.append(("LUT depth", r["lut_depth"], "synth -lut 4; ltp -noff"))
    out = [f"{r['top']} on {r['device']}"]
    if t.estimate:
        out.append("  yosys figures only (no vendor synthesis, no place and route: no Fmax)"
                   + (f"; {t.note}" if t.note else ""))
    out += [f"  {name:<14}{val!s:>12}  {how}".rstrip() for name, val, how in rows]
    if timing_line(r):
        out.append(f"  {timing_line(r)}")
    if r.get("wrapper"):
        out.append("  scan wrapper  " + ", ".join(f"{k} {v}" for k, v in r["wrapper"].items()))
    out.append(f"  logs in {os.path.dirname(r['files']['verilog'])}")
    return "\n".join(out)
