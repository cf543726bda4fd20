"""A network with fake-quantized weights, and its export to / rebuild from a weight stream.

:class:`QuantNet` wraps a plain model: every coded tensor (conv/linear weights,
`subbit.model.compress.is_coded`) gets a :class:`ZeroPointQuantizer`, and the forward pass
runs the plain model with the quantized weights (``torch.func.functional_call``), so the
plain model's parameter names are the stream's layer names.

The exported network is *exactly* the one the stream decodes to: :meth:`QuantNet.export`
returns integer codes and float32 scales; :meth:`QuantNet.quantized_state_dict` builds the
weights as ``codes * scale`` with the same float32 multiply as
`subbit.model.sbw.LayerMeta.dequantize`; :func:`rebuild` loads a decoded stream into a fresh
model. Accuracy of the training-side quantized network and of the decoded network are
therefore equal (tested in ``tests/test_train_qnet.py``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..compress import build_sbw, is_coded
from ..sbw import LayerMeta, SbwFile
from ..stream import StreamConfig
from .models import check_state_dict
from .quantizer import ZeroPointQuantizer
from .rate import rate_bits

__all__ = ["QuantNet", "rebuild"]


class QuantNet(nn.Module):
    """Plain model + one zero-point quantizer per coded tensor.

    Parameters
    ----------
    net : the plain model (its current weights initialise the quantizers)
    init_bits, max_bits, per_channel, learn_range : see :class:`ZeroPointQuantizer`
    fixed_bits : optional ``{name: bits}`` overriding ``init_bits`` per layer

    Members
    -------
    net : the wrapped model (float "latent" weights)
    names : names of the coded tensors, in state_dict order
    quant : one quantizer per coded tensor (same order)
    """

    def __init__(self, net: nn.Module, *, init_bits: int = 4, max_bits: int = 8, per_channel: bool = False,
                 learn_range: bool = True):
        super().__init__()
        self.net = net
        sd = net.state_dict()
        params = dict(net.named_parameters())
        self.names = [k for k, v in sd.items() if k in params and is_coded(k, v.detach().numpy())]
        self.quant = nn.ModuleList(ZeroPointQuantizer(params[k].detach(), init_bits=init_bits, max_bits=max_bits,
                                                      per_channel=per_channel, learn_range=learn_range)
                                   for k in self.names)

    def latent(self) -> dict[str, torch.Tensor]:
        params = dict(self.net.named_parameters())
        return {k: params[k] for k in self.names}

    def forward(self, x):
        w = self.latent()
        qw = {k: q(w[k]) for k, q in zip(self.names, self.quant)}
        return torch.func.functional_call(self.net, qw, (x,))

    def quantizer_parameters(self):
        return [p for q in self.quant for p in q.parameters() if p.requires_grad]

    def rate(self, states: int) -> tuple[torch.Tensor, float]:
        """Differentiable estimate of the coded bits per weight (`subbit.model.train.rate`)."""
        w = self.latent()

        def layers():
            for k, q in zip(self.names, self.quant):
                u = q.continuous(w[k])
                yield u, torch.round(u.detach()).to(torch.int64), int(np.ceil(float(q.range().detach())))
        return rate_bits(layers(), states)

    @torch.no_grad()
    def export(self) -> list[tuple[LayerMeta, np.ndarray]]:
        """Per coded tensor: its :class:`LayerMeta` (bits, float32 scales) and int64 codes."""
        out = []
        w = self.latent()
        for k, q in zip(self.names, self.quant):
            codes = q.codes(w[k]).contiguous().numpy()
            out.append((LayerMeta(name=k, shape=tuple(codes.shape), bits=q.bits, scale=q.scales(),
                                  scale_axis=0 if q.per_channel else None), codes))
        return out

    @torch.no_grad()
    def side(self) -> dict[str, np.ndarray]:
        """Every tensor of the plain model's state_dict that is not coded (biases, norms)."""
        coded = set(self.names)
        return {k: v.detach().contiguous().numpy().copy() for k, v in self.net.state_dict().items()
                if k not in coded}

    @torch.no_grad()
    def quantized_state_dict(self) -> dict[str, torch.Tensor]:
        """State_dict of the plain model with weights ``codes * scale`` (float32)."""
        sd = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        w = self.latent()
        for k, q in zip(self.names, self.quant):
            sd[k] = q.dequantize(q.codes(w[k])).contiguous()
        return sd

    def quantized_model(self) -> nn.Module:
        """A copy of the plain model carrying the quantized weights, in eval mode."""
        m = copy.deepcopy(self.net)
        m.load_state_dict(self.quantized_state_dict())
        return m.eval()

    def to_sbw(self, config: StreamConfig, info: dict | None = None, progress=None) -> SbwFile:
        """Entropy-code the current codes into a weight stream (side data: biases, norms)."""
        return build_sbw(self.export(), self.side(), config, info=info, progress=progress)


def rebuild(model: nn.Module, f: SbwFile, codes: dict | None = None) -> nn.Module:
    """Load a decoded weight stream (golden decode unless ``codes`` is given) into ``model``.

    Raises
    ------
    CheckpointError
        If the stream's tensors do not match the model.
    """
    sd = f.state_dict(codes)
    check_state_dict(model, sd, "the weight stream")
    own = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype) for k, v in sd.items()})
    return model.eval()
