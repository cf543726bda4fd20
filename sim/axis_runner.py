"""Build the AXI4-Stream decoder's Verilog (`subbit.hw.axis`) for a simulator and run its cocotb
bench (`subbit.sim.axis_tb`); the same build cache and environment as `subbit.sim.runner`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from ..hw.params import DecoderParams
from .runner import SimError, _patched_environ, build_dir_root, cached_build, run_bench, toolchain_env, toolchain_id

__all__ = ["build", "run"]

TB_MODULE = "subbit.sim.axis_tb"


def build(params: DecoderParams, simulator: str = "verilator") -> str:
    """Compile the AXI4-Stream top for ``simulator`` (cached by the Verilog's hash); its directory."""
    from ..hw.axis import TOP, generate
    env = toolchain_env()
    exe = {"verilator": "verilator", "icarus": "iverilog"}[simulator]
    if shutil.which(exe, path=env["PATH"]) is None:
        raise SimError(f"{simulator}: '{exe}' not found on PATH")
    src = generate(params)
    digest = hashlib.sha256((src + toolchain_id(simulator)).encode()).hexdigest()[:12]
    d = os.path.join(build_dir_root(), "sim", simulator, f"axis_K{params.lanes}_M{params.prob_bits}_{digest}")

    def make():
        path = os.path.join(d, f"{TOP}.v")
        with open(path, "w") as fh:
            fh.write(src)
        from cocotb_tools.runner import get_runner
        log = os.path.join(d, "build.log")
        kw = {"build_args": ["-Wno-fatal", "-Wno-lint", "-Wno-style"]} if simulator == "verilator" else \
            {"timescale": ("1ns", "1ps"), "build_args": ["-g2005"]}
        try:
            with _patched_environ(env):
                get_runner(simulator).build(sources=[path], hdl_toplevel=TOP, build_dir=d, log_file=log, **kw)
        except (SystemExit, Exception) as e:
            raise SimError(f"{simulator} build of {TOP} failed ({type(e).__name__}); see {log}") from None

    cached_build(d, digest, make)
    return d


def run(directory: str, job: dict, simulator: str = "verilator") -> dict:
    """Run the bench on the model in ``directory`` with ``job`` (JSON-able); its result dict."""
    from ..hw.axis import TOP

    def write_input(work):
        path = os.path.join(work, "job.json")
        with open(path, "w") as fh:
            json.dump(job, fh)
        return path
    return run_bench(simulator, directory, TB_MODULE, TOP, r"\.decode_axis(/|$)", "axis", write_input)
