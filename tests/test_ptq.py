"""Post-training quantization to a bit budget (subbit.model.ptq, compress_to_budget) and the
v2 file's partitions and binary scales."""

import json
import struct
import zlib

import numpy as np
import pytest

from subbit.model import compress, ptq, quant, sbw, stream
from subbit.model.errors import FormatError, SubbitError


def _heavy(shape, seed=0):
    """Laplacian weights with a few outliers, as real layers have."""
    rng = np.random.default_rng(seed)
    w = rng.laplace(scale=0.05, size=shape).astype(np.float32)
    w.ravel()[rng.choice(w.size, 5, replace=False)] *= 20
    return w


def _sqnr(w, wq):
    w = np.asarray(w, np.float64)
    return 10 * np.log10(np.sum(w * w) / np.sum((w - wq) ** 2))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_mse_clipping_beats_max_abs(bits):
    w = _heavy((64, 64))
    c0, s0 = quant.quantize_rtn(w, bits)
    c1, s1 = ptq.quantize_mse(w, bits)
    assert np.abs(c1).max() <= quant.qmax(bits)
    assert _sqnr(w, c1 * np.float32(s1[0])) > _sqnr(w, c0 * s0[0]) + 3     # outliers no longer set the step
    # the step is the best of a fine brute-force grid, to within a small margin
    qm = quant.qmax(bits)
    grid = np.linspace(0.05, 1, 400) * np.abs(w).max() / qm
    brute = max(_sqnr(w, np.clip(np.rint(w / s), -qm, qm) * s) for s in grid)
    assert _sqnr(w, c1 * np.float32(s1[0])) >= brute - 0.05


def test_mse_clipping_per_channel():
    rng = np.random.default_rng(5)
    w = (rng.laplace(scale=0.05, size=(8, 400)) * np.arange(1, 9)[:, None]).astype(np.float32)
    c, s = ptq.quantize_mse(w, 3, per_channel=True)
    assert len(s) == 8 and s[-1] > 4 * s[0]       # larger rows, larger steps
    ct, st = ptq.quantize_mse(w, 3)
    assert _sqnr(w, c * np.array(s, np.float32)[:, None]) > _sqnr(w, ct * np.float32(st[0]))


def test_rate_falls_and_error_grows_with_lambda():
    st = ptq.LayerStats(_heavy((128, 64)))
    prev = None
    for lam in (1e-5, 1e-4, 1e-3, 1e-2):
        ch = ptq.rd_layer(st, lam)
        if prev is not None:
            assert ch.bits <= prev.bits + 1e-9 and ch.distortion >= prev.distortion - 1e-9
        prev = ch
    assert ptq.rd_layer(st, 1e3).max_code == 0          # far above: every weight 0


def test_rdoq_codes_match_the_thresholds():
    w = _heavy((32, 32))
    ch = ptq.rd_layer(ptq.LayerStats(w), 1e-3)
    q = ch.codes(w)
    assert np.array_equal(np.sign(q), np.sign(q) * (q != 0)) and np.all(np.sign(q) * np.sign(w) >= 0)
    counts = np.bincount(np.abs(q).ravel(), minlength=len(ch.counts))
    np.testing.assert_array_equal(counts[:len(ch.counts)], ch.counts)
    assert np.sum((w.astype(np.float64) - q * ch.step) ** 2) == pytest.approx(ch.distortion, rel=1e-6)


@pytest.fixture(scope="module")
def ckpt():
    rng = np.random.default_rng(1)
    fc = _heavy((96, 300), 2)
    fc[:30] *= 0.05                                           # "dead" rows, as in a trained MLP
    return {"conv.weight": _heavy((16, 3, 3, 3), 3), "conv.bias": rng.normal(size=16).astype(np.float32),
            "fc.weight": fc, "head.weight": _heavy((10, 96), 4)}


@pytest.mark.parametrize("target", [0.3, 0.8, 2.0])
@pytest.mark.parametrize("weighting", ["mse", "layer"])
def test_budget_is_met_and_the_file_decodes_to_the_report(ckpt, target, weighting):
    cfg = stream.StreamConfig()
    f, rep = compress.compress_to_budget(ckpt, target, cfg, weighting=weighting)
    nw = sum(v.size for k, v in ckpt.items() if v.ndim >= 2)
    words = 16 * len(f.words())
    assert words + rep["extra_bits"] <= target * nw and rep["stream_bits"] == words
    assert words + rep["extra_bits"] >= 0.9 * target * nw             # the budget is used, not wasted
    g = sbw.from_bytes(sbw.to_bytes(f))                             # the v2 file, round trip
    sd = g.state_dict()
    assert list(sd) == list(ckpt)
    coded = [k for k in ckpt if ckpt[k].ndim >= 2]
    noise = sum(np.sum((ckpt[k].astype(np.float64) - sd[k]) ** 2) for k in coded)
    energy = sum(np.sum(ckpt[k].astype(np.float64) ** 2) for k in coded)
    assert 10 * np.log10(energy / noise) == pytest.approx(rep["sqnr_db"], abs=1e-3)
    np.testing.assert_array_equal(sd["conv.bias"], ckpt["conv.bias"])
    for m in g.layers:                                                # levels hold the codes
        assert 2 <= m.bits <= 8


def test_more_bits_more_sqnr(ckpt):
    cfg = stream.StreamConfig()
    s = [compress.compress_to_budget(ckpt, b, cfg)[1]["sqnr_db"] for b in (0.3, 0.6, 1.2, 2.4)]
    assert s == sorted(s) and s[-1] > s[0] + 10


def test_split_only_where_it_pays(ckpt):
    cfg = stream.StreamConfig()
    f, rep = compress.compress_to_budget(ckpt, 0.8, cfg)
    assert "fc.weight" in f.partitions            # the dead rows get a class (and a table) of their own
    assert "conv.weight" not in f.partitions      # too small to pay for the class maps
    p = f.partitions["fc.weight"]
    assert p.row_classes >= 2 and set(np.nonzero(p.row_class == 0)[0]) >= set(range(30))
    f1, rep1 = compress.compress_to_budget(ckpt, 0.8, cfg, split=False)
    assert not f1.partitions and rep["sqnr_db"] > rep1["sqnr_db"]


@pytest.mark.parametrize("target,msg", [
    (0, "the budget must be a positive number of bits per weight, not 0"),
    (-1.0, "not -1.0"), (float("nan"), "not nan"),
    (0.001, r"a budget of 0.001 bits/weight cannot be met: the smallest reachable is 0.0\d+ bits/weight "
            r"\(every weight 0"),
])
def test_bad_budgets(ckpt, target, msg):
    with pytest.raises(SubbitError, match=msg):
        compress.compress_to_budget(ckpt, target, stream.StreamConfig())


def test_nan_names_the_tensor(ckpt):
    bad = dict(ckpt, **{"fc.weight": np.where(np.eye(96, 300) > 0, np.nan, ckpt["fc.weight"])})
    with pytest.raises(SubbitError, match=r"tensor 'fc.weight' \(96, 300\): .*NaN"):
        compress.compress_to_budget(bad, 1.0, stream.StreamConfig())


@pytest.mark.parametrize("g_r,g_c", [(1, 2), (2, 1), (3, 5), (16, 256)])
def test_partition_pack_round_trip(g_r, g_c):
    rng = np.random.default_rng(g_r * 7 + g_c)
    shape = (40, 3, 11)
    p = sbw.Partition(shape, rng.integers(0, g_r, 40).astype(np.uint8), rng.integers(0, g_c, 33).astype(np.uint8),
                      g_r, g_c)
    q = sbw.Partition.unpack(p.pack(), shape, g_r, g_c)
    assert np.array_equal(p.row_class, q.row_class) and np.array_equal(p.col_class, q.col_class)
    w = rng.normal(size=shape)
    np.testing.assert_array_equal(p.assemble(p.split(w), np.float64), w)


def _corrupt(f, edit):
    data = bytearray(sbw.to_bytes(f))
    (mlen,) = struct.unpack_from("<I", data, 12)
    meta = json.loads(bytes(data[48:48 + mlen]))
    edit(meta)
    raw = json.dumps(meta, separators=(",", ":")).encode()
    out = bytearray(data[:48]) + raw + data[48 + mlen:]
    struct.pack_into("<I", out, 12, len(raw))
    struct.pack_into("<I", out, 36, zlib.crc32(raw, zlib.crc32(bytes(out[:36]))))
    return bytes(out)


@pytest.mark.parametrize("edit,msg", [
    (lambda m: next(L for L in m["layers"] if L.get("part"))["part"].update(row_class=7),
     r"part \(7, 0\) of tensor 'fc.weight' has no partition record"),
    (lambda m: m["partitions"][0].update(row_classes=1), "bad partition record .*class maps take"),
    (lambda m: m["layers"].__setitem__(2, dict(m["layers"][2], part=None)), "misses the layers of its parts"),
    (lambda m: m["partitions"][0].update(nbytes=1), "bad partition record"),
    (lambda m: m["layers"][0]["scale"].update(offset=10 ** 6), "lies outside the"),
])
def test_bad_partitions_are_format_errors(ckpt, edit, msg):
    f, _ = compress.compress_to_budget(ckpt, 0.8, stream.StreamConfig())
    with pytest.raises(FormatError, match=msg):
        sbw.from_bytes(_corrupt(f, edit))


def test_version_1_files_still_read(ckpt):
    """A v1 file (scales as JSON numbers, no partitions) reads and decodes as before."""
    f = compress.compress_state_dict({"a.weight": ckpt["head.weight"], "a.bias": ckpt["conv.bias"]}, 3,
                                     stream.StreamConfig())
    meta = {"format": "subbit-sbw", "version": 1, "layers": [dict(f.layers[0].to_json())],
            "side": [{"name": "a.bias", "shape": [16], "dtype": "float32", "offset": 0, "nbytes": 64}], "info": {}}
    raw, side = json.dumps(meta).encode(), ckpt["conv.bias"].astype("<f4").tobytes()
    words = f.words()
    hw = words.astype("<u2").tobytes()
    head = struct.pack("<8sHHIQQI", sbw.MAGIC, 1, 0, len(raw), len(side), len(hw), 0)
    hdr = np.concatenate([words[:6], words[f.hw[0].offset:f.hw[0].offset + len(f.hw[0].header_words())]])
    head += struct.pack("<III", zlib.crc32(raw, zlib.crc32(head)), zlib.crc32(side),
                        zlib.crc32(hdr.astype("<u2").tobytes()))
    g = sbw.from_bytes(head + raw + side + hw)
    assert g.layers[0].scale == f.layers[0].scale
    np.testing.assert_array_equal(g.state_dict()["a.weight"], f.state_dict()["a.weight"])


# -- the command line -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory, ckpt):
    import torch
    d = tmp_path_factory.mktemp("ptq")
    torch.save({k: torch.from_numpy(v) for k, v in ckpt.items()}, d / "m.pth")
    return d / "m.pth"


def test_cli_target_bits_report_and_json(ckpt_file, ckpt, tmp_path, capsys):
    from subbit.cli import main
    out, js = tmp_path / "m.sbw", tmp_path / "m.json"
    assert main(["compress", str(ckpt_file), "-o", str(out), "--target-bits", "0.8", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    rep = json.loads(js.read_text())
    assert rep["all_in_bits_per_weight"] <= 0.8 and rep["quantizer"] == "ptq-0.8b/w-layer"
    assert [t["name"] for t in rep["tensors"]] == ["conv.weight", "fc.weight", "head.weight"]
    fc = rep["tensors"][1]
    assert fc["parts"] >= 2 and len(fc["steps"]) == fc["parts"] and fc["sqnr_db"] > 0
    assert f"SQNR {rep['sqnr_db']:.2f} dB" in text and "fc.weight" in text
    # inspect --reference measures the same against the checkpoint
    assert main(["inspect", str(out), "--reference", str(ckpt_file), "--json"]) == 0
    ins = json.loads(capsys.readouterr().out)
    assert ins["sqnr_db"] == pytest.approx(rep["sqnr_db"], abs=1e-9)
    assert ins["all_in_bits_per_weight"] == pytest.approx(rep["all_in_bits_per_weight"])
    # decode gives the checkpoint back (parts put in place) and the codes per tensor
    dec, cod = tmp_path / "w.pth", tmp_path / "c.safetensors"
    assert main(["decode", str(out), "-o", str(dec), "--codes", str(cod)]) == 0
    import torch
    got = torch.load(dec, weights_only=True)
    assert list(got) == list(ckpt) and all(got[k].shape == ckpt[k].shape for k in ckpt)
    codes = sbw.read_sbw(out).tensor_codes()
    from safetensors.numpy import load_file
    assert {k: v.shape for k, v in load_file(cod).items()} == {k: v.shape for k, v in codes.items()}


def test_cli_warns_when_a_tensor_collapses(ckpt_file, tmp_path, capsys):
    from subbit.cli import main
    assert main(["compress", str(ckpt_file), "-o", str(tmp_path / "m.sbw"), "--bits", "2", "--step", "maxabs"]) == 0
    err = capsys.readouterr().err
    assert "warning: tensor 'fc.weight' collapsed: " in err and "% of its codes are 0, SQNR" in err


@pytest.mark.parametrize("argv,msg", [
    (["--target-bits", "1", "--bits", "3"], "give --bits .* or --target-bits .*, not both"),
    (["--target-bits", "0"], "--target-bits must be a positive number of bits per weight, not 0"),
    (["--target-bits", "1", "--per-channel"], "--per-channel goes with --bits"),
    (["--target-bits", "0.0001"], r"the smallest reachable is 0.0\d+ bits/weight"),
])
def test_cli_bad_budgets(ckpt_file, tmp_path, capsys, argv, msg):
    import re

    from subbit.cli import main
    assert main(["compress", str(ckpt_file), "-o", str(tmp_path / "m.sbw")] + argv) == 2
    err = capsys.readouterr().err
    assert re.search(msg, err), err
    assert list(tmp_path.iterdir()) == []


def test_inspect_reference_mismatch(ckpt_file, tmp_path, capsys):
    import torch

    from subbit.cli import main
    assert main(["compress", str(ckpt_file), "-o", str(tmp_path / "m.sbw"), "--target-bits", "1"]) == 0
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    assert main(["inspect", str(tmp_path / "m.sbw"), "--reference", str(tmp_path / "other.pth")]) == 2
    assert "tensor 'conv.weight': the reference has shape [3, 3], the stream [16, 3, 3, 3]" in capsys.readouterr().err
    torch.save({"x.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    assert main(["inspect", str(tmp_path / "m.sbw"), "--reference", str(tmp_path / "other.pth")]) == 2
    assert "the reference has no tensor 'conv.weight'" in capsys.readouterr().err


def test_infer_refuses_a_stream_in_parts(ckpt, tmp_path, capsys):
    from subbit.cli import main
    f, _ = compress.compress_to_budget(ckpt, 0.8, stream.StreamConfig())
    assert f.partitions
    sbw.write_sbw(tmp_path / "m.sbw", f)
    assert main(["infer", str(tmp_path / "m.sbw")]) == 2
    assert "codes fc.weight in parts (row and column classes" in capsys.readouterr().err


# -- calibration ------------------------------------------------------------------------------------

def test_sensitivity_is_the_mean_fisher_diagonal():
    import torch

    from subbit.model import calib
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    xs = torch.randn(16, 6)
    sens = calib.sensitivity(net, [xs[:8], (xs[8:], None)], chunk=4)
    assert set(sens) == {"0.weight", "2.weight"} and all(v > 0 for v in sens.values())
    # by hand: the mean over chunks of the mean squared gradient of the pseudo-label loss
    want = 0.0
    for c in range(0, 16, 4):
        net.zero_grad()
        out = net(xs[c:c + 4])
        torch.nn.functional.cross_entropy(out, out.argmax(1), reduction="sum").backward()
        want += float((net[2].weight.grad.double() ** 2).mean()) / 4
    assert sens["2.weight"] == pytest.approx(want, rel=1e-9)
    with pytest.raises(SubbitError, match="no calibration batch"):
        calib.sensitivity(net, [])
    with pytest.raises(SubbitError, match=r"calibration batch 0 of shape \[2, 7\]: the model failed: RuntimeError"):
        calib.sensitivity(net, [torch.randn(2, 7)])


def test_cli_calib(ckpt_file, tmp_path, capsys, monkeypatch):
    import sys

    from subbit.cli import main
    (tmp_path / "mycal.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 16, 3); self.fc = torch.nn.Linear(300, 96, bias=False)\n"
        "        self.head = torch.nn.Linear(96, 10, bias=False)\n"
        "    def forward(self, x):\n"
        "        h = torch.relu(self.conv(x)).mean((2, 3))\n"
        "        return self.head(torch.relu(self.fc(torch.cat([h] * 19, 1)[:, :300])))\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return Net(), [torch.randn(8, 3, 6, 6) for _ in range(2)]\n"
        "def bad():\n"
        "    return torch.nn.Linear(2, 2), []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "m.sbw"
    assert main(["compress", str(ckpt_file), "-o", str(out), "--target-bits", "1", "--calib", "mycal:make",
                 "--device", "cpu"]) == 0
    assert sbw.read_sbw(out).info["quantizer"] == "ptq-1b/w-calib"
    capsys.readouterr()
    for spec, msg in [("mycal", "expected MODULE:FUNCTION"), ("nomod:make", "cannot import nomod"),
                      ("mycal:nope", "mycal has no function nope"),
                      ("mycal:bad", "the model's state_dict does not match the checkpoint")]:
        assert main(["compress", str(ckpt_file), "-o", str(tmp_path / "x.sbw"), "--target-bits", "1",
                     "--calib", spec]) == 2
        assert msg in capsys.readouterr().err, spec
    assert main(["compress", str(ckpt_file), "-o", str(tmp_path / "x.sbw"), "--bits", "3", "--calib", "mycal:make"]) == 2
    assert "--calib goes with --target-bits" in capsys.readouterr().err
    sys.modules.pop("mycal", None)
