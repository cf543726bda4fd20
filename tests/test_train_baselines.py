"""Baselines: Huffman code lengths and sizes, round-to-nearest state_dicts, the Pareto plot."""

import numpy as np
import pytest

from subbit.model.train.baselines import TERNARY_PACKED_BITS, huffman_bits, huffman_lengths, pareto_plot, rtn_state_dict


def test_huffman_lengths():
    assert huffman_lengths([5]) == {0: 1}
    assert huffman_lengths([0, 9, 0]) == {1: 1}
    L = huffman_lengths([45, 13, 12, 16, 9, 5])            # the CLRS example
    assert sum(c * L[k] for k, c in enumerate([45, 13, 12, 16, 9, 5])) == 224
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(0, 50, rng.integers(2, 30))
        counts[0] += 1
        counts[-1] += 1
        L = huffman_lengths(counts)
        assert sum(2.0 ** -v for v in L.values()) == pytest.approx(1.0)     # a complete prefix code
        p = counts[counts > 0] / counts.sum()
        H = -(p * np.log2(p)).sum()
        avg = sum(counts[k] * v for k, v in L.items()) / counts.sum()
        assert H <= avg < H + 1


def test_huffman_cannot_go_below_one_bit():
    sparse = np.zeros(100_000, dtype=np.int64)
    sparse[::100] = 1
    r = huffman_bits([sparse])
    assert r["bits_per_weight"] == pytest.approx(1.0 + (8 * 2 + 32) / 100_000)
    assert r["weights"] == 100_000 and TERNARY_PACKED_BITS == 1.6


def test_rtn_state_dict():
    rng = np.random.default_rng(0)
    sd = {"w": rng.normal(size=(4, 9)).astype(np.float32), "b": np.ones(4, np.float32)}
    q = rtn_state_dict(sd, ["w"], 2)
    assert q["b"] is sd["b"]
    for row, qrow in zip(sd["w"], q["w"]):
        assert set(np.unique(np.abs(qrow))) <= {0.0, np.abs(row).max()}


def test_pareto_plot(tmp_path):
    pts = [{"name": "fp32", "kind": "fp32", "bits_per_weight": 32, "accuracy": 0.99},
           {"name": "uniform 2-bit", "kind": "uniform", "bits_per_weight": 2, "accuracy": 0.1},
           {"name": "ternary QAT", "kind": "ternary", "bits_per_weight": 1.6, "accuracy": 0.97},
           {"name": "huffman", "kind": "huffman", "bits_per_weight": 1.01, "accuracy": 0.985},
           {"name": "ours @1", "kind": "ours", "bits_per_weight": 0.9, "accuracy": 0.985},
           {"name": "ours @0.5", "kind": "ours", "bits_per_weight": 0.48, "accuracy": 0.98}]
    pareto_plot(str(tmp_path / "p.png"), pts, "test")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
