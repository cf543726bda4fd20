"""Training loops: the fp32 baseline, and entropy-aware quantization-aware training (QAT).

Both run in one process or under ``torchrun`` (DDP: gloo on the CPU, NCCL on CUDA) and take
their data from *loaders*: any iterable of ``(inputs, targets)`` batches with a ``len()``
(a ``torch.utils.data.DataLoader``, or :class:`SplitLoader` for the built-in datasets). A
loader with a ``set_epoch(epoch)`` method (or whose ``sampler`` has one, like
``DistributedSampler``) is told the epoch before each pass. Batches are moved to the model's
device. Under DDP every rank iterates its own loader (shard it, e.g. with a
``DistributedSampler``, for a speed-up); all ranks must yield the same number of batches.

The built-in datasets use :class:`SplitLoader`: every rank holds the whole split; each global
batch of ``batch_size`` samples is split into ``world`` equal shards; the last incomplete batch
of an epoch is dropped. The epoch permutation comes from ``seed`` and the epoch number, so
runs are reproducible (see :func:`runtime`).

QAT (:func:`train_qat`) minimises ``loss + λ · R`` where ``R`` is the estimated coded size in
bits per weight (`subbit.model.train.rate`) and λ follows a
:class:`~subbit.model.train.rate.LambdaController` toward the budget. At every evaluation
point the real stream is built to measure its exact size; the kept network is the one with
the best validation score among those whose stream fits the budget.

Resume: given a :class:`~subbit.model.train.checkpoint.PhaseCheckpoint`, both loops save their
whole state at every evaluation point (network, quantizers, optimiser, λ controller, RNG
states, history, the best network so far) and continue from it: the epoch is replayed from its
saved RNG state, the batches already trained on are skipped, and the run ends with the same
network as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data import Split
from .errors import ConfigError, DataError
from .qnet import QuantNet
from .rate import LambdaController

__all__ = ["Runtime", "runtime", "current_runtime", "resolve_device", "SplitLoader", "EvalLoader", "batches",
           "evaluate", "evaluate_loader", "train_fp32", "train_qat", "QatResult", "rng_state", "set_rng_state"]


def resolve_device(device) -> torch.device:
    """``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a `torch.device`.

    Under ``torchrun`` a bare ``cuda`` means this process's GPU, ``cuda:LOCAL_RANK``.

    Raises
    ------
    ConfigError
        An unknown name, or CUDA asked for on a machine without it.
    """
    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], not {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], not {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


@dataclass
class Runtime:
    """Process-level settings: seed, rank/world (DDP), device, progress and log output."""
    seed: int = 0
    rank: int = 0
    world: int = 1
    progress: bool = False
    log: object = None          # callable(str) or None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, msg: str) -> None:
        if self.main and self.log is not None:
            self.log(msg)

    def bar(self, iterable, total, desc):
        if not (self.progress and self.main):
            return iterable
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        import torch.distributed as dist
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def _comm_device(self) -> torch.device:
        import torch.distributed as dist
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def sync_buffers(self, module) -> None:
        """Copy rank 0's buffers (batch-norm statistics) to every rank. DDP broadcasts them
        at the start of each forward pass, so after training each rank holds its own last
        update; evaluation and export must see one network."""
        if self.world == 1:
            return
        import torch.distributed as dist
        for b in module.buffers():
            dist.broadcast(b, 0)

    def barrier(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()


def _join_group(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world, created): join the ``torchrun`` process group if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    import torch.distributed as dist
    created = False
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
        rank, world = dist.get_rank(), dist.get_world_size()
    return rank, world, created


@contextlib.contextmanager
def runtime(seed: int, threads: int | None = None, progress: bool = False, log=None, device=None):
    """Deterministic execution context; joins a DDP group when started by ``torchrun``.

    Sets ``torch.manual_seed(seed)``, deterministic algorithms (on CUDA: where PyTorch has
    them, a warning for the others) and a fixed number of intra-op threads (``threads``,
    default 1: on a shared or busy machine more threads per process are often slower; use
    DDP, ``torchrun --nproc_per_node N``, to use N cores). The process group uses NCCL when
    ``device`` is CUDA, gloo otherwise. Restores the previous settings on exit (and leaves a
    process group it created).
    """
    dev = resolve_device(device or "cpu")
    if dev.type == "cuda":      # cuBLAS is deterministic only with a fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    rank, world, created = _join_group(dev)
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads or 1)
    torch.use_deterministic_algorithms(True, warn_only=dev.type == "cuda")
    torch.manual_seed(seed)
    try:
        yield Runtime(seed=seed, rank=rank, world=world, progress=progress, log=log, device=dev)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        if created:
            import torch.distributed as dist
            dist.destroy_process_group()


@contextlib.contextmanager
def current_runtime(device: torch.device, *, progress: bool = False, log=None, seed: int = 0):
    """A :class:`Runtime` for the process as it is (the API's): joins the ``torchrun`` process
    group if there is one and nobody joined it yet (and leaves it on exit), changes no
    global setting."""
    rank, world, created = _join_group(device)
    try:
        yield Runtime(seed=seed, rank=rank, world=world, progress=progress, log=log, device=device)
    finally:
        if created:
            import torch.distributed as dist
            dist.destroy_process_group()


def batches(split: Split, batch_size: int, epoch: int, rt: Runtime):
    """This rank's shards of the epoch's global batches (seeded permutation, last partial dropped)."""
    g = torch.Generator().manual_seed(rt.seed * 1_000_003 + epoch)
    perm = torch.randperm(len(split), generator=g)     # on the CPU: indices of the split's CPU tensors
    nb = len(split) // batch_size
    for b in range(nb):
        idx = perm[b * batch_size:(b + 1) * batch_size][rt.rank::rt.world]
        yield split.x[idx], split.y[idx]


class SplitLoader:
    """The training loader of a built-in dataset: :func:`batches` of ``split`` (this rank's
    shards of seeded global batches of ``batch_size``), epoch set by :meth:`set_epoch`."""

    def __init__(self, split: Split, batch_size: int, rt: Runtime):
        self.split, self.batch_size, self.rt, self.epoch = split, batch_size, rt, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split) // self.batch_size

    def __iter__(self):
        return batches(self.split, self.batch_size, self.epoch, self.rt)


class EvalLoader:
    """An evaluation loader of a built-in dataset: this rank's contiguous share of ``split`` in
    batches of ``batch_size`` (what :func:`evaluate` reads)."""

    def __init__(self, split: Split, rt: Runtime, batch_size: int = 1000):
        self.split, self.rt, self.batch_size = split, rt, batch_size

    def _range(self):
        n = len(self.split)
        return self.rt.rank * n // self.rt.world, (self.rt.rank + 1) * n // self.rt.world

    def __len__(self) -> int:
        lo, hi = self._range()
        return -(-(hi - lo) // self.batch_size)

    def __iter__(self):
        lo, hi = self._range()
        for i in range(lo, hi, self.batch_size):
            j = min(i + self.batch_size, hi)
            yield self.split.x[i:j], self.split.y[i:j]


def steps_per_epoch(split: Split, batch_size: int) -> int:
    return len(split) // batch_size


def model_device(model) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for an empty model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_device(obj, device: torch.device):
    """``obj`` (a tensor, or a tuple / list / dict of them) on ``device``; other values as they are."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def split_batch(batch, where: str):
    """``(inputs, targets)`` of a batch, or a :class:`DataError` saying what the batch is."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict) and {"inputs", "targets"} <= set(batch):
        return batch["inputs"], batch["targets"]
    what = f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, (tuple, list)) else \
        f"a {type(batch).__name__}"
    raise DataError(f"{where} is {what}: a loader must yield (inputs, targets) pairs")


def forward(model, inputs):
    """``model(inputs)``; a tuple/list of inputs is passed as positional arguments, a dict as
    keyword arguments."""
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


@torch.no_grad()
def evaluate(model, split: Split, rt: Runtime, batch_size: int = 1000) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``split`` (sharded over ranks, exact count)."""
    return evaluate_loader(model, EvalLoader(split, rt, batch_size), rt, total=len(split))


@torch.no_grad()
def evaluate_loader(model, loader, rt: Runtime, total: int | None = None) -> float:
    """Top-1 accuracy (0..1) of ``model`` on the batches of ``loader``: correct predictions
    over samples, both summed over the ranks (so a loader sharded over the ranks and one that
    gives every rank everything both give the accuracy of the whole set). Targets are class
    indices; outputs are ``(N, classes)`` scores."""
    was = model.training
    model.eval()
    dev = model_device(model)
    correct = count = 0
    for k, batch in enumerate(loader):
        x, y = split_batch(batch, f"evaluation batch {k}")
        x, y = to_device(x, dev), to_device(y, dev)
        correct += int((forward(model, x).argmax(1) == y).sum())
        count += int(y.shape[0])
    model.train(was)
    if total is None:
        tc, total = rt.all_sum([float(correct), float(count)])
    else:
        tc, = rt.all_sum([float(correct)])
    return tc / max(total, 1)


def _ddp(module, rt: Runtime):
    if rt.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel
    if rt.device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[rt.device])
    return DistributedDataParallel(module)


def _cosine(step, total):
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


# -- RNG state (for resume) ------------------------------------------------------------------

def _generators(loader) -> list:
    """The `torch.Generator` objects a loader shuffles with (``DataLoader(generator=...)``, its
    sampler's, its batch sampler's sampler's), each once."""
    out, seen = [], set()
    objs = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
    for o in objs:
        g = getattr(o, "generator", None)
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            out.append(g)
    return out


def rng_state(loader=None) -> dict:
    """Every RNG a training loop or a user's data pipeline may draw from: torch (CPU and each
    initialised CUDA device), NumPy, Python's ``random``, and the generators ``loader``
    shuffles with — as plain values and tensors (loadable with ``torch.load(weights_only=True)``)."""
    import random

    import numpy as np
    st = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "numpy": [st[0], torch.from_numpy(st[1].astype("int64")), int(st[2]),
                                                      int(st[3]), float(st[4])],
           "python": _to_lists(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    if loader is not None:
        out["loader"] = [g.get_state() for g in _generators(loader)]
    return out


def _to_lists(v):
    return [_to_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


def _to_tuples(v):
    return tuple(_to_tuples(x) for x in v) if isinstance(v, list) else v


def set_rng_state(state: dict, loader=None) -> None:
    """Restore what :func:`rng_state` saved (the loader's generators if ``loader`` is given)."""
    import random

    import numpy as np
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader is not None and "loader" in state:
        gens = _generators(loader)
        if len(gens) != len(state["loader"]):
            raise DataError(f"the training loader shuffles with {len(gens)} generator(s), the checkpoint saved "
                            f"{len(state['loader'])}: it is not the loader of the checkpointed run")
        for g, st in zip(gens, state["loader"]):
            g.set_state(st)


def _set_epoch(loader, epoch: int) -> None:
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        fn = getattr(obj, "set_epoch", None)
        if callable(fn):
            fn(epoch)
            return


def _epoch_batches(loader, epoch: int, spe: int, skip: int, label: str, skipped=None):
    """The batches of one pass over ``loader`` after ``skip`` (already trained) ones; checks that
    the loader yields the ``spe`` batches its ``len()`` announced. ``skipped()`` is called once
    the trained batches are read, before the next one is (a resumed run restores its RNG state
    there: data augmentation in the main process then draws what it drew the first time)."""
    _set_epoch(loader, epoch)
    n = 0
    for n, batch in enumerate(loader, 1):
        if n > skip:
            yield n - 1, batch
        elif n == skip and skipped is not None:
            skipped()
    if n != spe:
        raise DataError(f"{label}: the training loader yielded {n} batches in epoch {epoch + 1}, but its len() "
                        f"is {spe}: a loader must yield len() batches on every pass (and on every rank)")


def train_fp32(model, train, val, rt: Runtime, *, epochs: int, lr: float, batch_size: int | None = None,
               weight_decay: float = 5e-4, loss_fn=None, checkpoint=None, label: str = "fp32") -> list[dict]:
    """Train the fp32 baseline: SGD (momentum 0.9, Nesterov), cosine learning rate.

    ``train``: a loader, or a :class:`Split` (with ``batch_size``: :class:`SplitLoader`);
    ``val``: a loader, a :class:`Split`, or ``callable(model) -> float`` (higher is better);
    ``loss_fn(outputs, targets)``: default cross-entropy. ``checkpoint``: a
    `~subbit.model.train.checkpoint.PhaseCheckpoint` saved after every epoch and resumed from.
    """
    loss_fn = loss_fn or F.cross_entropy
    if isinstance(train, Split):
        train = SplitLoader(train, batch_size, rt)
    score = _scorer(val, rt)
    dev = model_device(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    spe = len(train)
    total, step, hist, ep0 = epochs * spe, 0, [], 0
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, hist, ep0 = state["step"], list(state["history"]), state["epoch"]
        set_rng_state(state["rng"], train)
        rt.say(f"{label}: resumed from {checkpoint.path} after epoch {ep0}/{epochs}")
    ddp = _ddp(model, rt)
    for ep in range(ep0, epochs):
        model.train()
        t0, run = time.perf_counter(), 0.0
        for _, batch in rt.bar(_epoch_batches(train, ep, spe, 0, label), spe, f"{label} {ep + 1}/{epochs}"):
            x, y = split_batch(batch, f"{label} training batch")
            x, y = to_device(x, dev), to_device(y, dev)
            for g in opt.param_groups:
                g["lr"] = lr * _cosine(step, total)
            loss = loss_fn(forward(ddp, x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run += float(loss.detach())
            step += 1
        rt.sync_buffers(model)
        acc = score(model)
        hist.append({"epoch": ep + 1, "loss": run / max(spe, 1), "val_accuracy": acc})
        if checkpoint is not None:
            checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                             "epoch": ep + 1, "history": hist, "rng": rng_state(train)})
        took = time.perf_counter() - t0
        rt.say(f"{label} epoch {ep + 1}/{epochs}: loss {run / max(spe, 1):.4f}, val {100 * acc:.2f}% "
               f"({took:.0f}s, left ~{took * (epochs - ep - 1):.0f}s)")
    model.eval()
    return hist


def _scorer(val, rt: Runtime):
    """``callable(model) -> float``, the same on every rank: top-1 accuracy on a :class:`Split`
    or a loader, or the mean over the ranks of a user's metric."""
    if isinstance(val, Split):
        return lambda m: evaluate(m, val, rt)
    if callable(val) and not hasattr(val, "__iter__"):
        def metric(m):
            v = val(m)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"the metric returned {type(v).__name__} {v!r}, not a number") from None
            if not math.isfinite(v):
                raise ConfigError(f"the metric returned {v}: it must be a finite number (higher is better)")
            if rt.world == 1:
                return v
            s, = rt.all_sum([v])
            return s / rt.world
        return metric
    return lambda m: evaluate_loader(m, val, rt)


@dataclass
class QatResult:
    history: list = field(default_factory=list)     # one entry per evaluation point
    chosen: dict | None = None                       # the evaluation point that was kept
    budget_met: bool = False


def train_qat(qnet: QuantNet, train, val, rt: Runtime, *, target_bits: float | None,
              epochs: int, lr: float, batch_size: int | None = None, lr_quant: float = 1e-2,
              weight_decay: float = 0.0, lam0: float = 0.05, gain: float = 0.05, ramp: float = 0.5,
              evals_per_epoch: int = 1, states: int | None = None, measure=None, label: str = "qat",
              loss_fn=None, score_name: str = "val_accuracy", checkpoint=None) -> QatResult:
    """Entropy-aware quantization-aware training of ``qnet`` toward ``target_bits``.

    Parameters
    ----------
    train : a loader of ``(inputs, targets)`` batches, or a :class:`Split` (with ``batch_size``)
    val : a loader, a :class:`Split` (top-1 accuracy) or ``callable(model) -> float`` (higher
        is better), the model selection's score
    target_bits : rate budget in coded bits per weight; ``None`` trains without the rate term
        (plain QAT) and keeps the best validation score
    lr, lr_quant : Adam learning rates of the network and of the quantizers' log-parameters
        (cosine decay to zero); ``weight_decay`` is AdamW's decoupled decay of the coded weights
    lam0, gain, ramp : initial λ, controller gain, and the fraction of the training over which
        the rate goal moves from the initial rate to the budget (:class:`LambdaController`)
    states : rANS states of the stream (lanes × ways), for the header estimate (default:
        ``qnet.stream``'s)
    measure : ``callable() -> float`` returning the exact coded bits per weight of the current
        codes; default :meth:`QuantNet.measure` (builds the stream)
    loss_fn : ``loss_fn(outputs, targets)``, default cross-entropy
    checkpoint : a `~subbit.model.train.checkpoint.PhaseCheckpoint`: saved at every evaluation
        point and when done, resumed from if it holds a state

    Returns
    -------
    QatResult ; ``qnet`` holds the chosen network on return.
    """
    loss_fn = loss_fn or F.cross_entropy
    if isinstance(train, Split):
        train = SplitLoader(train, batch_size, rt)
    score = _scorer(val, rt)
    states = qnet.stream.states if states is None else states
    measure = measure or qnet.measure
    dev = model_device(qnet)
    coded = set(id(p) for p in qnet.latent().values())
    rest = [p for p in qnet.net.parameters() if id(p) not in coded]
    groups = [{"params": list(qnet.latent().values()), "lr": lr, "weight_decay": weight_decay, "base": lr},
              {"params": rest, "lr": lr, "weight_decay": 0.0, "base": lr},
              {"params": qnet.quantizer_parameters(), "lr": lr_quant, "weight_decay": 0.0, "base": lr_quant}]
    opt = torch.optim.AdamW(groups)
    spe = len(train)
    total = epochs * spe
    ctrl = LambdaController(target_bits, lam=lam0, gain=gain, ramp=round(ramp * total)) if target_bits else None
    eval_at = {max(1, round(spe * (k + 1) / evals_per_epoch)) for k in range(evals_per_epoch)}
    res, best_state, best_key, step = QatResult(), None, None, 0
    ep0 = skip = 0
    run_ce, nb, elapsed0, rng_now = 0.0, 0, 0.0, None
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        res.history, res.chosen = list(state["history"]), state["chosen"]
        if state.get("done"):
            qnet.load_state_dict(state["qnet"])
            res.budget_met = bool(state["budget_met"])
            set_rng_state(state["rng"], train)
            rt.say(f"{label}: done in {checkpoint.path} (kept: epoch {res.chosen['epoch']:.2f})" if res.chosen
                   else f"{label}: done in {checkpoint.path}")
            qnet.eval()
            return res
        qnet.load_state_dict(state["qnet"])
        opt.load_state_dict(state["optimizer"])
        if ctrl:
            ctrl.load_state_dict(state["controller"])
        best_key = tuple(state["best_key"]) if state["best_key"] is not None else None
        best_state = state["best_state"]
        step, ep0, skip = state["step"], state["epoch"], state["batch"]
        run_ce, nb, elapsed0 = state["run_ce"], state["nb"], state["elapsed"]
        # replay the epoch from its start: the loader shuffles as it did, skips the trained batches
        # (all of them after the epoch's last evaluation point: a sampler may draw again when it
        # runs out), then the RNG states of the checkpoint are restored
        set_rng_state(state["rng_epoch"], train)
        rng_now = state["rng"]
        rt.say(f"{label}: resumed from {checkpoint.path} at epoch {ep0 + skip / spe:.2f}/{epochs} (step {step})")
    ddp = _ddp(qnet, rt)
    t_start = time.perf_counter() - elapsed0
    what = "cross-entropy" if loss_fn is F.cross_entropy else "the training loss"
    rt.say(f"{label}: ce = {what}; rate = bits/weight of the real stream (headers included); est = the "
           "differentiable rate estimate the loss uses" + ("; goal = the estimate the λ controller steers to now "
                                                           "(it moves down to the budget); λ = the rate term's weight"
                                                           if ctrl else "") + "; left = time to the end of this phase")
    for ep in range(ep0, epochs):
        qnet.train()
        if not skip:
            run_ce, nb = 0.0, 0
        rng_epoch = rng_state(train) if checkpoint is not None and not skip else (state["rng_epoch"] if skip else None)
        t0 = time.perf_counter()
        resumed = (lambda: set_rng_state(rng_now)) if skip else None    # the loader's generators go on
        for b, batch in rt.bar(_epoch_batches(train, ep, spe, skip, label, resumed), spe - skip,
                               f"{label} {ep + 1}/{epochs}"):
            x, y = split_batch(batch, f"{label} training batch {b}")
            x, y = to_device(x, dev), to_device(y, dev)
            for g in opt.param_groups:
                g["lr"] = g["base"] * _cosine(step, total)
            ce = loss_fn(forward(ddp, x), y)
            rate = qnet.rate(states)
            loss = ce + (ctrl.lam * rate if ctrl else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            r = float(rate.detach())
            if ctrl:
                ctrl.update(r)
            run_ce, nb, step = run_ce + float(ce.detach()), nb + 1, step + 1
            if b + 1 in eval_at:
                rt.sync_buffers(qnet)
                with torch.no_grad():
                    est = qnet.rate(states)
                exact = measure()
                ratio = exact / max(float(est), 1e-12)
                if ctrl:   # aim the controller at the budget as the real stream measures it
                    ctrl.correction = 0.98 / ratio
                acc = score(qnet)
                point = {"epoch": ep + (b + 1) / spe, score_name: acc, "bits_per_weight": exact,
                         "estimate": float(est), "goal": ctrl.goal() if ctrl else None,
                         "lambda": ctrl.lam if ctrl else 0.0,
                         "bits": [q.bits for q in qnet.quant]}
                res.history.append(point)
                fits = target_bits is None or exact <= target_bits
                key = (fits, acc, -exact)
                if best_key is None or key > best_key:
                    best_key, best_state, res.chosen = key, copy.deepcopy(qnet.state_dict()), point
                el = time.perf_counter() - t_start
                if checkpoint is not None:
                    checkpoint.save({"done": False, "qnet": qnet.state_dict(), "optimizer": opt.state_dict(),
                                     "controller": ctrl.state_dict() if ctrl else None, "history": res.history,
                                     "chosen": res.chosen, "best_key": list(best_key), "best_state": best_state,
                                     "step": step, "epoch": ep, "batch": b + 1, "run_ce": run_ce, "nb": nb,
                                     "elapsed": el, "rng": rng_state(train), "rng_epoch": rng_epoch})
                left = el * (total - step) / max(step, 1)
                steer = f", goal {point['goal']:.4f}), λ {point['lambda']:.3g}" if ctrl else ")"
                shown = f"val {100 * acc:.2f}%" if score_name == "val_accuracy" else f"val {acc:.6g}"
                rt.say(f"{label} {point['epoch']:.2f}/{epochs}: ce {run_ce / nb:.4f}, rate {exact:.4f} b/w "
                       f"(est {float(est):.4f}{steer}, {shown}"
                       f"{'' if fits else ' (over budget)'} ({time.perf_counter() - t0:.0f}s, left ~{left:.0f}s)")
        skip = 0
    if best_state is not None:
        qnet.load_state_dict(best_state)
        res.budget_met = bool(best_key[0])
    if checkpoint is not None:
        checkpoint.save({"done": True, "qnet": qnet.state_dict(), "history": res.history, "chosen": res.chosen,
                         "budget_met": res.budget_met, "rng": rng_state(train)})
    qnet.eval()
    return res
