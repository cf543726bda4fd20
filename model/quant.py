"""Zero-point (symmetric, odd-level) quantization in numpy.

A ``b``-bit quantizer has ``2**b - 1`` levels: integer codes
``q in [-(2**(b-1) - 1), 2**(b-1) - 1]``, so 0 is exact; ``b = 2`` is ternary.
``weights ~= q * scale``.
"""

from __future__ import annotations

import numpy as np

from .errors import SubbitError

__all__ = ["BITS_RANGE", "qmax", "quantize_rtn"]

BITS_RANGE = range(2, 9)


def qmax(bits: int) -> int:
    """Largest code of a ``bits``-bit zero-point quantizer."""
    if bits not in BITS_RANGE:
        raise SubbitError(f"quantizer bits must be in 2..8, not {bits!r}")
    return 2 ** (bits - 1) - 1


def quantize_rtn(w: np.ndarray, bits: int, *, per_channel: bool = False):
    """Round-to-nearest zero-point quantization with a max-abs scale.

    Returns ``(codes, scale)``: int64 codes of ``w``'s shape and a list of
    float scales (one, or one per output channel = axis 0).
    """
    qm = qmax(bits)
    w = np.asarray(w, dtype=np.float32)
    if not np.all(np.isfinite(w)):
        raise SubbitError("cannot quantize a tensor with NaN or infinite values")
    if per_channel and w.ndim >= 2:
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if w.size else np.zeros(w.shape[0])
        scale = np.where(amax > 0, amax / qm, 1.0).astype(np.float32)
        s = scale.reshape([-1] + [1] * (w.ndim - 1))
    else:
        amax = float(np.abs(w).max()) if w.size else 0.0
        scale = np.array([amax / qm if amax > 0 else 1.0], dtype=np.float32)
        s = scale[0]
    codes = np.clip(np.rint(w / s), -qm, qm).astype(np.int64)
    return codes, [float(v) for v in scale]
