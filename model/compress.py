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
              config: stream.StreamConfig, info: dict | None = None, progress=None, tables=1,
              class_index="fixed") -> SbwFile:
    """Entropy-code integer codes of each layer into an :class:`SbwFile`.

    ``layers`` pairs each layer's metadata with its int codes; ``progress``
    is an optional iterable wrapper (e.g. ``tqdm``); ``tables`` lets layers have row classes
    (`subbit.model.stream.encode_codes`: 1, 2, 4, 8 or ``"auto"``; rows = the tensor's axis 0), their
    class index coded as ``class_index`` says (``"fixed"``: what the hardware reads, or ``"auto"``).
    """
    wrap = progress or (lambda it, **kw: it)
    metas, hws, kept = [], [], {}
    for meta, codes in wrap(layers, desc="entropy coding", unit="layer"):
        codes = np.asarray(codes)
        if tuple(codes.shape) != tuple(meta.shape):
            raise SubbitError(f"layer {meta.name!r}: codes of shape {list(codes.shape)} do not match "
                              f"{list(meta.shape)}")
        if codes.size and np.abs(codes).max() > meta.zero_point:
            raise SubbitError(f"layer {meta.name!r}: codes exceed the {meta.levels}-level quantizer")
        metas.append(meta)
        hws.append(stream.encode_codes(codes, config, tables=tables, class_index=class_index))
        kept[meta.name] = codes.reshape(meta.shape)
    return SbwFile(config=config, layers=metas, hw=hws, side=dict(side), info=dict(info or {}), codes=kept)


def compress_state_dict(sd, bits: int, config: stream.StreamConfig, *, per_channel: bool = False,
                        info: dict | None = None, progress=None, quantizer=quantize_rtn, tables=1,
                        class_index="fixed") -> SbwFile:
    """Round-to-nearest zero-point quantize every weight tensor at ``bits`` and entropy-code it.
    ``quantizer`` chooses the step: :func:`~subbit.model.quant.quantize_rtn` (max-abs, the default
    here) or :func:`~subbit.model.ptq.quantize_mse` (least squared error, ``subbit compress``'s).

    ``sd`` is a :class:`~subbit.model.checkpoint.Checkpoint` (its dtypes, order and container are
    kept in the file, so that ``decode`` gives the checkpoint back as it came) or a plain mapping
    of names to arrays. ``tables``: row classes, as in :func:`build_sbw`."""
    from .checkpoint import Checkpoint
    ck = sd if isinstance(sd, Checkpoint) else Checkpoint(tensors=dict(sd), dtypes={})
    layers, side, side_dtypes = [], {}, {}
    for name, arr in ck.tensors.items():
        dtype = ck.dtypes.get(name, np.asarray(arr).dtype.name)
        if is_coded(name, arr):
            try:
                codes, scale = quantizer(arr, bits, per_channel=per_channel)
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
    f = build_sbw(layers, side, config, info=info, progress=progress, tables=tables, class_index=class_index)
    if isinstance(sd, Checkpoint):
        f.checkpoint, f.order, f.side_dtypes = ck.container(), list(ck.tensors), side_dtypes
    return f


def ccexam_codes(bits: int = 3) -> list[np.ndarray]:
    """Round-to-nearest codes at ``bits`` of every coded tensor of the pretrained ccexam MNIST CNN
    (docs/data.md), in checkpoint order: the real-network stream of tests and benchmarks."""
    from .checkpoint import load_state_dict
    from .data import ccexam_weights
    return [quantize_rtn(w, bits)[0] for k, w in load_state_dict(ccexam_weights()).items() if is_coded(k, w)]


def _bits_of(maxcode: int) -> int:
    """The smallest quantizer bit-width (2..8) whose levels hold codes up to ``maxcode``."""
    b = 2
    while (1 << (b - 1)) - 1 < maxcode:
        b += 1
    return b


def compress_to_budget(sd, target_bits: float, config: stream.StreamConfig, *, split: bool = True,
                       weighting: str = "mse", sensitivity: dict | None = None, info: dict | None = None,
                       progress=None, log=None, tables=1, class_index="fixed"):
    """Quantize every weight tensor so that the whole word stream (headers, class maps and scales
    included) holds at most ``target_bits`` bits per coded weight, with the least squared error
    (:mod:`subbit.model.ptq`); returns ``(SbwFile, report)``.

    ``split`` lets a tensor be coded as parts (classes of rows × classes of columns, each its own
    layer with its own table and step) where that saves bits; ``weighting`` is ``"mse"`` (every
    weight alike: the best SQNR of all weights together) or ``"layer"`` (each tensor's squared
    error relative to its energy, ``Σ D_l / E_l``: every tensor counts alike however few weights
    it has, so the small first and last layers keep a high SQNR). ``sensitivity`` (from
    :func:`subbit.model.calib.sensitivity`, measured on data) replaces the weighting: each tensor's
    squared error counts times its sensitivity, i.e. the allocation minimises the layers' output
    errors; every coded tensor must have one.

    ``tables`` lets layers have row classes (as in :func:`build_sbw`). The allocation estimates
    one table per layer; when the built stream comes out smaller than the budget (as classes make
    it), the existing second aim re-allocates with the real coder's ratio (at most 1.5x), so the
    savings are spent on precision once, not iterated.

    Raises
    ------
    SubbitError
        A budget at or below zero, or below the smallest reachable one (every weight 0: the
        headers alone), which the message names; NaN/inf in a tensor.
    """
    from . import ptq
    from .checkpoint import Checkpoint
    from .sbw import LayerMeta, Partition
    if not (isinstance(target_bits, (int, float)) and np.isfinite(target_bits) and target_bits > 0):
        raise SubbitError(f"the budget must be a positive number of bits per weight, not {target_bits!r}")
    if weighting not in ("mse", "layer"):
        raise SubbitError(f"weighting must be 'mse' or 'layer', not {weighting!r}")
    ck = sd if isinstance(sd, Checkpoint) else Checkpoint(tensors=dict(sd), dtypes={})
    say = log or (lambda msg: None)
    wrap = progress or (lambda it, **kw: it)
    coded = [(k, v) for k, v in ck.tensors.items() if is_coded(k, v)]
    if not coded:
        raise SubbitError("the state_dict has no weight tensors (floating, rank >= 2, not empty) to compress")
    for k, v in coded:
        if not np.all(np.isfinite(v)):
            raise SubbitError(f"tensor {k!r} {tuple(v.shape)}: cannot quantize a tensor with NaN or infinite values")
    nw = sum(v.size for _, v in coded)
    states, M = config.states, config.prob_bits
    budget = target_bits * nw
    floor_bits = 16 * stream.STREAM_HEADER_WORDS + sum(ptq.header_bits(1, v.size, states) + 32 for _, v in coded)
    if budget < floor_bits:
        raise SubbitError(f"a budget of {target_bits:g} bits/weight cannot be met: the smallest reachable is "
                          f"{floor_bits / nw:.4g} bits/weight (every weight 0: the stream's headers and scales "
                          f"alone, {floor_bits} bits for {nw} weights)")
    w2s = {k: v.astype(np.float64).reshape(v.shape[0], -1) for k, v in coded}
    energy = {k: max(float(np.sum(v * v)), 1e-30) for k, v in w2s.items()}
    # "layer": Σ_l D_l / E_l (each tensor's relative error counts alike, however small the tensor),
    # scaled so that λ keeps the units of "mse"
    wts = {k: 1.0 if weighting == "mse" else sum(energy.values()) / (len(energy) * energy[k]) for k in w2s}
    if sensitivity is not None:
        missing = [k for k in w2s if k not in sensitivity]
        if missing:
            raise SubbitError(f"the calibration measured no sensitivity for {', '.join(missing[:3])}"
                              + (" ..." if len(missing) > 3 else "") + " (only Conv1d/Conv2d/Linear weights "
                              "are measured; names must match the checkpoint's)")
        mean = sum(sensitivity[k] for k in w2s) / len(w2s) or 1.0
        wts = {k: max(sensitivity[k], 1e-12) / mean for k in w2s}
    plans = {k: ptq.plan_tensor(k, w) for k, w in wrap(list(w2s.items()), desc="sorting", unit="tensor")}

    def allocate(plans, budget=budget):
        stats = [st for p in plans.values() for _, _, st in p.parts]
        weights = [wts[p.name] for p in plans.values() for _ in p.parts]
        extra = 16 * stream.STREAM_HEADER_WORDS + sum(p.extra_bits for p in plans.values())
        return ptq.allocate(stats, budget, states=states, prob_bits=M, weights=weights, stream_bits=extra)

    alloc = allocate(plans)
    say(f"one layer a tensor: λ = {alloc.lam:.4g}, estimated {(alloc.bits + 96) / nw:.4f} bits/weight")
    if split:
        plans = {k: ptq.choose_split(k, w, alloc.lam, states=states, prob_bits=M, weight=wts[k])
                 for k, w in wrap(list(w2s.items()), desc="partitions", unit="tensor")}
        alloc = allocate(plans)
        say(f"with partitions ({sum(p.split for p in plans.values())} tensors split): λ = {alloc.lam:.4g}")
    extra = sum(p.extra_bits for p in plans.values())
    f, rows = _build_from_plans(ck, plans, alloc, config, info, tables, class_index)
    total = 16 * len(f.words()) + extra
    if total < 0.98 * budget:
        # the estimate is conservative (small layers with rare codes): aim again with what the real
        # coder showed, and keep that if it fits
        est = alloc.bits + 16 * stream.STREAM_HEADER_WORDS + extra
        again = allocate(plans, budget * min(est / total, 1.5))
        f2, rows2 = _build_from_plans(ck, plans, again, config, info, tables, class_index)
        if total < 16 * len(f2.words()) + extra <= budget:
            f, rows, alloc, total = f2, rows2, again, 16 * len(f2.words()) + extra
    for attempt in range(30):
        if attempt:
            f, rows = _build_from_plans(ck, plans, alloc, config, info, tables, class_index)
            total = 16 * len(f.words()) + extra
        if total <= budget:
            break
        # the order-0 estimate missed the real coder by a little: ask for less, then encode again
        lam = alloc.lam * 1.03
        choices = [ptq.rd_layer(st, lam / wts[p.name], states=states, prob_bits=M)
                   for p in plans.values() for _, _, st in p.parts]
        alloc = ptq.Allocation(lam, choices)
    else:
        raise SubbitError(f"could not meet {target_bits:g} bits/weight (the last try took "
                          f"{total / nw:.4f}); please report this")
    energy = sum(float(np.sum(w * w)) for w in w2s.values())
    noise = sum(r["distortion"] for r in rows)
    report = {"target_bits": target_bits, "weights": nw, "stream_bits": 16 * len(f.words()),
              "bits_per_weight": 16 * len(f.words()) / nw, "lambda": alloc.lam, "weighting": weighting,
              "sqnr_db": ptq.sqnr_db(energy, noise), "layers": rows,
              "extra_bits": int(sum(p.extra_bits for p in plans.values()))}
    return f, report


def _build_from_plans(ck, plans, alloc, config, info, tables=1, class_index="fixed"):
    from . import ptq
    from .sbw import LayerMeta, Partition
    layers, side, side_dtypes, partitions, rows = [], {}, {}, {}, []
    it = iter(alloc.choices)
    for name, arr in ck.tensors.items():
        dtype = ck.dtypes.get(name, np.asarray(arr).dtype.name)
        p = plans.get(name)
        if p is None:
            side[name] = arr
            if dtype != np.asarray(arr).dtype.name:
                side_dtypes[name] = dtype
            continue
        if p.split:
            partitions[name] = Partition(tuple(arr.shape), p.row_class, p.col_class,
                                         int(p.row_class.max()) + 1, int(p.col_class.max()) + 1)
        for key, sub, st in p.parts:
            ch = next(it)
            step = float(np.float32(ch.step))
            codes = ch.codes(sub)
            bits = _bits_of(int(np.abs(codes).max()) if codes.size else 0)
            noise = float(np.sum((sub - codes * step) ** 2))
            if key is None:
                meta = LayerMeta(name=name, shape=tuple(arr.shape), bits=bits, scale=[step], dtype=dtype)
                codes = codes.reshape(arr.shape)
            else:
                meta = LayerMeta(name=f"{name}[r{key[0]}c{key[1]}]", shape=tuple(sub.shape), bits=bits,
                                 scale=[step], dtype=dtype,
                                 part={"tensor": name, "row_class": key[0], "col_class": key[1]})
            layers.append((meta, codes))
            zf = float(np.mean(codes == 0)) if codes.size else 1.0
            rows.append({"name": meta.name, "tensor": name, "shape": list(meta.shape), "bits": bits,
                         "levels": meta.levels, "step": step, "zero_fraction": zf, "distortion": noise,
                         "sqnr_db": ptq.sqnr_db(st.energy, noise), "estimated_bits": ch.bits})
    f = build_sbw(layers, side, config, info=info, tables=tables, class_index=class_index)
    f.checkpoint, f.order, f.side_dtypes, f.partitions = ck.container(), list(ck.tensors), side_dtypes, partitions
    for r, h in zip(rows, f.hw):
        r["coded_bits"] = 16 * (len(h.header_words()) + len(h.payload) + len(h.payload_tail()))
        r["bits_per_weight"] = r["coded_bits"] / max(h.count, 1)
    return f, rows
