"""A network with fake-quantized weights, and its export to / rebuild from a weight stream.

:class:`QuantNet` wraps a plain model: every coded tensor (conv/linear weights,
`subbit.model.compress.is_coded`, or the parameters named) gets a :class:`ZeroPointQuantizer`, and the forward pass
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

from ..compress import build_sbw
from ..sbw import LayerMeta, SbwFile
from ..stream import StreamConfig
from .errors import ConfigError
from .models import check_state_dict
from .quantizer import ZeroPointQuantizer
from .rate import rate_bits

__all__ = ["QuantNet", "rebuild", "floor_bits"]


class QuantNet(nn.Module):
    """Plain model + one zero-point quantizer per coded tensor.

    Parameters
    ----------
    net : the plain model (its current weights initialise the quantizers; the quantizers are
        created on the device of each weight)
    names : names of the parameters to code (each of rank >= 2); default: every floating
        parameter of rank >= 2 (`subbit.model.compress.is_coded`). Kept in state_dict order.
    init_bits, max_bits, per_channel, learn_range : see :class:`ZeroPointQuantizer`
    stream : the coder parameters (`StreamConfig`, default the hardware's) of :meth:`rate`,
        :meth:`measure` and :meth:`to_sbw`

    Members
    -------
    net : the wrapped model (float "latent" weights)
    names : names of the coded tensors, in state_dict order
    quant : one quantizer per coded tensor (same order)
    stream : the coder parameters
    """

    def __init__(self, net: nn.Module, *, names=None, init_bits: int = 4, max_bits: int = 8,
                 per_channel: bool = False, learn_range: bool = True, stream: StreamConfig | None = None):
        super().__init__()
        self.net = net
        self.stream = stream if stream is not None else StreamConfig()
        sd = net.state_dict()
        params = dict(net.named_parameters())
        if names is None:
            self.names = [k for k, v in sd.items() if k in params and _coded(v)]
        else:
            want = set(names)
            unknown = [k for k in names if k not in params]
            if unknown:
                raise ConfigError(f"the model has no parameter {', '.join(map(repr, unknown))}")
            self.names = [k for k in sd if k in want]
        self.quant_config = {"init_bits": init_bits, "max_bits": max_bits, "per_channel": per_channel,
                             "learn_range": learn_range}
        self.quant = nn.ModuleList(ZeroPointQuantizer(params[k].detach(), init_bits=init_bits, max_bits=max_bits,
                                                      per_channel=per_channel, learn_range=learn_range)
                                   for k in self.names)

    @property
    def num_weights(self) -> int:
        """Number of coded weights (the denominator of every bits-per-weight figure)."""
        params = dict(self.net.named_parameters())
        return sum(params[k].numel() for k in self.names)

    def latent(self) -> dict[str, torch.Tensor]:
        params = dict(self.net.named_parameters())
        return {k: params[k] for k in self.names}

    def forward(self, *args, **kwargs):
        w = self.latent()
        qw = {k: q(w[k]) for k, q in zip(self.names, self.quant)}
        return torch.func.functional_call(self.net, qw, args, kwargs)

    def quantizer_parameters(self):
        return [p for q in self.quant for p in q.parameters() if p.requires_grad]

    def rate(self, states: int | None = None) -> torch.Tensor:
        """Differentiable estimate of the coded size of the whole stream in bits per weight,
        headers included (`subbit.model.train.rate.rate_bits`); a 0-dim tensor on the weights'
        device. ``states``: rANS states per layer (default ``self.stream.states``)."""
        w = self.latent()

        def layers():
            for k, q in zip(self.names, self.quant):
                u = q.continuous(w[k])
                yield u, torch.round(u.detach()).to(torch.int64), int(np.ceil(float(q.range().detach())))
        return rate_bits(layers(), self.stream.states if states is None else states)[0]

    def measure(self) -> float:
        """Exact size of the current codes' stream in bits per weight: every bit of the word
        stream (headers, tables, states, payload) over :attr:`num_weights` (builds the stream)."""
        return 16 * len(self.to_sbw().words()) / max(self.num_weights, 1)

    def floor_bits(self) -> float:
        """The smallest rate any network of this shape can reach, in bits per weight: the stream
        of all-zero codes, i.e. the stream and layer headers alone (:func:`floor_bits`)."""
        params = dict(self.net.named_parameters())
        return floor_bits({k: tuple(params[k].shape) for k in self.names}, self.stream)

    @torch.no_grad()
    def export(self) -> list[tuple[LayerMeta, np.ndarray]]:
        """Per coded tensor: its :class:`LayerMeta` (bits, float32 scales) and int64 codes."""
        out = []
        w = self.latent()
        for k, q in zip(self.names, self.quant):
            codes = q.codes(w[k]).cpu().contiguous().numpy()
            out.append((LayerMeta(name=k, shape=tuple(codes.shape), bits=q.bits, scale=q.scales(),
                                  scale_axis=0 if q.per_channel else None), codes))
        return out

    @torch.no_grad()
    def side(self) -> dict[str, np.ndarray]:
        """Every tensor of the plain model's state_dict that is not coded (biases, norms)."""
        coded = set(self.names)
        return {k: v.detach().cpu().contiguous().numpy().copy() for k, v in self.net.state_dict().items()
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

    def to_sbw(self, config: StreamConfig | None = None, info: dict | None = None, progress=None) -> SbwFile:
        """Entropy-code the current codes into a weight stream (side data: biases, norms);
        ``config`` defaults to ``self.stream``."""
        return build_sbw(self.export(), self.side(), self.stream if config is None else config, info=info,
                         progress=progress)


def floor_bits(shapes: dict, stream: StreamConfig | None = None) -> float:
    """Bits per weight of the stream of layers ``{name: shape}`` whose codes are all zero: its
    headers alone (stream header; per layer: fixed words, a one-symbol table, rANS states)."""
    layers = [(LayerMeta(name=k, shape=tuple(s), bits=2, scale=[1.0]), np.zeros(tuple(s), dtype=np.int64))
              for k, s in shapes.items()]
    n = sum(int(np.prod(s, dtype=np.int64)) for s in shapes.values())
    return 16 * len(build_sbw(layers, {}, stream or StreamConfig()).words()) / max(n, 1)


def _coded(t: torch.Tensor) -> bool:
    """`subbit.model.compress.is_coded` on a tensor (any device and dtype, without a copy)."""
    return t.dim() >= 2 and t.numel() > 0 and t.is_floating_point()


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
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(device=own[k].device, dtype=own[k].dtype)
                           for k, v in sd.items()})
    return model.eval()
