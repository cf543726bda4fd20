"""The ``subbit`` command-line tool: every command's argument parsing lives in this package.

One module per command group, each with ``register(sub)`` and its ``cmd_*`` functions; a command
function checks its arguments and calls library functions (`subbit.model`, `subbit.hw`,
`subbit.sim`, `subbit.fpga`, ...) with plain values, importing them inside the function: building
the parser imports neither torch, Amaranth, numba nor cocotb, so ``subbit COMMAND --help`` and
the light commands start fast. Libraries never import this package.

- :mod:`.codec`: ``compress``, ``inspect``, ``decode``
- :mod:`.benchmarks`: the ``bench`` group (``model``, ``ptq``; ``rtl`` and ``train`` come from
  :mod:`.synthesis` and :mod:`.training`)
- :mod:`.demo`: ``demo``
- :mod:`.synthesis`: ``synth``, ``bench rtl``
- :mod:`.proofs`: ``bench formal``
- :mod:`.hardware`: ``verilog``, ``infer``, ``decode-speed``
- :mod:`.training`: ``train``, ``bench train``
- :mod:`.options`: the decoder's options, generated from `subbit.hw.params.DecoderParams`
- :mod:`.common`: running a command (exit codes, messages), progress bars, options as data
- ``python -m`` tools: :mod:`.fault_suite` and :mod:`.fuzz_reader` (the golden reader's fault
  injection and fuzzing), :mod:`.nncodec_table` (the peer codec), :mod:`.cache` (the per-user cache)
"""

from __future__ import annotations

import argparse
import sys

from . import benchmarks, codec, demo, hardware, proofs, synthesis, training
from .common import run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="subbit", description="The ``subbit`` command-line tool. Weights below one "
                                 "bit, decoded by a streaming rANS decoder in hardware.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    codec.register(sub)
    bench = benchmarks.register(sub)
    synthesis.register_bench(bench)
    benchmarks.register_ptq(bench)
    proofs.register_bench(bench)
    demo.register(sub)
    synthesis.register(sub)
    hardware.register_verilog(sub)
    training.register(sub, bench)
    hardware.register_rtl_runs(sub)
    return ap


def main(argv=None) -> int:
    """``subbit ARGS``: parse, run the command; its exit code (2 for a subbit error, with the message
    on stderr; 130 when interrupted; 141 when the reader of stdout left)."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
