"""Row classes in training (`subbit train --row-classes`): the classed rate estimate, its
gradient, the QuantNet that keeps the classes, and the option's validation."""

import math

import numpy as np
import pytest
import torch

from subbit.model import stream
from subbit.model.stream import TABLE_CHOICES
from subbit.model.train.rate import (STREAM_HEADER_BITS, assign_classes, classed_bits, classed_header_bits,
                                     header_bits, layer_rate, rate_bits)
from train_util import one_torch_thread  # noqa: F401 (fixture)

CFG = stream.StreamConfig()


def _rows_layer(seed=0, rows=48, length=400):
    """Continuous and integer codes with row structure: dead rows, sparse rows, dense rows."""
    g = torch.Generator().manual_seed(seed)
    kind = torch.arange(rows) % 3                                    # 0 dead, 1 sparse, 2 dense
    scale = torch.tensor([0.05, 0.35, 1.4])[kind][:, None]
    u = (torch.randn(rows, length, generator=g) * scale).clamp(-3, 3)
    return u, torch.round(u).long(), 3


def _real_bits(codes, tables):
    lay = stream.encode_codes(codes, CFG, tables=tables)
    return 16 * len(stream.build([lay], CFG)), lay


def test_classed_estimate_is_the_classed_coded_size():
    u, codes, k = _rows_layer()
    cls, words = assign_classes(codes, CFG.prob_bits, TABLE_CHOICES["auto"], CFG.states)
    T = int(cls.max()) + 1
    real, lay = _real_bits(codes.numpy(), "auto")
    assert lay.tables == T > 1 and np.array_equal(lay.classes, cls)        # the encoder's own choice
    assert len(lay.class_index) == words
    assert classed_header_bits(codes.numel(), lay.nsym, CFG.states, T, words) == 16 * len(lay.header_words())
    est, hdr = rate_bits([(u, codes, k, torch.from_numpy(cls), words)], CFG.states)
    n = codes.numel()
    assert float(est) * n == pytest.approx(real, rel=0.01)
    one, _ = rate_bits([(u, codes, k)], CFG.states)
    real1, _ = _real_bits(codes.numpy(), 1)
    assert float(one) * n == pytest.approx(real1, rel=0.01)
    assert float(est) < 0.9 * float(one)                                  # the classes pay here
    assert hdr * n == STREAM_HEADER_BITS + 16 * len(lay.header_words())


def test_one_class_is_exactly_the_one_table_estimate():
    u, codes, k = _rows_layer(1)
    zeros = torch.zeros(codes.shape[0], dtype=torch.int64)
    a, ha = rate_bits([(u, codes, k)], CFG.states)
    b, hb = rate_bits([(u, codes, k, zeros, 0)], CFG.states)
    c, hc = rate_bits([(u, codes, k, None, 0)], CFG.states)
    assert float(a) == float(b) == float(c) and ha == hb == hc
    assert float(classed_bits(u, codes, k, zeros)) == float(codes.numel() * layer_rate(u, codes, k))
    assert classed_header_bits(100, 5, 6, 1, 0) == header_bits(100, 5, 6)
    # i.i.d. rows: no classes pay, the chooser keeps one table (as the encoder does)
    g = torch.Generator().manual_seed(2)
    flat = torch.round(torch.randn(32, 300, generator=g) * 0.7).long()
    cls, words = assign_classes(flat, CFG.prob_bits, TABLE_CHOICES["auto"], CFG.states)
    assert not cls.any() and words == 0 and _real_bits(flat.numpy(), "auto")[1].tables == 1
    assert assign_classes(flat, CFG.prob_bits, (), CFG.states)[1] == 0          # row_classes 1: no candidates
    # rows shorter than the lanes: the encoder keeps one table, and so does the estimate
    _, short, _ = _rows_layer(5, rows=200, length=6)
    cfg1, cfg8 = stream.StreamConfig(12, 1, 6), stream.StreamConfig(12, 8, 6)
    assert assign_classes(short, 12, TABLE_CHOICES["auto"], cfg1.states, lanes=1)[1] > 0
    assert stream.encode_codes(short.numpy(), cfg1, tables="auto").tables > 1
    assert assign_classes(short, 12, TABLE_CHOICES["auto"], cfg8.states, lanes=8)[1] == 0
    assert stream.encode_codes(short.numpy(), cfg8, tables="auto").tables == 1


def test_classed_value_is_the_hard_class_entropy():
    u, codes, k = _rows_layer(3)
    cls = torch.arange(codes.shape[0]) % 3
    want = 0.0
    for t in range(3):
        c = codes[cls == t].reshape(-1)
        p = torch.bincount(c + 3).double() / c.numel()
        p = p[p > 0]
        want += float(-(p * torch.log2(p)).sum()) * c.numel()
    assert float(classed_bits(u, codes, k, cls)) == pytest.approx(want, rel=1e-6)


def test_classed_gradient_pulls_each_row_toward_its_class():
    u, codes, k = _rows_layer(4, rows=6, length=200)
    u = u.clone()
    u[0, 0] = u[2, 0] = 0.4                    # the same value in a nearly dead row and in a dense row
    u.requires_grad_(True)
    codes = torch.round(u.detach()).long()
    cls = torch.tensor([0, 1, 2, 0, 1, 2])
    bits = classed_bits(u, codes, k, cls)
    bits.backward()
    g = u.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert float(g[0, 0]) > float(g[2, 0]) > 0          # both pulled toward 0, the dead row's much harder
    # magnitude: log2(p_t[floor u] / p_t[floor u + 1]) of the row's class's soft histogram
    from subbit.model.train.rate import soft_histogram
    for r in (0, 2):
        p = soft_histogram(u.detach()[cls == cls[r]], k)
        assert float(g[r, 0]) == pytest.approx(math.log2(p[k] / p[k + 1]), rel=1e-4)
    # and through rate_bits, in bits per weight
    u.grad = None
    est, _ = rate_bits([(u, codes, k, cls, 4)], CFG.states)
    est.backward()
    assert torch.allclose(u.grad * codes.numel(), g)


def _net(rows=24):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, rows), torch.nn.ReLU(), torch.nn.Linear(rows, 4))
    with torch.no_grad():                                 # half the output channels nearly dead
        net[0].weight[: rows // 2] *= 0.02
    return net


def test_quantnet_keeps_and_refreshes_the_classes():
    from subbit.model.train.qnet import QuantNet
    one = QuantNet(_net(), init_bits=3)
    qn = QuantNet(_net(), init_bits=3, row_classes="auto", class_every=3)
    assert set(qn.state_dict()) - set(one.state_dict()) == {
        "row_class.classes_0", "row_class.classes_1", "row_class.class_words", "row_class.calls"}
    assert one.row_class is None and "row_class" not in "".join(one.state_dict())
    with torch.no_grad():
        assert float(qn.rate()) == float(one.rate())      # nothing assigned yet: one table
    assert int(qn.row_class.calls) == 0                   # without gradients: not a training step
    r = qn.rate()
    assert r.requires_grad and int(qn.row_class.calls) == 1
    assert int(qn.row_class.classes_0.max()) >= 1 and int(qn.row_class.class_words[0]) > 0
    assert float(r.detach()) < float(one.rate().detach())
    exact = qn.measure()                                  # the stream codes with tables="auto"
    f = qn.to_sbw()
    assert f.hw[0].tables > 1 and np.array_equal(f.hw[0].classes, qn.row_class.classes_0.numpy())
    assert float(r.detach()) == pytest.approx(exact, rel=0.02)
    assert exact < one.measure()
    before = qn.row_class.classes_0.clone()
    with torch.no_grad():
        qn.net[0].weight[:] = qn.net[0].weight.flip(0)    # the dead rows move: the classes follow ...
    qn.rate()
    qn.rate()
    assert torch.equal(qn.row_class.classes_0, before)    # ... at the next refresh (every 3 calls)
    qn.rate()
    assert not torch.equal(qn.row_class.classes_0, before)
    assert int(qn.row_class.calls) == 4


def test_training_with_row_classes_runs_and_resumes_the_classes(tmp_path):
    import subbit.train as sbt
    torch.manual_seed(0)
    x = torch.randn(256, 64)
    y = (x[:, :4].argmax(1))
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    qn = sbt.quantize(_net(), init_bits=3, row_classes=4)
    res = sbt.fit(qn, train, train, target_bits=2.0, epochs=2, log=None, checkpoint_dir=tmp_path)
    assert res.chosen is not None and int(qn.row_class.calls) > 0
    saved = torch.load(tmp_path / "qat.pt", weights_only=True)
    assert saved["identity"]["settings"]["row_classes"] == 4
    assert torch.equal(saved["state"]["qnet"]["row_class.classes_0"], qn.row_class.classes_0)
    again = sbt.quantize(_net(), init_bits=3, row_classes=4)                # resumed: the classes come back
    sbt.fit(again, train, train, target_bits=2.0, epochs=2, log=None, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(again.row_class.classes_0, qn.row_class.classes_0)
    from subbit.model.train import CheckpointError
    with pytest.raises(CheckpointError, match="other settings: row_classes=4 there, 2 here"):
        sbt.fit(sbt.quantize(_net(), init_bits=3, row_classes=2), train, train, target_bits=2.0, epochs=2,
                log=None, checkpoint_dir=tmp_path, resume=True)
    path = tmp_path / "m.sbw"
    rep = sbt.save_sbw(qn, path)
    assert rep["bits_per_weight"] == pytest.approx(res.bits_per_weight)
    back = sbt.load_sbw(path, _net())
    assert torch.equal(back.state_dict()["0.weight"], qn.quantized_state_dict()["0.weight"])


@pytest.mark.parametrize("bad", [3, "3", "many", 0, True, 16])
def test_row_classes_option_is_validated(bad, tmp_path, capsys):
    from subbit.cli import main
    from subbit.model.train import ConfigError, TrainConfig
    from subbit.model.train.qnet import QuantNet
    with pytest.raises(ConfigError, match=r"--row-classes must be 1, 2, 4, 8 or auto .*not "):
        TrainConfig(row_classes=bad, out=str(tmp_path / "o")).resolved()
    with pytest.raises(ConfigError, match=r"row_classes must be 1, 2, 4, 8 or auto"):
        QuantNet(_net(), row_classes=bad)
    if isinstance(bad, str):
        out = tmp_path / "out"
        assert main(["train", "--target-bits", "1", "--row-classes", bad, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("subbit train: error: --row-classes must be 1, 2, 4, 8 or auto") and bad in err
        assert not out.exists()


def test_row_classes_option_parses_and_resumes():
    from subbit.cli import build_parser
    from subbit.cli.training import command_line, config_from_args
    args = build_parser().parse_args(["train", "--out", "o", "--target-bits", "0.25", "--dataset", "mnist",
                                      "--row-classes", "auto"])
    assert command_line(args).endswith("--row-classes auto")
    assert config_from_args(args).resolved().row_classes == "auto"
    args = build_parser().parse_args(["train", "--out", "o", "--target-bits", "0.25", "--row-classes", "4"])
    assert config_from_args(args).resolved().row_classes == 4
    args = build_parser().parse_args(["train", "--out", "o", "--target-bits", "0.25"])
    assert "--row-classes" not in command_line(args) and config_from_args(args).resolved().row_classes == 1


def test_a_resumed_run_goes_on_with_the_same_classes(tmp_path, monkeypatch):
    """Stopped at an evaluation point between two refreshes of the classes and resumed, training
    ends with the network (classes and refresh count included) of the uninterrupted run."""
    import signal

    import subbit.train as sbt
    from subbit.model.train import checkpoint as ckmod
    from subbit.model.train.qnet import QuantNet
    torch.manual_seed(0)
    x = torch.randn(256, 64)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, :4].argmax(1)), batch_size=16)

    def run(d, resume=False):
        qn = QuantNet(_net(), init_bits=3, row_classes="auto", class_every=3)
        sbt.fit(qn, train, train, target_bits=2.0, epochs=2, evals_per_epoch=3, log=None, checkpoint_dir=d,
                resume=resume)
        return qn
    ref = run(tmp_path / "ref")
    orig, count = ckmod.PhaseCheckpoint.save, [0]

    def save(self, state):
        orig(self, state)
        count[0] += 1
        if count[0] == 2:                                   # at step 11 of 32: the classes were set at step 9
            raise ckmod.Interrupted(signal.SIGTERM)
    monkeypatch.setattr(ckmod.PhaseCheckpoint, "save", save)
    with pytest.raises(ckmod.Interrupted):
        run(tmp_path / "cut")
    monkeypatch.undo()
    again = run(tmp_path / "cut", resume=True)
    a, b = ref.state_dict(), again.state_dict()
    assert set(a) == set(b) and int(b["row_class.calls"]) > 11       # the kept network: after the cut
    assert all(torch.equal(a[k], b[k]) for k in a)
