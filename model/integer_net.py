"""Integer inference with decoded weight codes: the reference the RTL MAC engine must match.

READ ME FIRST (the arithmetic is specified in ``docs/inference.md``):

* Weights are the stream's integer codes ``q_w`` (a layer's real weight is ``q_w * s_w``).
* Activations are int8 with one float scale per tensor ``s`` fixed by calibration
  (``s = max|a| / 127`` over calibration images, a float forward pass with the decoded
  weights): the input image is ``round(x / s_in)`` clamped to ``[-127, 127]``; every ReLU
  output lies in ``[0, 127]``.
* Every coded layer is a matrix product ``acc[r, p] = sum_c W[r, c] * X[p, c]`` in int32
  (wrapping): ``W`` is the layer's codes in C order (``rows = out channels``,
  ``cols = in channels * kh * kw``) and ``X`` the im2col matrix of the input (one row per
  output pixel, zero padding; a linear layer has one position). This product is all the
  hardware computes (`subbit.hw.mac.MacEngine`); everything else runs on the host, here.
* Requantisation (host): ``q = (acc * M[r] + B[r] + 2**(SHIFT - 1)) >> SHIFT`` in int64 with
  ``M = round(a * s_w * s_x / s_y * 2**SHIFT)`` and ``B = round(b / s_y * 2**SHIFT)``, where
  batch norm folds to ``a * z + b``; then ReLU and clamping to ``[0, 127]``. A residual block
  requantises both branches to the block's output scale, adds them, then applies ReLU.
* Global average pooling: ``(sum + n // 2) // n`` over the ``n`` positions, same scale.
* Logits: ``acc * M + B`` (int64, ``s_y = 1``); the class is the first index of the maximum.

The forward pass is a generator (:meth:`IntegerNet.forward`) that yields each coded layer's
``(index, X)`` in stream order and receives its accumulators, so a simulator can supply the
products; :func:`matmul` is the numpy reference of the product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SubbitError
from .sbw import SbwFile

__all__ = ["SHIFT", "ACT_MAX", "QLayer", "IntegerNet", "im2col", "matmul", "requant"]

SHIFT = 24        #: fixed-point fraction bits of the requantisation multipliers
ACT_MAX = 127     #: int8 activations: [-127, 127] for the input, [0, 127] after a ReLU


@dataclass
class QLayer:
    """One coded layer lowered to a matrix product (stream order ``index``)."""
    index: int
    name: str
    codes: np.ndarray           # (rows, cols) int64
    kernel: int
    stride: int
    pad: int

    @property
    def rows(self) -> int:
        return self.codes.shape[0]

    @property
    def cols(self) -> int:
        return self.codes.shape[1]


def im2col(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """``x`` (C, H, W) → ``X`` (positions, C*k*k); column ``c*k*k + ky*k + kx`` (weight C order)."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((ho, wo, c, k, k), dtype=x.dtype)
    for ky in range(k):
        for kx in range(k):
            cols[:, :, :, ky, kx] = xp[:, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride].transpose(1, 2, 0)
    return cols.reshape(ho * wo, c * k * k)


def matmul(codes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The MAC engine's product: ``acc[r, p] = sum_c codes[r, c] * x[p, c]``, int32 wrapping."""
    acc = np.asarray(codes, dtype=np.int64) @ np.asarray(x, dtype=np.int64).T
    return acc.astype(np.uint64).astype(np.uint32).view(np.int32)   # two's-complement wrap


def requant(acc: np.ndarray, mult: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``(acc * M + B + 2**(SHIFT-1)) >> SHIFT`` per row, int64 (round half up)."""
    a = np.asarray(acc, dtype=np.int64)
    return (a * mult[:, None] + bias[:, None] + (1 << (SHIFT - 1))) >> SHIFT


def _fixed(v) -> np.ndarray:
    return np.round(np.asarray(v, dtype=np.float64) * (1 << SHIFT)).astype(np.int64)


def _clamp_relu(v: np.ndarray) -> np.ndarray:
    return np.clip(v, 0, ACT_MAX).astype(np.int8)


def _layer_scale(meta, rows: int) -> np.ndarray:
    s = np.asarray(meta.scale, dtype=np.float64)
    if s.size == 1:
        return np.full(rows, float(s[0]))
    if meta.scale_axis != 0:
        raise SubbitError(f"layer {meta.name!r}: integer inference needs per-layer or per-output-channel "
                          f"scales, not scale_axis={meta.scale_axis}")
    return s


class IntegerNet:
    """A ResNet (`subbit.model.train.models`) rebuilt from a weight stream for integer inference.

    Parameters
    ----------
    f : SbwFile
        The weight stream (codes from ``codes`` or the golden decode).
    net : torch.nn.Module
        The float network of ``f``'s model with the decoded weights loaded (its structure —
        strides, padding — and batch-norm statistics are read from it).
    calib : np.ndarray
        Calibration images (N, C, H, W), float, normalised like the dataset.

    Raises
    ------
    SubbitError
        A network that is not one of the project's ResNets, or whose layers differ from the
        stream's.
    """

    def __init__(self, f: SbwFile, net, calib: np.ndarray, codes: dict | None = None):
        for need in ("conv1", "bn1", "layer1", "layer2", "layer3", "fc"):
            if not hasattr(net, need):
                raise SubbitError(f"integer inference supports the ResNet models only; "
                                  f"{type(net).__name__} has no {need!r}")
        codes = f.decode_codes() if codes is None else codes
        metas = {m.name: (k, m) for k, m in enumerate(f.layers)}
        self.layers: list[QLayer] = []
        self._scale_w: dict[str, np.ndarray] = {}

        def qlayer(name, conv):
            if name not in metas:
                raise SubbitError(f"the stream has no layer {name!r}")
            k, meta = metas[name]
            w = np.asarray(codes[name], dtype=np.int64)
            rows = w.shape[0]
            geom = (1, 1, 0) if w.ndim == 2 else (conv.kernel_size[0], conv.stride[0], conv.padding[0])
            q = QLayer(k, name, w.reshape(rows, -1), *geom)
            self._scale_w[name] = _layer_scale(meta, rows)
            return q

        def bn(m):
            a = m.weight.detach().double().numpy() / np.sqrt(m.running_var.detach().double().numpy() + m.eps)
            return a, m.bias.detach().double().numpy() - a * m.running_mean.detach().double().numpy()

        self.stem = (qlayer("conv1.weight", net.conv1), bn(net.bn1))
        self.blocks = []
        for s in ("layer1", "layer2", "layer3"):
            for i, blk in enumerate(getattr(net, s)):
                p = f"{s}.{i}."
                c1 = (qlayer(p + "conv1.weight", blk.conv1), bn(blk.bn1))
                c2 = (qlayer(p + "conv2.weight", blk.conv2), bn(blk.bn2))
                sc = (qlayer(p + "shortcut.0.weight", blk.shortcut[0]), bn(blk.shortcut[1])) \
                    if len(blk.shortcut) else None
                self.blocks.append((c1, c2, sc))
        self.fc = qlayer("fc.weight", None)
        self.fc_bias = net.fc.bias.detach().double().numpy()
        order = [q.index for q in self.ordered()]
        if order != sorted(order) or len(order) != len(f.layers):
            raise SubbitError("the network's coded layers are not the stream's layers in stream order")
        self._calibrate(np.asarray(calib, dtype=np.float64))

    # -- structure ------------------------------------------------------------------------
    def ordered(self) -> list[QLayer]:
        """Coded layers in the order the forward pass uses them (= stream order)."""
        out = [self.stem[0]]
        for c1, c2, sc in self.blocks:
            out += [c1[0], c2[0]] + ([sc[0]] if sc else [])
        return out + [self.fc]

    def geometry(self, image_shape) -> list[tuple[int, int, int]]:
        """``(rows, cols, positions)`` of every coded layer for one image."""
        g = []
        x = np.zeros(image_shape, dtype=np.int8)
        gen = self.forward(x)
        try:
            step = next(gen)
            while True:
                k, xm = step
                q = self.ordered()[len(g)]
                g.append((q.rows, q.cols, xm.shape[0]))
                step = gen.send(matmul(q.codes, xm))
        except StopIteration:
            pass
        return g

    # -- calibration: float forward with the decoded weights -------------------------------
    def _calibrate(self, xs: np.ndarray):
        peaks = {}

        def conv_f(q, x, bnp):
            xm = im2col(x, q.kernel, q.stride, q.pad)
            z = (q.codes * self._scale_w[q.name][:, None]) @ xm.T
            a, b = bnp
            return (a[:, None] * z + b[:, None]).reshape(q.rows, *_out_hw(x.shape, q))

        def note(key, v):
            peaks[key] = max(peaks.get(key, 0.0), float(np.max(np.abs(v))))

        for x in xs:
            note("input", x)
            (q, bnp) = self.stem
            h = np.maximum(conv_f(q, x, bnp), 0)
            note("stem", h)
            for k, (c1, c2, sc) in enumerate(self.blocks):
                t = np.maximum(conv_f(c1[0], h, c1[1]), 0)
                note(f"b{k}.h", t)
                y = conv_f(c2[0], t, c2[1]) + (conv_f(sc[0], h, sc[1]) if sc else h)
                h = np.maximum(y, 0)
                note(f"b{k}.out", h)
        self.scales = {k: max(v, 1e-12) / ACT_MAX for k, v in peaks.items()}

    # -- integer forward ----------------------------------------------------------------------
    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float image (C, H, W) → int8 with the input scale."""
        return np.clip(np.round(np.asarray(x, dtype=np.float64) / self.scales["input"]),
                       -ACT_MAX, ACT_MAX).astype(np.int8)

    def _mult(self, q: QLayer, a, s_x, s_y):
        return _fixed(a * self._scale_w[q.name] * s_x / s_y)

    def forward(self, xq: np.ndarray):
        """Generator: yields ``(stream index, X)`` per coded layer, receives ``acc`` (rows,
        positions) int32, returns the logits (int64, fixed point ``2**SHIFT``)."""
        def conv(q, x):
            acc = yield (q.index, im2col(x, q.kernel, q.stride, q.pad))
            acc = np.asarray(acc, dtype=np.int32)
            if acc.shape != (q.rows, _positions(x.shape, q)):
                raise SubbitError(f"layer {q.name!r}: accumulators of shape {acc.shape}, expected "
                                  f"{(q.rows, _positions(x.shape, q))}")
            return acc

        s_x = self.scales["input"]
        q, (a, b) = self.stem
        acc = yield from conv(q, xq)
        s_h = self.scales["stem"]
        h = _clamp_relu(requant(acc, self._mult(q, a, s_x, s_h), _fixed(b / s_h))).reshape(
            q.rows, *_out_hw(xq.shape, q))
        for k, (c1, c2, sc) in enumerate(self.blocks):
            s_t, s_o = self.scales[f"b{k}.h"], self.scales[f"b{k}.out"]
            (q1, (a1, b1)), (q2, (a2, b2)) = c1, c2
            acc = yield from conv(q1, h)
            t = _clamp_relu(requant(acc, self._mult(q1, a1, s_h, s_t), _fixed(b1 / s_t))).reshape(
                q1.rows, *_out_hw(h.shape, q1))
            acc = yield from conv(q2, t)
            y = requant(acc, self._mult(q2, a2, s_t, s_o), _fixed(b2 / s_o))
            if sc:
                q3, (a3, b3) = sc
                acc = yield from conv(q3, h)
                y = y + requant(acc, self._mult(q3, a3, s_h, s_o), _fixed(b3 / s_o))
            else:
                n = h.shape[0]
                y = y + requant(h.reshape(n, -1), np.full(n, _fixed(s_h / s_o)), np.zeros(n, np.int64))
            h = _clamp_relu(y).reshape(q2.rows, *_out_hw(t.shape, q2))
            s_h = s_o
        n = h.shape[1] * h.shape[2]
        pooled = ((h.reshape(h.shape[0], -1).astype(np.int64).sum(axis=1) + n // 2) // n).astype(np.int8)
        acc = yield from conv(self.fc, pooled[:, None, None])
        fc_m = _fixed(self._scale_w[self.fc.name] * s_h)
        return acc[:, 0].astype(np.int64) * fc_m + _fixed(self.fc_bias)

    def run(self, xq: np.ndarray, mac=None) -> np.ndarray:
        """Logits of one int8 image, products by ``mac(layer, X)`` (default :func:`matmul`)."""
        layers = self.ordered()
        by_index = {q.index: q for q in layers}
        mac = mac or (lambda q, xm: matmul(q.codes, xm))
        gen = self.forward(xq)
        try:
            k, xm = next(gen)
            while True:
                k, xm = gen.send(mac(by_index[k], xm))
        except StopIteration as e:
            return e.value

    def predict(self, xs: np.ndarray) -> np.ndarray:
        """Classes of float images (N, C, H, W) with the numpy integer reference."""
        return np.array([int(np.argmax(self.run(self.quantize_input(x)))) for x in xs], dtype=np.int64)


def _out_hw(shape, q: QLayer):
    _, h, w = shape
    return (h + 2 * q.pad - q.kernel) // q.stride + 1, (w + 2 * q.pad - q.kernel) // q.stride + 1


def _positions(shape, q: QLayer) -> int:
    ho, wo = _out_hw(shape, q)
    return ho * wo
