"""From a state_dict to a weight stream, and back (round-to-nearest quantization)."""

from __future__ import annotations

import numpy as np

from . import stream
from .errors import SubbitError
from .quant import quantize_rtn
from .sbw import LayerMeta, SbwFile

__all__ = ["is_coded", "build_sbw", "compress_state_dict", "ccexam_codes"]


def is_coded(name: str, arr: np.ndarray) -> bool:
    """Weights (non-empty floating tensors of rank >= 2: conv and linear kernels) are
    entropy-coded; everything else (biases, norms, counters) travels as side data."""
    return arr.ndim >= 2 and arr.size > 0 and np.issubdtype(arr.dtype, np.floating)


def build_sbw(layers: list[tuple[LayerMeta, np.ndarray]], side: dict[str, np.ndarray],
              config: stream.StreamConfig, info: dict | None = None, progress=None) -> SbwFile:
    """Entropy-code integer codes of each layer into an :class:`SbwFile`.

    ``layers`` pairs each layer's metadata with its int codes; ``progress``
    is an optional iterable wrapper (e.g. ``tqdm``).
    """
    wrap = progress or (lambda it, **kw: it)
    metas, hws = [], []
    for meta, codes in wrap(layers, desc="entropy coding", unit="layer"):
        codes = np.asarray(codes)
        if tuple(codes.shape) != tuple(meta.shape):
            raise SubbitError(f"layer {meta.name!r}: codes of shape {list(codes.shape)} do not match "
                              f"{list(meta.shape)}")
        if codes.size and np.abs(codes).max() > meta.zero_point:
            raise SubbitError(f"layer {meta.name!r}: codes exceed the {meta.levels}-level quantizer")
        metas.append(meta)
        hws.append(stream.encode_codes(codes, config))
    return SbwFile(config=config, layers=metas, hw=hws, side=dict(side), info=dict(info or {}))


def compress_state_dict(sd, bits: int, config: stream.StreamConfig, *,
                        per_channel: bool = False, info: dict | None = None, progress=None) -> SbwFile:
    """Round-to-nearest zero-point quantize every weight tensor at ``bits`` and entropy-code it.

    ``sd`` is a :class:`~subbit.model.checkpoint.Checkpoint` (its dtypes, order and container are
    kept in the file, so that ``decode`` gives the checkpoint back as it came) or a plain mapping
    of names to arrays."""
    from .checkpoint import Checkpoint
    ck = sd if isinstance(sd, Checkpoint) else Checkpoint(tensors=dict(sd), dtypes={})
    layers, side, side_dtypes = [], {}, {}
    for name, arr in ck.tensors.items():
        dtype = ck.dtypes.get(name, np.asarray(arr).dtype.name)
        if is_coded(name, arr):
            try:
                codes, scale = quantize_rtn(arr, bits, per_channel=per_channel)
            except SubbitError as e:
                raise SubbitError(f"tensor {name!r} {tuple(arr.shape)}: {e}") from None
            layers.append((LayerMeta(name=name, shape=tuple(arr.shape), bits=bits, scale=scale,
                                     scale_axis=0 if per_channel else None, dtype=dtype), codes))
        else:
            side[name] = arr
            if dtype != np.asarray(arr).dtype.name:
                side_dtypes[name] = dtype
    if not layers:
        raise SubbitError("the state_dict has no weight tensors (floating, rank >= 2, not empty) to compress")
    f = build_sbw(layers, side, config, info=info, progress=progress)
    if isinstance(sd, Checkpoint):
        f.checkpoint, f.order, f.side_dtypes = ck.container(), list(ck.tensors), side_dtypes
    return f


def ccexam_codes(bits: int = 3) -> list[np.ndarray]:
    """Round-to-nearest codes at ``bits`` of every coded tensor of the pretrained ccexam MNIST CNN
    (../shared/DATA.md), in checkpoint order: the real-network stream of tests and benchmarks."""
    from .checkpoint import load_state_dict
    from .data import ccexam_weights
    return [quantize_rtn(w, bits)[0] for k, w in load_state_dict(ccexam_weights()).items() if is_coded(k, w)]
