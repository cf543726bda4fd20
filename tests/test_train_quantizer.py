"""Zero-point quantizer: levels, exactness against LayerMeta.dequantize, STE gradients, learned range."""

import math

import numpy as np
import pytest
import torch

from subbit.model.sbw import LayerMeta
from subbit.model.train.errors import ConfigError
from subbit.model.train.quantizer import ZeroPointQuantizer, bits_for, mse_scale, round_ste
from train_util import one_torch_thread  # noqa: F401 (fixture)


def test_bits_for():
    assert [bits_for(q) for q in (0, 1, 2, 3, 4, 7, 8, 127)] == [2, 2, 3, 3, 4, 4, 5, 8]
    for b in range(2, 9):
        assert bits_for(2 ** (b - 1) - 1) == b        # 2**b - 1 levels reach ±(2**(b-1) - 1)


def test_round_ste_is_exact_round():
    u = torch.tensor([-2.5, -1.5000001, -0.5, -0.49, 0.0, 0.3, 0.5, 0.7, 1.4999999, 2.5, 126.6], requires_grad=True)
    r = round_ste(u)
    assert torch.equal(r.detach(), torch.round(u.detach()))
    r.sum().backward()
    assert torch.equal(u.grad, torch.ones_like(u))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 5])
def test_forward_equals_layermeta_dequantize(per_channel, bits):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(6, 4, 3, 3, generator=g) * 0.1
    q = ZeroPointQuantizer(w, init_bits=bits, max_bits=8, per_channel=per_channel)
    codes = q.codes(w)
    assert codes.dtype == torch.int64 and int(codes.abs().max()) <= 2 ** (bits - 1) - 1
    assert q.bits == bits
    meta = LayerMeta(name="w", shape=tuple(w.shape), bits=q.bits, scale=q.scales(),
                     scale_axis=0 if per_channel else None)
    ref = meta.dequantize(codes.numpy())
    fwd = q(w).detach().numpy()
    assert np.array_equal(fwd, ref) and np.array_equal(q.dequantize(codes).numpy(), ref)
    assert len(q.scales()) == (6 if per_channel else 1)


def test_ste_gradients():
    w = torch.tensor([[-3.0, -0.26, 0.1, 0.74, 1.2, 5.0]])
    q = ZeroPointQuantizer(w, init_bits=2)             # ternary: n = 1
    with torch.no_grad():
        q.log_s.fill_(math.log(0.5))
        q.log_n.fill_(math.log(2.0))                   # range ±2 steps = ±1.0
    wp = w.clone().requires_grad_(True)
    out = q(wp)
    assert out.detach().tolist() == [[-1.0, -0.5, 0.0, 0.5, 1.0, 1.0]]
    out.sum().backward()
    # identity inside the range, zero where clipped
    assert wp.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]      # 1.2 / 0.5 = 2.4 > 2: clipped
    # LSQ: d/ds = round(u) - u inside the range, ±n where clipped; chained through s = exp(log_s)
    inside = (-1 + 0.52) + (0 - 0.2) + (1 - 1.48)
    assert q.log_s.grad.item() == pytest.approx((inside + (-2 + 2 + 2)) * 0.5, abs=1e-6)
    # d/dn = s * sign(u) for each clipped weight (-3.0, 1.2, 5.0), chained through n = exp(log_n) = 2
    assert q.log_n.grad.item() == pytest.approx(0.5 * (-1 + 1 + 1) * 2.0, abs=1e-6)
    assert q.bits == 3                                 # round(n) = 2 -> 5 levels


def test_learned_range_bounds_and_bits():
    w = torch.randn(8, 8)
    q = ZeroPointQuantizer(w, init_bits=4, max_bits=5)
    with torch.no_grad():
        q.log_n.fill_(10.0)
    assert float(q.range().detach()) == 15.0 and q.bits == 5
    with torch.no_grad():
        q.log_n.fill_(-3.0)
    assert float(q.range().detach()) == 1.0 and q.bits == 2 and int(q.codes(w).abs().max()) <= 1
    fixed = ZeroPointQuantizer(w, init_bits=2, max_bits=2, learn_range=False)
    assert not fixed.log_n.requires_grad and fixed.bits == 2


def test_mse_scale_beats_max_abs():
    w = torch.randn(4, 1000, generator=torch.Generator().manual_seed(1))
    for qm in (1, 7):
        s = mse_scale(w, qm, per_channel=False)
        def err(s):
            return float(((torch.clamp(torch.round(w / s), -qm, qm) * s - w) ** 2).sum())
        assert err(s) <= err(w.abs().max() / qm)
    assert mse_scale(w, 7, per_channel=True).shape == (4,)


@pytest.mark.parametrize("kw,msg", [
    (dict(max_bits=9), "--max-bits must be in 2..8, not 9"),
    (dict(init_bits=6, max_bits=4), r"--init-bits must be in 2..4 \(--max-bits\), not 6"),
    (dict(init_bits=1), "--init-bits must be in 2..8"),
])
def test_bad_parameters(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        ZeroPointQuantizer(torch.zeros(2, 2), **kw)
    with pytest.raises(ConfigError, match=r"only tensors of rank >= 2 are quantized, not shape \[3\]"):
        ZeroPointQuantizer(torch.zeros(3))
