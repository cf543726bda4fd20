"""Zero-point quantizer with a learned step size and a learned range (→ learned bit-width).

A ``b``-bit zero-point quantizer has ``2**b - 1`` levels, codes ``q`` in ``[-Q, Q]`` with
``Q = 2**(b-1) - 1``; 0 is exact, ``b = 2`` is ternary (``log2 3 = 1.58`` bits). Weights are
``w_hat = q * s`` — exactly what `subbit.model.sbw.LayerMeta.dequantize` computes.

Parametrisation (per layer; ``s`` optionally per output channel)::

    s = exp(log_s)                  step size (LSQ, Esser et al. 2020), learned
    n = clamp(exp(log_n), 1, Qmax)  range in steps (Uhlich et al. 2020, "d and q_max"), learned
    u = clamp(w / s, -n, n)         continuous code
    q = round(u)                    integer code, |q| <= round(n)
    b = smallest b with 2**(b-1) - 1 >= round(n)      the layer's bit-width, 2..max_bits

The rounding uses the straight-through estimator, ``q = u + (round(u) - u).detach()``, so
``d w_hat / d s = q - u`` (LSQ's step gradient), ``d w_hat / d n = s * sign(u)`` for clipped
weights and ``d w_hat / d w = 1`` inside the range. Learning ``log s`` and ``log n`` (rather
than ``s``, ``n``) makes Adam's steps relative, so no LSQ gradient scale is needed.

The mixed precision is learned: the task loss pulls ``n`` up when clipping hurts, the rate
term (`subbit.model.train.rate`) pulls the codes, and with them the range, toward zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..quant import BITS_RANGE
from .errors import ConfigError

__all__ = ["bits_for", "round_ste", "mse_scale", "ZeroPointQuantizer"]


def bits_for(qmax: int) -> int:
    """Smallest zero-point bit-width ``b >= 2`` whose codes reach ``±qmax``."""
    return max(2, int(qmax).bit_length() + 1)


def round_ste(u: torch.Tensor) -> torch.Tensor:
    """``round(u)`` in the forward pass, identity gradient (straight-through estimator).

    Exact: ``round(u) - u`` is computed exactly for every float (Sterbenz), so the sum is
    exactly ``round(u)``.
    """
    return u + (torch.round(u) - u).detach()


def mse_scale(w: torch.Tensor, qmax: int, per_channel: bool) -> torch.Tensor:
    """Step size minimising the round-to-nearest MSE of ``w`` at ``±qmax`` (grid search).

    Candidates are ``max|w| / qmax * k / 100`` for ``k = 10..100``; per channel if asked.
    """
    w = w.detach().float()   # every tensor below follows w's device
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    amax = flat.abs().amax(dim=1).clamp_min(1e-8)
    best_err = torch.full_like(amax, float("inf"))
    best = amax / qmax
    for k in range(10, 101):
        s = (amax * (k / 100) / qmax).unsqueeze(1)
        err = ((torch.clamp(torch.round(flat / s), -qmax, qmax) * s - flat) ** 2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s.squeeze(1), best)
    return best if per_channel else best[0]


class ZeroPointQuantizer(nn.Module):
    """Fake-quantizer of one weight tensor, ``w_hat = s * clamp(round(w / s), -n, n)``.

    Parameters
    ----------
    weight : the (pretrained) weight tensor, used for initialisation (scale by MSE at
        ``init_bits``) and shape
    init_bits : initial bit-width, 2..max_bits (sets ``n = 2**(b-1) - 1``)
    max_bits : upper bound of the learned bit-width, 2..8
    per_channel : one step size per output channel (axis 0)
    learn_range : learn ``n`` (mixed precision); otherwise the bit-width stays ``init_bits``

    Members
    -------
    log_s, log_n : learnable parameters
    """

    def __init__(self, weight: torch.Tensor, *, init_bits: int = 4, max_bits: int = 8,
                 per_channel: bool = False, learn_range: bool = True):
        super().__init__()
        if max_bits not in BITS_RANGE:
            raise ConfigError(f"--max-bits must be in 2..8, not {max_bits}")
        if init_bits not in BITS_RANGE or init_bits > max_bits:
            raise ConfigError(f"--init-bits must be in 2..{max_bits} (--max-bits), not {init_bits}")
        if weight.dim() < 2:
            raise ConfigError(f"only tensors of rank >= 2 are quantized, not shape {list(weight.shape)}")
        self.per_channel = per_channel
        self.max_bits = max_bits
        self.qmax_limit = 2 ** (max_bits - 1) - 1
        q0 = 2 ** (init_bits - 1) - 1
        self.log_s = nn.Parameter(torch.log(mse_scale(weight, q0, per_channel)))
        self.log_n = nn.Parameter(torch.tensor(math.log(q0), device=weight.device), requires_grad=learn_range)
        self.ndim = weight.dim()

    def step(self) -> torch.Tensor:
        """Step size ``s`` shaped to broadcast against the weight."""
        s = torch.exp(self.log_s)
        return s.reshape([-1] + [1] * (self.ndim - 1)) if self.per_channel else s

    def range(self) -> torch.Tensor:
        """Learned range ``n`` (in steps), in ``[1, Qmax]``."""
        return torch.exp(self.log_n).clamp(1.0, float(self.qmax_limit))

    def continuous(self, w: torch.Tensor) -> torch.Tensor:
        """``u = clamp(w / s, -n, n)``: the continuous code (differentiable in w, s, n)."""
        n = self.range()
        return torch.maximum(torch.minimum(w / self.step(), n), -n)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return round_ste(self.continuous(w)) * self.step()

    @torch.no_grad()
    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes (int64) — the ones the forward pass uses."""
        return torch.round(self.continuous(w)).to(torch.int64)

    @property
    def bits(self) -> int:
        """The layer's bit-width, from the learned range: codes stay within ``±(2**(b-1)-1)``."""
        return bits_for(int(torch.round(self.range().detach())))

    @torch.no_grad()
    def scales(self) -> list[float]:
        """Step sizes as Python floats: the exact float32 values (float32 → float64 → float32
        round-trips), which `LayerMeta.dequantize` multiplies with."""
        return [float(v) for v in np.atleast_1d(torch.exp(self.log_s).float().cpu().numpy())]

    @torch.no_grad()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes * s`` in float32 with the stored scales — bit-identical to
        `LayerMeta.dequantize` (one float32 multiply per weight)."""
        s = torch.tensor(self.scales(), dtype=torch.float32, device=codes.device)
        if self.per_channel:
            s = s.reshape([-1] + [1] * (self.ndim - 1))
        else:
            s = s[0]
        return codes.to(torch.float32) * s
