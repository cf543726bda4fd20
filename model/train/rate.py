"""Differentiable estimate of the coded rate, and the λ controller that meets a rate budget.

The coder (`subbit.model.stream`) spends, per layer, about ``N · H(q)`` payload bits (``H``
the empirical order-0 entropy of the layer's codes) plus a header: 6 fixed words, one
frequency per symbol of the trimmed alphabet, two words per initial rANS state, padding and
a check word. :func:`rate_bits` estimates the whole stream in bits per weight::

    R = (96 + Σ_l [N_l · H_l + header_bits_l]) / Σ_l N_l

``H_l`` is not differentiable in the weights (codes are integers), so the gradient comes
from a *soft histogram*: each continuous code ``u`` (`ZeroPointQuantizer.continuous`) puts
mass ``1 - frac(u)`` on level ``floor(u)`` and ``frac(u)`` on ``floor(u) + 1``. Its entropy
``H_soft`` has ``dH_soft/du = log2(p[floor u] / p[floor u + 1]) / N``: every weight is pulled
toward the more probable of its two neighbouring levels — toward zero, in a network whose
codes are mostly zero — with a force equal to the information it would save. The value
used is the exact hard entropy (straight-through: ``H_soft + (H_hard - H_soft).detach()``).

Training minimises ``task_loss + λ · R``; :class:`LambdaController` adapts ``λ`` so that
``R`` settles at the budget (``--target-bits``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["STREAM_HEADER_BITS", "soft_histogram", "hard_entropy", "layer_rate", "header_bits",
           "rate_bits", "LambdaController"]

STREAM_HEADER_BITS = 16 * 6
_LN2 = math.log(2.0)


def soft_histogram(u: torch.Tensor, k: int) -> torch.Tensor:
    """Linear-interpolation histogram of continuous codes ``u`` in ``[-k, k]`` over the
    ``2k + 1`` integer levels ``-k..k`` (probabilities, differentiable in ``u``)."""
    u = u.reshape(-1)
    fl = torch.clamp(torch.floor(u.detach()), -k, k - 1) if k > 0 else torch.zeros_like(u)
    frac = u - fl
    idx = (fl + k).to(torch.int64)
    p = torch.zeros(2 * k + 1, dtype=u.dtype, device=u.device)
    p = p.index_add(0, idx, 1.0 - frac)
    if k > 0:
        p = p.index_add(0, idx + 1, frac)
    return p / max(u.numel(), 1)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """``-Σ p log2 p`` (bits); empty levels contribute 0."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum() / _LN2


@torch.no_grad()
def hard_entropy(codes: torch.Tensor) -> float:
    """Empirical entropy of integer codes, bits per symbol."""
    c = codes.reshape(-1)
    if c.numel() == 0:
        return 0.0
    counts = torch.bincount(c - c.min()).double()
    return float(_entropy(counts[counts > 0] / c.numel()))


def header_bits(n: int, nsym: int, states: int) -> int:
    """Bits of one layer header of the v1 word stream (``docs/stream-format.md``)."""
    words = 6 + nsym + 2 * min(n, states) + (1 if nsym % 2 == 0 else 0) + 1
    return 16 * words


def layer_rate(u: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    """Entropy of one layer's codes in bits per weight: the exact hard value, with the
    gradient of the soft histogram's entropy (straight-through)."""
    h_soft = _entropy(soft_histogram(u, k))
    return h_soft + (hard_entropy(codes) - h_soft).detach()


def rate_bits(layers, states: int) -> tuple[torch.Tensor, float]:
    """Estimated coded size of a stream, in bits per weight.

    ``layers`` yields ``(u, codes, k)`` per coded layer (continuous codes, integer codes,
    level bound). Returns the differentiable estimate ``R`` (payload ≈ N·H plus headers)
    and, as a float, its header share.
    """
    total = None
    hdr = STREAM_HEADER_BITS
    n_all = 0
    for u, codes, k in layers:
        if total is None:
            total = torch.zeros((), dtype=u.dtype, device=u.device)
        n = codes.numel()
        n_all += n
        total = total + n * layer_rate(u, codes, k)
        nsym = int(codes.max() - codes.min()) + 1 if n else 1
        hdr += header_bits(n, nsym, states)
    n_all = max(n_all, 1)
    if total is None:
        total = torch.zeros(())     # on the CPU: no layer, no device to follow
    return (total + hdr) / n_all, hdr / n_all


class LambdaController:
    """Rate weight λ, adapted so that the rate follows a schedule down to the budget.

    The goal starts at the first rate seen, ``R0``, and moves geometrically to the budget
    ``target`` over ``ramp`` steps (gradual compression, like gradual pruning schedules),
    then stays there; ``correction`` rescales it (the flow sets it from the measured ratio
    of real stream size to estimate). Each ``update(rate)`` is one step of dual ascent on
    the log scale::

        λ ← λ · exp(gain · clip((rate − goal) / goal, −1, 1)),   λ in [lam_min, lam_max]

    so λ grows while the rate is above the goal and decays below it.
    """

    def __init__(self, target: float, lam: float = 0.05, gain: float = 0.05, ramp: int = 0,
                 lam_min: float = 1e-5, lam_max: float = 1e3):
        self.target, self.lam, self.gain, self.ramp = float(target), float(lam), float(gain), int(ramp)
        self.lam_min, self.lam_max = lam_min, lam_max
        self.correction = 1.0
        self.start = None
        self.steps = 0

    def goal(self) -> float:
        """Current rate goal in bits per weight."""
        g = self.target
        if self.start is not None and self.steps < self.ramp and self.start > self.target:
            g = math.exp(math.log(self.start) + (math.log(self.target) - math.log(self.start)) * self.steps / self.ramp)
        return g * self.correction

    def update(self, rate: float) -> float:
        if self.start is None:
            self.start = float(rate)
        goal = self.goal()
        err = max(-1.0, min(1.0, (rate - goal) / goal))
        self.lam = min(self.lam_max, max(self.lam_min, self.lam * math.exp(self.gain * err)))
        self.steps += 1
        return self.lam

    def state_dict(self) -> dict:
        """The controller's whole state (plain values), for checkpoints."""
        return {"target": self.target, "lam": self.lam, "gain": self.gain, "ramp": self.ramp,
                "lam_min": self.lam_min, "lam_max": self.lam_max, "correction": self.correction,
                "start": self.start, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
