"""Row-classed rANS (word stream version 3): T frequency tables per layer, one per class of rows.

READ ME FIRST
=============
This module is the bit-exact specification of a *classed* layer, the only thing word stream
version 3 adds to version 2 (`subbit.model.stream`). Everything about the coder itself -- state
bounds, the encode and decode steps, word order, the initial and final states, interleaving -- is
`subbit.model.rans`, unchanged; only the table changes from weight to weight. Integer-only.

Essentials
----------
* **Rows.** A layer of ``count`` weights with ``row_length`` weights per row is a matrix of
  ``rows = count / row_length`` rows (``row_length`` must divide ``count``); row ``r`` holds
  weights ``r * row_length .. (r + 1) * row_length - 1``. Writers use the tensor's axis 0 (the
  output channels) as rows, the other axes flattened in C order (a part of a partitioned tensor:
  its sub-matrix's rows).
* **Tables and classes.** The layer has ``T`` frequency tables (``1 <= T <= 8``), each over the
  layer's one alphabet (``nsym`` symbols, ``code = symbol + base``) and each summing to ``2**M``.
  Row ``r`` has class ``k[r]`` in ``0 .. T-1``. Weight ``i`` is coded with table
  ``t(i) = k[i // row_length]``: ``x = C_t(i)(s, x)`` and ``s, x = D_t(i)(x)`` in the notation of
  `subbit.model.rans`.
* **Interleaving: unchanged.** Weight ``i`` is coded by state ``j = i mod N`` (``N = lanes *
  ways``), whatever its row: a row boundary inside a beat (or inside a round of ``N`` weights)
  changes the table of the weights after it, never the state order or the word order. So a beat
  of ``K`` lanes may mix rows (and tables) freely; with ``row_length < K`` it spans several rows.
* **Knowing the class ahead.** The class of every weight is a function of its index and of the
  layer header alone: the class index (``k[0] .. k[rows-1]``) is stored in the layer header,
  before the payload, and ``row_length`` is a header field. A decoder therefore has the whole
  class index before the first payload word and can compute the table of every weight any number
  of clocks ahead. At ``K`` lanes, lane ``l`` decodes weights ``i = b*K + l`` (beat ``b``); it keeps
  its own ``(row, col)`` with ``col < row_length`` and steps it by ``K`` per beat without a
  divider: ``q, r = divmod(K, row_length)`` once per layer, then ``col += r``, ``row += q``, and
  if ``col >= row_length``: ``col -= row_length``, ``row += 1``. The table select of a beat is
  ``k[row]`` per lane, read from a class memory filled while the header streams in; so a table
  switch at a row boundary costs no idle clock.
* **Class index coding** (the smaller of the two, ties to ``FIXED``; a header field says which):

  - ``FIXED`` (0): ``b = ceil(log2 T)`` bits per row, row 0 in the least significant bits of the
    first word, packed into 16-bit words (a class may straddle two words), the unused high bits
    of the last word zero. ``ceil(rows * b / 16)`` words. A value ``>= T`` (possible when ``T``
    is not a power of two) is an error.
  - ``RANS`` (1): the classes as symbols of their own rANS stream: ``T`` frequencies summing to
    ``2**M`` (the stream's ``M``, from `rans.normalize_freqs` of the class counts), one state
    (``lanes = ways = 1``) as low word, high word, then its payload words; decoded with the
    final-state check. ``T + 2 + npay`` words. A table giving one class all of ``2**M`` is an
    error (every row in one class: that layer has one table).
* **One-symbol tables.** A table with ``f[s] = 2**M`` (e.g. a class of all-zero rows) codes its
  weights at no cost: ``D(x) = x``, no word is read. Rows of such a class cost only their class
  index.

The encoder's choice of ``T`` and of the classes (:func:`choose`) is not part of the format:
any assignment decodes. `subbit.model.stream` falls back to one table whenever classes do not
make the layer's words fewer.
"""

from __future__ import annotations

import numpy as np

from . import rans
from .errors import DecodeError, SubbitError

__all__ = ["MAX_TABLES", "FIXED", "RANS", "CODINGS", "class_bits", "table_of_weights",
           "encode_class_index", "decode_class_index", "encode", "decode", "choose"]

MAX_TABLES = 8          #: T <= 8: the class of a row fits in 3 bits
FIXED, RANS = 0, 1      #: class index codings (the layer header's ``class_code``)
CODINGS = (FIXED, RANS)


def class_bits(tables: int) -> int:
    """Bits per row of the ``FIXED`` class index: ``ceil(log2 T)`` (0 for one table)."""
    return (int(tables) - 1).bit_length()


def _check_tables(tables, prob_bits: int) -> list[list[int]]:
    t = np.asarray(tables)
    if t.ndim != 2 or not 1 <= t.shape[0] <= MAX_TABLES:
        raise SubbitError(f"tables must be a (T, nsym) array with 1 <= T <= {MAX_TABLES}, not shape {t.shape}")
    return [rans._check_table(row, prob_bits) for row in t]


def table_of_weights(classes, row_length: int, count: int) -> np.ndarray:
    """``t(i) = k[i // row_length]`` for every weight ``i < count`` (int64)."""
    k = np.asarray(classes, dtype=np.int64).ravel()
    if row_length < 1 or k.size * row_length != count:
        raise SubbitError(f"{k.size} rows of {row_length} weights do not make {count} weights")
    return np.repeat(k, row_length)


# -- class index --------------------------------------------------------------------------

def _pack_fixed(classes, tables: int) -> np.ndarray:
    b = class_bits(tables)
    k = np.asarray(classes, dtype=np.int64).ravel()
    bits = ((k[:, None] >> np.arange(b)) & 1).astype(np.uint8).ravel()      # row 0's LSB first
    nw = -(-bits.size // 16)
    bits = np.concatenate([bits, np.zeros(16 * nw - bits.size, dtype=np.uint8)])
    return (bits.reshape(nw, 16).astype(np.uint32) << np.arange(16, dtype=np.uint32)).sum(axis=1).astype(np.uint16)


def encode_class_index(classes, tables: int, prob_bits: int, codings=CODINGS) -> tuple[int, np.ndarray]:
    """``(coding, words)``: the class index of ``classes`` (ints ``< tables``) in the smaller of
    the ``codings`` (``FIXED`` and ``RANS``; ties: ``FIXED``)."""
    k = np.asarray(classes, dtype=np.int64).ravel()
    if not 2 <= tables <= MAX_TABLES or k.size == 0 or k.min() < 0 or k.max() >= tables:
        raise SubbitError(f"a class index needs 2..{MAX_TABLES} tables and classes below T = {tables}")
    fixed = _pack_fixed(k, tables)
    if RANS not in codings:
        return FIXED, fixed
    f = rans.normalize_freqs(np.bincount(k, minlength=tables), prob_bits)
    states, pay = rans.encode(k, f, prob_bits, 1, 1)
    coded = np.concatenate([f, [int(states[0]) & 0xFFFF, int(states[0]) >> 16], pay]).astype(np.uint16)
    return (RANS, coded) if len(coded) < len(fixed) else (FIXED, fixed)


def decode_class_index(words, rows: int, tables: int, coding: int, prob_bits: int) -> np.ndarray:
    """The classes of ``rows`` rows from a class index section (``words``, its length from the
    layer header).

    Raises
    ------
    DecodeError
        ``word`` = the index in ``words`` of the offending word: wrong section length, a class
        ``>= T``, non-zero unused bits, a table not summing to ``2**M``, a corrupted rANS index.
    """
    w = np.asarray(words, dtype=np.int64).ravel()
    if coding == FIXED:
        b = class_bits(tables)
        need = -(-rows * b // 16)
        if w.size != need:
            raise DecodeError(f"class index has {w.size} words, {rows} rows of {b} bits need {need}", word=0)
        bits = ((w[:, None] >> np.arange(16)) & 1).ravel()
        if bits[rows * b:].any():
            raise DecodeError("non-zero unused bits after the last class", word=need - 1)
        k = (bits[:rows * b].reshape(rows, b) << np.arange(b)).sum(axis=1) if b else np.zeros(rows, np.int64)
        bad = np.flatnonzero(k >= tables)
        if bad.size:
            r = int(bad[0])
            raise DecodeError(f"class index out of range: row {r} has class {int(k[r])}, the layer has "
                              f"{tables} tables", word=r * b // 16)
        return k.astype(np.int64)
    if coding != RANS:
        raise DecodeError(f"unknown class index coding {coding} (0 fixed bits, 1 rANS)", word=0)
    if w.size < tables + 2:
        raise DecodeError(f"rANS class index has {w.size} words, its table and state alone need {tables + 2}",
                          word=0)
    f = w[:tables]
    if int(f.sum()) != 1 << prob_bits:
        raise DecodeError(f"class table sums to {int(f.sum())}, expected 2**{prob_bits} = {1 << prob_bits}",
                          word=0)
    if int(f.max()) == 1 << prob_bits:
        raise DecodeError("class table has one class: every row in one class (a layer of one table)", word=0)
    x = int(w[tables]) | int(w[tables + 1]) << 16
    if x < rans.RANS_L:
        raise DecodeError(f"class index state {x:#x} below 2**16", word=tables)
    try:
        return rans.decode([x], w[tables + 2:], f, prob_bits, rows, 1, 1)
    except DecodeError as e:
        raise DecodeError(f"class index: {e.message}", word=tables + 2 + (e.word or 0)) from None


# -- the coder ----------------------------------------------------------------------------

def encode(symbols, tables, classes, row_length: int, prob_bits: int, lanes: int = 1, ways: int = 1):
    """Encode ``symbols`` with table ``k[i // row_length]`` for weight ``i``: `rans.encode` with a
    table per weight. Returns ``(states, words)`` as `rans.encode` does.

    Raises
    ------
    SubbitError
        Bad parameters, tables or classes, a symbol out of range or of frequency 0 in its table.
    """
    rans.check_params(prob_bits, lanes, ways)
    F = _check_tables(tables, prob_bits)
    sym = np.asarray(symbols).ravel()
    n = sym.size
    if n and not np.issubdtype(sym.dtype, np.integer):
        raise SubbitError(f"symbols must be integers, not {sym.dtype}")
    t = table_of_weights(classes, row_length, n)
    if t.size and (t.min() < 0 or t.max() >= len(F)):
        raise SubbitError(f"class out of range 0..{len(F) - 1}: {int(t.min())}..{int(t.max())}")
    nsym = len(F[0])
    if n and (sym.min() < 0 or sym.max() >= nsym):
        raise SubbitError(f"symbol out of range 0..{nsym - 1}: {int(sym.min())}..{int(sym.max())}")
    C = [[int(v) for v in rans.cumulative(f)] for f in F]
    M, shift, N = prob_bits, rans.STATE_BITS - prob_bits, lanes * ways
    X = [rans.RANS_L] * max(min(n, N), 1)
    out = []
    syms, ts = sym.tolist(), t.tolist()
    for i in range(n - 1, -1, -1):
        s, f, c = syms[i], F[ts[i]], C[ts[i]]
        fs = f[s]
        if fs == 0:
            raise SubbitError(f"symbol {s} of weight {i} has frequency 0 in table {ts[i]}")
        j = i % N
        x = X[j]
        if x >= fs << shift:                      # x = C_t(i)(s, x), as in rans.encode
            out.append(x & 0xFFFF)
            x >>= 16
        X[j] = ((x // fs) << M) + (x % fs) + c[s]
    out.reverse()
    return np.array(X[:min(n, N)], dtype=np.uint32), np.array(out, dtype=np.uint16)


def live_weights(tables, classes, row_length: int) -> int:
    """Weights coded by a table of several symbols (a one-symbol table reads no word)."""
    F = np.asarray(tables)
    live = F.max(axis=1) < F.sum(axis=1)
    return int(live[np.asarray(classes, dtype=np.int64)].sum()) * int(row_length)


def decode(states, words, tables, classes, row_length: int, prob_bits: int, count: int, lanes: int = 1,
           ways: int = 1, *, layer: str | None = None) -> np.ndarray:
    """Decode ``count`` symbols; inverse of :func:`encode`, with `rans.decode`'s final-state check
    and errors (``DecodeError.word`` = the payload word index)."""
    rans.check_params(prob_bits, lanes, ways)
    F = _check_tables(tables, prob_bits)
    t = table_of_weights(classes, row_length, count)
    if t.size and (t.min() < 0 or t.max() >= len(F)):
        raise DecodeError(f"class out of range 0..{len(F) - 1}", layer=layer, word=0)
    N = lanes * ways
    nstates = min(count, N)
    X = [int(v) for v in np.asarray(states).ravel()]
    if len(X) != nstates:
        raise DecodeError(f"expected {nstates} initial states, got {len(X)}", layer=layer, word=0)
    for j, x in enumerate(X):
        if not rans.RANS_L <= x < 1 << rans.STATE_BITS:
            raise DecodeError(f"initial state {j} = {x:#x} outside [2**16, 2**32)", layer=layer, word=0)
    W = np.asarray(words).ravel().tolist()
    nw = len(W)
    # the bound of rans.decode, over the weights whose table has several symbols
    if live_weights(F, classes, row_length) > (nw + nstates) * 23 << prob_bits:
        raise DecodeError(f"payload overrun: {count} symbols cannot be coded by {nstates} states "
                          f"and {nw} words", layer=layer, word=nw)
    D = [[a.tolist() for a in rans.decode_table(f, prob_bits)] for f in F]
    M, mask, L = prob_bits, (1 << prob_bits) - 1, rans.RANS_L
    out = [0] * count
    p = 0
    ts = t.tolist()
    for i in range(count):
        S, Fs, B = D[ts[i]]
        j = i % N
        x = X[j]
        slot = x & mask                           # s, x = D_t(i)(x), as in rans.decode
        out[i] = S[slot]
        x = Fs[slot] * (x >> M) + B[slot]
        if x < L:
            if p >= nw:
                raise DecodeError(f"payload overrun: symbol {i} needs word {p}, "
                                  f"but the payload has {nw} words", layer=layer, word=nw)
            x = (x << 16) | W[p]
            p += 1
        X[j] = x
    rans.check_end(X, p, nw, nstates, lanes, layer)
    return np.array(out, dtype=np.int64)


# -- the encoder's choice (not part of the format) ----------------------------------------

def _cost_bits(counts, f, prob_bits):
    """Bits of ``counts`` (..., nsym) coded with table ``f`` (nsym,): a symbol of frequency 0
    is priced as if it had 1/2 (it cannot be coded; the assignment then moves its row)."""
    return counts @ (prob_bits - np.log2(np.maximum(np.asarray(f, dtype=np.float64), 0.5)))


def _fit(counts, cls, T, prob_bits):
    """Tables of the classes ``cls`` (empty classes dropped, relabelled in order)."""
    used = np.flatnonzero(np.bincount(cls, minlength=T))
    relabel = np.full(T, -1)
    relabel[used] = np.arange(used.size)
    cls = relabel[cls]
    C = np.zeros((used.size, counts.shape[1]), dtype=np.int64)
    np.add.at(C, cls, counts)
    return cls, np.stack([rans.normalize_freqs(c, prob_bits) for c in C])


def choose(counts, prob_bits: int, candidates=(2, 4, 8), iters: int = 30, codings=CODINGS):
    """A row -> class assignment for each candidate ``T``, by coded cost; the cheapest (estimated
    payload bits, tables and class index included) as ``(classes, tables, estimated_bits)``.

    ``counts`` is the ``(rows, nsym)`` histogram of the rows. Rows are first split into ``T``
    groups of equal size by the frequency of the layer's most frequent symbol (its zero
    fraction, for weights), then reassigned to the table that codes them in the fewest bits,
    tables refitted, until nothing moves (Lloyd's iteration on the cross-entropy: each step
    lowers the estimate). The estimate prices every weight at ``log2(2**M / f)``: within a few
    words of the real coder (`subbit.model.stream` encodes and compares)."""
    counts = np.asarray(counts, dtype=np.int64)
    rows, nsym = counts.shape
    mode = int(np.argmax(counts.sum(axis=0)))
    frac = counts[:, mode] / np.maximum(counts.sum(axis=1), 1)
    order = np.argsort(frac, kind="stable")
    best = None
    for T in candidates:
        if not 2 <= T <= min(rows, MAX_TABLES):
            continue
        cls = np.empty(rows, dtype=np.int64)
        cls[order] = np.arange(rows) * T // rows
        cls, F = _fit(counts, cls, T, prob_bits)
        for _ in range(iters):
            new = np.argmin(np.stack([_cost_bits(counts, f, prob_bits) for f in F], axis=1), axis=1)
            if np.array_equal(new, cls):
                break
            cls, F = _fit(counts, new, len(F), prob_bits)
        if len(F) < 2:
            continue
        pay = float(sum(_cost_bits(counts[cls == k].sum(axis=0), F[k], prob_bits) for k in range(len(F))))
        _, idx = encode_class_index(cls, len(F), prob_bits, codings)
        est = pay + 16 * (F.size + len(idx))
        if best is None or est < best[2]:
            best = (cls, F, est)
    return best
