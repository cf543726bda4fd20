"""Golden rANS coder: round trips, edge cases, normalisation, errors."""

import math

import numpy as np
import pytest

from subbit.model import rans
from subbit.model.errors import DecodeError, SubbitError

CONFIGS = [(1, 1), (1, 5), (2, 5), (4, 5), (8, 4), (8, 1)]   # (lanes, ways)


def roundtrip(sym, freqs, M, K, D):
    states, words = rans.encode(sym, freqs, M, K, D)
    assert states.dtype == np.uint32 and words.dtype == np.uint16
    assert len(states) == min(len(sym), K * D)
    out = rans.decode(states, words, freqs, M, len(sym), K, D)
    np.testing.assert_array_equal(out, sym)
    return states, words


@pytest.mark.parametrize("K,D", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_distributions(K, D, seed):
    rng = np.random.default_rng(seed)
    nsym = int(rng.integers(2, 40))
    p = rng.dirichlet(np.full(nsym, 0.3))
    sym = rng.choice(nsym, size=int(rng.integers(1, 5000)), p=p)
    M = int(rng.integers(8, 16))
    freqs = rans.normalize_freqs(np.bincount(sym, minlength=nsym), M)
    roundtrip(sym, freqs, M, K, D)


@pytest.mark.parametrize("K,D", CONFIGS)
def test_single_symbol_alphabet_is_free(K, D):
    sym = np.zeros(1000, dtype=np.int64)
    states, words = roundtrip(sym, [1 << 12], 12, K, D)
    assert len(words) == 0 and set(states.tolist()) == {rans.RANS_L}


@pytest.mark.parametrize("M", [8, 12, 15])
@pytest.mark.parametrize("K,D", [(1, 5), (4, 5)])
def test_minimum_probability_symbol(M, K, D):
    """A symbol at probability 2**-M, placed at the start, middle and end."""
    sym = np.zeros(3000, dtype=np.int64)
    sym[[0, 1500, 2999]] = 1
    freqs = np.array([(1 << M) - 1, 1])
    roundtrip(sym, freqs, M, K, D)


@pytest.mark.parametrize("K,D", [(1, 5), (8, 4)])
def test_255_symbol_alphabet(K, D):
    rng = np.random.default_rng(5)
    sym = rng.integers(0, 255, 20000)
    freqs = rans.normalize_freqs(np.bincount(sym, minlength=255), 12)
    assert len(freqs) == 255 and freqs.min() >= 1
    roundtrip(sym, freqs, 12, K, D)


@pytest.mark.parametrize("K,D", CONFIGS)
def test_empty_layer(K, D):
    states, words = rans.encode([], [4096], 12, K, D)
    assert len(states) == 0 and len(words) == 0
    assert rans.decode(states, words, [4096], 12, 0, K, D).size == 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 39, 40, 41])
def test_short_layers_use_only_needed_states(n):
    sym = np.arange(n) % 3
    states, _ = roundtrip(sym, [2000, 1000, 1096], 12, 8, 5)
    assert len(states) == min(n, 40)


@pytest.mark.parametrize("K", rans.LANES_ALLOWED)
def test_million_weights(K):
    rng = np.random.default_rng(7)
    sym = rng.choice(7, size=1 << 20, p=[0.8, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01])
    freqs = rans.normalize_freqs(np.bincount(sym, minlength=7), 12)
    roundtrip(sym, freqs, 12, K, 5)


def test_word_boundaries_power_of_two_table_packs_bits_exactly():
    """16 equiprobable symbols at M=12: 4 bits each, a word read every 4th symbol;
    payload bits plus the bits held in the flushed state equal 4 bits per symbol."""
    sym = np.arange(4096 * 3 + 1) % 16
    states, words = roundtrip(sym, np.full(16, 256), 12, 1, 1)
    held = int(states[0]).bit_length() - 1 - 16
    assert 16 * len(words) + held == 4 * len(sym)


def test_interleaving_matches_definition():
    """State j = i mod N codes symbol i: decoding each state alone gives the same result."""
    rng = np.random.default_rng(3)
    sym = rng.integers(0, 4, 103)
    freqs = [256] * 4
    K, D = 2, 3
    states, words = rans.encode(sym, freqs, 10, K, D)
    out = rans.decode(states, words, freqs, 10, len(sym), K, D)
    np.testing.assert_array_equal(out, sym)
    for j in range(K * D):
        alone, _ = rans.encode(sym[j::K * D], freqs, 10, 1, 1)
        assert alone[0] == states[j]


def test_final_state_check_detects_every_payload_bit_flip():
    rng = np.random.default_rng(11)
    sym = rng.choice(5, size=2000, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    freqs = rans.normalize_freqs(np.bincount(sym, minlength=5), 12)
    for K, D in [(1, 5), (4, 5)]:
        states, words = rans.encode(sym, freqs, 12, K, D)
        for w in range(len(words)):
            for b in range(16):
                bad = words.copy()
                bad[w] ^= 1 << b
                with pytest.raises(DecodeError):
                    rans.decode(states, bad, freqs, 12, len(sym), K, D)


def test_decode_errors_name_the_layer():
    sym = np.array([0, 1, 1, 0] * 100)
    states, words = rans.encode(sym, [2048, 2048], 12)
    with pytest.raises(DecodeError, match="layer fc1: payload overrun"):
        rans.decode(states, words[:-1], [2048, 2048], 12, len(sym), layer="fc1")
    with pytest.raises(DecodeError, match="layer fc1: payload has .* words but decoding read"):
        rans.decode(states, np.append(words, 0), [2048, 2048], 12, len(sym), layer="fc1")
    with pytest.raises(DecodeError, match="expected 1 initial states, got 2"):
        rans.decode([states[0]] * 2, words, [2048, 2048], 12, len(sym))
    with pytest.raises(DecodeError, match="outside"):
        rans.decode([5], words, [2048, 2048], 12, len(sym))


@pytest.mark.parametrize("kwargs,msg", [
    ({"prob_bits": 7}, "probability bits M must be in 8..15, not 7"),
    ({"prob_bits": 16}, "not 16"),
    ({"lanes": 3}, r"lanes must be one of \(1, 2, 4, 8\), not 3"),
    ({"ways": 0}, "ways must be an integer in 1..255, not 0"),
])
def test_parameter_errors_quote_the_value(kwargs, msg):
    args = {"prob_bits": 12, "lanes": 1, "ways": 1} | kwargs
    with pytest.raises(SubbitError, match=msg):
        rans.encode([0], [1 << min(max(args["prob_bits"], 8), 15)], args["prob_bits"], args["lanes"],
                    args["ways"])


def test_table_and_symbol_errors():
    with pytest.raises(SubbitError, match="sums to 4095"):
        rans.encode([0], [4095], 12)
    with pytest.raises(SubbitError, match="symbol 1 occurs but has frequency 0"):
        rans.encode([0, 1], [4096, 0], 12)
    with pytest.raises(SubbitError, match="out of range"):
        rans.encode([2], [2048, 2048], 12)


# -- normalisation --------------------------------------------------------------------

def code_length(counts, freqs, M):
    return sum(c * (M - math.log2(f)) for c, f in zip(counts, freqs) if c)


def optimal_freqs(counts, M):
    """Exact optimum of sum c*log f under sum f = 2**M, f >= 1: greedy with exact gains from f = 1."""
    f = [1 if c else 0 for c in counts]
    for _ in range((1 << M) - sum(f)):
        s = max((c * math.log2((fs + 1) / fs), -i, i) for i, (c, fs) in enumerate(zip(counts, f)) if c)[2]
        f[s] += 1
    return f


@pytest.mark.parametrize("seed", range(8))
def test_normalisation_is_near_optimal(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    counts = rng.integers(0, 50, n) * (rng.random(n) < 0.7) + (rng.random(n) < 0.1) * 10000
    counts[0] += 1
    M = 8
    f = rans.normalize_freqs(counts, M)
    assert f.sum() == 1 << M and all((f > 0) == (counts > 0))
    ours, best = code_length(counts, f, M), code_length(counts, optimal_freqs(counts, M), M)
    assert ours <= best * (1 + 1e-3) + 1e-9


def test_normalisation_is_deterministic_and_exact_for_powers_of_two():
    assert rans.normalize_freqs([1, 1, 2], 8).tolist() == [64, 64, 128]
    assert rans.normalize_freqs([5], 12).tolist() == [4096]
    assert rans.normalize_freqs([0, 7, 0], 9).tolist() == [0, 512, 0]
    counts = [100000, 1, 1, 1]
    assert rans.normalize_freqs(counts, 8).tolist() == rans.normalize_freqs(counts, 8).tolist()
    assert rans.normalize_freqs(counts, 8).tolist() == [253, 1, 1, 1]


@pytest.mark.parametrize("counts,msg", [
    ([], "alphabet size must be in 1..255, not 0"),
    ([1] * 256, "not 256"),
    ([0, 0], "all-zero"),
    ([-1, 3], "must be >= 0"),
])
def test_normalisation_errors(counts, msg):
    with pytest.raises(SubbitError, match=msg):
        rans.normalize_freqs(counts, 12)
