"""numba kernels of `subbit.model.fast` (imported on first use: importing numba costs ~0.2 s).

Integer arithmetic in int64 throughout (states < 2**32, so nothing overflows); numba mixes
signed and unsigned 64-bit operands into float64, hence no unsigned types in the loops.
Each kernel is compiled once per machine and argument types (``cache=True``: numba keeps the
machine code next to this file, in ``__pycache__``, or in its user cache directory).
"""

from __future__ import annotations

import numpy as np
from numba import njit

L = 1 << 16             # rans.RANS_L
WORD_MASK = 0xFFFF

# status codes of the kernels (the Python side raises the golden model's errors)
OK = 0
OVERRUN = 1             # decode: symbol `pos` needs a word past the end of the payload
BAD_SYMBOL = 2          # encode: a symbol out of range or with frequency 0 (at index `pos`)


@njit(cache=True, nogil=True)
def encode(sym, lo, f, c, inv, xmax, M, X, words):
    """Encode ``sym - lo`` (any integer dtype) backwards with the ``X.size`` states ``X`` (all
    ``L``), writing the payload at the end of ``words`` (``sym.size`` long: at most one word per
    symbol), so that it is in decoder order with no reversal. ``inv = 1 / f`` and ``xmax =
    f << (32 - M)`` per symbol. Returns ``(status, pos, start)``: the payload is
    ``words[start:]``; ``BAD_SYMBOL`` at symbol ``pos`` (out of range or of frequency 0)."""
    n = sym.size
    N = X.size
    nsym = f.size
    p = n
    if n == 0:
        return OK, 0, p
    j = (n - 1) % N
    for i in range(n - 1, -1, -1):
        s = np.int64(sym[i]) - lo
        if s < 0 or s >= nsym:
            return BAD_SYMBOL, i, p
        fs = f[s]
        if fs == 0:
            return BAD_SYMBOL, i, p
        x = X[j]
        # branch-free renormalisation: the low word is always stored at words[p - 1] (p > i:
        # at most one word per symbol), and kept only when it is emitted
        e = np.int64(x >= xmax[s])
        words[p - 1] = x & WORD_MASK
        p -= e
        x >>= e << 4
        # x // fs as a float64 product with 1 / fs, corrected once: exact (see fast.py)
        q = np.int64(np.float64(x) * inv[s])
        r = x - q * fs
        if r >= fs:
            q += 1
            r -= fs
        X[j] = (q << M) + r + c[s]
        j = j - 1 if j else N - 1
    return OK, 0, p


@njit(cache=True, nogil=True)
def histogram(q, lo, nsym):
    """Counts of ``q - lo`` in ``[0, nsym)`` (the caller has checked the range). Four partial
    histograms, so that runs of one value do not wait on each other's increments."""
    h = np.zeros((4, nsym), np.int64)
    n = q.size
    m = n - n % 4
    for i in range(0, m, 4):
        h[0, np.int64(q[i]) - lo] += 1
        h[1, np.int64(q[i + 1]) - lo] += 1
        h[2, np.int64(q[i + 2]) - lo] += 1
        h[3, np.int64(q[i + 3]) - lo] += 1
    for i in range(m, n):
        h[0, np.int64(q[i]) - lo] += 1
    return h[0] + h[1] + h[2] + h[3]


@njit(cache=True, nogil=True)
def decode(X, W, T, M, count, base, out):
    """Decode ``count`` symbols into ``out`` (``symbol + base``) from the states ``X`` (int64,
    updated in place) and the words ``W`` (uint16); ``T[slot]`` packs ``f | (slot - c) << 16 |
    symbol << 32``. Returns ``(status, pos, words_read)``: ``OVERRUN`` with the index of the
    symbol that needed a word past the end, else ``OK``.

    Branch-free renormalisation (the next word is always loaded, and taken or not): a state
    needs a word at irregular intervals, which a predicted branch gets wrong often."""
    N = X.size
    nw = W.size
    last = max(nw - 1, 0)
    mask = (1 << M) - 1
    p = 0
    j = 0
    for i in range(count):
        x = X[j]
        t = T[x & mask]
        out[i] = (t >> 32) + base
        x = (t & 0xFFFF) * (x >> M) + ((t >> 16) & 0xFFFF)
        need = x < L
        w = W[min(p, last)] if nw else 0
        if need:
            x = (x << 16) | w
        p += need
        if p > nw:
            return OVERRUN, i, nw
        X[j] = x
        j += 1
        if j == N:
            j = 0
    return OK, 0, p


@njit(cache=True, nogil=True)
def encode_classed(sym, lo, f, c, inv, xmax, cls, row_length, M, X, words):
    """:func:`encode` with table ``cls[i // row_length]`` for symbol ``i``: ``f``, ``c``, ``inv``,
    ``xmax`` are ``(T, nsym)`` arrays (``c``: ``(T, nsym + 1)``). Same returns."""
    n = sym.size
    N = X.size
    nsym = f.shape[1]
    p = n
    if n == 0:
        return OK, 0, p
    j = (n - 1) % N
    row = (n - 1) // row_length
    col = (n - 1) - row * row_length
    for i in range(n - 1, -1, -1):
        t = cls[row]
        s = np.int64(sym[i]) - lo
        if s < 0 or s >= nsym:
            return BAD_SYMBOL, i, p
        fs = f[t, s]
        if fs == 0:
            return BAD_SYMBOL, i, p
        x = X[j]
        e = np.int64(x >= xmax[t, s])
        words[p - 1] = x & WORD_MASK
        p -= e
        x >>= e << 4
        q = np.int64(np.float64(x) * inv[t, s])
        r = x - q * fs
        if r >= fs:
            q += 1
            r -= fs
        X[j] = (q << M) + r + c[t, s]
        j = j - 1 if j else N - 1
        if col:
            col -= 1
        else:
            col = row_length - 1
            row -= 1
    return OK, 0, p


@njit(cache=True, nogil=True)
def decode_classed(X, W, T, cls, row_length, M, count, base, out):
    """:func:`decode` with table ``T[cls[i // row_length]]`` for symbol ``i`` (``T``: ``(tables,
    2**M)`` packed as in :func:`decode`; ``f = 2**M <= 2**15`` of a one-symbol table fits too).
    Same returns."""
    N = X.size
    nw = W.size
    last = max(nw - 1, 0)
    mask = (1 << M) - 1
    p = 0
    j = 0
    row = 0
    col = 0
    for i in range(count):
        tab = T[cls[row]]
        x = X[j]
        t = tab[x & mask]
        out[i] = (t >> 32) + base
        x = (t & 0xFFFF) * (x >> M) + ((t >> 16) & 0xFFFF)
        need = x < L
        w = W[min(p, last)] if nw else 0
        if need:
            x = (x << 16) | w
        p += need
        if p > nw:
            return OVERRUN, i, nw
        X[j] = x
        j += 1
        if j == N:
            j = 0
        col += 1
        if col == row_length:
            col = 0
            row += 1
    return OK, 0, p
