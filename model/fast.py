"""Fast rANS coder: compiled (numba) twins of the golden model's `rans.encode` / `rans.decode`.

READ ME FIRST
=============
Same signatures, same results, same errors as :func:`subbit.model.rans.encode` and
:func:`subbit.model.rans.decode`, bit for bit; the golden model stays the specification and
every test compares this module against it (``tests/test_fast.py``).

* **Who uses it.** `subbit.model.stream.encode_codes` / `decode_codes` (so ``subbit compress``,
  ``subbit decode``, ``.sbw`` reading, training reports) call this module by default.
  ``SUBBIT_GOLDEN=1`` in the environment selects the golden model everywhere instead (read at
  every call: :func:`enabled`). `rans.encode` / `rans.decode` are always the golden model.
  Row-classed layers (word stream v3, `subbit.model.rowclass`) have their twins too:
  :func:`encode_classed` / :func:`decode_classed` (a table per weight, selected by its row's class).
* **Same errors.** Every check the golden model makes *before* its coding loop (parameters,
  table, symbol range and dtype, zero-frequency symbols, number and range of initial states,
  the adversarial count bound) and every input outside the common case (a one-symbol table,
  states or words that are not integer arrays of their ranges) is handed to the golden function
  itself, which raises its own error (or decodes the case in constant time). Errors found *in*
  the loop -- payload overrun, unread words, a final state other than ``L`` -- come back from
  the kernel as a status code and a position, and are raised here with the golden model's
  messages and ``word`` index.
* **Exact division.** The encoder's ``x // f`` is ``trunc(x * (1/f))`` in float64, corrected
  once: for ``x < 2**32`` and ``f <= 2**15`` the product is within ``2**-19.9`` of ``x / f``
  while a non-integer ``x / f`` is at least ``1/f >= 2**-15`` below the next integer, so the
  truncation is ``floor(x / f)`` or, when ``f`` divides ``x`` and the product rounds down,
  one less (then the remainder equals ``f``, and one correction step fixes it).
* **Speed.** One core, 1M-symbol layers: ~330 M symbols/s encode and ~500 M decode, whatever
  the table (renormalisation is branch-free: a state needs a word at irregular intervals, which
  a predicted branch gets wrong often); 80-100x the golden model, against constriction's
  ~200 / ~50-100 (``subbit bench model``, docs/results.md).
* **Compilation.** The kernels (`subbit.model._fast_kernels`) are compiled on first use, once per
  machine and code dtype (numba ``cache=True``: ~1.3 s of CPU for one dtype), and loaded from the
  cache afterwards (~0.35 s of CPU per process, most of it importing numba).
"""

from __future__ import annotations

import os

import numpy as np

from . import rans
from .errors import DecodeError

__all__ = ["enabled", "encode", "encode_offset", "decode", "decode_into", "histogram",
           "encode_classed", "decode_classed"]

_INT = (int, np.integer)
#: symbol dtypes the kernels are compiled for (others are widened to int64 first)
KERNEL_DTYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


def enabled() -> bool:
    """True unless the environment variable ``SUBBIT_GOLDEN`` is set to ``1`` (read at every call)."""
    return os.environ.get("SUBBIT_GOLDEN", "") != "1"


def _kernels():
    from . import _fast_kernels
    return _fast_kernels


def encode(symbols, freqs, prob_bits: int, lanes: int = 1, ways: int = 1):
    """:func:`subbit.model.rans.encode`, compiled: same arguments, results and errors."""
    return encode_offset(symbols, 0, freqs, prob_bits, lanes, ways)


def encode_offset(symbols, lo: int, freqs, prob_bits: int, lanes: int = 1, ways: int = 1):
    """:func:`encode` of ``symbols - lo`` without making that array (``lo`` = 0: the errors of
    ``rans.encode(symbols, ...)``; `stream.encode_codes` passes valid codes only)."""
    rans.check_params(prob_bits, lanes, ways)
    f = rans._check_table(freqs, prob_bits)
    sym = np.asarray(symbols).ravel()
    if sym.size and not np.issubdtype(sym.dtype, np.integer):
        return rans.encode(sym, freqs, prob_bits, lanes, ways)             # raises
    fa = np.array(f, dtype=np.int64)
    c = np.concatenate([[0], np.cumsum(fa)])
    inv = 1.0 / np.maximum(fa, 1)           # (a symbol of frequency 0 is rejected before use)
    xmax = fa << (rans.STATE_BITS - prob_bits)
    k = _kernels()
    ks = sym if sym.dtype in KERNEL_DTYPES else sym.astype(np.int64)   # uint64 wraps: out of range
    X = np.full(max(min(sym.size, lanes * ways), 1), rans.RANS_L, dtype=np.int64)   # fewer symbols: fewer states
    words = np.empty(sym.size, dtype=np.uint16)
    status, pos, start = k.encode(ks, int(lo), fa, c, inv, xmax, prob_bits, X, words)
    if status != k.OK:                      # a symbol out of range or of frequency 0: raises
        return rans.encode(sym.astype(np.int64) - lo if lo else sym, freqs, prob_bits, lanes, ways)
    return X[:min(sym.size, lanes * ways)].astype(np.uint32), words[start:].copy()


def decode(states, words, freqs, prob_bits: int, count: int, lanes: int = 1, ways: int = 1,
           *, layer: str | None = None) -> np.ndarray:
    """:func:`subbit.model.rans.decode`, compiled: same arguments, results and errors."""
    return decode_into(states, words, freqs, prob_bits, count, lanes, ways, layer=layer)


def decode_into(states, words, freqs, prob_bits: int, count: int, lanes: int = 1, ways: int = 1,
                *, layer: str | None = None, base: int = 0) -> np.ndarray:
    """:func:`decode`, returning ``symbol + base`` (int64) without a second pass over the output."""
    def golden():
        out = rans.decode(states, words, freqs, prob_bits, count, lanes, ways, layer=layer)
        return out + base if base else out

    rans.check_params(prob_bits, lanes, ways)
    if not isinstance(count, _INT) or count < 0:
        return golden()
    count = int(count)
    N = lanes * ways
    nstates = min(count, N)
    X = np.asarray(states).ravel()
    if (X.size != nstates or (X.size and not np.issubdtype(X.dtype, np.integer))
            or (X.size and (int(X.min()) < rans.RANS_L or int(X.max()) >= 1 << rans.STATE_BITS))):
        return golden()                     # wrong number of states, or out of range
    f = rans._check_table(freqs, prob_bits)
    W = np.asarray(words).ravel()
    nw = W.size
    if W.dtype != np.uint16:
        if nw and (not np.issubdtype(W.dtype, np.integer) or int(W.min()) < 0 or int(W.max()) > 0xFFFF):
            return golden()
        W = W.astype(np.uint16)
    M = prob_bits
    if max(f) == 1 << M or count > (nw + nstates) * 23 << M:
        return golden()                     # one-symbol table; adversarial count (raises)
    T = _decode_table(f, M)
    try:
        out = np.empty(count, dtype=np.int64)
    except (MemoryError, ValueError):
        return golden()                     # raises "do not fit in memory"
    X = X.astype(np.int64)                  # a copy: the kernel updates it in place
    k = _kernels()
    status, pos, p = k.decode(X, W, T, M, count, int(base), out)
    if status == k.OVERRUN:
        raise DecodeError(f"payload overrun: symbol {pos} needs word {p}, "
                          f"but the payload has {nw} words", layer=layer, word=nw)
    if p != nw:
        raise DecodeError(f"payload has {nw} words but decoding read {p}", layer=layer, word=p)
    bad = np.flatnonzero(X != rans.RANS_L)
    if bad.size:
        j = int(bad[0])
        raise DecodeError(f"final state of state {j} (lane {j % lanes}, way {j // lanes}) "
                          f"is {int(X[j]):#x}, expected {rans.RANS_L:#x}: corrupted payload",
                          layer=layer, word=nw)
    return out


def histogram(q, lo: int, nsym: int) -> np.ndarray:
    """``np.bincount(q - lo, minlength=nsym)`` (int64) in one pass over ``q`` as it is, for integer
    ``q`` with ``0 <= q - lo < nsym``."""
    q = np.asarray(q).ravel()
    return _kernels().histogram(q if q.dtype in KERNEL_DTYPES else q.astype(np.int64), int(lo), int(nsym))


def encode_classed(symbols, lo: int, tables, classes, row_length: int, prob_bits: int, lanes: int = 1,
                   ways: int = 1):
    """:func:`subbit.model.rowclass.encode` of ``symbols - lo``, compiled: same results and errors
    (every check and every error is the golden function's)."""
    from . import rowclass
    rans.check_params(prob_bits, lanes, ways)
    F = np.array(rowclass._check_tables(tables, prob_bits), dtype=np.int64)
    sym = np.asarray(symbols).ravel()
    k = np.asarray(classes).ravel()

    def golden():
        return rowclass.encode(sym.astype(np.int64) - lo, F, k, row_length, prob_bits, lanes, ways)

    if (sym.size and not np.issubdtype(sym.dtype, np.integer)) or not np.issubdtype(k.dtype, np.integer) \
            or row_length < 1 or k.size * row_length != sym.size or (k.size and (k.min() < 0 or k.max() >= len(F))):
        return golden()                     # raises
    c = np.concatenate([np.zeros((len(F), 1), np.int64), np.cumsum(F, axis=1)], axis=1)
    inv = 1.0 / np.maximum(F, 1)
    xmax = F << (rans.STATE_BITS - prob_bits)
    ks = sym if sym.dtype in KERNEL_DTYPES else sym.astype(np.int64)
    X = np.full(max(min(sym.size, lanes * ways), 1), rans.RANS_L, dtype=np.int64)
    words = np.empty(sym.size, dtype=np.uint16)
    status, pos, start = _kernels().encode_classed(ks, int(lo), F, c, inv, xmax, k.astype(np.int64),
                                                   int(row_length), prob_bits, X, words)
    if status != _kernels().OK:
        return golden()                     # a symbol out of range or of frequency 0: raises
    return X[:min(sym.size, lanes * ways)].astype(np.uint32), words[start:].copy()


def decode_classed(states, words, tables, classes, row_length: int, prob_bits: int, count: int,
                   lanes: int = 1, ways: int = 1, *, layer: str | None = None, base: int = 0) -> np.ndarray:
    """:func:`subbit.model.rowclass.decode`, compiled, returning ``symbol + base``: same results
    and errors."""
    from . import rowclass

    def golden():
        out = rowclass.decode(states, words, tables, classes, row_length, prob_bits, count, lanes, ways,
                              layer=layer)
        return out + base if base else out

    rans.check_params(prob_bits, lanes, ways)
    F = rowclass._check_tables(tables, prob_bits)
    k = np.asarray(classes).ravel()
    if not isinstance(count, _INT) or count < 0 or not np.issubdtype(k.dtype, np.integer) or row_length < 1 \
            or k.size * row_length != count or (k.size and (k.min() < 0 or k.max() >= len(F))):
        return golden()
    count = int(count)
    N = lanes * ways
    nstates = min(count, N)
    X = np.asarray(states).ravel()
    if (X.size != nstates or (X.size and not np.issubdtype(X.dtype, np.integer))
            or (X.size and (int(X.min()) < rans.RANS_L or int(X.max()) >= 1 << rans.STATE_BITS))):
        return golden()
    W = np.asarray(words).ravel()
    nw = W.size
    if W.dtype != np.uint16:
        if nw and (not np.issubdtype(W.dtype, np.integer) or int(W.min()) < 0 or int(W.max()) > 0xFFFF):
            return golden()
        W = W.astype(np.uint16)
    if rowclass.live_weights(F, k, row_length) > (nw + nstates) * 23 << prob_bits:
        return golden()                     # adversarial count (raises)
    T = np.stack([_decode_table(f, prob_bits) for f in F])
    try:
        out = np.empty(count, dtype=np.int64)
    except (MemoryError, ValueError):
        return golden()
    X = X.astype(np.int64)
    kk = _kernels()
    status, pos, p = kk.decode_classed(X, W, T, k.astype(np.int64), int(row_length), prob_bits, count,
                                       int(base), out)
    if status == kk.OVERRUN:
        raise DecodeError(f"payload overrun: symbol {pos} needs word {p}, "
                          f"but the payload has {nw} words", layer=layer, word=nw)
    if p != nw:
        raise DecodeError(f"payload has {nw} words but decoding read {p}", layer=layer, word=p)
    bad = np.flatnonzero(X != rans.RANS_L)
    if bad.size:
        j = int(bad[0])
        raise DecodeError(f"final state of state {j} (lane {j % lanes}, way {j // lanes}) "
                          f"is {int(X[j]):#x}, expected {rans.RANS_L:#x}: corrupted payload",
                          layer=layer, word=nw)
    return out


def _decode_table(f, M):
    """``rans.decode_table`` packed for the kernel: ``f | (slot - c) << 16 | symbol << 32`` for
    every slot (``f, slot - c < 2**15``: a table with several symbols)."""
    fa = np.array(f, dtype=np.int64)
    sym = np.repeat(np.arange(len(f), dtype=np.int64), fa)
    c = np.concatenate([[0], np.cumsum(fa)])[:-1]
    return fa[sym] | (np.arange(1 << M, dtype=np.int64) - c[sym]) << 16 | sym << 32
