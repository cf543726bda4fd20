"""Peer codecs in their own venvs (subbit.peers): cache location, build failures, the runner's stand-ins,
and (slow: builds NNCodec's venv, ~1.5 min the first time) NNCodec round trips."""

import fcntl
import json
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from subbit import peers
from subbit.model.errors import SubbitError


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SUBBIT_BUILD_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert peers.peers_cache_dir() == str(tmp_path / "home" / ".cache" / "subbit" / "peers")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")          # XDG: relative values are ignored
    assert peers.peers_cache_dir() == str(tmp_path / "home" / ".cache" / "subbit" / "peers")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert peers.peers_cache_dir() == str(tmp_path / "xdg" / "subbit" / "peers")
    monkeypatch.setenv("SUBBIT_BUILD_DIR", str(tmp_path / "b"))
    assert peers.peers_cache_dir() == str(tmp_path / "b" / "peers")
    assert peers.nncodec_dir() == str(tmp_path / "b" / "peers" / f"nncodec-{peers.NNCODEC_VERSION}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUBBIT_BUILD_DIR", "rel")
    assert peers.peers_cache_dir() == str(tmp_path / "rel" / "peers")


def test_step_of_qp():
    assert peers.nncodec_step(0) == 1.0
    assert peers.nncodec_step(-32) == 1 / 256
    assert peers.nncodec_step(-38) == 6 / 4096          # NNCodec's default qp
    assert [peers.nncodec_step(q) for q in range(4)] == [1.0, 1.25, 1.5, 1.75]
    assert peers.nncodec_step(4) == 2.0
    assert peers.nncodec_step(-1) == 0.875
    assert peers.nncodec_step(3, qp_density=1) == 3.0   # k = 2: (2 + 1) * 2**(1 - 1)


def test_sqnr():
    w = {"a": np.ones((2, 2), np.float32), "b": np.zeros((1, 3), np.float32)}
    assert peers.sqnr_db(w, w) == float("inf")
    r = {"a": np.full((2, 2), 0.9, np.float32), "b": np.zeros((1, 3), np.float32)}
    assert peers.sqnr_db(w, r) == pytest.approx(20.0, abs=1e-5)     # 4 / (4 * 0.01)


def _fake_python(tmp_path, pip_fails=True):
    """A stand-in for sys.executable: '-m venv DIR' makes DIR/bin/python (itself), '-m pip' fails (or not)."""
    fake = tmp_path / "fakepython"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi\n'
        'if [ "$2" = pip ]; then echo "fake pip: $*"; '
        + ('echo "ERROR: No matching distribution found"; exit 1; ' if pip_fails else "exit 0; ")
        + "fi\n"
        'echo "fake python cannot run $*" >&2; exit 3\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(fake)


def test_build_failure_names_the_log(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path))
    root = tmp_path / "peer"
    said = []
    with pytest.raises(SubbitError) as e:
        peers.ensure_nncodec_venv(str(root), progress=said.append)
    assert isinstance(e.value, peers.PeerError)
    log = str(root / "build.log")
    assert log in str(e.value) and peers.TORCH_SPEC in str(e.value)
    text = (root / "build.log").read_text()
    assert "No matching distribution" in text and "# exit 1" in text
    assert not (root / peers.READY).exists()
    assert said[:2] == ["nncodec venv: python -m venv", f"nncodec venv: pip install {peers.TORCH_SPEC}"]
    assert (root / "constraints.txt").read_text().strip() == peers.TORCH_SPEC
    # Not cached as a failure: the next call builds again (and fails again, at the same step).
    with pytest.raises(peers.PeerError, match="pip install torch"):
        peers.ensure_nncodec_venv(str(root), progress=lambda s: None)


def test_failed_self_test_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, pip_fails=False))
    root = tmp_path / "peer"
    with pytest.raises(peers.PeerError, match="self-test failed.*exit 3") as e:
        peers.ensure_nncodec_venv(str(root), progress=lambda s: None, packages=["bogus==0"])
    assert str(root / "build.log") in str(e.value)
    assert "-c " + str(root / "constraints.txt") + " bogus==0" in (root / "build.log").read_text()
    assert not (root / peers.READY).exists()


def test_ready_venv_is_reused(monkeypatch, tmp_path):
    root = tmp_path / "peer"
    py = root / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("")
    (root / peers.READY).write_text(json.dumps({"nncodec": peers.NNCODEC_VERSION}))
    monkeypatch.setattr(peers, "_run_logged", lambda *a, **k: pytest.fail("rebuilt a ready venv"))
    assert peers.ensure_nncodec_venv(str(root)) == str(py)
    (root / peers.READY).write_text(json.dumps({"nncodec": "0.0"}))    # another version: rebuild
    with pytest.raises(pytest.fail.Exception):
        peers.ensure_nncodec_venv(str(root), progress=lambda s: None)


def test_waits_for_a_concurrent_builder(monkeypatch, tmp_path):
    """A second caller blocks on the lock while another process builds, then takes its venv."""
    root = tmp_path / "peer"
    root.mkdir()
    monkeypatch.setattr(peers, "_run_logged", lambda *a, **k: pytest.fail("built twice"))
    said, result = [], {}
    with open(str(root) + ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)                 # "the other builder"
        t = threading.Thread(target=lambda: result.update(py=peers.ensure_nncodec_venv(str(root), said.append)))
        t.start()
        for _ in range(500):
            if said:
                break
            time.sleep(0.01)
        assert said and "another process is building it" in said[0]
        py = root / "venv" / "bin" / "python"             # the other builder finishes
        py.parent.mkdir(parents=True)
        py.write_text("")
        (root / peers.READY).write_text(json.dumps({"nncodec": peers.NNCODEC_VERSION}))
        assert t.is_alive()
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join(10)
    assert result == {"py": str(py)}


def test_inputs_are_checked_before_any_build(monkeypatch):
    monkeypatch.setattr(peers, "ensure_nncodec_venv", lambda *a, **k: pytest.fail("built the venv"))
    with pytest.raises(SubbitError, match="integer"):
        peers.nncodec_lossless({"w": np.zeros((2, 2), np.float32)})
    with pytest.raises(SubbitError, match="int32"):
        peers.nncodec_lossless({"w": np.array([[2 ** 40]])})
    with pytest.raises(SubbitError, match="rank >= 2"):
        peers.nncodec_lossy({"bias": np.zeros(4, np.float32)}, qp=-20, dq=False)
    with pytest.raises(SubbitError, match="NaN"):
        peers.nncodec_lossy({"w": np.full((2, 2), np.nan, np.float32)}, qp=-20, dq=False)
    with pytest.raises(SubbitError, match="no qp for"):
        peers.nncodec_lossy({"w": np.zeros((2, 2), np.float32)}, qp={"v": -20}, dq=False)
    with pytest.raises(SubbitError, match="unknown NNCodec coding options"):
        peers.nncodec_lossless({"w": np.zeros((2, 2), np.int64)}, options={"qp": 3})


def test_runner_stands_in_for_torchvision_and_cv2():
    """The runner's import hook (run here in a child, so that it does not stay in this process) lets
    nncodec's framework modules import: data-set classes to subclass, transforms to call."""
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({peers.RUNNER!r}, run_name='runner')\n"
        "from torchvision import datasets, transforms\n"
        "import torchvision.transforms.functional as F\n"
        "import cv2 as cv\n"
        "class D(datasets.ImageFolder): pass\n"
        "t = transforms.Compose([transforms.Resize(256), transforms.ToTensor()])\n"
        "D('root', transform=t)\n"
        "assert sys.modules['torchvision'].__version__ == '0+stub'\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
def test_nncodec_round_trips():
    py = peers.ensure_nncodec_venv(progress=lambda s: None)
    assert os.path.isfile(py)
    rng = np.random.default_rng(1)
    codes = {"conv.weight": rng.choice([-1, 0, 1], size=(8, 4, 3, 3), p=[0.1, 0.8, 0.1]),
             "fc.weight": rng.integers(-7, 8, size=(10, 64)),
             "fc.bias": np.arange(-5, 5)}
    r = peers.nncodec_lossless(codes)
    assert r["exact"] and r["weights"] == 288 + 640 + 10
    assert 0 < r["bits"] < 8 * 4 * r["weights"] and r["bits"] % 8 == 0
    assert r["bits_per_weight"] == r["bits"] / r["weights"]

    w = {"fc.weight": rng.normal(0, 0.1, size=(16, 32)).astype(np.float32),
         "conv.weight": rng.normal(0, 0.2, size=(4, 2, 3, 3)).astype(np.float32)}
    fine = peers.nncodec_lossy(w, qp=-40, dq=False)
    coarse = peers.nncodec_lossy(w, qp=-8, dq=True)
    assert set(fine["recon"]) == set(w) and fine["recon"]["conv.weight"].shape == (4, 2, 3, 3)
    step = peers.nncodec_step(-40)
    assert fine["steps"] == {"fc.weight": step, "conv.weight": step}
    for n in w:      # uniform rounding at the step: within half a step, on the grid
        assert np.abs(fine["recon"][n] - w[n]).max() <= step / 2 + 1e-7
        assert np.allclose(fine["recon"][n] / step, np.rint(fine["recon"][n] / step), atol=1e-3)
    assert fine["sqnr_db"] > 40 > coarse["sqnr_db"] and fine["bits"] > coarse["bits"]
    per = peers.nncodec_lossy(w, qp={"fc.weight": -40, "conv.weight": -8}, dq=False)
    assert np.array_equal(per["recon"]["fc.weight"], fine["recon"]["fc.weight"])
    assert per["steps"]["conv.weight"] == peers.nncodec_step(-8)
