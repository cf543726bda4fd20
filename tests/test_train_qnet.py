"""The fake-quantized network, its stream, and the network rebuilt from the decoded stream.

Must hold: the network rebuilt from the decoded stream is bit-identical to the quantized
network of training (same weights, same outputs, same accuracy).
"""

import numpy as np
import pytest
import torch

from subbit.model import sbw
from subbit.model.stream import StreamConfig
from subbit.model.train.errors import CheckpointError
from subbit.model.train.models import build_model
from subbit.model.train.qnet import QuantNet, rebuild
from train_util import one_torch_thread  # noqa: F401 (fixture)


def trained_qnet(per_channel):
    torch.manual_seed(0)
    net = build_model("resnet8", image_size=8, width=4)
    qn = QuantNet(net, init_bits=3, max_bits=6, per_channel=per_channel)
    # a few optimiser steps on random data, so that BN statistics, scales and ranges move
    opt = torch.optim.Adam(list(qn.parameters()), lr=1e-2)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(qn(x), y) + 0.1 * qn.rate(5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return qn.eval()


@pytest.mark.parametrize("per_channel", [False, True])
def test_decoded_network_is_bit_identical(per_channel, tmp_path):
    qn = trained_qnet(per_channel)
    assert qn.names[0] == "conv1.weight" and qn.names[-1] == "fc.weight" and len(qn.names) == 10
    f = qn.to_sbw(StreamConfig(), info={"test": True})
    sbw.write_sbw(tmp_path / "m.sbw", f)
    g = sbw.read_sbw(tmp_path / "m.sbw")
    assert set(g.side) == {k for k in qn.net.state_dict() if k not in qn.names}
    assert g.side["bn1.num_batches_tracked"].shape == ()        # 0-d side tensors stay 0-d
    assert [m.bits for m in g.layers] == [q.bits for q in qn.quant]
    ref = qn.quantized_model()
    dec = rebuild(build_model("resnet8", image_size=8, width=4), g)
    for (k, a), b in zip(ref.state_dict().items(), dec.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), k
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_ref, out_dec, out_q = ref(x), dec(x), qn(x)
    assert torch.equal(out_ref, out_dec)
    assert torch.equal(out_q, out_ref)        # the training-side forward pass uses the same weights


def test_export_codes_are_the_forward_codes():
    qn = trained_qnet(False)
    w = qn.latent()
    for (meta, codes), q, k in zip(qn.export(), qn.quant, qn.names):
        assert meta.name == k and codes.shape == tuple(w[k].shape)
        assert np.abs(codes).max() <= meta.zero_point
        assert np.array_equal(meta.dequantize(codes), q(w[k]).detach().numpy())


def test_rebuild_rejects_a_foreign_stream():
    f = trained_qnet(False).to_sbw(StreamConfig())
    with pytest.raises(CheckpointError, match="the weight stream does not match the model: .*shape mismatch conv1.weight"):
        rebuild(build_model("resnet8", image_size=8, width=8), f)
