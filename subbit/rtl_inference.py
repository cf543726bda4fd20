"""What ``subbit infer`` (integer inference with weights decoded on the fly, in RTL) and
``subbit decode-speed`` (a whole network's stream through the Verilated decoder) run and publish;
their options are parsed in `subbit.cli.hardware`.

See ``docs/inference.md``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["infer", "decode_speed", "infer_markdown", "decode_speed_markdown"]


def _pow2(n: int, lo: int) -> int:
    return max(lo, 1 << max(0, int(n) - 1).bit_length())


def infer(path: str, dataset: str | None = None, n: int = 100, rtl: str = "verilator", log=print,
          progress=lambda it, **kw: it) -> dict:
    """Float, integer-reference and (``rtl="verilator"``) RTL inference of ``n`` test images.

    ``dataset`` defaults to the one named in the stream's metadata (``subbit train`` records it),
    else digits. ``log`` takes the progress lines, ``progress`` wraps the loop over the images
    (tqdm-like: ``progress(iterable, desc=..., unit=...)``).

    Raises
    ------
    SubbitError
        A bad ``n``, a dataset other than the one the stream was trained on, a model the integer
        flow does not support, or an RTL result that differs from the integer reference
        (accumulators or classes).
    """
    import torch

    from subbit.model import sbw
    from subbit.model.errors import SubbitError
    from subbit.model.integer_net import IntegerNet, matmul
    from subbit.model.train.data import load_dataset
    from subbit.model.train.models import build_model
    from subbit.model.train.qnet import rebuild

    if not isinstance(n, int) or n < 1:
        raise SubbitError(f"--n must be a positive number of images, not {n!r}")
    t0 = time.perf_counter()
    f = sbw.read_sbw(path)
    if f.partitions:
        raise SubbitError(f"{path} codes {', '.join(list(f.partitions)[:3])} in parts (row and column classes, "
                          "from subbit compress --target-bits): the inference engine reads each layer's weights "
                          "in order; compress with --no-split for it")
    trained_on = f.info.get("dataset")
    if dataset is None:
        dataset = trained_on or "digits"
    elif trained_on and dataset != trained_on:
        raise SubbitError(f"{path} was trained on {trained_on} (its metadata), not {dataset}: its network has "
                          f"never seen those images; leave out --dataset or pass --dataset {trained_on}")
    data = load_dataset(dataset)
    if n > len(data.test):
        raise SubbitError(f"--n {n} exceeds the {len(data.test)} test images of {dataset}")
    model = f.info.get("model", "resnet8")
    codes = f.decode_codes()
    try:
        net = rebuild(build_model(model, in_channels=data.in_channels, image_size=data.image_size,
                                  width=f.layers[0].shape[0]), f, codes)
    except SubbitError as e:
        if "model" in f.info:
            raise
        raise SubbitError(f"{e} ({path} names no network in its metadata, so infer tried {model}; "
                          "streams from `subbit train` name theirs)") from None
    with torch.no_grad():
        float_all = net(data.test.x).argmax(1).numpy()
    inet = IntegerNet(f, net, data.val.x.numpy(), codes)
    y_all = data.test.y.numpy()
    int_all = inet.predict(data.test.x.numpy())
    xs, ys, float_cls = data.test.x[:n], y_all[:n], float_all[:n]
    xs = xs.numpy()
    xq = [inet.quantize_input(x) for x in xs]
    ref_logits = [inet.run(x) for x in xq]
    int_cls = np.array([int(np.argmax(v)) for v in ref_logits])
    geom = inet.geometry(xq[0].shape)
    res = {"model": path, "network": model, "dataset": dataset, "images": n, "weights": int(sum(m.size for m in f.layers)),
           "accuracy_float": float((float_cls == ys).mean()), "accuracy_integer": float((int_cls == ys).mean()),
           "integer_agrees_with_float": float((int_cls == float_cls).mean()),
           "test_images": len(y_all), "accuracy_float_all": float((float_all == y_all).mean()),
           "accuracy_integer_all": float((int_all == y_all).mean()),
           "layers": [{"name": q.name, "rows": r, "cols": c, "positions": p}
                      for q, (r, c, p) in zip(inet.ordered(), geom)]}
    log(f"{model} on {n} {dataset} test images: float {100 * res['accuracy_float']:.2f}%, "
        f"integer reference {100 * res['accuracy_integer']:.2f}% (whole test set of {len(y_all)}: float "
        f"{100 * res['accuracy_float_all']:.2f}%, integer {100 * res['accuracy_integer_all']:.2f}%)")
    if rtl == "none":
        res["seconds"] = time.perf_counter() - t0
        return res

    from subbit.hw.infer_top import mac_params_for
    from subbit.sim import fast
    from subbit.sim.rtl_decode import pack_beats, params_for
    dec = params_for(f.hw, f.config)
    mac = mac_params_for(dec, act_depth=_pow2(max(c * p for _, c, p in geom), 16),
                         max_positions=_pow2(max(p for *_, p in geom), 1))
    log(f"building the Verilated decoder (K={dec.lanes}) + MAC engine ...")
    beats = fast.input_beats(pack_beats(f.words(), dec.word_width), dec.word_width)
    per_layer = np.zeros((len(geom), 3), dtype=np.int64)          # cycles, wait cycles, load cycles
    rtl_cls = []
    with fast.InferSim(dec, mac) as sim:
        log(f"build {sim.build_seconds:.1f} s; running {n} images ...")
        t1 = time.perf_counter()
        for i, x in enumerate(progress(xq, desc="RTL inference", unit="image")):
            sim.push(beats)
            k = [0]

            def mac_rtl(q, xm):
                acc, info = sim.layer(xm, q.rows)
                if not np.array_equal(acc, matmul(q.codes, xm)):
                    raise SubbitError(f"image {i}, layer {q.name}: RTL accumulators differ from the reference")
                per_layer[k[0]] += (info["cycles"], info["wait_cycles"], info["load_cycles"])
                k[0] += 1
                return acc
            logits = inet.run(x, mac_rtl)
            if not np.array_equal(logits, ref_logits[i]):
                raise SubbitError(f"image {i}: RTL logits differ from the reference")
            rtl_cls.append(int(np.argmax(logits)))
        sim_s = time.perf_counter() - t1
    rtl_cls = np.array(rtl_cls)
    fc = [j for j, (_, _, p) in enumerate(geom) if p == 1]
    res.update({
        "simulator": "verilator", "lanes": dec.lanes, "bit_exact": True,
        "accuracy_rtl": float((rtl_cls == ys).mean()), "classes_equal": bool(np.array_equal(rtl_cls, int_cls)),
        "cycles_per_image": int(per_layer[:, 0].sum()) // n, "load_cycles_per_image": int(per_layer[:, 2].sum()) // n,
        "wait_cycles_per_image": per_layer[:, 1].sum() / n,
        "wait_fraction": float(per_layer[:, 1].sum() / max(1, per_layer[:, 0].sum())),
        "wait_fraction_fc": float(per_layer[fc, 1].sum() / max(1, per_layer[fc, 0].sum())) if fc else None,
        "build_seconds": sim.build_seconds, "sim_seconds": sim_s, "seconds": time.perf_counter() - t0})
    for L, row in zip(res["layers"], per_layer):
        L.update(cycles_per_image=int(row[0]) // n, wait_cycles=int(row[1]), weights_per_cycle=(
            L["rows"] * L["cols"] / (row[0] / n)))
    if not res["classes_equal"]:
        raise SubbitError("RTL classes differ from the integer reference")
    log(f"RTL: accuracy {100 * res['accuracy_rtl']:.2f}% (classes identical to the integer reference, "
        f"accumulators bit-exact), {res['cycles_per_image']} MAC clocks + {res['load_cycles_per_image']} "
        f"activation-load clocks per image, MAC engine waited for weights {res['wait_fraction']:.2e} of "
        f"its clocks ({sim_s:.1f} s simulation)")
    return res


def infer_markdown(r: dict, command: str) -> str:
    rows = "\n".join(f"| {L['name']} | {L['rows']}×{L['cols']} | {L['positions']} | {L['cycles_per_image']} | "
                     f"{L['weights_per_cycle']:.3f} | {L['wait_cycles']} |" for L in r["layers"])
    return f"""## Inference with on-the-fly decoding (RTL, bit-exact)

`{command}` — {r['network']} ({r['weights']} coded weights), {r['images']} {r['dataset']} test images,
decoder K={r['lanes']} → MAC engine ({r['lanes']} multiplier{'s' if r['lanes'] > 1 else ''}), Verilator (C harness), int8 activations,
int32 accumulators ([docs/inference.md](inference.md)).

| float model | integer reference | RTL | RTL classes = reference | MAC clocks / image | activation-load clocks / image | MAC wait fraction (all / FC) |
|---|---|---|---|---|---|---|
| {100 * r['accuracy_float']:.2f} % | {100 * r['accuracy_integer']:.2f} % | {100 * r['accuracy_rtl']:.2f} % | {r['classes_equal']} | {r['cycles_per_image']} | {r['load_cycles_per_image']} | {r['wait_fraction']:.2e} / {r['wait_fraction_fc'] if r['wait_fraction_fc'] is not None else '-'} |

Whole test set ({r['test_images']} images, numpy): float {100 * r['accuracy_float_all']:.2f} %, integer reference
{100 * r['accuracy_integer_all']:.2f} %. Every layer's accumulators of every image were equal to the integer reference. Per layer (clocks per image;
an engine takes `K / positions` weights per clock, the decoder makes K):

| layer | matrix | positions | MAC clocks | weights / clock | wait clocks ({r['images']} images) |
|---|---|---|---|---|---|
{rows}

Simulation {r['sim_seconds']:.1f} s for {r['images']} images (build {r['build_seconds']:.1f} s)."""


def decode_speed(bits: int = 3, lanes: int = 1, log=print) -> dict:
    """The ccexam CNN quantized at ``bits``, decoded by the Verilated decoder; bit-exact checked.

    Raises
    ------
    SubbitError
        If the RTL decode differs from the golden model.
    """
    from subbit.hw.params import DecoderParams
    from subbit.model import stream
    from subbit.model.compress import ccexam_codes
    from subbit.model.errors import SubbitError
    from subbit.sim import fast
    t0 = time.perf_counter()
    codes = ccexam_codes(bits)
    p = DecoderParams(lanes=lanes, max_symbols=2 ** bits - 1)
    hw = [stream.encode_codes(c, p.stream_config) for c in codes]
    words = stream.build(hw, p.stream_config)
    gold = np.concatenate([stream.decode_codes(h, p.stream_config) for h in hw])
    t1 = time.perf_counter()
    r = fast.decode_words(words, p, total=len(gold))
    exact = (not r["timed_out"] and r["error"] == 0 and np.array_equal(r["codes"], gold)
             and r["layer_ends"] == np.cumsum([h.count for h in hw]).tolist())
    if not exact:
        raise SubbitError("the Verilated decoder's output differs from the golden model")
    res = {"network": "ccexam CNN", "bits": bits, "lanes": lanes, "weights": int(len(gold)),
           "words": int(len(words)), "cycles": r["cycles"], "weights_per_cycle": len(gold) / r["cycles"],
           "encode_seconds": t1 - t0, "build_seconds": r["build_seconds"], "sim_seconds": r["sim_seconds"],
           "weights_per_second": len(gold) / r["sim_seconds"], "bit_exact": True,
           "total_seconds": time.perf_counter() - t0}
    log(f"{res['weights']} weights ({bits}-bit ccexam CNN, K={lanes}) decoded bit-exact in {r['cycles']} clocks "
        f"({res['weights_per_cycle']:.3f} weights/clock); simulation {r['sim_seconds']:.2f} s = "
        f"{res['weights_per_second']:.3g} weights/s; build {r['build_seconds']:.1f} s; total "
        f"{res['total_seconds']:.1f} s")
    return res


def decode_speed_markdown(r: dict, command: str) -> str:
    return f"""## Whole-network RTL decode speed (Verilator, C harness)

`{command}` — {r['network']} at {r['bits']} bits, {r['weights']} weights ({r['words']} stream words), decoder K={r['lanes']}:
bit-exact with the golden model.

| clocks | weights / clock | simulation wall time | decoded weights / s of simulation | Verilator build | end to end |
|---|---|---|---|---|---|
| {r['cycles']} | {r['weights_per_cycle']:.3f} | {r['sim_seconds']:.2f} s | {r['weights_per_second']:.3g} | {r['build_seconds']:.1f} s | {r['total_seconds']:.1f} s |

(The end-to-end time includes quantizing and entropy-coding the network and, on a cold cache, the build.)"""

