"""Training loops: the fp32 baseline, and entropy-aware quantization-aware training (QAT).

Both run in one process or under ``torchrun`` (DDP, gloo on CPU): every rank holds the whole
dataset; each global batch of ``batch_size`` samples is split into ``world`` equal shards;
the last incomplete batch of an epoch is dropped (every rank makes the same number of
steps). Evaluation is sharded and summed with ``all_reduce``. The epoch permutation comes
from ``seed`` and the epoch number, so runs are reproducible (see :class:`Runtime`).

QAT (:func:`train_qat`) minimises ``cross_entropy + λ · R`` where ``R`` is the estimated
coded size in bits per weight (`subbit.model.train.rate`) and λ follows a
:class:`~subbit.model.train.rate.LambdaController` toward the budget. At every evaluation
point the real stream is built to measure its exact size; the kept network is the one with
the best *validation* accuracy among those whose stream fits the budget.
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
from .qnet import QuantNet
from .rate import LambdaController

__all__ = ["Runtime", "runtime", "batches", "evaluate", "train_fp32", "train_qat", "QatResult"]


@dataclass
class Runtime:
    """Process-level settings: seed, rank/world (DDP), progress and log output."""
    seed: int = 0
    rank: int = 0
    world: int = 1
    progress: bool = False
    log: object = None          # callable(str) or None

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
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

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


@contextlib.contextmanager
def runtime(seed: int, threads: int | None = None, progress: bool = False, log=None):
    """Deterministic execution context; joins a DDP group when started by ``torchrun``.

    Sets ``torch.manual_seed(seed)``, deterministic algorithms and a fixed number of
    intra-op threads (``threads``, default 1: on a shared or busy machine more threads per
    process are often slower; use DDP, ``torchrun --nproc_per_node N``, to use N cores).
    Restores the previous settings on exit (and leaves a process group it created).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    created = False
    if world > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo")
            created = True
        rank, world = dist.get_rank(), dist.get_world_size()
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads or 1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield Runtime(seed=seed, rank=rank, world=world, progress=progress, log=log)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        if created:
            import torch.distributed as dist
            dist.destroy_process_group()


def batches(split: Split, batch_size: int, epoch: int, rt: Runtime):
    """This rank's shards of the epoch's global batches (seeded permutation, last partial dropped)."""
    g = torch.Generator().manual_seed(rt.seed * 1_000_003 + epoch)
    perm = torch.randperm(len(split), generator=g)
    nb = len(split) // batch_size
    for b in range(nb):
        idx = perm[b * batch_size:(b + 1) * batch_size][rt.rank::rt.world]
        yield split.x[idx], split.y[idx]


def steps_per_epoch(split: Split, batch_size: int) -> int:
    return len(split) // batch_size


@torch.no_grad()
def evaluate(model, split: Split, rt: Runtime, batch_size: int = 1000) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``split`` (sharded over ranks, exact count)."""
    was = model.training
    model.eval()
    correct = 0
    n = len(split)
    lo, hi = rt.rank * n // rt.world, (rt.rank + 1) * n // rt.world
    for i in range(lo, hi, batch_size):
        j = min(i + batch_size, hi)
        correct += int((model(split.x[i:j]).argmax(1) == split.y[i:j]).sum())
    model.train(was)
    total, = rt.all_sum([float(correct)])
    return total / max(n, 1)


def _ddp(module, rt: Runtime):
    if rt.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(module)


def _cosine(step, total):
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def train_fp32(model, train: Split, val: Split, rt: Runtime, *, epochs: int, batch_size: int, lr: float,
               weight_decay: float = 5e-4) -> list[dict]:
    """Train the fp32 baseline: SGD (momentum 0.9, Nesterov), cosine learning rate."""
    ddp = _ddp(model, rt)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    spe = steps_per_epoch(train, batch_size)
    total, step, hist = epochs * spe, 0, []
    for ep in range(epochs):
        model.train()
        t0, run = time.perf_counter(), 0.0
        for x, y in rt.bar(batches(train, batch_size, ep, rt), spe, f"fp32 {ep + 1}/{epochs}"):
            for g in opt.param_groups:
                g["lr"] = lr * _cosine(step, total)
            loss = F.cross_entropy(ddp(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run += float(loss.detach())
            step += 1
        rt.sync_buffers(model)
        acc = evaluate(model, val, rt)
        hist.append({"epoch": ep + 1, "loss": run / max(spe, 1), "val_accuracy": acc})
        took = time.perf_counter() - t0
        rt.say(f"fp32 epoch {ep + 1}/{epochs}: loss {run / max(spe, 1):.4f}, val {100 * acc:.2f}% "
               f"({took:.0f}s, left ~{took * (epochs - ep - 1):.0f}s)")
    model.eval()
    return hist


@dataclass
class QatResult:
    history: list = field(default_factory=list)     # one entry per evaluation point
    chosen: dict | None = None                       # the evaluation point that was kept
    budget_met: bool = False


def train_qat(qnet: QuantNet, train: Split, val: Split, rt: Runtime, *, target_bits: float | None,
              epochs: int, batch_size: int, lr: float, lr_quant: float = 1e-2, weight_decay: float = 0.0,
              lam0: float = 0.05, gain: float = 0.05, ramp: float = 0.5, evals_per_epoch: int = 1, states: int = 5,
              measure=None, label: str = "qat") -> QatResult:
    """Entropy-aware quantization-aware training of ``qnet`` toward ``target_bits``.

    Parameters
    ----------
    target_bits : rate budget in coded bits per weight; ``None`` trains without the rate term
        (plain QAT) and keeps the best validation accuracy
    lr, lr_quant : Adam learning rates of the network and of the quantizers' log-parameters
        (cosine decay to zero); ``weight_decay`` is AdamW's decoupled decay of the coded weights
    lam0, gain, ramp : initial λ, controller gain, and the fraction of the training over which
        the rate goal moves from the initial rate to the budget (:class:`LambdaController`)
    states : rANS states of the stream (lanes × ways), for the header estimate
    measure : ``callable() -> float`` returning the exact coded bits per weight of the current
        codes (builds the stream); default: the estimate

    Returns
    -------
    QatResult ; ``qnet`` holds the chosen network on return.
    """
    ddp = _ddp(qnet, rt)
    coded = set(id(p) for p in qnet.latent().values())
    rest = [p for p in qnet.net.parameters() if id(p) not in coded]
    groups = [{"params": list(qnet.latent().values()), "lr": lr, "weight_decay": weight_decay, "base": lr},
              {"params": rest, "lr": lr, "weight_decay": 0.0, "base": lr},
              {"params": qnet.quantizer_parameters(), "lr": lr_quant, "weight_decay": 0.0, "base": lr_quant}]
    opt = torch.optim.AdamW(groups)
    spe = steps_per_epoch(train, batch_size)
    total = epochs * spe
    ctrl = LambdaController(target_bits, lam=lam0, gain=gain, ramp=round(ramp * total)) if target_bits else None
    eval_at = {max(1, round(spe * (k + 1) / evals_per_epoch)) for k in range(evals_per_epoch)}
    res, best_state, best_key, step = QatResult(), None, None, 0
    t_start = time.perf_counter()
    rt.say(f"{label}: ce = cross-entropy; rate = bits/weight of the real stream (headers included); est = the "
           "differentiable rate estimate the loss uses" + ("; goal = the estimate the λ controller steers to now "
                                                           "(it moves down to the budget); λ = the rate term's weight"
                                                           if ctrl else "") + "; left = time to the end of this phase")
    for ep in range(epochs):
        qnet.train()
        t0, run_ce, nb = time.perf_counter(), 0.0, 0
        for b, (x, y) in enumerate(rt.bar(batches(train, batch_size, ep, rt), spe, f"{label} {ep + 1}/{epochs}")):
            for g in opt.param_groups:
                g["lr"] = g["base"] * _cosine(step, total)
            ce = F.cross_entropy(ddp(x), y)
            rate, _ = qnet.rate(states)
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
                    est, _ = qnet.rate(states)
                exact = measure() if measure else float(est)
                ratio = exact / max(float(est), 1e-12)
                if ctrl:   # aim the controller at the budget as the real stream measures it
                    ctrl.correction = 0.98 / ratio
                acc = evaluate(qnet, val, rt)
                point = {"epoch": ep + (b + 1) / spe, "val_accuracy": acc, "bits_per_weight": exact,
                         "estimate": float(est), "goal": ctrl.goal() if ctrl else None,
                         "lambda": ctrl.lam if ctrl else 0.0,
                         "bits": [q.bits for q in qnet.quant]}
                res.history.append(point)
                fits = target_bits is None or exact <= target_bits
                key = (fits, acc, -exact)
                if best_key is None or key > best_key:
                    best_key, best_state, res.chosen = key, copy.deepcopy(qnet.state_dict()), point
                el = time.perf_counter() - t_start
                left = el * (total - step) / max(step, 1)
                steer = f", goal {point['goal']:.4f}), λ {point['lambda']:.3g}" if ctrl else ")"
                rt.say(f"{label} {point['epoch']:.2f}/{epochs}: ce {run_ce / nb:.4f}, rate {exact:.4f} b/w "
                       f"(est {float(est):.4f}{steer}, val {100 * acc:.2f}%"
                       f"{'' if fits else ' (over budget)'} ({time.perf_counter() - t0:.0f}s, left ~{left:.0f}s)")
    if best_state is not None:
        qnet.load_state_dict(best_state)
        res.budget_met = bool(best_key[0])
    qnet.eval()
    return res
