"""Your own network below one bit per weight: the training API for any PyTorch model.

Also importable as ``subbit.train`` (``import subbit.train as sbt``)::

    qnet = sbt.quantize(model)                        # zero-point quantizers on every Conv1d/Conv2d/Linear
    result = sbt.fit(qnet, train_loader, val_loader, target_bits=0.8, epochs=10)
    sbt.save_sbw(qnet, "model.sbw")                   # the weight stream (subbit decode, decode --rtl)
    model = sbt.load_sbw("model.sbw", MyNet())        # ... and back into your model class

or, in your own training loop::

    rate = sbt.RateTerm(qnet, target_bits=0.8, total_steps=epochs * len(train_loader))
    for x, y in train_loader:
        loss = F.cross_entropy(qnet(x), y) + rate()   # λ · R: differentiable, λ steered to the budget
        ...
    rate.calibrate()                                  # at evaluation points: aim at the real stream's size

Names:

* :func:`quantize` — wrap a model: a :class:`~subbit.model.train.qnet.QuantNet`
* :class:`RateTerm` — the rate term of the loss and its λ controller
* :func:`fit` — entropy-aware QAT with model selection and resumable checkpoints
  (:class:`FitResult`)
* :func:`save_sbw`, :func:`load_sbw`, :func:`sbw_state_dict` — export and import
* :func:`check_target` — is a budget reachable at all (above the headers' own cost)

Everything follows the device of the model (quantizer parameters are created next to each
weight; batches are moved to the model's device). Under ``torchrun``, :func:`fit` trains with
DDP (NCCL on CUDA, gloo on the CPU). Every error a user can cause is a
`~subbit.model.errors.SubbitError` (`ConfigError`, `DataError`, `CheckpointError`), raised
before any training and before anything is written.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SubbitError
from .checkpoint import PhaseCheckpoint, stop_on_signals
from .errors import CheckpointError, ConfigError, DataError
from .loop import _generators, current_runtime, forward, model_device, split_batch, to_device, train_qat
from .qnet import QuantNet, rebuild
from .rate import LambdaController

__all__ = ["QUANTIZED_TYPES", "quantize", "select_layers", "RateTerm", "check_target", "fit", "FitResult",
           "save_sbw", "load_sbw", "sbw_state_dict", "QuantNet", "LambdaController"]

#: The layer types :func:`quantize` codes by default (their ``weight``).
QUANTIZED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _type_names(types) -> str:
    names = [t.__name__ for t in types]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _resolve(model: nn.Module, name: str, what: str) -> list[str]:
    """Parameter names for a layer (module) name or a parameter name."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    if name in params:
        return [name]
    if name in modules and name != "":
        m = modules[name]
        kind = type(m).__name__
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor):
            inner = [k for k, c in m.named_modules() if k and isinstance(c, QUANTIZED_TYPES)]
            hint = f"; name its layers instead ({', '.join(f'{name}.{k}' for k in inner[:4])})" if inner else ""
            raise ConfigError(f"{what}: layer {name!r} ({kind}) has no weight to quantize{hint}")
        if not isinstance(w, nn.Parameter):
            raise ConfigError(f"{what}: layer {name!r} ({kind}): its weight is not a parameter")
        if w.dim() < 2 or not w.is_floating_point() or w.numel() == 0:
            raise ConfigError(f"{what}: layer {name!r} ({kind}) is not supported: its weight is "
                              f"{str(w.dtype).replace('torch.', '')} of shape {list(w.shape)}; only floating "
                              "weights of rank >= 2 (kernels, matrices) are coded: norms and biases travel as "
                              "float side data")
        return [f"{name}.weight"]
    top = [k for k, _ in model.named_children()]
    raise ConfigError(f"{what}: the model has no layer or parameter {name!r} (its top-level layers: "
                      f"{', '.join(top[:8]) or 'none'}{' ...' if len(top) > 8 else ''})")


def select_layers(model: nn.Module, layers=(), exclude=()) -> list[str]:
    """Names of the parameters :func:`quantize` codes, in state_dict order: the weight of every
    :data:`QUANTIZED_TYPES` module, plus ``layers`` (layer or parameter names), less ``exclude``.

    Raises
    ------
    ConfigError
        An unknown name, a named layer without a coded weight (no weight, or one of rank < 2,
        or not floating point), a weight shared by two layers (tied weights), or nothing left
        to quantize.
    """
    if isinstance(layers, str) or isinstance(exclude, str):
        raise ConfigError("layers= and exclude= take a list of names, not a string")
    chosen = {f"{k}.weight" if k else "weight" for k, m in model.named_modules()
              if isinstance(m, QUANTIZED_TYPES) and isinstance(getattr(m, "weight", None), nn.Parameter)
              and m.weight.numel() > 0}
    for name in layers:
        chosen.update(_resolve(model, name, "layers="))
    for name in exclude:
        chosen.difference_update(_resolve(model, name, "exclude="))
    params = dict(model.named_parameters())
    chosen = {k for k in chosen if k in params}
    aliases = {}
    for k, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(k)
    for names in aliases.values():
        if len(names) > 1 and any(k in chosen for k in names):
            raise ConfigError(f"parameters {' and '.join(map(repr, names))} are one tensor (tied weights): a stream "
                              "codes each tensor once; exclude= them, or untie them")
    if not chosen:
        raise ConfigError(f"the model has no layer to quantize: no {_type_names(QUANTIZED_TYPES)} with a weight"
                          + (" left after exclude=" if exclude else "") + " (name others with layers=)")
    return [k for k in model.state_dict() if k in chosen]


def quantize(model: nn.Module, layers=(), *, exclude=(), init_bits: int = 4, max_bits: int = 8,
             per_channel: bool = False, learn_range: bool = True, stream=None, row_classes=1) -> QuantNet:
    """Wrap ``model`` for entropy-aware quantization-aware training.

    Every :data:`QUANTIZED_TYPES` layer (Conv1d, Conv2d, Linear) — plus the ``layers`` named
    (layer or parameter names, e.g. an ``Embedding`` or a ``ConvTranspose2d``), less the ones in
    ``exclude`` — gets a zero-point quantizer with a learned step size and a learned range
    (``2**b - 1`` levels, ``b`` from ``init_bits`` up to ``max_bits``, learned: mixed precision);
    every other tensor stays float and travels as side data.

    The result is a :class:`~subbit.model.train.qnet.QuantNet`, an ``nn.Module``: its forward
    pass is ``model``'s with the quantized weights (any arguments); ``model``'s own parameters
    are the latent float weights it trains, so do not use ``model`` elsewhere meanwhile. It lives
    on ``model``'s device. Useful members: ``rate()`` (differentiable bits per weight of the
    whole stream, headers included), ``measure()`` (the exact size of the current stream),
    ``quantized_model()`` (a copy of ``model`` with the quantized weights), ``names``,
    ``num_weights``, ``floor_bits()``, ``to_sbw()``.

    Parameters
    ----------
    stream : `subbit.model.stream.StreamConfig` of the stream to code (default: the hardware's)
    row_classes : 1 (default), 2, 4, 8 or ``"auto"``: let layers code their rows (output
        channels) with up to that many frequency tables (word stream v3: the hardware decoder
        reads it when built with tables, ``subbit verilog --tables 8``); the rate term then prices each row with its class's table, so
        training can exploit it (`subbit.model.train.rate`, docs/training.md)

    Raises
    ------
    ConfigError
        ``model`` is not an ``nn.Module``; see :func:`select_layers`; bit-widths out of 2..8.
    """
    if isinstance(model, QuantNet):
        raise ConfigError("the model is quantized already (a QuantNet)")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"quantize() takes a torch.nn.Module, not {type(model).__name__}")
    if max_bits not in range(2, 9) or isinstance(max_bits, bool):
        raise ConfigError(f"max_bits must be in 2..8, not {max_bits!r}")
    if init_bits not in range(2, max_bits + 1) or isinstance(init_bits, bool):
        raise ConfigError(f"init_bits must be in 2..{max_bits} (max_bits), not {init_bits!r}")
    names = select_layers(model, layers, exclude)
    return QuantNet(model, names=names, init_bits=init_bits, max_bits=max_bits, per_channel=per_channel,
                    learn_range=learn_range, stream=stream, row_classes=row_classes)


def _positive(name: str, v, *, integer: bool = False, lo=None, hi=None, allow_zero: bool = False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if integer:
        ok = ok and isinstance(v, int)
    if ok and lo is not None:
        ok = v >= lo
    elif ok:
        ok = v >= 0 if allow_zero else v > 0
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        kind = "an integer" if integer else "a number"
        rng = f"in {lo}..{hi}" if lo is not None and hi is not None else f">= {lo}" if lo is not None else \
            ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {kind} {rng}, not {v!r}")
    return v


def check_target(qnet: QuantNet, target_bits, name: str = "target_bits") -> float:
    """``target_bits`` as a float, if a stream of this model can meet it.

    Raises
    ------
    ConfigError
        Not a positive finite number, or not above :meth:`QuantNet.floor_bits`: the stream's
        own headers (stream header; per layer: fixed words, frequency table, rANS states) at
        all-zero weights.
    """
    if isinstance(target_bits, bool) or not isinstance(target_bits, (int, float)) or \
            not math.isfinite(target_bits) or target_bits <= 0:
        raise ConfigError(f"{name} must be a positive number of bits per weight, not {target_bits!r}")
    floor = qnet.floor_bits()
    if target_bits <= floor:
        raise ConfigError(f"{name} {target_bits:g} is below what the stream's headers alone cost: {floor:.4f} "
                          f"bits/weight for the {qnet.num_weights} coded weights of this model in "
                          f"{len(qnet.names)} layers (every weight 0); ask for more than {floor:.4f}")
    return float(target_bits)


class RateTerm:
    """The rate term of your loss, ``λ · R``, with λ steered toward ``target_bits``.

    ``R`` is ``qnet.rate()``: the estimated size of the whole stream in bits per weight
    (entropy of each layer's codes plus the exact header bits), differentiable in the weights
    and in the quantizers' step sizes and ranges. λ follows a
    :class:`~subbit.model.train.rate.LambdaController` (multiplicative dual ascent) toward a goal
    that moves geometrically from the first rate down to ``target_bits`` over the first
    ``ramp`` fraction of ``total_steps``, then stays there.

    Use: ``loss = task_loss + rate()`` once per training step (each call is one controller
    step); at evaluation points ``rate.calibrate()`` measures the real stream and corrects the
    goal by its ratio to the estimate (2 % margin), so the budget is met by the real stream.

    Members: ``lam`` (current λ), ``last`` (the last estimate, float), ``goal()``,
    ``controller``; ``state_dict()`` / ``load_state_dict()`` for checkpoints.
    """

    def __init__(self, qnet: QuantNet, target_bits: float, *, total_steps: int, ramp: float = 0.5,
                 lam0: float = 0.05, gain: float = 0.05):
        if not isinstance(qnet, QuantNet):
            raise ConfigError(f"RateTerm needs the model quantize() returned, not {type(qnet).__name__}")
        self.qnet = qnet
        self.target = check_target(qnet, target_bits)
        _positive("total_steps", total_steps, integer=True, lo=1)
        _positive("ramp", ramp, lo=0, hi=1)
        _positive("lam0", lam0)
        _positive("gain", gain)
        self.controller = LambdaController(self.target, lam=lam0, gain=gain, ramp=round(ramp * total_steps))
        self.last = None

    @property
    def lam(self) -> float:
        return self.controller.lam

    def goal(self) -> float:
        return self.controller.goal()

    def __call__(self) -> torch.Tensor:
        rate = self.qnet.rate()
        term = self.controller.lam * rate
        self.last = float(rate.detach())
        self.controller.update(self.last)
        return term

    def calibrate(self) -> float:
        """Build the stream, aim the controller at the budget as the real stream measures it;
        returns the exact bits per weight."""
        with torch.no_grad():
            est = float(self.qnet.rate())
        exact = self.qnet.measure()
        self.controller.correction = 0.98 / (exact / max(est, 1e-12))
        return exact

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict(), "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.last = state["last"]


@dataclass
class FitResult:
    """What :func:`fit` returns. ``model`` holds the chosen network (also the ``qnet`` passed)."""
    model: QuantNet
    bits_per_weight: float | None          # the chosen network's stream, exact (None: no evaluation)
    score: float | None                    # its validation accuracy or metric
    budget_met: bool
    chosen: dict | None = None             # its evaluation point
    history: list = field(default_factory=list)
    seconds: float = 0.0


def _length(loader, what: str) -> int:
    try:
        n = len(loader)
    except TypeError:
        raise DataError(f"the {what} loader ({type(loader).__name__}) has no len(): fit needs the number of "
                        "batches per epoch (for the schedules and evaluation points)") from None
    if n < 1:
        raise DataError(f"the {what} loader is empty")
    return n


def _shape(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"{list(v.shape)} {str(v.dtype).replace('torch.', '')}"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_shape(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_shape(x)}" for k, x in v.items()) + "}"
    return type(v).__name__


def _first(loader, what: str):
    try:
        return next(iter(loader))
    except StopIteration:
        raise DataError(f"the {what} loader yields no batch") from None
    except SubbitError:
        raise
    except Exception as e:
        raise DataError(f"the {what} loader failed on its first batch: {type(e).__name__}: {e}") from None


@torch.no_grad()
def _dry_run(qnet: QuantNet, train, val, loss_fn) -> None:
    """One forward pass on the first batch of each loader (eval mode, RNG untouched: the global
    ones and the generators the loaders shuffle with), so that wrong shapes fail before any
    training, with the shapes in the message."""
    dev = model_device(qnet)
    devices = [dev] if dev.type == "cuda" else []
    was = qnet.training
    qnet.eval()
    gens = [g for ld in (train, val) if ld is not None for g in _generators(ld)]
    saved = [g.get_state() for g in gens]
    try:
        with torch.random.fork_rng(devices=devices):
            for what, loader in (("training", train), ("validation", val)):
                if loader is None:
                    continue
                x, y = split_batch(_first(loader, what), f"the first {what} batch")
                x, y = to_device(x, dev), to_device(y, dev)
                try:
                    out = forward(qnet, x)
                except Exception as e:
                    raise DataError(f"the model fails on the first {what} batch, inputs {_shape(x)}: "
                                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
                if what == "training":
                    try:
                        loss = loss_fn(out, y)
                    except Exception as e:
                        raise DataError(f"the loss fails on the first training batch: outputs {_shape(out)}, "
                                        f"targets {_shape(y)}: {type(e).__name__}: "
                                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                        raise DataError(f"the loss of the first training batch is {_shape(loss)}, not a scalar "
                                        f"(outputs {_shape(out)}, targets {_shape(y)})")
                else:
                    ok = isinstance(out, torch.Tensor) and isinstance(y, torch.Tensor) and out.dim() == 2 and \
                        y.dim() == 1 and out.shape[0] == y.shape[0] and not y.is_floating_point()
                    if not ok:
                        raise DataError(f"the first validation batch gives outputs {_shape(out)} for targets "
                                        f"{_shape(y)}: top-1 accuracy needs (N, classes) scores and N class "
                                        "indices (or give fit a metric= instead of a validation loader)")
    finally:
        qnet.train(was)
        for g, st in zip(gens, saved):
            g.set_state(st)


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fit(model, train, val=None, *, target_bits: float | None, epochs: int, metric=None, loss_fn=None,
        lr: float = 1e-3, lr_quant: float = 1e-2, weight_decay: float = 0.0, lam0: float = 0.05,
        gain: float = 0.05, ramp: float = 0.5, evals_per_epoch: int = 1, checkpoint_dir=None,
        resume: bool = False, log=_log_stderr, progress: bool = False, label: str = "qat") -> FitResult:
    """Entropy-aware quantization-aware training toward ``target_bits``, with model selection.

    Minimises ``loss_fn(outputs, targets) + λ · R`` (AdamW; ``lr`` for the network,
    ``lr_quant`` for the quantizers' log step / log range, cosine decay to zero,
    ``weight_decay`` on the coded weights), λ steered by a :class:`RateTerm` (``lam0``, ``gain``,
    ``ramp``). ``evals_per_epoch`` times per epoch the real stream is built and measured and
    the network scored; the network kept is the best-scoring one whose stream fits the budget
    (if none fits, the best one, with ``budget_met=False``).

    Parameters
    ----------
    model : a :class:`QuantNet` from :func:`quantize`, or a plain ``nn.Module`` (quantized with
        the defaults of :func:`quantize`); trained in place, on its device
    train : loader of ``(inputs, targets)`` batches with a ``len()`` (e.g. a ``DataLoader``);
        ``inputs`` a tensor, or a tuple (positional) / dict (keyword) of model arguments. A
        ``set_epoch(epoch)`` method of the loader or of its sampler is called every epoch.
    val : loader of validation batches: the score is top-1 accuracy (outputs ``(N, classes)``,
        targets ``N`` class indices); or instead
    metric : ``callable(model) -> float``, higher is better (under DDP: its mean over ranks)
    target_bits : the budget in bits per weight of the whole stream (headers included);
        ``None``: plain QAT without rate term
    checkpoint_dir : if given, the whole state is saved in ``checkpoint_dir/qat.pt`` (``label``)
        at every evaluation point and at the end; ``resume=True`` continues from it (to the same
        result as an uninterrupted run), or starts if there is none
    log : ``callable(str)`` for progress lines (default: stderr; ``None``: quiet)

    Under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` (each rank iterates
    its own loader: shard it, e.g. with a ``DistributedSampler``); only rank 0 writes.
    SIGTERM stops the run like SIGINT (``KeyboardInterrupt``), never in the middle of writing a
    checkpoint.

    Raises
    ------
    ConfigError, DataError, CheckpointError
        Bad parameters, a budget at or below the headers' own cost, loaders without ``len()`` or
        whose first batch the model or the loss cannot take (the shapes are in the message), a
        checkpoint of another model, version or settings, or one present without
        ``resume=True``. All before any training.
    """
    t0 = time.perf_counter()
    qnet = model if isinstance(model, QuantNet) else quantize(model)
    if target_bits is not None:
        target_bits = check_target(qnet, target_bits)
    _positive("epochs", epochs, integer=True, lo=1)
    _positive("evals_per_epoch", evals_per_epoch, integer=True, lo=1)
    for name, v in (("lr", lr), ("lr_quant", lr_quant), ("lam0", lam0), ("gain", gain)):
        _positive(name, v)
    _positive("weight_decay", weight_decay, allow_zero=True)
    _positive("ramp", ramp, lo=0, hi=1)
    if (val is None) == (metric is None):
        raise ConfigError("fit needs a validation loader (val=) or a metric= callable (exactly one of them)")
    if metric is not None and not callable(metric):
        raise ConfigError(f"metric= must be callable(model) -> float, not {type(metric).__name__}")
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    spe = _length(train, "training")
    if val is not None:
        _length(val, "validation")
    _dry_run(qnet, train, val, loss_fn)
    dev = model_device(qnet)
    with current_runtime(dev, progress=progress, log=log) as rt:
        ckpt = None
        if checkpoint_dir is not None:
            settings = {"target_bits": target_bits, "epochs": epochs, "steps_per_epoch": spe, "lr": lr,
                        "lr_quant": lr_quant, "weight_decay": weight_decay, "lam0": lam0, "gain": gain, "ramp": ramp,
                        "evals_per_epoch": evals_per_epoch, "world_size": rt.world,
                        "stream": [qnet.stream.prob_bits, qnet.stream.lanes, qnet.stream.ways],
                        "quantizers": qnet.quant_config}
            if qnet.row_classes != 1:       # absent with one table: checkpoints of earlier runs still resume
                settings["row_classes"] = qnet.row_classes
            ckpt = PhaseCheckpoint(os.path.join(os.fspath(checkpoint_dir), f"{label}.pt"), phase=label, model=qnet,
                                   settings=settings, main=rt.main)
            if ckpt.exists() and not resume:
                raise CheckpointError(f"{ckpt.path} holds the checkpoint of an earlier run: pass resume=True to "
                                      "continue it, or choose another checkpoint_dir")
            if resume:
                ckpt.load()      # checked now, before any training (loaded again by the loop)
        with stop_on_signals():
            res = train_qat(qnet, train, val if val is not None else metric, rt, target_bits=target_bits,
                            epochs=epochs, lr=lr, lr_quant=lr_quant, weight_decay=weight_decay, lam0=lam0, gain=gain,
                            ramp=ramp, evals_per_epoch=evals_per_epoch, label=label, loss_fn=loss_fn,
                            score_name="val_accuracy" if val is not None else "val_metric", checkpoint=ckpt)
    ch = res.chosen
    return FitResult(model=qnet, bits_per_weight=ch["bits_per_weight"] if ch else None,
                     score=(ch.get("val_accuracy", ch.get("val_metric")) if ch else None), budget_met=res.budget_met,
                     chosen=ch, history=res.history, seconds=time.perf_counter() - t0)


def save_sbw(qnet: QuantNet, path, *, info: dict | None = None) -> dict:
    """Write the weight stream of ``qnet``'s current codes to ``path`` (atomically), after
    checking that its bytes parse and golden-decode to exactly these codes. Biases, norms and
    every other uncoded tensor travel as float side data; the file records the model's order of
    tensor names. The file is the
    format ``subbit decode``, ``subbit decode --rtl`` and ``subbit inspect`` read. Returns the
    stream's report (``bits_per_weight``, ``entropy_bits_per_weight``, ``weights``,
    ``file_bytes``, ``layers``, ...)."""
    from .. import sbw as sbwmod
    from ..report import stream_report
    if not isinstance(qnet, QuantNet):
        raise ConfigError(f"save_sbw needs the model quantize() returned, not {type(qnet).__name__}")
    f = qnet.to_sbw(info=dict({"producer": "subbit.train"}, **(info or {})))
    f.checkpoint, f.order = {"format": "torch"}, list(qnet.net.state_dict())   # decoded: the model's order
    raw = sbwmod.to_bytes(f)
    g = sbwmod.from_bytes(raw, source="the new stream")
    codes = g.decode_codes()
    for meta, want in qnet.export():
        if not (codes[meta.name] == want).all():
            raise SubbitError(f"golden decode of layer {meta.name!r} differs from the model's codes")
    sbwmod.atomic_write(path, raw)
    return stream_report(g, codes=codes, file_bytes=len(raw))


def _read(source):
    from .. import sbw as sbwmod
    if isinstance(source, sbwmod.SbwFile):
        return source
    if isinstance(source, (bytes, bytearray)):
        return sbwmod.from_bytes(bytes(source))
    return sbwmod.read_sbw(source)


def sbw_state_dict(source) -> dict[str, torch.Tensor]:
    """The state_dict a weight stream decodes to (golden decode): dequantized weights and the
    float side tensors, as CPU tensors with their original names, dtypes and shapes.
    ``source``: a path, the file's bytes, or an `SbwFile`."""
    from ..checkpoint import _torch_tensors
    f = _read(source)
    return _torch_tensors(f.state_dict(), f.dtypes())


def load_sbw(source, model: nn.Module) -> nn.Module:
    """Load a weight stream into ``model`` (an instance of the class it was trained from),
    strictly; returns ``model`` in eval mode, on its device.

    Raises
    ------
    CheckpointError
        The stream's tensors do not match the model (missing, unexpected, other shapes).
    """
    return rebuild(model, _read(source))
