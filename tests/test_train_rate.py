"""Rate estimate (soft histogram entropy, stream header size) and the λ controller."""

import math

import numpy as np
import pytest
import torch

from subbit.model import stream
from subbit.model.report import entropy_bits
from subbit.model.train.rate import (STREAM_HEADER_BITS, LambdaController, hard_entropy, header_bits,
                                     layer_rate, rate_bits, soft_histogram)
from train_util import one_torch_thread  # noqa: F401 (fixture)


def test_soft_histogram_interpolates():
    u = torch.tensor([-1.0, 0.0, 0.25, 1.0, 2.0])
    p = soft_histogram(u, 2)
    assert torch.allclose(p, torch.tensor([0.0, 0.2, 0.35, 0.25, 0.2]))
    assert float(p.sum()) == pytest.approx(1.0)
    ints = torch.randint(-3, 4, (1000,), generator=torch.Generator().manual_seed(0))
    hard = torch.bincount(ints + 3, minlength=7).float() / 1000
    assert torch.allclose(soft_histogram(ints.float(), 3), hard)


def test_layer_rate_value_is_the_empirical_entropy():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5000, generator=g).clamp(-3, 3) * 0.8
    codes = torch.round(u).long()
    r = layer_rate(u, codes, 3)
    assert float(r) == pytest.approx(entropy_bits(codes.numpy()) / 5000, rel=1e-6)
    assert hard_entropy(codes) == pytest.approx(float(r), rel=1e-6)     # float32 vs float64
    assert hard_entropy(torch.zeros(10, dtype=torch.long)) == 0.0


def test_rate_gradient_pulls_toward_the_probable_level():
    # 90 % of the weights at 0, a few between -1 and 0, 0 and 1, 1 and 2
    u = torch.tensor([0.0] * 88 + [-0.6] * 2 + [0.7] * 5 + [1.0] * 3 + [1.3] * 2, requires_grad=True)
    r = layer_rate(u, torch.round(u.detach()).long(), 2)
    r.backward()
    g = u.grad                       # gradient descent moves u against g
    assert float(g[88]) < 0          # -0.6 is pushed up toward 0 (more probable than -1)
    assert float(g[90]) > 0          # 0.7 is pushed down toward 0 (more probable than 1)
    assert float(g[-1]) > 0          # 1.3 is pulled back to 1 (more probable than 2)
    # magnitude: log2(p_floor / p_ceil) / N with the soft probabilities
    p = soft_histogram(u.detach(), 2)
    assert float(g[90]) == pytest.approx(math.log2(p[2] / p[3]) / 100, rel=1e-5)


@pytest.mark.parametrize("n,nsym,states", [(0, 1, 5), (3, 3, 6), (1000, 4, 6), (50, 7, 30)])
def test_header_bits_match_the_stream(n, nsym, states):
    rng = np.random.default_rng(n)
    codes = np.concatenate([np.arange(nsym), rng.integers(0, nsym, max(0, n - nsym))])[:n] - nsym // 2
    cfg = stream.StreamConfig(12, 1 if states < 30 else 2, states if states < 30 else 15)
    lay = stream.encode_codes(codes, cfg)
    assert lay.nsym == (nsym if n else 1)
    assert header_bits(n, lay.nsym, cfg.states) == 16 * len(lay.header_words())


def test_rate_bits_close_to_the_real_stream():
    g = torch.Generator().manual_seed(3)
    layers, real = [], 16 * stream.STREAM_HEADER_WORDS
    cfg = stream.StreamConfig()
    for n in (200, 5000, 30000):
        u = (torch.randn(n, generator=g) * 0.6).clamp(-3, 3)
        c = torch.round(u).long()
        layers.append((u, c, 3))
        lay = stream.encode_codes(c.numpy(), cfg)
        real += 16 * (len(lay.header_words()) + len(lay.payload) + len(lay.payload) % 2)
    est, hdr = rate_bits(layers, cfg.states)
    assert STREAM_HEADER_BITS == 96 and hdr > 0
    assert float(est) == pytest.approx(real / 35200, rel=0.01)


def test_controller():
    c = LambdaController(target=1.0, lam=1.0, gain=0.1)
    assert c.update(3.0) == pytest.approx(math.exp(0.1))        # error clipped at +1
    assert c.update(0.5) == pytest.approx(math.exp(0.1) * math.exp(-0.05))
    ramp = LambdaController(target=0.5, lam=1.0, ramp=10)
    ramp.update(2.0)                                             # first rate starts the ramp
    goals = []
    for _ in range(12):
        goals.append(ramp.goal())
        ramp.update(goals[-1])                                   # on the goal: λ unchanged
    assert ramp.lam == pytest.approx(1.0)
    assert goals[0] == pytest.approx(2.0 * 0.25 ** 0.1) and goals[-1] == 0.5
    assert all(a > b for a, b in zip(goals[:9], goals[1:10]))
    ramp.correction = 0.9
    assert ramp.goal() == pytest.approx(0.45)
    lo = LambdaController(target=1.0, lam=1e-5, gain=1.0)
    assert lo.update(0.0) == 1e-5                                # clamped at lam_min
