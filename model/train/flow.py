"""The whole flow: data → fp32 network → entropy-aware QAT → weight stream → decoded check → report.

:func:`run` is what ``subbit train`` calls::

    cfg = TrainConfig(dataset="digits", target_bits=1.0, out="runs/digits")
    report = run(cfg)      # writes runs/digits/{model.sbw, report.json, pareto.png}

Steps: load and validate everything first (dataset, model, checkpoint, budget), so a bad
input fails before any work and leaves nothing behind; train or load the fp32 network;
measure the baselines (`subbit.model.train.baselines`); compress the network toward
``target_bits`` (and every ``sweep`` budget) with entropy-aware QAT
(`subbit.model.train.loop.train_qat`); serialise the stream, parse the bytes back, golden-
decode them, rebuild the network from the decoded weights and measure its test accuracy,
which must equal the training side's (bit-exact weights); write the outputs into a temporary
directory next to ``out`` and move them into place at the very end.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import sbw as sbwmod
from ..errors import SubbitError
from ..report import stream_report
from ..stream import StreamConfig
from . import api
from . import baselines as bl
from . import checkpoint as ckptmod
from .checkpoint import PhaseCheckpoint, stop_on_signals
from .data import DATASETS, load_dataset
from .errors import CheckpointError, ConfigError
from .loop import EvalLoader, SplitLoader, evaluate_loader, resolve_device, runtime, train_fp32
from .models import MODELS, build_model, load_checkpoint
from .qnet import QuantNet, check_row_classes, rebuild
from .user import UserData, build_user_model, is_spec

__all__ = ["DEFAULTS", "TrainConfig", "run"]

#: Per-dataset defaults (any field of :class:`TrainConfig` left at ``None`` takes these).
DEFAULTS = {
    "digits": dict(model="resnet8", width=16, epochs=40, batch_size=64, lr=0.05,
                   qat_epochs=40, qat_lr=1e-3, evals_per_epoch=1),
    "mnist": dict(model="ccexam-cnn", width=16, epochs=0, batch_size=128, lr=0.05,
                  qat_epochs=6, qat_lr=2e-4, evals_per_epoch=2),
    "fashion-mnist": dict(model="resnet8", width=16, epochs=15, batch_size=128, lr=0.1,
                          qat_epochs=15, qat_lr=1e-3, evals_per_epoch=1),
}


@dataclass
class TrainConfig:
    """Parameters of :func:`run`; ``None`` means the dataset's default (:data:`DEFAULTS`, or
    :data:`USER_DEFAULTS` with ``data``)."""
    dataset: str | None = None         # a built-in dataset (default digits), or
    data: str | None = None            # MODULE:FUNCTION returning the user's loaders (`user.UserData`)
    target_bits: float = 1.0
    out: str = "subbit-train"
    model: str | None = None           # a built-in model, or MODULE:FUNCTION building the user's
    checkpoint: str | None = None      # fp32 weights to start from (ccexam-cnn: the ccexam package's)
    data_dir: str | None = None
    width: int | None = None
    epochs: int | None = None          # fp32 training epochs (0 with a checkpoint)
    batch_size: int | None = None
    lr: float | None = None
    qat_epochs: int | None = None
    qat_lr: float | None = None
    lr_quant: float = 1e-2
    weight_decay: float = 0.0
    lam0: float = 0.05
    gain: float = 0.05
    ramp: float = 0.5
    init_bits: int = 4
    max_bits: int = 8
    per_channel: bool = False
    ternary_epochs: int | None = None  # ternary-QAT baseline (default: qat_epochs; 0 = skip)
    sweep: list = field(default_factory=list)   # more budgets for the Pareto plot
    evals_per_epoch: int | None = None
    subset: int | None = None
    seed: int = 0
    threads: int | None = None
    prob_bits: int | None = None       # coder parameters: default StreamConfig() (the hardware's)
    lanes: int | None = None
    ways: int | None = None
    row_classes: int | str = 1         # up to that many tables per layer (1, 2, 4, 8, "auto"): word stream v3
    device: str = "auto"               # auto (CUDA when present), cpu, cuda, cuda:N
    resume: bool = False               # continue the run checkpointed in OUT/checkpoint
    keep_checkpoint: bool = False      # keep OUT/checkpoint after a successful run
    progress: bool = False
    command: str = ""

    @property
    def user_model(self) -> bool:
        return is_spec(self.model)

    def resolved(self) -> "TrainConfig":
        """Validated copy with defaults filled in.

        Raises
        ------
        ConfigError
            Unknown dataset or model, a budget that is not a positive number, or a
            parameter out of range (the message quotes it).
        """
        c = copy.deepcopy(self)
        if c.data is not None:
            if c.dataset is not None:
                raise ConfigError("--dataset and --data are exclusive (a built-in dataset, or your loaders)")
            if not is_spec(c.data):
                raise ConfigError(f"--data {c.data!r}: expected MODULE:FUNCTION returning your loaders")
            if not c.user_model:
                raise ConfigError("--data needs --model MODULE:FUNCTION (your model; the built-in models are "
                                  "made for the built-in datasets)")
            for name, flag in (("batch_size", "--batch-size"), ("subset", "--subset"), ("data_dir", "--data-dir")):
                if getattr(c, name) is not None:
                    raise ConfigError(f"{flag} applies to the built-in datasets: your loaders set it with --data")
            d = USER_DEFAULTS
        else:
            c.dataset = c.dataset or "digits"
            if c.dataset not in DATASETS:
                raise ConfigError(f"unknown dataset {c.dataset!r} (expected one of {', '.join(DATASETS)})")
            d = DEFAULTS[c.dataset]
        for k, v in d.items():
            if getattr(c, k) is None:
                setattr(c, k, v)
        if c.user_model:
            c.width = None                  # the built-in ResNets' only
        elif c.model not in MODELS:
            raise ConfigError(f"unknown model {c.model!r} (expected one of {', '.join(MODELS)}, "
                              "or MODULE:FUNCTION for your own)")
        if self.epochs is None and (c.checkpoint or c.model == "ccexam-cnn"):
            c.epochs = 0
        elif self.epochs is None and c.user_model and c.data is None and c.epochs == 0:
            raise ConfigError(f"--model {c.model} on {c.dataset}: give --epochs N to train it in fp32 first, or "
                              "--epochs 0 if the factory returns a trained network (the dataset's default of 0 "
                              "epochs is for its pretrained built-in model)")
        if c.ternary_epochs is None:
            c.ternary_epochs = c.qat_epochs
        for name in ["target_bits"] + [f"sweep[{i}]" for i in range(len(c.sweep))]:
            v = c.target_bits if name == "target_bits" else c.sweep[int(name[6:-1])]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                flag = "--target-bits" if name == "target_bits" else "--sweep"
                raise ConfigError(f"{flag} must be a positive number of bits per weight, not {v!r}")
        for name, lo in (("epochs", 0), ("qat_epochs", 1), ("batch_size", 1), ("ternary_epochs", 0),
                         ("evals_per_epoch", 1), ("seed", 0)):
            v = getattr(c, name)
            if name == "batch_size" and v is None and c.data is not None:
                continue
            if not isinstance(v, int) or v < lo:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {lo}, not {v!r}")
        flag = {"lam0": "--lambda0"}
        for name in ("lr", "qat_lr", "lr_quant", "lam0", "gain"):
            v = getattr(c, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{flag.get(name, '--' + name.replace('_', '-'))} must be a positive "
                                  f"number, not {v!r}")
        for name, lo, hi in (("weight_decay", 0, math.inf), ("ramp", 0, 1)):
            v = getattr(c, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                span = f"a number >= {lo}" if hi == math.inf else f"in {lo}..{hi}"
                raise ConfigError(f"--{name.replace('_', '-')} must be {span}, not {v!r}")
        if c.threads is not None and (not isinstance(c.threads, int) or c.threads < 1):
            raise ConfigError(f"--threads must be an integer >= 1, not {c.threads!r}")
        if c.max_bits not in range(2, 9):
            raise ConfigError(f"--max-bits must be in 2..8, not {c.max_bits}")
        if not 2 <= c.init_bits <= c.max_bits:
            raise ConfigError(f"--init-bits must be in 2..{c.max_bits} (--max-bits), not {c.init_bits}")
        if c.subset is not None and c.subset < 1:
            raise ConfigError(f"--subset must be >= 1, not {c.subset}")
        if c.epochs == 0 and not c.user_model and c.model != "ccexam-cnn" and not c.checkpoint:
            raise ConfigError(f"model {c.model} has no pretrained weights: give --checkpoint or --epochs >= 1")
        resolve_device(c.device)                             # raises ConfigError for a bad or absent device
        hw = StreamConfig()
        c.prob_bits = hw.prob_bits if c.prob_bits is None else c.prob_bits
        c.lanes = hw.lanes if c.lanes is None else c.lanes
        c.ways = hw.ways if c.ways is None else c.ways
        StreamConfig(c.prob_bits, c.lanes, c.ways)          # raises SubbitError on bad coder parameters
        c.row_classes = check_row_classes(c.row_classes, "--row-classes")
        if os.path.exists(c.out) and not os.path.isdir(c.out):
            raise ConfigError(f"output {c.out} exists and is not a directory")
        anc = os.path.dirname(os.path.abspath(c.out))
        while not os.path.exists(anc):
            anc = os.path.dirname(anc)
        if not os.path.isdir(anc) or not os.access(anc, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot create the output directory {c.out}: {anc} is not a writable directory")
        ck = checkpoint_dir(c.out)
        if c.resume:
            stored = read_run(c.out)
            mine = run_identity(c)
            # a parameter added since the run was stored counts as its default there
            there = dict(_ADDED, **stored["config"])
            diff = [f"{k}: {there.get(k)!r} there, {mine['config'].get(k)!r} here"
                    for k in sorted(set(there) | set(mine["config"]))
                    if there.get(k) != mine["config"].get(k)]
            if diff:
                raise CheckpointError(f"--resume {c.out}: the run was made with other parameters: {'; '.join(diff)}")
        elif os.path.isdir(ck):
            raise CheckpointError(f"{c.out} holds the checkpoint of an unfinished run ({ck}): continue it with "
                                  f"--resume {c.out}, or remove {ck}")
        return c


#: Defaults of a run on the user's loaders (``--data``): the model is taken as trained.
USER_DEFAULTS = dict(epochs=0, lr=0.05, qat_epochs=10, qat_lr=1e-3, evals_per_epoch=1)

#: Fields added to :class:`TrainConfig` after runs were first checkpointed, with the value an
#: earlier run had (its run.json lacks them).
_ADDED = {"row_classes": 1}

#: The fields of :class:`TrainConfig` that do not change what a run computes.
_NOT_IDENTITY = ("out", "progress", "command", "resume", "keep_checkpoint")


def checkpoint_dir(out: str) -> str:
    """Where a run writing into ``out`` keeps its checkpoints."""
    return os.path.join(out, "checkpoint")


def run_identity(c: TrainConfig) -> dict:
    """What ``OUT/checkpoint/run.json`` records: versions and the resolved configuration."""
    from subbit import __version__
    cfg = {k: v for k, v in asdict(c).items() if k not in _NOT_IDENTITY}
    return {"format": "subbit-train-run", "version": ckptmod.VERSION, "subbit": __version__, "config": cfg}


def read_run(out: str) -> dict:
    """``OUT/checkpoint/run.json`` of an unfinished run, checked for this version of subbit.

    Raises
    ------
    CheckpointError
        No checkpoint there, an unreadable one, or one of another version.
    """
    import json
    path = os.path.join(checkpoint_dir(out), "run.json")
    if not os.path.isdir(out):
        raise CheckpointError(f"--resume {out}: no such directory")
    if not os.path.isfile(path):
        raise CheckpointError(f"--resume {out}: no checkpoint there ({path} is missing): the run finished, or "
                              "never reached its first evaluation point")
    try:
        with open(path) as fh:
            run = json.load(fh)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(run, dict) or run.get("format") != "subbit-train-run" or not isinstance(run.get("config"), dict):
        raise CheckpointError(f"{path} is not the record of a subbit training run")
    mine = run_identity(TrainConfig())
    for key, what in (("version", "checkpoint format"), ("subbit", "subbit version")):
        if run.get(key) != mine[key]:
            raise CheckpointError(f"--resume {out}: the run was checkpointed with {what} {run.get(key)}, this is "
                                  f"{mine[key]}: it cannot be resumed (start it again)")
    return run


def config_from_run(out: str, **override) -> TrainConfig:
    """The configuration of the unfinished run in ``out`` (for ``subbit train --resume OUT``)."""
    run = read_run(out)
    fields = {f for f in TrainConfig.__dataclass_fields__}
    unknown = set(run["config"]) - fields
    if unknown:
        raise CheckpointError(f"--resume {out}: its run.json has parameters this subbit does not know: "
                              f"{', '.join(sorted(unknown))}")
    return TrainConfig(**dict(run["config"], out=out, resume=True, command=run.get("command", ""), **override))


def _stream_config(c: TrainConfig) -> StreamConfig:
    return StreamConfig(c.prob_bits, c.lanes, c.ways)


def _eval_numpy_sd(template, sd: dict, loader, rt) -> float:
    m = copy.deepcopy(template)
    own = m.state_dict()
    m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype) for k, v in sd.items()})
    return evaluate_loader(m, loader, rt)


def _compress(fp32, target, c: TrainConfig, data, rt, label, *, ternary=False, log=None):
    """Entropy-aware QAT of a copy of ``fp32`` toward ``target`` (or plain ternary QAT), through
    the public API (`subbit.model.train.api`: :func:`~.api.quantize`, :func:`~.api.fit`)."""
    qn = api.quantize(copy.deepcopy(fp32), init_bits=2 if ternary else c.init_bits,
                      max_bits=2 if ternary else c.max_bits, per_channel=c.per_channel, learn_range=not ternary,
                      stream=_stream_config(c), row_classes=1 if ternary else c.row_classes)
    res = api.fit(qn, data.train, data.val, target_bits=None if ternary else target,
                  epochs=c.ternary_epochs if ternary else c.qat_epochs, lr=c.qat_lr, lr_quant=c.lr_quant,
                  weight_decay=c.weight_decay, lam0=c.lam0, gain=c.gain, ramp=c.ramp,
                  evals_per_epoch=c.evals_per_epoch, checkpoint_dir=checkpoint_dir(c.out), resume=c.resume,
                  log=log, progress=c.progress, label=label)
    return qn, res


def _decoded_check(qn: QuantNet, fp32, data, c: TrainConfig, rt, info: dict):
    """Stream → bytes → parse → golden decode → rebuilt network; returns (bytes, SbwFile, codes,
    decoded test accuracy, training-side quantized test accuracy)."""
    f = qn.to_sbw(_stream_config(c), info=info)
    raw = sbwmod.to_bytes(f)
    g = sbwmod.from_bytes(raw, source="the new stream")
    codes = g.decode_codes()
    for meta, want in qn.export():
        if not np.array_equal(codes[meta.name], want):
            raise SubbitError(f"golden decode of layer {meta.name!r} differs from the trained codes")
    acc = evaluate_loader(rebuild(copy.deepcopy(fp32), g, codes), data.test, rt)
    qacc = evaluate_loader(qn.quantized_model(), data.test, rt)
    if acc != qacc:
        raise SubbitError(f"the network rebuilt from the decoded stream scores {acc:.6f}, "
                          f"the quantized training network {qacc:.6f}: weights are not bit-exact")
    return raw, g, codes, acc, qacc


class _BuiltinLoaders:
    """A built-in dataset as loaders: training batches (:class:`SplitLoader`), evaluation
    shards (:class:`EvalLoader`) — the same interface as the user's (`user.UserData`)."""

    def __init__(self, data, batch_size: int, rt):
        self.dataset = data
        self.train = SplitLoader(data.train, batch_size, rt)
        self.val = EvalLoader(data.val, rt)
        self.test = EvalLoader(data.test, rt)
        self.source, self.sizes, self.info = data.source, data.sizes(), data.info


def _place(tmp: str, out: str) -> None:
    """Move the finished outputs of ``tmp`` into ``out`` (created if missing), with the
    permissions of ordinary new files (temporary files and directories are private)."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(tmp):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)
    if not os.path.exists(out):
        os.rename(tmp, out)
        return
    for name in os.listdir(tmp):
        dst = os.path.join(out, name)
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        os.replace(os.path.join(tmp, name), dst)
    os.rmdir(tmp)


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _model(c: TrainConfig, geometry: dict | None):
    """The fp32 network of the run (seeded): built-in or the user's factory, with ``--checkpoint``."""
    torch.manual_seed(c.seed)                    # the initial weights depend on the seed only
    if c.user_model:
        fp32 = build_user_model(c.model, geometry)
    else:
        fp32 = build_model(c.model, width=c.width, **geometry)
    ckpt = c.checkpoint
    if ckpt is None and c.model == "ccexam-cnn":
        from ..data import ccexam_weights
        ckpt = ccexam_weights()
    if ckpt:
        load_checkpoint(fp32, ckpt)
    return fp32


def run(cfg: TrainConfig, log=_log) -> dict:
    """Run the flow; returns the report (also written to ``cfg.out/report.json`` by rank 0).

    The run checkpoints every phase (fp32 epochs, QAT evaluation points) into
    ``OUT/checkpoint/`` (:func:`checkpoint_dir`); ``resume=True`` (``subbit train --resume
    OUT``, :func:`config_from_run`) continues an interrupted run to the result an uninterrupted
    one gives. SIGINT and SIGTERM stop it with its last checkpoint whole
    (`checkpoint.Interrupted`). A finished run removes the checkpoint unless ``keep_checkpoint``.

    Raises
    ------
    ConfigError, DataError, CheckpointError
        Bad parameters, missing or malformed data, a checkpoint that does not fit the model, a
        budget at or below the headers' own cost, a resume of another run. Raised before any
        training; nothing is written.
    SubbitError
        If the decoded stream does not reproduce the trained network (a bug).
    """
    t_start = time.perf_counter()
    c = cfg.resolved()
    device = resolve_device(c.device)
    if c.data is not None:
        udata, geometry = UserData(c.data), None
    else:
        udata = None
        data = load_dataset(c.dataset, c.data_dir, subset=c.subset)
        geometry = {"in_channels": data.in_channels, "image_size": data.image_size, "num_classes": data.num_classes}
        if c.batch_size > len(data.train):
            raise ConfigError(f"--batch-size {c.batch_size} exceeds the {len(data.train)} training samples")
    fp32 = _model(c, geometry).to(device)
    names = api.select_layers(fp32)
    nweights = sum(fp32.get_parameter(k).numel() for k in names)
    probe = QuantNet(copy.deepcopy(fp32), names=names, init_bits=2, max_bits=2, stream=_stream_config(c))
    for tb, flag in [(c.target_bits, "--target-bits")] + [(tb, "--sweep") for tb in c.sweep]:
        api.check_target(probe, tb, flag)
    del probe
    name = c.dataset or c.data
    timings = {}
    with runtime(c.seed, c.threads, c.progress, log, device) as rt, stop_on_signals():
        if c.data is None and c.batch_size < rt.world:
            raise ConfigError(f"--batch-size {c.batch_size} is smaller than the {rt.world} processes")
        data = udata if udata is not None else _BuiltinLoaders(data, c.batch_size, rt)
        api._length(data.train, "training")
        api._dry_run(QuantNet(copy.deepcopy(fp32), names=names, init_bits=2, max_bits=2), data.train, data.val,
                     torch.nn.functional.cross_entropy)
        if rt.main:
            _start_checkpoints(c)
        rt.say(f"{name}: {data.sizes} from {data.source}; model {c.model} "
               f"({nweights} coded weights); world size {rt.world}; device {device}"
               + ("; resuming" if c.resume else ""))
        hist = {}
        t = time.perf_counter()
        if c.epochs:
            ck = PhaseCheckpoint(os.path.join(checkpoint_dir(c.out), "fp32.pt"), phase="fp32", model=fp32,
                                 settings=run_identity(c)["config"], main=rt.main)
            hist["fp32"] = train_fp32(fp32, data.train, data.val, rt, epochs=c.epochs, lr=c.lr, checkpoint=ck)
        fp32.eval()
        timings["fp32_train"] = time.perf_counter() - t
        base_acc = evaluate_loader(fp32, data.test, rt)
        base_val = evaluate_loader(fp32, data.val, rt)
        rt.say(f"fp32: test {100 * base_acc:.2f}%, val {100 * base_val:.2f}%")

        # -- baselines without retraining ---------------------------------------------------
        points = [{"name": "fp32", "kind": "fp32", "bits_per_weight": 32.0, "accuracy": base_acc,
                   "entropy_coded": False}]
        sd = {k: v.detach().cpu().numpy() for k, v in fp32.state_dict().items()}
        for b in (8, 4, 2):
            acc = _eval_numpy_sd(fp32, bl.rtn_state_dict(sd, names, b), data.test, rt)
            points.append({"name": f"uniform {b}-bit", "kind": "uniform", "bits_per_weight": float(b),
                           "accuracy": acc, "entropy_coded": False})

        # -- ours: entropy-aware QAT at the budget (and the sweep budgets) ---------------------
        t = time.perf_counter()
        qn, res = _compress(fp32, c.target_bits, c, data, rt, "qat", log=log)
        timings["qat"] = time.perf_counter() - t
        hist["qat"] = res.history
        info = {"producer": "subbit train", "dataset": name, "model": c.model,
                "target_bits": c.target_bits, "seed": c.seed}
        raw, g, codes, acc, qacc = _decoded_check(qn, fp32, data, c, rt, info)
        rep_s = stream_report(g, codes=codes, file_bytes=len(raw))
        huff = bl.huffman_bits([codes[m.name] for m in g.layers])
        points.append({"name": "huffman (our codes)", "kind": "huffman", "bits_per_weight": huff["bits_per_weight"],
                       "accuracy": acc, "entropy_coded": True})
        points.append({"name": f"ours @{c.target_bits:g}", "kind": "ours", "bits_per_weight": rep_s["bits_per_weight"],
                       "accuracy": acc, "entropy_coded": True})
        sweep, sweep_raw = [], {}
        for tb in c.sweep:
            qs, rs = _compress(fp32, tb, c, data, rt, f"qat@{tb:g}", log=log)
            raw_s, gs, cs, acc_s, _ = _decoded_check(qs, fp32, data, c, rt, dict(info, target_bits=tb))
            r = stream_report(gs, codes=cs)
            sweep.append({"target_bits": tb, "bits_per_weight": r["bits_per_weight"],
                          "entropy_bits_per_weight": r["entropy_bits_per_weight"], "accuracy": acc_s,
                          "val_accuracy": rs.chosen["val_accuracy"] if rs.chosen else None,
                          "budget_met": r["bits_per_weight"] <= tb, "file": f"sweep/target-{tb:g}.sbw"})
            sweep_raw[f"target-{tb:g}.sbw"] = raw_s
            points.append({"name": f"ours @{tb:g}", "kind": "ours", "bits_per_weight": r["bits_per_weight"],
                           "accuracy": acc_s, "entropy_coded": True})

        # -- ternary QAT baseline, fixed-length coded ------------------------------------------
        if c.ternary_epochs:
            t = time.perf_counter()
            qt, _ = _compress(fp32, None, c, data, rt, "ternary", ternary=True, log=log)
            timings["ternary_qat"] = time.perf_counter() - t
            tacc = evaluate_loader(qt.quantized_model(), data.test, rt)
            tcodes = [cd for _, cd in qt.export()]
            points.append({"name": "ternary QAT", "kind": "ternary", "bits_per_weight": bl.TERNARY_PACKED_BITS,
                           "accuracy": tacc, "entropy_coded": False})
            th = bl.huffman_bits(tcodes)
            points.append({"name": "huffman (ternary QAT)", "kind": "huffman", "bits_per_weight": th["bits_per_weight"],
                           "accuracy": tacc, "entropy_coded": True})

        layers = []
        for L, meta in zip(rep_s["layers"], g.layers):
            layers.append(dict(L, scale=meta.scale if len(meta.scale) <= 4 else
                               {"per_channel": len(meta.scale), "min": min(meta.scale), "max": max(meta.scale)}))
        timings["total"] = time.perf_counter() - t_start
        report = {
            "dataset": name, "model": c.model, "target_bits": c.target_bits,
            "budget_met": rep_s["bits_per_weight"] <= c.target_bits,
            "baseline_accuracy": base_acc, "baseline_val_accuracy": base_val,
            "accuracy": acc, "quantized_accuracy": qacc,
            "accuracy_drop": base_acc - acc,
            "val_accuracy": res.chosen["val_accuracy"] if res.chosen else None,
            "bits_per_weight": rep_s["bits_per_weight"],
            "entropy_bits_per_weight": rep_s["entropy_bits_per_weight"],
            "weights": rep_s["weights"], "stream_bits": rep_s["stream_bits"],
            "file_bytes": len(raw), "side_bytes": rep_s["side_bytes"],
            "compression_vs_fp32": 32 / rep_s["bits_per_weight"],
            "layers": layers,
            "baselines": points,
            "sweep": sweep,
            "stream": rep_s["config"],
            "stream_version": _stream_version(g),
            "row_classes": c.row_classes,
            "data": {"source": data.source, "sizes": data.sizes, **data.info},
            "history": hist,
            "config": {k: v for k, v in asdict(c).items() if k not in ("progress",)},
            "world_size": rt.world,
            "seconds": {k: round(v, 1) for k, v in timings.items()},
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "machine": platform.machine(), "threads": torch.get_num_threads(),
                            "device": str(device)},
        }
        if rt.main:
            _write(c, report, raw, sweep_raw, points)
        rt.barrier()
    return report


def _start_checkpoints(c: TrainConfig) -> None:
    """Create ``OUT/checkpoint/run.json`` (the run's identity), or check it on resume."""
    import json
    ck = checkpoint_dir(c.out)
    path = os.path.join(ck, "run.json")
    if c.resume:
        return                  # checked by TrainConfig.resolved
    with ckptmod.critical():
        os.makedirs(ck, exist_ok=True)
        sbwmod.atomic_write(path, json.dumps(dict(run_identity(c), command=c.command), indent=1).encode())


def _write(c: TrainConfig, report: dict, raw: bytes, sweep_raw: dict, points: list) -> None:
    import json
    out = os.path.abspath(c.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out)}.tmp-")
    try:
        sbwmod.atomic_write(os.path.join(tmp, "model.sbw"), raw)
        if sweep_raw:
            os.makedirs(os.path.join(tmp, "sweep"))
            for name, data in sweep_raw.items():
                sbwmod.atomic_write(os.path.join(tmp, "sweep", name), data)
        with open(os.path.join(tmp, "report.json"), "w") as fh:
            json.dump(report, fh, indent=1)
        bl.pareto_plot(os.path.join(tmp, "pareto.png"), points,
                       f"{report['dataset']} / {c.model}: accuracy vs coded bits per weight")
        with ckptmod.critical():
            _place(tmp, out)
            if not c.keep_checkpoint:
                shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _stream_version(f) -> int:
    """The word stream version of ``f``: 3 when a layer has row classes, else 2."""
    from ..stream import VERSION, VERSION_CLASSED
    return VERSION_CLASSED if any(h.tables > 1 for h in f.hw) else VERSION
