"""Post-training quantization to a bit budget: MSE-optimal steps, rate-distortion optimised
rounding (RDOQ) and a Lagrangian allocation of bits across layers. Data-free.

The problem, for the coded layers ``l`` with float weights ``w_l`` (``n_l`` of them)::

    minimise   D = Σ_l Σ_i (w_li − s_l·q_li)²          (squared error, every weight alike)
    subject to R = stream bits (headers included) ≤ B · Σ_l n_l

over the step ``s_l`` (float32, stored as the layer's scale), the integer codes ``q_li`` and so the
number of levels of each layer (``2^b − 1``, the smallest ``b`` that holds the largest ``|q|``;
at most 255 levels). Minimising ``D`` maximises the SQNR of all coded weights together,
``10·log10(Σ w² / D)``; no layer is weighted above another (``weighting="layer"`` weights each
layer's squared error by ``1 / mean(w_l²)``, equalising their SQNR instead).

Lagrangian: one ``λ`` shared by all layers; each layer minimises ``D_l + λ·R_l`` on its own,
and ``λ`` is searched (bisection on log λ) so that the stream fits the budget. For one layer
and a given ``λ``:

* **rate-aware rounding** (RDOQ): weight ``w`` takes the code ``q`` minimising
  ``(|w| − |q|·s)² + λ·c(q)``, ``c(q)`` the code length of ``q`` in bits under the layer's table
  (the order-0 model of its own codes, symmetric in the sign: ``c(±a) = 1 − log2 p(|q| = a)``
  for ``a > 0``; probabilities floored at ``2^-M``). The decision is a set of thresholds on
  ``|w|``: ``q`` and ``q + 1`` meet at ``s·(q + ½) + λ·(c(q+1) − c(q)) / (2s)``; the thresholds
  are made non-decreasing (a level squeezed out gets no weight).
* **iteration**: codes → table → thresholds, and the step refitted by least squares
  (``s = Σ|w|·|q| / Σ q²``, Lloyd's update: the same codes, less error), a few rounds from
  several starting steps (a log grid around ``√(6λ / ln 2)``, the high-rate optimum, and the
  MSE-optimal step of a few level counts); each start also tries a few caps on the largest
  level (clipping the outliers saves their rare codes and the table words they need).
* **rate**: the order-0 code length of the codes plus the layer header as the stream writes it
  (``16·(7 + nsym + [nsym even] + 2·min(n, lanes·ways))`` bits with the payload's pad and
  check word), ``nsym = 2·max|q| + 1``.

Every evaluation works on the sorted ``|w|`` with prefix sums of ``|w|`` and ``w²``: one
``searchsorted`` of the thresholds gives the counts, the distortion and the refit, in
``O(levels · log n)``, so a layer's whole search costs about as much as one pass of sorting.
The last step encodes the chosen codes with the real coder and, while the stream is over the
budget, raises ``λ`` (the estimate is within a fraction of a percent; the real size decides).

The same machinery with ``λ = 0`` and a fixed number of levels is the MSE-optimal clipping of
plain round-to-nearest (:func:`quantize_mse`, ``subbit compress --bits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import SubbitError
from .quant import qmax

__all__ = ["LayerStats", "Choice", "quantize_mse", "rd_layer", "allocate", "header_bits", "sqnr_db"]

MAX_CODE = 127                      # 8-bit quantizer: 255 levels
_ITERS = 6


def header_bits(nsym: int, n: int, states: int) -> int:
    """Bits of a layer's header and payload framing (pad + check word) in the word stream."""
    words = 6 + nsym + 2 * min(n, states) + (nsym % 2 == 0) + 1
    return 16 * (words + 2)            # + the payload's pad word (when its length is even) and check word


def sqnr_db(signal: float, noise: float) -> float:
    """``10·log10(signal / noise)``; ``inf`` for no noise, ``-inf`` for no signal."""
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10 * math.log10(signal / noise)


class LayerStats:
    """Sorted ``|w|`` of one tensor (or channel) with prefix sums, for O(levels·log n) evaluations."""

    def __init__(self, w: np.ndarray):
        a = np.sort(np.abs(np.asarray(w, dtype=np.float64).ravel()))
        self.a = a
        self.n = a.size
        self.s1 = np.concatenate([[0.0], np.cumsum(a)])
        self.s2 = np.concatenate([[0.0], np.cumsum(a * a)])
        self.energy = float(self.s2[-1])
        self.amax = float(a[-1]) if a.size else 0.0

    def bins(self, thr: np.ndarray):
        """Counts, Σ|w| and Σw² of the levels 0..len(thr) cut by the thresholds ``thr``."""
        idx = np.empty(len(thr) + 2, dtype=np.int64)
        idx[0], idx[-1] = 0, self.n
        idx[1:-1] = np.searchsorted(self.a, thr, side="right")
        c1, c2 = self.s1[idx], self.s2[idx]
        return idx[1:] - idx[:-1], c1[1:] - c1[:-1], c2[1:] - c2[:-1]


def _distortion(levels, s, n, s1, s2) -> float:
    return float(np.sum(s2 - 2 * s * levels * s1 + (s * levels) ** 2 * n))


def _costs(n: np.ndarray, total: int, prob_bits: int) -> np.ndarray:
    """Code length in bits of each level ``a = |q|`` (the sign bit included for ``a > 0``)."""
    floor = 2.0 ** -prob_bits
    p = np.maximum(n / max(total, 1), floor)
    c = -np.log2(p)
    c[1:] += 1.0
    return c


def _rate(n: np.ndarray, prob_bits: int) -> float:
    """Order-0 code length in bits of codes with these level counts (signs split evenly)."""
    total = int(n.sum())
    nz = n > 0
    if total == 0 or nz.sum() <= 1 and n[0] == total:
        return 0.0
    p = n[nz] / total
    return float(-(n[nz] * np.log2(p)).sum() + (total - n[0]))


@dataclass
class Choice:
    """One layer's quantizer: step, thresholds on ``|w|`` and what they give."""
    step: float
    thresholds: np.ndarray            # between level a and a + 1, a = 0..len-1
    distortion: float                 # Σ (w − s·q)²
    payload_bits: float               # order-0 code length of the codes
    header_bits: int
    counts: np.ndarray = field(repr=False)

    @property
    def bits(self) -> float:
        return self.payload_bits + self.header_bits

    @property
    def max_code(self) -> int:
        nz = np.nonzero(self.counts)[0]
        return int(nz[-1]) if nz.size else 0

    def codes(self, w: np.ndarray) -> np.ndarray:
        """Signed integer codes of ``w`` (int64, ``w``'s shape)."""
        w = np.asarray(w)
        q = np.searchsorted(self.thresholds, np.abs(w).ravel(), side="left").astype(np.int64)
        return (np.sign(w.ravel()).astype(np.int64) * q).reshape(w.shape)


def _refine(st: LayerStats, s: float, lam: float, cap: int, states: int, prob_bits: int,
            fixed_step: bool = False) -> Choice:
    """RDOQ rounds from step ``s`` with at most ``cap`` as the largest level."""
    levels = np.arange(cap + 1, dtype=np.float64)
    costs = None
    best = None
    for _ in range(_ITERS):
        thr = s * (levels[:-1] + 0.5)
        if costs is not None and lam > 0:
            thr = thr + lam * np.diff(costs) / (2 * s)
        thr = np.maximum.accumulate(np.maximum(thr, 0.0))
        n, s1, s2 = st.bins(thr)
        d = _distortion(levels, s, n, s1, s2)
        nz = np.nonzero(n)[0]
        top = int(nz[-1]) if nz.size else 0
        pay = _rate(n, prob_bits)
        hb = header_bits(2 * top + 1, st.n, states)
        ch = Choice(step=s, thresholds=thr, distortion=d, payload_bits=pay, header_bits=hb, counts=n)
        j = d + lam * ch.bits
        if best is not None and j >= best[0] - 1e-12 * abs(best[0]):
            break
        best = (j, ch)
        costs = _costs(n, st.n, prob_bits)
        den = float(np.sum(levels ** 2 * n))
        if not fixed_step and den > 0:
            s_new = float(np.sum(levels * s1)) / den          # least-squares step for these codes
            if s_new > 0:
                s = s_new
    return best[1]


def _caps(st: LayerStats, s: float) -> list[int]:
    natural = min(MAX_CODE, max(1, int(math.ceil(st.amax / s - 0.5))))
    return sorted({natural, max(1, natural // 2)})


def rd_layer(st: LayerStats, lam: float, *, states: int = 6, prob_bits: int = 12) -> Choice:
    """The quantizer of one layer minimising ``D + λ·R`` (see the module docstring)."""
    if st.n == 0 or st.amax == 0:
        return Choice(step=1.0, thresholds=np.array([np.inf]), distortion=0.0, payload_bits=0.0,
                      header_bits=header_bits(1, st.n, states), counts=np.array([st.n, 0]))
    starts = set()
    if lam > 0:
        s0 = math.sqrt(6 * lam / math.log(2))
        starts.update(s0 * 2.0 ** (k / 2) for k in range(-2, 3))
    starts.update(st.amax / qm for qm in (1, 3, 15, 63))
    starts = [s for s in starts if st.amax / MAX_CODE <= s <= 4 * st.amax] or [st.amax / MAX_CODE]
    best, bj = None, math.inf
    for s in sorted(starts):
        for cap in _caps(st, s):
            ch = _refine(st, s, lam, cap, states, prob_bits)
            j = ch.distortion + lam * ch.bits
            if j < bj:
                best, bj = ch, j
    # all to zero is always a candidate
    zero = Choice(step=best.step, thresholds=np.array([np.inf]), distortion=st.energy, payload_bits=0.0,
                  header_bits=header_bits(1, st.n, states), counts=np.array([st.n, 0]))
    if zero.distortion + lam * zero.bits < bj:
        return zero
    return best


def quantize_mse(w: np.ndarray, bits: int, *, per_channel: bool = False):
    """Round-to-nearest zero-point quantization with the step that minimises the squared error
    (MSE-optimal clipping) at ``2**bits − 1`` levels; per output channel (axis 0) with
    ``per_channel``. Returns ``(codes, scale)`` like :func:`~subbit.model.quant.quantize_rtn`."""
    qm = qmax(bits)
    w = np.asarray(w, dtype=np.float32)
    if not np.all(np.isfinite(w)):
        raise SubbitError("cannot quantize a tensor with NaN or infinite values")
    if per_channel and w.ndim >= 2 and w.shape[0] > 1:
        rows = w.reshape(w.shape[0], -1)
        steps = _mse_steps_rows(rows, qm)
        codes = np.clip(np.rint(rows / steps[:, None]), -qm, qm).astype(np.int64)
        return codes.reshape(w.shape), [float(v) for v in steps]
    st = LayerStats(_sample(w))
    if st.amax == 0:
        return np.zeros(w.shape, dtype=np.int64), [1.0]
    best = None
    for f in 2.0 ** np.linspace(-7, 0, 29):                 # outliers may put the best step far below max-abs
        ch = _refine(st, float(f * st.amax / qm), 0.0, qm, 6, 12)
        if best is None or ch.distortion < best.distortion:
            best = ch
    s = float(np.float32(best.step))
    return np.clip(np.rint(w / s), -qm, qm).astype(np.int64), [s]


SAMPLE = 1 << 21


def _sample(w: np.ndarray) -> np.ndarray:
    """``w`` itself, or for a large tensor an evenly strided sample of about :data:`SAMPLE` weights
    plus its largest magnitude (the step search's error curve is a mean: 2M samples pin it down)."""
    flat = w.reshape(-1)
    if flat.size <= 2 * SAMPLE:
        return flat
    k = int(np.argmax(np.abs(flat)))
    return np.concatenate([flat[::flat.size // SAMPLE], flat[k:k + 1]])


def _mse_steps_rows(rows: np.ndarray, qm: int, grid: int = 29) -> np.ndarray:
    """The MSE-optimal step of each row (vectorised over rows): the best of a log grid below
    max-abs, then one least-squares refit kept where it lowers the error. float32 steps."""
    amax = np.abs(rows).max(axis=1).astype(np.float64)
    amax[amax == 0] = qm                          # all-zero rows: step 1
    factors = 2.0 ** np.linspace(-7, 0, grid)
    best_err = np.full(rows.shape[0], np.inf)
    best = np.ones(rows.shape[0])
    chunk = max(1, (1 << 22) // max(rows.shape[1], 1))
    for lo in range(0, rows.shape[0], chunk):
        r = rows[lo:lo + chunk].astype(np.float64)
        a = amax[lo:lo + chunk]
        for f in factors:
            s = f * a / qm
            q = np.clip(np.rint(r / s[:, None]), -qm, qm)
            err = np.sum((r - q * s[:, None]) ** 2, axis=1)
            better = err < best_err[lo:lo + chunk]
            best_err[lo:lo + chunk][better] = err[better]
            best[lo:lo + chunk][better] = s[better]
        s = best[lo:lo + chunk]
        q = np.clip(np.rint(r / s[:, None]), -qm, qm)
        den = np.sum(q * q, axis=1)
        refit = np.where(den > 0, np.sum(r * q, axis=1) / np.maximum(den, 1), s)
        refit = np.where(refit > 0, refit, s)
        q2 = np.clip(np.rint(r / refit[:, None]), -qm, qm)
        err2 = np.sum((r - q2 * refit[:, None]) ** 2, axis=1)
        keep = err2 < best_err[lo:lo + chunk]
        best[lo:lo + chunk][keep] = refit[keep]
    return best.astype(np.float32)


@dataclass
class Allocation:
    """The outcome of :func:`allocate`: one :class:`Choice` per layer at the shared ``λ``."""
    lam: float
    choices: list[Choice]

    @property
    def bits(self) -> float:
        return sum(c.bits for c in self.choices)

    @property
    def distortion(self) -> float:
        return sum(c.distortion for c in self.choices)


def allocate(stats: list[LayerStats], budget_bits: float, *, states: int = 6, prob_bits: int = 12,
             weights: list[float] | None = None, stream_bits: int = 96, progress=None,
             iters: int = 40) -> Allocation:
    """Bisection on ``log λ`` for the largest-distortion-saving allocation within ``budget_bits``
    (estimated: order-0 rates and exact headers, ``stream_bits`` for the stream header).

    ``weights`` scales each layer's squared error (default 1: plain MSE over all weights).
    """
    wts = weights or [1.0] * len(stats)

    def at(lam):
        ch = [rd_layer(st, lam / w_, states=states, prob_bits=prob_bits) for st, w_ in zip(stats, wts)]
        return Allocation(lam, ch)

    total_energy = sum(st.energy * w_ for st, w_ in zip(stats, wts)) or 1.0
    nw = max(1, sum(st.n for st in stats))
    # λ in squared error per bit: from far below (every layer fine) to far above (all zero);
    # regula falsi (Illinois) on log λ against log bits, bracketing the budget
    lo, hi = math.log(total_energy / nw * 1e-9), math.log(total_energy / nw * 1e3)
    a_hi = at(math.exp(hi))
    if a_hi.bits + stream_bits > budget_bits:
        return a_hi                       # the caller reports the smallest reachable budget
    a_lo = at(math.exp(lo))
    if a_lo.bits + stream_bits <= budget_bits:
        return a_lo
    g = lambda a: math.log(a.bits + stream_bits) - math.log(budget_bits)   # noqa: E731
    f_lo, f_hi, best, over, side = g(a_lo), g(a_hi), a_hi, a_lo, 0
    for _ in range(iters):
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        a = at(math.exp(mid))
        fm = g(a)
        if fm <= 0:
            best, hi, f_hi = a, mid, fm
            if side == -1:
                f_lo /= 2
            side = -1
        else:
            lo, f_lo, over = mid, fm, a
            if side == 1:
                f_hi /= 2
            side = 1
        if progress:
            progress()
        if hi - lo < 0.005 or -0.002 < f_hi <= 0:
            break
    return _fill(best, over, budget_bits - stream_bits, wts)


def _fill(best: Allocation, over: Allocation, budget: float, wts) -> Allocation:
    """Spend what the last λ left of the budget: layers take their choice of the smaller λ (just
    over the budget) in the order of their error saved per bit, while the sum fits (a discrete
    step of one layer can leave much unspent in a small model)."""
    choices = list(best.choices)
    left = budget - sum(c.bits for c in choices)
    gains = []
    for i, (b, o) in enumerate(zip(best.choices, over.choices)):
        dr, dd = o.bits - b.bits, (b.distortion - o.distortion) * wts[i]
        if dr > 0 and dd > 0:
            gains.append((dd / dr, i, dr))
    for _, i, dr in sorted(gains, reverse=True):
        if dr <= left:
            choices[i], left = over.choices[i], left - dr
    return Allocation(best.lam, choices)


# -- partitions: rows and columns in classes by their scale --------------------------------------

SPLITS = ((1, 1), (2, 1), (1, 2), (2, 2), (1, 4), (2, 4))     # (row classes, column classes) tried
MIN_SPLIT_WEIGHTS = 4096


def kmeans_1d(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Labels 0..k-1 of a 1-D k-means (Lloyd from quantile centres), ordered by centre."""
    x = np.asarray(x, dtype=np.float64)
    if k <= 1 or x.size <= k:
        return np.zeros(x.size, dtype=np.uint8)
    c = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        lab = np.abs(x[:, None] - c[None, :]).argmin(1)
        new = np.array([x[lab == j].mean() if np.any(lab == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    order = np.argsort(c)
    lab = np.argsort(order)[np.abs(x[:, None] - c[None, :]).argmin(1)]
    used = np.unique(lab)                                   # drop empty classes, keep the order
    return np.searchsorted(used, lab).astype(np.uint8)


def classes_for(m: np.ndarray, g_r: int, g_c: int):
    """Row and column class maps of a 2-D view ``m`` by k-means on the log RMS of rows and columns."""
    tiny = 1e-12
    rr = np.log(np.sqrt(np.mean(m * m, axis=1)) + tiny)
    cr = np.log(np.sqrt(np.mean(m * m, axis=0)) + tiny)
    return kmeans_1d(rr, g_r), kmeans_1d(cr, g_c)


def class_map_bits(rows: int, cols: int, g_r: int, g_c: int) -> int:
    """Bits of the packed class maps of a partition (whole bytes per map)."""
    return 8 * (((g_r - 1).bit_length() * rows + 7) // 8 + ((g_c - 1).bit_length() * cols + 7) // 8)


@dataclass
class TensorPlan:
    """How one tensor is coded: its class maps (``None``: one layer) and the stats of each part."""
    name: str
    w: np.ndarray                      # float64, the tensor's 2-D view
    row_class: np.ndarray | None = None
    col_class: np.ndarray | None = None
    parts: list = field(default_factory=list)       # [(key (a, b) or None, 2-D array, LayerStats)]

    @property
    def split(self) -> bool:
        return self.row_class is not None

    @property
    def extra_bits(self) -> int:
        """Class maps plus one float32 scale a part."""
        maps = class_map_bits(len(self.row_class), len(self.col_class), int(self.row_class.max()) + 1,
                              int(self.col_class.max()) + 1) if self.split else 0
        return maps + 32 * len(self.parts)


def plan_tensor(name: str, w2: np.ndarray, g_r: int = 1, g_c: int = 1) -> TensorPlan:
    p = TensorPlan(name, w2)
    if (g_r, g_c) == (1, 1):
        p.parts = [(None, w2, LayerStats(w2))]
        return p
    rc, cc = classes_for(w2, g_r, g_c)
    if rc.max() == 0 and cc.max() == 0:
        p.parts = [(None, w2, LayerStats(w2))]
        return p
    p.row_class, p.col_class = rc, cc
    for a in range(int(rc.max()) + 1):
        for b in range(int(cc.max()) + 1):
            sub = w2[rc == a][:, cc == b]
            if sub.size:
                p.parts.append(((a, b), sub, LayerStats(sub)))
    return p


def choose_split(name: str, w2: np.ndarray, lam: float, *, states: int, prob_bits: int,
                 weight: float = 1.0) -> TensorPlan:
    """The partition of :data:`SPLITS` with the smallest ``D + λ·R`` at ``λ`` (class maps and
    scales counted in ``R``)."""
    best, bj = None, math.inf
    for g_r, g_c in SPLITS:
        if (g_r, g_c) != (1, 1) and (w2.size < MIN_SPLIT_WEIGHTS or w2.shape[0] < g_r or w2.shape[1] < g_c):
            continue
        p = plan_tensor(name, w2, g_r, g_c)
        if best is not None and p.split == best.split and len(p.parts) == len(best.parts) and not p.split:
            continue
        j = lam * p.extra_bits
        for _, _, st in p.parts:
            ch = rd_layer(st, lam / weight, states=states, prob_bits=prob_bits)
            j += weight * ch.distortion + lam * ch.bits
        if j < bj:
            best, bj = p, j
    return best
