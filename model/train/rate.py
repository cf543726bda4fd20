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

Row classes (``subbit train --row-classes``, word stream v3, `subbit.model.rowclass`)
-------------------------------------------------------------------------------------
A layer coded with ``T > 1`` tables, row ``r`` (output channel, the tensor's axis 0) in class
``k[r]``, costs about ``Σ_t N_t · H_t(q)`` payload bits (``N_t`` weights in the rows of class
``t``, ``H_t`` the entropy of their codes) plus a longer header: ``T`` tables, 4 class-field
words and the class index (``class_words``: fixed bits, as the encoder writes by default and the
hardware decoder reads). So with classes::

    R = (96 + Σ_l [Σ_t N_lt · H_lt + header_bits_l(T_l, class_words_l)]) / Σ_l N_l

Each ``H_lt`` is the entropy of a soft histogram of the class's own weights, straight-through
with the exact hard value as above, so a weight is pulled toward the more probable neighbour
*in its row's class*: a weight of a nearly dead row toward 0 much harder than one of a dense
row. The assignment ``k`` is not differentiable: :func:`assign_classes` recomputes it from the
hard codes with the encoder's own chooser (`rowclass.choose` on the rows' histograms, the same
candidate ``T``), keeping one table when classes do not save estimated bits (as the encoder
falls back); `QuantNet` refreshes it every few training steps. With one class (``T = 1``) the
estimate is exactly the one-table one.

Training minimises ``task_loss + λ · R``; :class:`LambdaController` adapts ``λ`` so that
``R`` settles at the budget (``--target-bits``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["STREAM_HEADER_BITS", "soft_histogram", "hard_entropy", "layer_rate", "header_bits",
           "classed_bits", "classed_header_bits", "assign_classes", "rate_bits", "LambdaController"]

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


def classed_header_bits(n: int, nsym: int, states: int, tables: int, class_words: int) -> int:
    """Bits of one layer header with ``tables`` row classes (word stream v3, ``docs/stream-format.md``):
    fixed words, class fields, ``T`` tables, states, class index, pad, check. ``tables = 1`` is
    :func:`header_bits`."""
    if tables <= 1:
        return header_bits(n, nsym, states)
    words = 6 + 4 + tables * nsym + 2 * min(n, states) + class_words + \
        (1 if (tables * nsym + class_words) % 2 == 0 else 0) + 1
    return 16 * words


def classed_bits(u: torch.Tensor, codes: torch.Tensor, k: int, classes: torch.Tensor) -> torch.Tensor:
    """Payload bits of one layer coded with row classes: ``Σ_t N_t · H_t``, the exact hard value
    with the gradient of the per-class soft histograms' entropies (straight-through).

    ``u``, ``codes``: the layer's continuous and integer codes, rows on axis 0; ``classes``: the
    class of each row (``rows`` ints ``0 .. T-1``, on any device). With every row in class 0 this
    is ``N · layer_rate(u, codes, k)``, computed by that function."""
    cls = torch.as_tensor(classes, dtype=torch.int64, device=u.device).reshape(-1)
    rows = cls.numel()
    T = int(cls.max()) + 1 if rows else 1
    if T <= 1:
        return codes.numel() * layer_rate(u, codes, k)
    u2 = u.reshape(rows, -1)
    L = u2.shape[1]
    nlev = 2 * k + 1
    fl = torch.clamp(torch.floor(u2.detach()), -k, k - 1) if k > 0 else torch.zeros_like(u2)
    frac = u2 - fl
    idx = (fl + k).to(torch.int64) + nlev * cls[:, None]
    m = torch.zeros(T * nlev, dtype=u.dtype, device=u.device).index_add(0, idx.reshape(-1), (1.0 - frac).reshape(-1))
    if k > 0:
        m = m.index_add(0, (idx + 1).reshape(-1), frac.reshape(-1))
    n_t = torch.bincount(cls, minlength=T).to(u.dtype) * L                  # weights per class
    p = m.reshape(T, nlev) / n_t.clamp_min(1)[:, None]
    soft = -(n_t[:, None] * p * torch.log(p.clamp_min(1e-12))).sum() / _LN2
    with torch.no_grad():
        c = codes.reshape(rows, -1)
        lo = int(c.min())
        nsym = int(c.max()) - lo + 1
        cnt = torch.bincount(((c - lo) + nsym * cls[:, None]).reshape(-1), minlength=T * nsym)
        cnt = cnt.reshape(T, nsym).double()
        tot = cnt.sum(dim=1, keepdim=True)
        hard = float(-(cnt * torch.log(torch.where(cnt > 0, cnt / tot.clamp_min(1), torch.ones_like(cnt)))).sum()
                     / _LN2)
    return soft + (hard - soft).detach()


@torch.no_grad()
def assign_classes(codes: torch.Tensor, prob_bits: int, candidates, states: int, lanes: int = 1,
                   class_index: str = "fixed") -> tuple[np.ndarray, int]:
    """``(classes, class_words)``: a row -> class assignment of one layer's integer ``codes``
    (rows on axis 0) by the encoder's chooser, `rowclass.choose` over ``candidates`` (e.g.
    `subbit.model.stream.TABLE_CHOICES` ``["auto"]``) with the class index codings of
    ``class_index`` (`subbit.model.stream.CLASS_INDEX_CHOICES`; ``"fixed"``, the encoder's
    default, is what the hardware decoder reads), and the words of its class index; all zeros
    and 0 words (one table) when there is one row, one symbol, no candidate, rows shorter than
    ``lanes`` (the encoder keeps one table then), or when the classes do not make the estimated
    layer (:func:`classed_header_bits` + payload) smaller than with one table."""
    from ..rowclass import choose, encode_class_index
    from ..stream import CLASS_INDEX_CHOICES
    codings = CLASS_INDEX_CHOICES[class_index]
    rows = codes.shape[0] if codes.dim() >= 2 else 1
    one = (np.zeros(rows, dtype=np.int64), 0)
    c = codes.reshape(rows, -1)
    n = c.numel()
    if not candidates or rows < 2 or n == 0 or c.shape[1] < lanes:
        return one
    lo = int(c.min())
    nsym = int(c.max()) - lo + 1
    if nsym == 1:
        return one
    cnt = torch.bincount(((c - lo) + nsym * torch.arange(rows, device=c.device)[:, None]).reshape(-1),
                         minlength=rows * nsym).reshape(rows, nsym).cpu().numpy()
    pick = choose(cnt, prob_bits, candidates, codings=codings)
    if pick is None:
        return one
    cls = np.asarray(pick[0], dtype=np.int64)
    T = int(cls.max()) + 1
    _, idx = encode_class_index(cls, T, prob_bits, codings)

    def entropy_bits(h):
        h = h[h > 0].astype(np.float64)
        return float(-(h * np.log2(h / h.sum())).sum())
    classed = sum(entropy_bits(cnt[cls == t].sum(axis=0)) for t in range(T)) + \
        classed_header_bits(n, nsym, states, T, len(idx))
    single = entropy_bits(cnt.sum(axis=0)) + header_bits(n, nsym, states)
    return (cls, len(idx)) if classed < single else one


def rate_bits(layers, states: int) -> tuple[torch.Tensor, float]:
    """Estimated coded size of a stream, in bits per weight.

    ``layers`` yields ``(u, codes, k)`` per coded layer (continuous codes, integer codes,
    level bound), or ``(u, codes, k, classes, class_words)`` for a layer with row classes
    (:func:`assign_classes`; ``classes`` ``None`` or all zero: one table). Returns the
    differentiable estimate ``R`` (payload ≈ N·H, or ``Σ_t N_t·H_t``, plus headers) and, as a
    float, its header share.
    """
    total = None
    hdr = STREAM_HEADER_BITS
    n_all = 0
    for item in layers:
        u, codes, k = item[:3]
        classes, class_words = (item[3], item[4]) if len(item) > 3 else (None, 0)
        if total is None:
            total = torch.zeros((), dtype=u.dtype, device=u.device)
        n = codes.numel()
        n_all += n
        nsym = int(codes.max() - codes.min()) + 1 if n else 1
        T = int(classes.max()) + 1 if classes is not None and n and nsym > 1 else 1
        if T > 1:
            total = total + classed_bits(u, codes, k, classes)
            hdr += classed_header_bits(n, nsym, states, T, class_words)
        else:
            total = total + n * layer_rate(u, codes, k)
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
