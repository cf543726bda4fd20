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
from ..stream import TABLE_CHOICES, StreamConfig
from .errors import ConfigError
from .models import check_state_dict
from .quantizer import ZeroPointQuantizer
from .rate import assign_classes, rate_bits

__all__ = ["QuantNet", "rebuild", "floor_bits", "ROW_CLASSES", "check_row_classes"]

#: What ``row_classes`` (``subbit train --row-classes``) takes: at most that many frequency tables
#: per layer, ``"auto"`` the best of 2..8 (the keys of `subbit.model.stream.TABLE_CHOICES`).
ROW_CLASSES = (1, 2, 4, 8, "auto")

#: Training rate calls between two refreshes of the row -> class assignment (:class:`QuantNet`).
CLASS_EVERY = 10


def check_row_classes(v, name: str = "row_classes"):
    """``v`` as 1, 2, 4, 8 or ``"auto"`` (a string of a digit is taken as the number).

    Raises
    ------
    ConfigError
        Anything else, with the values it takes.
    """
    w = v
    if isinstance(w, str) and w.strip().isdigit():
        w = int(w.strip())
    if isinstance(w, bool) or w not in ROW_CLASSES:
        raise ConfigError(f"{name} must be 1, 2, 4, 8 or auto (at most that many frequency tables per layer, "
                          f"auto: the best of 2..8), not {v!r}")
    return w


class _RowClasses(nn.Module):
    """The row -> class assignment of every coded layer, as buffers (checkpoints hold it, so a
    resumed run goes on with the same classes): ``classes_i`` (one class per row of layer ``i``),
    ``class_words`` (words of each layer's class index; 0: one table) and ``calls``, the training
    rate calls so far (the assignment is refreshed every ``every`` of them)."""

    def __init__(self, rows: list[int], choice, every: int, device):
        super().__init__()
        self.choice, self.every = choice, every
        for i, r in enumerate(rows):
            self.register_buffer(f"classes_{i}", torch.zeros(r, dtype=torch.int64, device=device))
        self.register_buffer("class_words", torch.zeros(len(rows), dtype=torch.int64, device=device))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64, device=device))

    def classes(self, i: int) -> torch.Tensor:
        return getattr(self, f"classes_{i}")


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
    row_classes : 1 (default: one frequency table per layer, word stream v2), 2, 4, 8 or
        ``"auto"``: layers may code their rows (output channels) with up to that many tables
        (word stream v3, `subbit.model.rowclass`, class index in fixed bits): :meth:`to_sbw` and
        :meth:`measure` code with ``tables=row_classes``, and :meth:`rate` prices each layer with its rows' classes
        (`subbit.model.train.rate.classed_bits`), the classes chosen from the current codes by
        the encoder's chooser every ``class_every`` rate calls made with gradients enabled
        (training steps)

    Members
    -------
    net : the wrapped model (float "latent" weights)
    names : names of the coded tensors, in state_dict order
    quant : one quantizer per coded tensor (same order)
    stream : the coder parameters
    row_classes : 1, 2, 4, 8 or ``"auto"``
    row_class : the row -> class assignment (buffers), or None with ``row_classes=1``
    """

    def __init__(self, net: nn.Module, *, names=None, init_bits: int = 4, max_bits: int = 8,
                 per_channel: bool = False, learn_range: bool = True, stream: StreamConfig | None = None,
                 row_classes=1, class_every: int = CLASS_EVERY):
        super().__init__()
        self.net = net
        self.stream = stream if stream is not None else StreamConfig()
        self.row_classes = check_row_classes(row_classes)
        if isinstance(class_every, bool) or not isinstance(class_every, int) or class_every < 1:
            raise ConfigError(f"class_every must be an integer >= 1, not {class_every!r}")
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
        self.row_class = None
        if self.row_classes != 1:
            dev = params[self.names[0]].device if self.names else torch.device("cpu")
            self.row_class = _RowClasses([int(params[k].shape[0]) for k in self.names],
                                         TABLE_CHOICES[self.row_classes], class_every, dev)

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
        device. ``states``: rANS states per layer (default ``self.stream.states``). With row
        classes each layer is priced with its rows' classes; a call with gradients enabled
        counts as a training step, and every ``class_every``-th (the first included) chooses
        the classes again from the current codes (:meth:`assign_classes`)."""
        w = self.latent()
        states = self.stream.states if states is None else states
        rc = self.row_class
        if rc is not None and torch.is_grad_enabled():
            if int(rc.calls) % rc.every == 0:
                self.assign_classes(states)
            rc.calls += 1

        def layers():
            for i, (k, q) in enumerate(zip(self.names, self.quant)):
                u = q.continuous(w[k])
                codes = torch.round(u.detach()).to(torch.int64)
                kk = int(np.ceil(float(q.range().detach())))
                if rc is None:
                    yield u, codes, kk
                else:
                    yield u, codes, kk, rc.classes(i), int(rc.class_words[i])
        return rate_bits(layers(), states)[0]

    @torch.no_grad()
    def assign_classes(self, states: int | None = None) -> list[int]:
        """Choose every layer's row classes from its current codes (`rate.assign_classes`: the
        encoder's chooser); returns the number of classes of each layer (1: one table). Needs
        ``row_classes`` other than 1."""
        rc = self.row_class
        if rc is None:
            raise ConfigError("assign_classes needs a QuantNet with row_classes other than 1")
        states = self.stream.states if states is None else states
        w = self.latent()
        out = []
        for i, (k, q) in enumerate(zip(self.names, self.quant)):
            cls, words = assign_classes(q.codes(w[k]), self.stream.prob_bits, rc.choice, states, self.stream.lanes)
            rc.classes(i).copy_(torch.from_numpy(cls))
            rc.class_words[i] = words
            out.append(int(cls.max()) + 1)
        return out

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
        ``config`` defaults to ``self.stream``; with ``row_classes`` the encoder may give layers
        row classes (word stream v3; it chooses them itself from the codes)."""
        return build_sbw(self.export(), self.side(), self.stream if config is None else config, info=info,
                         progress=progress, tables=self.row_classes)


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
