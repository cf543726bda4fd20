"""``subbit bench formal``: the decoder's formal properties checked with SymbiYosys
(:mod:`subbit.fpga.sby`), written into docs/results.md."""

from __future__ import annotations

import sys

__all__ = ["register_bench", "cmd_bench_formal"]


def register_bench(bsub):
    b = bsub.add_parser("formal", help="prove / bound the decoder's formal properties (SymbiYosys) -> docs/results.md",
                        description="k-induction of the parser's error codes and latency, bounded model checks of "
                        "the decoder's stream rule, sticky errors, reset and progress, the covers, two deliberate "
                        "bugs that must fail, and the netlist check that o.valid does not depend on o.ready "
                        "(docs/reliability.md).")
    b.add_argument("--quick", action="store_true", help="the shallow depths of the test suite")
    b.add_argument("--no-write", action="store_true", help="print only, do not update docs/results.md")
    b.set_defaults(func=cmd_bench_formal)


def cmd_bench_formal(args):
    from subbit.fpga.sby import bench_markdown, run_bench
    from subbit.results import update_section
    rows = run_bench(quick=args.quick, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    md = bench_markdown(rows, "subbit bench formal" + (" --quick" if args.quick else ""))
    print(md)
    if not args.no_write:
        print(f"\nwritten to {update_section('formal', md)}")
    return 0 if all(r["status"] == r["expected"] for r in rows) else 1
