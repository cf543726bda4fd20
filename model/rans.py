"""rANS golden model: the bit-exact specification of the subbit decoder.

READ ME FIRST
=============
This module *is* the spec the hardware decoder (`subbit.hw`) is verified
against. It is integer-only (Python ints, numpy integer arrays) and bit-exact.

Essentials
----------
* **Coder.** Range-variant ANS ("rANS", Duda 2013; word-oriented as in
  ryg_rans `rans_word.h`). A symbol ``s`` has frequency ``f[s]`` and cumulative
  frequency ``c[s] = f[0] + ... + f[s-1]``; frequencies sum to ``2**M``
  (probability precision ``M``, 8..15 bits).
* **State.** 32-bit unsigned state ``x`` kept in ``[L, 2**32)`` with
  ``L = 2**16`` between symbols.
* **Decode step** (paper notation ``s, x = D(x)``)::

      slot = x mod 2**M                  # which symbol: c[s] <= slot < c[s]+f[s]
      x    = f[s] * (x >> M) + slot - c[s]
      if x < L:  x = (x << 16) | next_word()      # renormalise, one word

* **Encode step** (``x = C(s, x)``, run in *reverse* symbol order)::

      if x >= f[s] << (32 - M):  emit(x & 0xFFFF);  x >>= 16
      x = ((x // f[s]) << M) + (x % f[s]) + c[s]

* **At most one word per symbol** (why ``L = 2**16`` with 16-bit words).
  Before a decode step ``x >= L = 2**16``, so ``x >> M >= 2**(16-M) >= 2``
  for ``M <= 15``; with ``f[s] >= 1`` the decoded state is ``x >= 2``. One
  word gives ``(x << 16) | w >= 2**17 > L``, so a second word is never
  needed. Conversely the encoder emits at most one word: after one shift
  ``x < 2**16 <= f[s] << (32-M)`` because ``f[s] >= 1`` and ``M <= 16``.
  ``L`` is a multiple of ``2**M`` (``M <= 16``), which makes the state
  interval ``[L, 2**32)`` exactly invertible ("b-uniqueness"), so
  ``decode(encode(s)) == s`` with no special cases. A single-symbol
  alphabet (``f[0] = 2**M``) is the identity on the state and emits nothing.
* **Interleaving.** ``N = lanes * ways`` independent states. Symbol ``i`` of a
  layer is coded by state ``j = i mod N``. Hardware lane ``k`` decodes the
  symbols with ``i mod lanes == k``; within a lane, ``ways`` states take turns
  (``way = (i // lanes) mod ways``), so that a ``ways``-deep pipelined datapath
  produces one symbol per clock. ``j = way * lanes + lane``.
* **Word order.** All states share one stream of 16-bit words. The decoder
  reads words in the order it needs them: symbol by symbol in increasing
  ``i`` (hence, within a hardware beat, lanes in increasing order). The
  encoder runs over ``i = n-1 .. 0`` and emits words onto a stack; the stream
  is that stack reversed (ryg_rans interleaving).
* **Initial/final states.** The encoder starts every state at ``L``. Its final
  states are the decoder's initial states; only the ``min(n, N)`` states that
  code at least one symbol are stored (state ``j`` first codes symbol ``j``).
  After decoding, every used state must be back at exactly ``L`` and every
  payload word must have been read: this *final-state check* detects
  corrupted payloads.

Frequency normalisation (:func:`normalize_freqs`) is part of the format: it is
deterministic and integer-only, so every implementation derives the same
table from the same counts.

Fast path
---------
:func:`encode` and :func:`decode` here are always this golden model (pure
Python, ~4 M symbols/s). `subbit.model.fast` holds their compiled (numba)
twins, bit-exact with the same errors, which `subbit.model.stream` (and so
every command) uses by default; ``SUBBIT_GOLDEN=1`` in the environment selects
this golden model everywhere instead.
"""

from __future__ import annotations

import heapq

import numpy as np

from .errors import DecodeError, SubbitError

__all__ = [
    "STATE_BITS", "WORD_BITS", "RANS_L", "PROB_BITS_RANGE", "LANES_ALLOWED",
    "MAX_SYMBOLS", "check_params", "normalize_freqs", "cumulative",
    "encode", "decode", "decode_table",
]

STATE_BITS = 32           #: state width: x < 2**32
WORD_BITS = 16            #: renormalisation word width
RANS_L = 1 << 16          #: lower state bound L; see "At most one word per symbol"
PROB_BITS_RANGE = range(8, 16)  #: allowed M: M <= 15 keeps f[s] <= 2**15 in one word
LANES_ALLOWED = (1, 2, 4, 8)
MAX_WAYS = 255            #: ways is stored in 8 bits of the stream header
MAX_SYMBOLS = 255         #: alphabet of a 2**8 - 1 level quantizer

_WORD_MASK = (1 << WORD_BITS) - 1


def check_params(prob_bits: int, lanes: int, ways: int) -> None:
    """Validate coder parameters, raising :class:`SubbitError` quoting the bad value."""
    if prob_bits not in PROB_BITS_RANGE:
        raise SubbitError(f"probability bits M must be in 8..15, not {prob_bits!r}")
    if lanes not in LANES_ALLOWED:
        raise SubbitError(f"lanes must be one of {LANES_ALLOWED}, not {lanes!r}")
    if not (isinstance(ways, int) and 1 <= ways <= MAX_WAYS):
        raise SubbitError(f"ways must be an integer in 1..{MAX_WAYS}, not {ways!r}")


def normalize_freqs(counts, prob_bits: int) -> np.ndarray:
    """Scale symbol counts to frequencies summing to exactly ``2**prob_bits``.

    Deterministic and integer-only (part of the format). Every symbol with a
    non-zero count gets ``f >= 1``; symbols with count 0 get ``f = 0``.

    Algorithm: start from ``f = max(1, floor(count * 2**M / total))``, then
    move single units greedily by their first-order effect on the code length
    ``sum count * log2(total_M / f)``: adding a unit to ``s`` gains about
    ``count[s] / (f[s] + 1/2)``, removing one costs about
    ``count[s] / (f[s] - 1/2)``. Both are compared exactly by cross
    multiplication; ties go to the lower symbol index. The result is within
    a tiny fraction of the minimal KL divergence for any table size
    (see ``tests/test_rans.py``).

    Parameters
    ----------
    counts : array of non-negative ints, length 1..255
    prob_bits : int, M in 8..15

    Raises
    ------
    SubbitError
        For an empty/oversized alphabet, negative counts or all-zero counts.
    """
    counts = [int(c) for c in np.asarray(counts).ravel()]
    if prob_bits not in PROB_BITS_RANGE:
        raise SubbitError(f"probability bits M must be in 8..15, not {prob_bits!r}")
    if not 1 <= len(counts) <= MAX_SYMBOLS:
        raise SubbitError(f"alphabet size must be in 1..{MAX_SYMBOLS}, not {len(counts)}")
    if min(counts) < 0:
        raise SubbitError(f"symbol counts must be >= 0, got {min(counts)}")
    total = sum(counts)
    if total == 0:
        raise SubbitError("cannot normalise an all-zero count vector")
    target = 1 << prob_bits
    used = [s for s, c in enumerate(counts) if c]     # <= 255 < 2**8 <= target: all fit
    f = [0] * len(counts)
    for s in used:
        f[s] = max(1, counts[s] * target // total)
    excess = sum(f) - target
    if excess < 0:
        # Add units where count/(f+1/2) is largest (exact cross-multiplied comparison).
        heap = [_Gain(counts[s], 2 * f[s] + 1, s) for s in used]
        heapq.heapify(heap)
        for _ in range(-excess):
            g = heapq.heappop(heap)
            f[g.s] += 1
            heapq.heappush(heap, _Gain(counts[g.s], 2 * f[g.s] + 1, g.s))
    elif excess > 0:
        heap = [_Cost(counts[s], 2 * f[s] - 1, s) for s in used if f[s] > 1]
        heapq.heapify(heap)
        for _ in range(excess):
            g = heapq.heappop(heap)
            f[g.s] -= 1
            if f[g.s] > 1:
                heapq.heappush(heap, _Cost(counts[g.s], 2 * f[g.s] - 1, g.s))
    assert sum(f) == target
    return np.array(f, dtype=np.int64)


class _Gain:
    """Heap item ordered by decreasing ``num/den`` then increasing symbol."""
    __slots__ = ("num", "den", "s")

    def __init__(self, num, den, s):
        self.num, self.den, self.s = num, den, s

    def __lt__(self, other):
        a, b = self.num * other.den, other.num * self.den
        return a > b or (a == b and self.s < other.s)


class _Cost(_Gain):
    """Heap item ordered by increasing ``num/den`` then increasing symbol."""
    __slots__ = ()

    def __lt__(self, other):
        a, b = self.num * other.den, other.num * self.den
        return a < b or (a == b and self.s < other.s)


def cumulative(freqs) -> np.ndarray:
    """``c[s] = f[0] + ... + f[s-1]`` (length ``len(freqs) + 1``, last = total)."""
    f = np.asarray(freqs, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(f)])


def _check_table(freqs, prob_bits: int) -> list[int]:
    f = [int(v) for v in np.asarray(freqs).ravel()]
    if not 1 <= len(f) <= MAX_SYMBOLS:
        raise SubbitError(f"alphabet size must be in 1..{MAX_SYMBOLS}, not {len(f)}")
    if min(f) < 0 or sum(f) != 1 << prob_bits:
        raise SubbitError(f"frequency table sums to {sum(f)}, expected 2**{prob_bits} = {1 << prob_bits}")
    return f


def encode(symbols, freqs, prob_bits: int, lanes: int = 1, ways: int = 1):
    """Encode ``symbols`` (ints in ``[0, len(freqs))``) with interleaved rANS.

    Returns
    -------
    states : np.ndarray of uint32, length ``min(n, lanes*ways)``
        Decoder initial states, state ``j`` first codes symbol ``j``.
    words : np.ndarray of uint16
        Payload words in decoder read order.

    Raises
    ------
    SubbitError
        Bad parameters, a bad table, or a symbol with frequency 0.
    """
    check_params(prob_bits, lanes, ways)
    f = _check_table(freqs, prob_bits)
    sym = np.asarray(symbols).ravel()
    n = sym.size
    if n and not np.issubdtype(sym.dtype, np.integer):
        raise SubbitError(f"symbols must be integers, not {sym.dtype}")
    if n and (sym.min() < 0 or sym.max() >= len(f)):
        raise SubbitError(f"symbol out of range 0..{len(f) - 1}: {int(sym.min())}..{int(sym.max())}")
    c = [int(v) for v in cumulative(f)]
    nstates = min(n, lanes * ways)
    if n and min(f[s] for s in np.unique(sym).tolist()) == 0:
        bad = next(s for s in np.unique(sym).tolist() if f[s] == 0)
        raise SubbitError(f"symbol {bad} occurs but has frequency 0")
    M = prob_bits
    shift = STATE_BITS - M
    xmax = [fs << shift for fs in f]         # x >= xmax[s] -> emit one word first
    N = lanes * ways
    X = [RANS_L] * max(nstates, 1)
    out = []
    emit = out.append
    syms = sym.tolist()
    for i in range(n - 1, -1, -1):
        s = syms[i]
        j = i % N
        x = X[j]
        if x >= xmax[s]:
            emit(x & _WORD_MASK)
            x >>= WORD_BITS
        fs = f[s]
        X[j] = ((x // fs) << M) + (x % fs) + c[s]
    out.reverse()
    return np.array(X[:nstates], dtype=np.uint32), np.array(out, dtype=np.uint16)


def decode_table(freqs, prob_bits: int):
    """Per-slot decode table ``(symbol, f, slot - c)`` for every slot in ``[0, 2**M)``.

    A speed-up only (the comparator form ``c[s] <= slot < c[s+1]`` is the
    definition); hardware may use either (see `subbit.hw`).
    """
    f = _check_table(freqs, prob_bits)
    sym = np.repeat(np.arange(len(f)), f)
    c = cumulative(f)[:-1]
    slot = np.arange(1 << prob_bits)
    return sym, np.asarray(f)[sym], slot - c[sym]


def decode(states, words, freqs, prob_bits: int, count: int, lanes: int = 1, ways: int = 1,
           *, layer: str | None = None) -> np.ndarray:
    """Decode ``count`` symbols; inverse of :func:`encode`.

    Performs the final-state check: every used state must end at ``L`` and
    every word must have been consumed.

    Raises
    ------
    DecodeError
        Wrong number of states, payload overrun (a word was needed past the
        end), unread words, or a final state other than ``L``. The message
        names ``layer`` if given; ``DecodeError.word`` is the payload word index
        where the error was found.
    SubbitError
        Bad parameters or table.
    """
    check_params(prob_bits, lanes, ways)
    N = lanes * ways
    nstates = min(count, N)
    X = [int(v) for v in np.asarray(states).ravel()]
    if len(X) != nstates:
        raise DecodeError(f"expected {nstates} initial states, got {len(X)}", layer=layer, word=0)
    for j, x in enumerate(X):
        if not RANS_L <= x < 1 << STATE_BITS:
            raise DecodeError(f"initial state {j} = {x:#x} outside [2**16, 2**32)", layer=layer, word=0)
    S, F, B = (a.tolist() for a in decode_table(freqs, prob_bits))
    W = np.asarray(words).ravel().tolist()
    nw = len(W)
    M = prob_bits
    mask = (1 << M) - 1
    L = RANS_L
    if max(F) == 1 << M:
        # One symbol has probability 1: D(x) = x, no word is ever read. Same verdicts as the
        # loop below, without count iterations (a declared count can be 2**32 - 1).
        if nw:
            raise DecodeError(f"payload has {nw} words but decoding read 0", layer=layer, word=0)
        for j, x in enumerate(X):
            if x != L:
                raise DecodeError(f"final state of state {j} (lane {j % lanes}, way {j // lanes}) "
                                  f"is {x:#x}, expected {L:#x}: corrupted payload", layer=layer, word=0)
        return _alloc(count, layer, fill=S[0])
    # Otherwise f[s] < 2**M for every s, and a decode step lowers the state by at least
    # x >> M >= x / 2**(M+1) (x - D(x) = (x >> M) * (2**M - f[s]) + c[s]): from below 2**32
    # to below L takes fewer than 2**(M+1) * ln(2**16) < 23 * 2**M steps. Each state
    # starts once and restarts once per word, so a longer layer overruns its payload;
    # say so before allocating (an adversarial count field is up to 2**32 - 1).
    if count > (nw + nstates) * 23 << M:
        raise DecodeError(f"payload overrun: {count} symbols cannot be coded by {nstates} states "
                          f"and {nw} words", layer=layer, word=nw)
    out = _alloc(count, layer)
    p = 0
    # Hot loops: one round of N symbols at a time keeps the state index simple;
    # a single state gets a flat loop (the same arithmetic, ~2x faster in CPython).
    base = j = 0
    try:
        if N == 1:
            x = X[0] if X else L
            for base in range(count):
                slot = x & mask
                out[base] = S[slot]
                x = F[slot] * (x >> M) + B[slot]
                if x < L:
                    x = (x << 16) | W[p]
                    p += 1
            X[:nstates] = [x][:nstates]
        else:
            for base in range(0, count, N):
                for j in range(min(N, count - base)):
                    x = X[j]
                    slot = x & mask
                    out[base + j] = S[slot]
                    x = F[slot] * (x >> M) + B[slot]
                    if x < L:
                        x = (x << 16) | W[p]
                        p += 1
                    X[j] = x
    except IndexError:
        raise DecodeError(f"payload overrun: symbol {base + j} needs word {p}, "
                          f"but the payload has {nw} words", layer=layer, word=nw) from None
    check_end(X, p, nw, nstates, lanes, layer)
    return np.array(out, dtype=np.int64)


def check_end(X, p: int, nw: int, nstates: int, lanes: int, layer=None) -> None:
    """The end-of-layer checks of a decode: every payload word read (``p == nw``) and every
    state back at ``L`` (the encoder's start), else a `DecodeError` naming the word."""
    if p != nw:
        raise DecodeError(f"payload has {nw} words but decoding read {p}", layer=layer, word=p)
    for j in range(nstates):
        if X[j] != RANS_L:
            raise DecodeError(f"final state of state {j} (lane {j % lanes}, way {j // lanes}) "
                              f"is {X[j]:#x}, expected {RANS_L:#x}: corrupted payload", layer=layer, word=nw)


def _alloc(count, layer, fill=None):
    try:
        return [0] * count if fill is None else np.full(count, fill, dtype=np.int64)
    except (MemoryError, OverflowError, ValueError):     # numpy: "array is too big"
        raise SubbitError((f"layer {layer}: " if layer is not None else "")
                          + f"{count} weights do not fit in memory") from None
