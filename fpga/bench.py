"""What ``subbit bench rtl`` measures: the decoder's design space -- area, Fmax, throughput, latency,
lint warnings (its options are parsed in `subbit.cli.synthesis`).

For every K (lanes), M (probability bits) and symbol-lookup variant, synthesize and place and
route the decoder (:func:`subbit.fpga.flow.synthesize`), and measure its cycle behaviour with
``subbit.sim.rtl_decode.measure`` when that function exists. weights/s = weights/cycle x Fmax.
Each point's Verilog is linted (:func:`subbit.fpga.lint.lint`: Verilator ``-Wall`` with the shipped waivers).
A 32-bit counter through the same flow is the calibration row. Points run in parallel processes.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

from subbit.model.errors import SubbitError

__all__ = ["LANES", "PROB_BITS", "LOOKUPS", "measure_function", "run_point", "sweep", "check_points",
           "read_sweep", "other_grade", "rtl_markdown", "plot", "source_state"]

LANES, PROB_BITS, LOOKUPS = (1, 2, 4, 8), (10, 12, 14), ("compare", "table")
MEASURE = "subbit.sim.rtl_decode.measure"
MEASURED_KEYS = ("weights_per_cycle", "first_weight_latency_cycles", "header_words", "layer_switch_bubbles",
                 "switch_idle", "switch_bubbles")
AREA_KEYS = ("luts", "ffs", "carry", "dsps", "brams", "lutram", "logic_cells", "lut_depth", "fmax_mhz")
PNR_KEYS = ("device", "tools", "freq_target_mhz", "fmax_by_seed", "speed_grade")


def measure_function():
    """``subbit.sim.rtl_decode.measure``: the cycle-accurate measurement of a sweep point."""
    mod, name = MEASURE.rsplit(".", 1)
    return getattr(importlib.import_module(mod), name)


def _tag(point):
    if point.get("design") == "counter":
        return "counter"
    return "K{lanes}-M{prob_bits}-{lookup}".format(**point) + (f"-T{point['tables']}" if point.get("tables", 1) > 1
                                                               else "")


def run_point(point: dict, target: str, build_root: str, freq_mhz=None, seed=1, measure=True,
              jobs=1, speed=None) -> dict:
    """Synthesize one configuration (and measure it when ``measure`` and the function exist).

    ``point``: ``design`` (``"decoder"`` or ``"counter"``) and the decoder's generator parameters.
    Returns ``point`` updated with the area/Fmax keys, the measured keys, ``lint_warnings`` (the
    count Verilator leaves after the shipped waivers), ``seconds``, and ``error`` /
    ``measure_error`` / ``lint_error`` (messages) when a step failed.
    """
    from subbit.fpga import flow
    from subbit.fpga.design import decoder_kwargs, design_verilog
    row, t0 = dict(point), time.monotonic()
    try:
        verilog, top = design_verilog(**point)
    except Exception as e:  # noqa: BLE001 - a generator bug fails this configuration, not the sweep
        row["error"] = str(e) if isinstance(e, SubbitError) else \
            f"generating the Verilog failed: {type(e).__name__}: {e}"
    if "error" not in row and point.get("design", "decoder") == "decoder":
        from subbit.fpga.lint import lint
        try:
            row["lint_warnings"] = len(lint(verilog, top))
        except SubbitError as e:
            row["lint_error"] = str(e)
    if "error" not in row:
        try:
            res = flow.synthesize(verilog, top, target, os.path.join(build_root, _tag(point)),
                                  freq_mhz=freq_mhz, seed=seed, speed=speed, jobs=jobs)
            row.update({k: res[k] for k in AREA_KEYS})
            row.update({k: res[k] for k in PNR_KEYS if k in res})
        except SubbitError as e:
            row["error"] = str(e)
    fn = measure_function() if measure and point.get("design", "decoder") == "decoder" else None
    if fn is not None and "error" not in row:
        try:
            m = fn(**decoder_kwargs(point))
            row.update({k: m[k] for k in MEASURED_KEYS})
        except Exception as e:  # noqa: BLE001 - recorded in the table's footnotes
            row["measure_error"] = f"{type(e).__name__}: {e}"
    if row.get("weights_per_cycle") is not None and row.get("fmax_mhz"):
        row["weights_per_s"] = row["weights_per_cycle"] * row["fmax_mhz"] * 1e6
        row["weights_per_s_per_lut"] = row["weights_per_s"] / row["luts"] if row["luts"] else None
    row["seconds"] = round(time.monotonic() - t0, 1)
    return row


def sweep(points: list[dict], *, target: str, build_root: str, jobs: int = 2, freq_mhz=None, seed=1,
          speed=None, measure=True, progress=None) -> list[dict]:
    """:func:`run_point` over ``points`` in ``jobs`` processes; rows in the order of ``points``."""
    say = progress or (lambda msg: None)
    n, t0 = len(points), time.monotonic()

    def report(i, row):
        what = (f"error: {row['error'].splitlines()[0][:160]}" if "error" in row else
                f"{row['luts']} LUT4, {row['fmax_mhz'] or 0:.1f} MHz" if row.get("fmax_mhz") else
                f"{row['luts']} LUT4, depth {row['lut_depth']}")
        say(f"[{i}/{n}] {_tag(row)}: {what} ({row['seconds']:.0f} s; {time.monotonic() - t0:.0f} s total)")

    args = (target, build_root, freq_mhz, seed, measure)
    if jobs <= 1 or n == 1:
        rows = []
        for i, p in enumerate(points, 1):
            rows.append(run_point(p, *args, jobs=max(1, jobs), speed=speed))
            report(i, rows[-1])
        return rows
    ctx = multiprocessing.get_context("spawn")
    rows = [None] * n
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
        futs = {ex.submit(run_point, p, *args, speed=speed): k for k, p in enumerate(points)}
        for i, f in enumerate(concurrent.futures.as_completed(futs), 1):
            rows[futs[f]] = f.result()
            report(i, rows[futs[f]])
    return rows


def _seed_fmax(r) -> list:
    """The row's Fmax per placement seed (empty for a single-seed run)."""
    return list((r.get("fmax_by_seed") or {}).values())


def _fmt(v, spec=""):
    return "" if v is None else format(v, spec)


def _first(r):
    lat, hdr = r.get("first_weight_latency_cycles"), r.get("header_words")
    return "" if lat is None else f"{lat} ({hdr} header words)" if hdr is not None else str(lat)


def _window(r) -> str:
    """The payload window a row was built with (rows of sweeps before the ring window: shift)."""
    from subbit.hw.params import default_window
    return "shift" if "window" not in r else r["window"] or default_window(r["lanes"])


def other_grade(grade):
    """``grade`` when it is not the ECP5 default (6) and so gets a section and plot of its own;
    else None."""
    from subbit.fpga.flow import speed_grade
    return grade if grade is not None and grade != speed_grade("ecp5", None) else None


def rtl_markdown(rows: list[dict], *, command: str, source: str | None = None, plot_file: str | None = None) -> str:
    """The results section: calibration line, one table row per configuration, definitions."""
    ref = next((r for r in rows if r.get("design") == "counter"), None)
    dec = [r for r in rows if r.get("design", "decoder") == "decoder"]
    ok = next((r for r in dec + rows if "error" not in r and "device" in r), {})
    tools = ", ".join(ok.get("tools", {}).values())
    fixed = {k: dec[0].get(k) for k in ("max_symbols", "word_width", "ways", "multiplier", "prefetch")} if dec else {}
    if dec:
        fixed["window"] = _window(dec[0])
    for key, value in (("ways", lambda r: r.get("ways")), ("prefetch", lambda r: r.get("prefetch")),
                       ("window", _window)):
        by = {}                                # value -> the K (and T, with row classes) built with it
        classed = any(r.get("tables", 1) > 1 for r in dec)
        for r in dec:
            by.setdefault(value(r), set()).add((r["lanes"], r.get("tables", 1)) if classed else r["lanes"])
        if len(by) > 1:
            def built(ks):
                if classed:
                    return "; ".join(f"K={k} T={t}" for k, t in sorted(ks))
                return "K=" + ", ".join(map(str, sorted(ks)))
            fixed[key] = " / ".join(f"{'default' if w is None else w} ({built(ks)})"
                                    for w, ks in sorted(by.items(), key=lambda i: min(i[1])))
    fixed_s = ", ".join(f"{k}={('default (the pipeline depth)' if k == 'ways' else 'default') if v is None else v}"
                        for k, v in fixed.items())
    freq = f"nextpnr `--freq {ok['freq_target_mhz']:g}`" if ok.get("freq_target_mhz") else "no place and route"
    seeds = list(ok.get("fmax_by_seed") or {})
    if len(seeds) > 1:
        freq += (f", seeds {', '.join(map(str, seeds))}: Fmax is the median run's (the lower middle one for an "
                 "even count), the range over the seeds in brackets; the other columns are the same for every seed")
    grade = other_grade(ok.get("speed_grade"))
    at = f" at ECP5 speed grade {grade}" if grade else ""
    classes = " with row classes (T tables per layer)" if any(r.get("tables", 1) > 1 for r in dec) else ""
    out = [f"## RTL decoder{classes}{at}: area, Fmax, throughput, latency (`subbit bench rtl`)", "",
           f"Command: `{command}`. Target: {ok.get('device', '?')}; {tools}; {freq}. "
           f"Decoder {fixed_s}" + (f", source: {source}" if source else "") + ". Every figure comes from a "
           "tool's report (docs/fpga.md says what each column counts)."]
    if ref is not None:
        if "error" in ref:
            out += ["", f"Calibration (32-bit counter, same flow): failed: {' '.join(ref['error'].split())}"]
        else:
            fm = f"reaches **{ref['fmax_mhz']:.1f} MHz**" if ref.get("fmax_mhz") else \
                f"has LUT depth {ref['lut_depth']}"
            out += ["", f"Calibration: a 32-bit counter (`subbit synth --design counter`) {fm} with "
                    f"{ref['luts']} LUT4 sites in the same flow, the ceiling for a single carry chain."]
    classed = any(r.get("tables", 1) > 1 for r in dec)     # a row-classed sweep: a column T
    out += ["", "| K | M | lookup | " + ("T | " if classed else "") + "LUT4 sites | FFs | carry | DSP | BRAM | LUT-RAM "
            "| logic cells | LUT depth | Fmax (MHz) | weights/cycle | Mweights/s | weights/s per LUT | × reference per LUT "
            "| first weight (cycles) | layer switch idle (cycles) | of it not bus-bound | lint warnings |",
            "|" + "---|" * (20 + classed)]
    from subbit.fpga.reference import ans_reference_weights_per_site
    # against the reference timed for the sweep's speed grade (a column of dashes where it was not)
    ref_site = ans_reference_weights_per_site("ternary", grade or 6)
    notes = []
    for r in dec:
        head = f"| {r['lanes']} | {r['prob_bits']} | {r['lookup']} " + (f"| {r.get('tables', 1)} " if classed else "")
        if "error" in r:
            notes.append(re.sub(r"\(log: .*/([^/]+/[^/]+)\)$", r"(log: <build-dir>/\1)", " ".join(r["error"].split())))
            out.append(head + f"| failed [{len(notes)}] |" + " |" * 16)
            continue
        wps = r.get("weights_per_s")
        by_seed = _seed_fmax(r)
        fmax = _fmt(r["fmax_mhz"], ".1f") + (f" ({min(by_seed):.1f}–{max(by_seed):.1f})" if len(by_seed) > 1 else "")
        out.append(head + f"| {r['luts']} | {r['ffs']} | {r['carry']} | {r['dsps']} | {r['brams']} | {r['lutram']} "
                   f"| {_fmt(r['logic_cells'])} | {r['lut_depth']} | {fmax} "
                   f"| {_fmt(r.get('weights_per_cycle'), '.3f')} | {_fmt(wps and wps / 1e6, '.1f')} "
                   f"| {_fmt(r.get('weights_per_s_per_lut'), '.0f')} "
                   f"| {_fmt(r.get('weights_per_s_per_lut') and ref_site and r['weights_per_s_per_lut'] / ref_site, '.0f')} "
                   f"| {_first(r)} "
                   f"| {_fmt(r.get('switch_idle'), '.1f')} | {_fmt(r.get('switch_bubbles'), '.1f')} "
                   f"| {_fmt(r.get('lint_warnings'))} |")
        if r.get("measure_error"):
            notes.append(f"{_tag(r)}: simulation failed: "
                         + " ".join(r["measure_error"].split()))
        if r.get("lint_error"):
            notes.append(f"{_tag(r)}: " + " ".join(r["lint_error"].split()))
    out += [""] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)] + ([""] if notes else [])
    measured = any(r.get("weights_per_cycle") is not None for r in dec)
    out.append(
        "weights/cycle, first-weight latency (clocks from the first input word to the first weight; the "
        "stream and first layer headers are read at one word per clock), layer-switch idle cycles (output "
        "clocks without a weight between a layer's last weight and the next layer's first, per switch) and "
        "the part of them not bus-bound (the clocks past the later of: the clock after the previous layer's "
        "last weight, and the next layer's header words + 4 clocks on a bus delivering one beat per clock "
        "from the first, the first-weight target applied to every layer; `subbit.sim.tb.switch_metrics`) "
        "come from cycle-accurate simulation in Verilator "
        "(`subbit.sim.rtl_decode.measure`) of a real network stream checked bit-exact against the golden "
        "model: the ccexam MNIST CNN quantized round-to-nearest at 3 bits, its 401k-weight fc1 cut to "
        "32768 weights (52768 weights, 4 layers, 3 switches)"
        + ("; with T > 1 every layer coded with up to T row-classed tables (`--row-classes T`), fc1 cut to its "
           "first 10 rows (31360 weights)" if classed else "") + ". weights/s = weights/cycle x Fmax." if measured else
        "weights/cycle and the latency columns are empty: the sweep ran with --no-measure.")
    out += ["", "lint warnings: what `verilator --lint-only -Wall` reports on the point's Verilog with the "
            "shipped waivers for what Amaranth's Verilog backend emits by construction "
            "(`fpga/verilator_waivers.vlt`, docs/decoder.md \"Lint\"; the ECP5 multiplier is linted against "
            "yosys's MULT18X18D declaration); 0 is a clean lint."]
    if plot_file:
        out += ["", f"![LUT4 sites, Fmax and weights/s over K]({plot_file})"]
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> str:
    """PNG: LUT4 sites, Fmax (a bar over the seeds' range when several ran) and (when measured)
    Mweights/s over K, one line per (M, lookup, T)."""
    from matplotlib.figure import Figure
    dec = [r for r in rows if r.get("design", "decoder") == "decoder" and "error" not in r]
    panels = [("luts", "LUT4 sites", 1), ("fmax_mhz", "Fmax (MHz)", 1), ("weights_per_s", "Mweights/s", 1e-6)]
    panels = [p for p in panels if any(r.get(p[0]) is not None for r in dec)] or panels[:1]
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    series = sorted({(r["prob_bits"], r["lookup"], r.get("tables", 1)) for r in dec})
    colors = {mt: f"C{i}" for i, mt in enumerate(sorted({(m, t) for m, _, t in series}))}
    for ax, (key, label, scale) in zip(axes, panels):
        for m, lk, t in series:
            pts = sorted((r["lanes"], r[key] * scale) for r in dec
                         if (r["prob_bits"], r["lookup"], r.get("tables", 1)) == (m, lk, t) and r.get(key) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=colors[m, t], linestyle="-" if lk == "compare" else "--",
                        label=f"M={m} {lk}" + (f" T={t}" if t > 1 else ""))
            if key == "fmax_mhz":                # the range over placement seeds, when several ran
                spans = [(r["lanes"], min(v), max(v)) for r in dec
                         if (r["prob_bits"], r["lookup"], r.get("tables", 1)) == (m, lk, t)
                         for v in [_seed_fmax(r)] if len(v) > 1]
                if spans:
                    ax.vlines(*zip(*spans), color=colors[m, t], alpha=0.5, linewidth=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(LANES, [str(k) for k in LANES])
        ax.set_xlabel("lanes K")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if series:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"subbit decoder on {dec[0]['device'] if dec else '?'}", fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def source_state() -> str | None:
    """The decoder source measured: ``commit <hash>`` of this checkout, noting uncommitted changes
    under hw/ (None outside a git checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        git = lambda *a: subprocess.run(["git", "-C", root, *a], capture_output=True, text=True,  # noqa: E731
                                        check=True).stdout.strip()
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", "hw")
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"commit {head}" + (" with uncommitted changes in hw/" if dirty else "")


def check_points(points):
    """Every decoder configuration of the sweep is valid, before any tool runs (SubbitError naming
    the first bad one)."""
    from subbit.fpga.design import decoder_kwargs
    from subbit.hw.params import DecoderParams
    for p in points:
        if p.get("design") == "decoder":
            try:
                DecoderParams(**decoder_kwargs(p))
            except SubbitError as e:
                raise SubbitError(f"configuration {_tag(p)}: {e}") from None


def read_sweep(path):
    """A previous run's ``sweep.json`` (``--redraw``)."""
    try:
        with open(path) as fh:
            run = json.load(fh)
    except OSError as e:
        raise SubbitError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise SubbitError(f"{path} is not JSON: {e}") from None
    rows = run.get("rows") if isinstance(run, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "design" in r for r in rows):
        raise SubbitError(f"{path} is not a sweep.json of `subbit bench rtl` (no list of rows with a 'design')")
    run.setdefault("command", "?")
    return run
