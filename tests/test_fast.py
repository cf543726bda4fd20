"""The compiled coder (`subbit.model.fast`) against the golden model (`subbit.model.rans`):
the same states, words and symbols, and the same errors (type, message, word, layer, offset),
on random and extreme tables, every lane count, ways 1..12, counts around lanes*ways, corrupted
payloads and states, and the fault-injection suite; dispatch by SUBBIT_GOLDEN."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subbit.model import fast, faults, rans, stream
from subbit.model.errors import DecodeError, SubbitError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(fn, *args, **kw):
    """What a call gives: ``("ok", result)`` or its SubbitError as (type, message, word, layer, offset)."""
    try:
        return "ok", fn(*args, **kw)
    except SubbitError as e:
        return (type(e), str(e), getattr(e, "word", None), getattr(e, "layer", None), getattr(e, "offset", None))


def assert_same(a, b):
    """Two outcomes are identical: the same error, or equal results of the same dtypes."""
    assert a[0] == b[0], (a, b)
    if a[0] != "ok":
        assert a == b
        return
    x, y = a[1], b[1]
    if isinstance(x, tuple):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            assert u.dtype == v.dtype and np.array_equal(u, v)
    else:
        assert x.dtype == y.dtype and np.array_equal(x, y), (x, y)


def same_layer(a, b):
    return all(np.array_equal(getattr(a, k), getattr(b, k)) and np.asarray(getattr(a, k)).dtype ==
               np.asarray(getattr(b, k)).dtype for k in ("nsym", "base", "count", "freqs", "states", "payload"))


def both_encode(sym, f, M, K, D):
    g = outcome(rans.encode, sym, f, M, K, D)
    assert_same(outcome(fast.encode, sym, f, M, K, D), g)
    return g


def both_decode(*args, **kw):
    g = outcome(rans.decode, *args, **kw)
    assert_same(outcome(fast.decode, *args, **kw), g)
    return g


def table(rng, M, nsym, kind):
    """A frequency table summing to 2**M: from random counts, or at the precision limits
    (every symbol but one at f = 1), or with zero-frequency symbols inside the alphabet."""
    nsym = min(nsym, 1 << M)
    if nsym == 1:
        return np.array([1 << M])
    if kind == "min":
        f = np.ones(nsym, dtype=np.int64)
        f[rng.integers(nsym)] += (1 << M) - nsym
        return f
    counts = rng.integers(0 if kind == "holes" else 1, 1000, nsym) ** rng.integers(1, 4)
    if not counts.any():
        counts[0] = 1
    return rans.normalize_freqs(counts, M)


def symbols(rng, f, n):
    return rng.choice(len(f), size=n, p=np.asarray(f) / np.sum(f)).astype(np.int64)


@st.composite
def layers(draw, min_ways=1, max_ways=12):
    """A configuration, a table (random, at the precision limits, with holes, one symbol, 255
    symbols) and symbols; counts around lanes * ways."""
    M = draw(st.sampled_from([8, 8, 15, 15, 9, 10, 11, 12, 13, 14]))
    K = draw(st.sampled_from(rans.LANES_ALLOWED))
    D = draw(st.integers(min_ways, max_ways))
    N = K * D
    nsym = draw(st.one_of(st.just(1), st.just(255), st.integers(2, 16), st.integers(2, 255)))
    kind = draw(st.sampled_from(["counts", "min", "holes"]))
    n = draw(st.one_of(st.sampled_from([0, 1, N - 1, N, N + 1, 2 * N - 1, 3 * N + 2]), st.integers(0, 3000)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = table(rng, M, nsym, kind)
    return M, K, D, f, symbols(rng, f, n)


@SETTINGS
@given(layers())
def test_fast_equals_golden(layer):
    """Encode and decode: fast == golden (ways 1..12: the software-only streams and the hardware's)."""
    M, K, D, f, sym = layer
    g = both_encode(sym, f, M, K, D)
    assert g[0] == "ok"
    states, words = g[1]
    assert_same(both_decode(states, words, f, M, len(sym), K, D), ("ok", sym))


@SETTINGS
@given(layers(min_ways=6, max_ways=255), st.data())
def test_corrupted_layers_give_the_same_errors(layer, data):
    """A payload word changed, a word dropped or added, a state changed (in or out of range),
    fewer or more states, a count off by a little or maximal: the same symbols or the same
    DecodeError (message and word index) from both."""
    M, K, D, f, sym = layer
    states, words = rans.encode(sym, f, M, K, D)
    states, words = states.astype(np.int64), words.copy()
    count = len(sym)
    what = data.draw(st.sampled_from(["word", "drop", "add", "state", "nstates", "count", "maxcount"]))
    if what == "word" and len(words):
        words[data.draw(st.integers(0, len(words) - 1))] ^= data.draw(st.integers(1, 0xFFFF))
    elif what == "drop" and len(words):
        words = np.delete(words, data.draw(st.integers(0, len(words) - 1)))
    elif what == "add":
        words = np.insert(words, data.draw(st.integers(0, len(words))), data.draw(st.integers(0, 0xFFFF)))
    elif what == "state" and len(states):
        j = data.draw(st.integers(0, len(states) - 1))
        states[j] = data.draw(st.sampled_from([0, rans.RANS_L - 1, rans.RANS_L, rans.RANS_L + 1, 1 << 31,
                                               (1 << 32) - 1, 1 << 32, int(states[j]) ^ 1]))
    elif what == "nstates":
        states = np.append(states, rans.RANS_L) if data.draw(st.booleans()) else states[:-1]
    elif what == "count":
        count = max(0, count + data.draw(st.sampled_from([-2, -1, 1, 2, 1000])))
    elif what == "maxcount":
        count = (1 << 32) - 1
    both_decode(states, words, f, M, count, K, D, layer="fc")
    both_decode(states.astype(np.uint32) if what != "state" else states, words, f, M, count, K, D)


@pytest.mark.parametrize("M", [8, 15])
@pytest.mark.parametrize("K", rans.LANES_ALLOWED)
def test_precision_limits_every_lane_count(M, K):
    """The most skewed tables (a symbol at 2**-M; 255 symbols, 254 of them at 2**-M) at the
    smallest and largest M, counts around lanes*ways."""
    rng = np.random.default_rng(M * K)
    for D in (1, 5, 6, 7):
        N = K * D
        for f in (np.array([(1 << M) - 1, 1]), table(rng, M, 255, "min"), table(rng, M, 255, "counts")):
            for n in (0, 1, N - 1, N, N + 1, 5000):
                sym = symbols(rng, f, n)
                if n > 3:                         # the rarest symbols too, at both ends
                    sym[[0, n // 2, -1]] = np.argmin(f)
                states, words = both_encode(sym, f, M, K, D)[1]
                assert_same(both_decode(states, words, f, M, n, K, D), ("ok", sym))


def test_one_symbol_tables_and_adversarial_counts():
    """The golden model's constant-time cases (a one-symbol table of any count, a count no payload
    can hold) and its memory error: the same verdicts."""
    for K, D in ((1, 1), (1, 6), (8, 6)):
        sym = np.zeros(100, dtype=np.int64)
        states, words = both_encode(sym, [4096], 12, K, D)[1]
        both_decode(states, words, [4096], 12, 100, K, D)
        both_decode(states, words, [4096], 12, (1 << 32) - 1, K, D)
        both_decode([rans.RANS_L + 1] * len(states), words, [4096], 12, (1 << 32) - 1, K, D)
        both_decode(states, [7], [4096], 12, 100, K, D, layer="x")
    both_decode([rans.RANS_L], [], [0, 4096], 12, 1 << 62, 1, 1)                  # memory
    both_decode([rans.RANS_L] * 6, [1, 2, 3], [4095, 1], 12, (1 << 32) - 1, 1, 6)   # count bound
    both_decode([rans.RANS_L], [], [255, 1], 8, 23 << 8, 1, 1)                      # at the bound: overrun
    both_decode([rans.RANS_L], [], [255, 1], 8, (23 << 8) + 1, 1, 1)                # past it
    f = [(1 << 15) - 1, 1]                          # the bound is never too tight
    sym = np.zeros(200_000, dtype=np.int64)
    sym[-1] = 1
    states, words = both_encode(sym, f, 15, 1, 1)[1]
    assert_same(both_decode(states, words, f, 15, len(sym), 1, 1), ("ok", sym))


def test_bad_arguments_give_the_same_errors():
    sym = np.array([0, 1, 2, 1, 0])
    f = [2000, 2000, 96]
    for bad in [(sym, f, 7, 1, 6), (sym, f, 12, 3, 6), (sym, f, 12, 1, 0), (sym, [1, 2], 12, 1, 6),
                (sym, [4096] + [0] * 255, 12, 1, 6), (sym.astype(float), f, 12, 1, 6),
                (sym.astype(bool), f, 12, 1, 6), (sym - 1, f, 12, 1, 6), (sym + 1, f, 12, 1, 6),
                (sym, [2000, 0, 2096], 12, 1, 6), (sym.astype(np.uint64) + np.uint64(1 << 63), f, 12, 1, 6),
                (sym.astype(np.uint8), f, 12, 1, 6), (sym.tolist(), f, 12, 1, 6), (np.array([], dtype=float), f, 12, 1, 6)]:
        both_encode(*bad)
    states, words = rans.encode(sym, f, 12, 1, 6)
    for args in [(states, words, f, 7, 5, 1, 6), (states, words, f, 12, 5, 3, 6), (states, words, [1, 2], 12, 5, 1, 6),
                 (states.astype(float), words, f, 12, 5, 1, 6), (states.tolist(), words.tolist(), f, 12, 5, 1, 6),
                 (states, words.astype(np.int64) + 0x10000, f, 12, 5, 1, 6), (states, words.astype(float), f, 12, 5, 1, 6),
                 (states, -words.astype(np.int64), f, 12, 5, 1, 6), (states, words, f, 12, -1, 1, 6),
                 (states, words, f, 12, np.uint32(5), 1, 6), ([], [], f, 12, 0, 1, 6), ([], [1], f, 12, 0, 1, 6)]:
        both_decode(*args, layer="L")


def test_exact_division_by_reciprocal():
    """The encoder's ``x // f`` as ``trunc(x * (1/f))`` corrected once, for every f of a table
    (1..2**15) and the x where it could fail: multiples of f (and their neighbours) up to 2**32."""
    f = np.arange(1, 1 << 15, dtype=np.int64)
    inv = 1.0 / f.astype(np.float64)
    for k in [1, 2, 3, 1000, (1 << 16) + 1, None]:
        kk = ((1 << 32) - 1) // f if k is None else np.minimum(k, ((1 << 32) - 1) // f)
        for d in (-1, 0, 1):
            x = np.clip(kk * f + d, 0, (1 << 32) - 1)
            q = (x.astype(np.float64) * inv).astype(np.int64)
            r = x - q * f
            q += r >= f
            np.testing.assert_array_equal(q, x // f)


# --- streams: encode_codes / decode_codes and the fault suite -------------------------------------------

FAULT_CONFIGS = [stream.StreamConfig(12, 1, 6), stream.StreamConfig(10, 4, 6), stream.StreamConfig(15, 8, 7),
                 stream.StreamConfig(8, 2, 3), stream.StreamConfig(13, 1, 1)]


def golden_and_fast(monkeypatch, fn, *args, **kw):
    monkeypatch.setenv("SUBBIT_GOLDEN", "1")
    g = outcome(fn, *args, **kw)
    monkeypatch.delenv("SUBBIT_GOLDEN")
    return g, outcome(fn, *args, **kw)


@pytest.mark.parametrize("cfg", FAULT_CONFIGS, ids=lambda c: f"M{c.prob_bits}-K{c.lanes}-D{c.ways}")
def test_fault_suite_same_verdicts(cfg, monkeypatch):
    """Every corrupted stream of `subbit.model.faults` read and decoded with each coder: the same
    codes, or the same exception (type, message, layer, byte offset, word)."""
    cases = faults.cases(cfg)
    assert len(cases) > 100
    decode_errors = 0
    for fault in cases:
        g, f = golden_and_fast(monkeypatch, faults.golden, fault.words)
        if g[0] == "ok":
            assert f[0] == "ok" and len(f[1]) == len(g[1]), fault.name
            for a, b in zip(f[1], g[1]):
                assert a.dtype == b.dtype and np.array_equal(a, b), fault.name
        else:
            assert f == g, fault.name
            decode_errors += g[0] is DecodeError
    assert decode_errors >= 3


def test_payload_flips_same_verdicts(monkeypatch):
    """Single-bit payload flips with the payload check word fixed up (only the final-state check
    sees them): both coders decode each layer to the same codes or the same DecodeError."""
    cfg = stream.StreamConfig(12, 2, 6)
    hw = [stream.encode_codes(c, cfg) for c in faults.reference_codes(cfg, seed=4)]
    stream.build(hw, cfg)
    for h in hw:
        for w in range(len(h.payload)):
            for b in (0, 7, 15):
                p = h.payload.copy()
                p[w] ^= np.uint16(1 << b)
                bad = stream.HwLayer(h.nsym, h.base, h.count, h.freqs, h.states, p, offset=h.offset)
                g, f = golden_and_fast(monkeypatch, stream.decode_codes, bad, cfg, name="'x'", byte_offset=48)
                assert_same(f, g)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64])
def test_encode_codes_any_dtype(dtype, monkeypatch):
    rng = np.random.default_rng(1)
    codes = np.clip(np.rint(rng.laplace(0, 2, (37, 41))), -7 if np.issubdtype(dtype, np.signedinteger) else 0, 7)
    for cfg in (stream.StreamConfig(12, 1, 6), stream.StreamConfig(9, 8, 2)):
        g, f = golden_and_fast(monkeypatch, stream.encode_codes, codes.astype(dtype), cfg)
        assert g[0] == f[0] == "ok" and same_layer(g[1], f[1])
        assert np.array_equal(stream.build([g[1]], cfg), stream.build([f[1]], cfg))
        g, f = golden_and_fast(monkeypatch, stream.decode_codes, f[1], cfg)
        assert_same(f, g)
        assert np.array_equal(f[1], codes.ravel())


@pytest.mark.parametrize("codes", [np.zeros(0, dtype=np.int64), np.array([-32768]), np.full(1000, 5, np.int16),
                                   np.array([0, 255]), np.array([1.5]), np.array([-40000, -39999]),
                                   np.arange(-127, 128, dtype=np.int8), np.array([2**63 + 1, 2**63], dtype=np.uint64)],
                         ids=["empty", "one", "one-symbol", "256-levels", "float", "below-int16", "255-levels",
                              "uint64-huge"])
def test_encode_codes_edges(codes, monkeypatch):
    for cfg in (stream.StreamConfig(12, 1, 6), stream.StreamConfig(8, 8, 6)):
        g, f = golden_and_fast(monkeypatch, stream.encode_codes, codes, cfg)
        assert g[0] == f[0] and (g[0] == "ok" and same_layer(g[1], f[1]) or g == f), (g, f)


def test_golden_env_selects_the_golden_model(monkeypatch):
    """SUBBIT_GOLDEN=1: stream coding never touches the compiled kernels; otherwise it never
    calls the golden coder (which stays callable directly)."""
    cfg = stream.StreamConfig(12, 1, 6)
    codes = np.random.default_rng(0).integers(-3, 4, 5000)

    def boom(*a, **k):
        raise AssertionError("wrong coder")
    monkeypatch.setattr(rans, "encode", boom)
    monkeypatch.setattr(rans, "decode", boom)
    assert fast.enabled()
    h = stream.encode_codes(codes, cfg)
    assert np.array_equal(stream.decode_codes(h, cfg), codes)
    monkeypatch.undo()
    monkeypatch.setenv("SUBBIT_GOLDEN", "1")
    monkeypatch.setattr(fast, "_kernels", boom)
    assert not fast.enabled()
    h2 = stream.encode_codes(codes, cfg)
    assert same_layer(h2, h) and np.array_equal(stream.decode_codes(h2, cfg), codes)
    monkeypatch.setenv("SUBBIT_GOLDEN", "0")
    assert fast.enabled()


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(max_ways=255))
def test_fast_equals_golden_long_sweep(layer):
    M, K, D, f, sym = layer
    g = both_encode(sym, f, M, K, D)
    assert_same(both_decode(*g[1], f, M, len(sym), K, D), ("ok", sym))
