"""`subbit demo`: digits → train → stream → golden decode → accuracy check → RTL decode."""

import importlib.machinery
import sys
import types

import numpy as np
import pytest

import subbit.sim
from subbit.cli import main
from subbit.cli.demo import rtl_check
from subbit.model.errors import SubbitError
from train_util import one_torch_thread  # noqa: F401 (fixture)


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--rtl", "none", "--out", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    out, err = cap.out, cap.err
    assert "[2/4] golden decode of the file" in out and "(equal to training)" in out
    assert "RTL decode: skipped (--rtl none)" in out
    assert "digits / resnet8: 77072 weights" in out
    # the epoch lines say what their figures are, and how long is left
    assert "qat: ce = cross-entropy; rate = bits/weight of the real stream (headers included); est = " in err
    assert "goal = the estimate the λ controller steers to now" in err and ", left ~" in err
    # per-layer figures under the names inspect uses: payload and total (= payload + header) apart
    assert "entropy  payload  header bits  total" in out and "total = payload + header" in out
    assert (tmp_path / "model.sbw").exists()


@pytest.fixture
def small_stream():
    from subbit.model.compress import build_sbw
    from subbit.model.sbw import LayerMeta
    from subbit.model.stream import StreamConfig
    rng = np.random.default_rng(0)
    codes = rng.choice([-1, 0, 1], size=(8, 40), p=[0.1, 0.8, 0.1])
    return build_sbw([(LayerMeta("w", codes.shape, 2, [0.1]), codes)], {}, StreamConfig())


def test_rtl_step_uses_the_rtl_decoder_and_checks_it(small_stream, monkeypatch):
    """The RTL step goes through `subbit.sim.rtl_decode.decode_file` (here a stand-in) and
    insists on bit-exactness."""
    f = small_stream
    golden = f.decode_codes()
    calls = []

    def decode_file(f, simulator="verilator"):
        calls.append(simulator)
        return {"cycles": 400, "weights": 320, "weights_per_cycle": 0.8, "bit_exact": True, "codes": f.decode_codes()}
    fake = types.ModuleType("subbit.sim.rtl_decode")
    fake.decode_file = decode_file
    fake.__spec__ = importlib.machinery.ModuleSpec("subbit.sim.rtl_decode", None)
    monkeypatch.setitem(sys.modules, "subbit.sim.rtl_decode", fake)
    monkeypatch.setattr(subbit.sim, "rtl_decode", fake, raising=False)
    assert rtl_check(f, golden, "icarus") == ("320 weights in 400 cycles (0.800 weights/cycle on icarus), "
                                             "bit-exact with the golden model")
    assert calls == ["icarus"]
    assert rtl_check(f, golden, "none") == "skipped (--rtl none)" and calls == ["icarus"]
    fake.decode_file = lambda f, simulator: dict(decode_file(f), codes={"w": np.zeros((8, 40), np.int64)})
    with pytest.raises(SubbitError, match="the RTL decode differs from the golden decode"):
        rtl_check(f, golden, "verilator")

