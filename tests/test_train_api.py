"""The training API for any PyTorch model (`subbit.train` = `subbit.model.train.api`): layer
selection, the rate term in a user's loop, fit with model selection and resume, export to a
stream that `subbit decode` reads and back into the user's model class, every bad input a clear
`SubbitError` before anything is written, and the worked example of docs/training.md."""

import ast
import json
import os
import re
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import subbit.train as sbt
from subbit.cli import main
from subbit.model import SubbitError, sbw
from subbit.model.train import CheckpointError, ConfigError, DataError
from subbit.model.train import checkpoint as ckmod
from train_util import one_torch_thread  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tiny(nn.Module):
    """A small CNN for 8x8 digits, with dropout (random draws in training)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 16, 32)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


def digits_loaders(n_train=320, seed=0):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(d.target)
    tr = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=32, shuffle=True, drop_last=True,
                    generator=torch.Generator().manual_seed(seed))
    va = DataLoader(TensorDataset(x[1400:1600], y[1400:1600]), batch_size=100)
    return tr, va


def pretrained(seed=0, epochs=3):
    torch.manual_seed(seed)
    m = Tiny()
    tr, va = digits_loaders(seed=seed)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(epochs):
        for x, y in tr:
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    return m.eval(), tr, va


# -- quantize: which layers ------------------------------------------------------------------

class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.c1 = nn.Conv1d(8, 8, 3)
        self.c2 = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 2, 2)
        self.pos = nn.Parameter(torch.zeros(4, 8))
        self.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
        self.pool = nn.MaxPool2d(2)


def test_quantize_codes_conv_and_linear_and_the_layers_named():
    m = Mixed()
    q = sbt.quantize(m)
    assert q.names == ["c1.weight", "c2.weight", "head.0.weight", "head.2.weight"]   # state_dict order
    assert q.net is m and len(q.quant) == 4 and q.num_weights == 8 * 8 * 3 + 4 * 9 + 64 + 24
    q = sbt.quantize(Mixed(), ["emb", "up", "pos"], exclude=["head.2"])
    assert q.names == ["pos", "emb.weight", "c1.weight", "c2.weight", "up.weight", "head.0.weight"]
    assert sbt.select_layers(Mixed(), exclude=["c1.weight"]) == ["c2.weight", "head.0.weight", "head.2.weight"]


@pytest.mark.parametrize("model,kw,msg", [
    (nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4)), {}, r"the model has no layer to quantize: no Conv1d, Conv2d or "
                                                      r"Linear with a weight \(name others with layers=\)"),
    (nn.Sequential(nn.Linear(2, 2)), {"exclude": ["0"]}, "no layer to quantize: .* left after exclude="),
    (Mixed(), {"layers": ["bn"]}, r"layers=: layer 'bn' \(BatchNorm2d\) is not supported: its weight is float32 of "
                                  r"shape \[4\]; only floating weights of rank >= 2"),
    (Mixed(), {"layers": ["pool"]}, r"layers=: layer 'pool' \(MaxPool2d\) has no weight to quantize"),
    (Mixed(), {"layers": ["head"]}, r"layer 'head' \(Sequential\) has no weight to quantize; name its layers "
                                    r"instead \(head.0, head.2\)"),
    (Mixed(), {"layers": ["nope"]}, r"layers=: the model has no layer or parameter 'nope' \(its top-level layers: "
                                    r"emb, c1, c2, bn, up, head, pool\)"),
    (Mixed(), {"exclude": ["c3"]}, r"exclude=: the model has no layer or parameter 'c3'"),
    (Mixed(), {"layers": "emb"}, "take a list of names, not a string"),
    (Mixed(), {"init_bits": 9}, r"init_bits must be in 2..8 \(max_bits\), not 9"),
    (Mixed(), {"max_bits": 1}, r"max_bits must be in 2..8, not 1"),
    ("not a model", {}, "quantize\\(\\) takes a torch.nn.Module, not str"),
])
def test_quantize_errors(model, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        sbt.quantize(model, **kw)


def test_quantize_refuses_tied_weights():
    m = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    m[1].weight = m[0].weight
    with pytest.raises(ConfigError, match=r"parameters '0.weight' and '1.weight' are one tensor \(tied weights\)"):
        sbt.quantize(m)
    with pytest.raises(ConfigError, match="tied weights"):      # one coded, its alias float: not one tensor
        sbt.quantize(m, exclude=["1"])


def test_no_tensor_on_a_hard_coded_device():
    """Everything the training code creates follows its inputs' device: every torch.zeros / ones /
    tensor / arange / full / empty / rand* call in model/train/ names a device, or says why the
    CPU is meant ("# on the CPU")."""
    makers = {"zeros", "ones", "tensor", "arange", "full", "empty", "rand", "randn", "randint", "randperm", "eye",
              "linspace"}
    bad = []
    for name in sorted(os.listdir(os.path.join(ROOT, "model", "train"))):
        if not name.endswith(".py"):
            continue
        path = os.path.join(ROOT, "model", "train", name)
        with open(path) as fh:
            src = fh.read()
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in makers
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and not any(k.arg == "device" for k in node.keywords)
                    and "# on the CPU" not in lines[node.lineno - 1]):
                bad.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, "\n".join(bad)


# -- the rate term in the user's own loop --------------------------------------------------------

def test_rate_term_in_your_own_loop():
    m, tr, va = pretrained()
    q = sbt.quantize(m)
    r = q.rate()
    assert r.dim() == 0 and r.requires_grad and abs(float(r.detach()) - q.measure()) < 0.05
    r.backward()
    assert q.quant[0].log_s.grad is not None and q.quant[0].log_n.grad is not None
    assert m.fc1.weight.grad is not None and float(m.fc1.weight.grad.abs().sum()) > 0
    term = sbt.RateTerm(q, target_bits=1.0, total_steps=3 * len(tr), ramp=0.5, lam0=0.05)
    opt = torch.optim.AdamW([{"params": m.parameters(), "lr": 1e-3},
                             {"params": q.quantizer_parameters(), "lr": 1e-2}])
    start = q.measure()
    for _ in range(3):
        q.train()
        for x, y in tr:
            loss = F.cross_entropy(q(x), y) + term()
            opt.zero_grad()
            loss.backward()
            opt.step()
        exact = term.calibrate()
        assert exact == q.measure()
    assert exact < start and term.last is not None and term.controller.steps == 3 * len(tr)
    st = term.state_dict()
    other = sbt.RateTerm(q, 1.0, total_steps=30)
    other.load_state_dict(st)
    assert other.lam == term.lam and other.goal() == term.goal()


@pytest.mark.parametrize("target,msg", [
    (0, "target_bits must be a positive number of bits per weight, not 0"),
    (-1.0, "target_bits must be a positive number of bits per weight, not -1.0"),
    (float("nan"), "not nan"), ("1", "not '1'"), (True, "not True"),
    (0.01, r"target_bits 0.01 is below what the stream's headers alone cost: 0\.\d{4} bits/weight for the 4488 "
           r"coded weights of this model in 3 layers \(every weight 0\); ask for more than 0\.\d{4}"),
])
def test_rate_term_and_fit_refuse_unreachable_budgets(target, msg, tmp_path):
    m, tr, va = pretrained(epochs=0)
    q = sbt.quantize(m)
    with pytest.raises(ConfigError, match=msg):
        sbt.RateTerm(q, target, total_steps=10)
    with pytest.raises(ConfigError, match=msg):
        sbt.fit(q, tr, va, target_bits=target, epochs=1, checkpoint_dir=tmp_path / "ck")
    assert not os.listdir(tmp_path)
    floor = q.floor_bits()
    assert q.num_weights == 4488 and floor == pytest.approx(16 * (6 + 3 * 22) / 4488)    # stream header + 3 layer headers (words)


# -- fit, export, import ---------------------------------------------------------------------

def test_fit_then_stream_then_your_model_class(tmp_path, capsys):
    m, tr, va = pretrained()
    q = sbt.quantize(m)
    lines = []
    res = sbt.fit(q, tr, va, target_bits=3.8, epochs=3, evals_per_epoch=2, lam0=0.5, gain=0.2, log=lines.append)
    assert isinstance(res, sbt.FitResult) and res.model is q and len(res.history) == 6
    assert res.chosen in res.history and res.score == res.chosen["val_accuracy"]
    assert res.budget_met and res.bits_per_weight <= 3.8 and res.history[0]["bits_per_weight"] > 3.8
    fitting = [p for p in res.history if p["bits_per_weight"] <= 3.8]
    assert res.score == max(p["val_accuracy"] for p in fitting)             # model selection as in the flow
    assert q.measure() == res.bits_per_weight and not q.training
    assert any("qat 3.00/3: ce" in ln for ln in lines)

    path = tmp_path / "tiny.sbw"
    rep = sbt.save_sbw(q, path, info={"note": "test"})
    assert rep["bits_per_weight"] == res.bits_per_weight and rep["file_bytes"] == os.path.getsize(path)
    f = sbw.read_sbw(path)
    assert f.info == {"producer": "subbit.train", "note": "test"}
    assert [m_.name for m_ in f.layers] == ["conv.weight", "fc1.weight", "fc2.weight"]
    x = next(iter(va))[0]
    ref = q.quantized_model()
    with torch.no_grad():
        want = ref(x)
        assert torch.equal(sbt.load_sbw(path, Tiny())(x), want)
        assert torch.equal(sbt.load_sbw(path.read_bytes(), Tiny())(x), want)
    sd = sbt.sbw_state_dict(path)
    assert list(sd) == list(Tiny().state_dict()) and sd["bn.num_batches_tracked"].dtype == torch.int64
    fresh = Tiny()
    fresh.load_state_dict(sd)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), want)
    # the command line reads it: subbit decode -o gives the same state_dict
    assert main(["decode", str(path), "-o", str(tmp_path / "w.pth")]) == 0
    got = torch.load(tmp_path / "w.pth")
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    with pytest.raises(CheckpointError, match="the weight stream does not match the model"):
        sbt.load_sbw(path, Mixed())


def test_exported_stream_decodes_on_the_rtl(tmp_path, capsys):
    """`subbit decode --rtl` (Verilator) on a stream written by the API: bit-exact codes."""
    pytest.importorskip("subbit.sim.rtl_decode")
    m, tr, va = pretrained(epochs=1)
    q = sbt.quantize(m, init_bits=3)
    path = tmp_path / "t.sbw"
    sbt.save_sbw(q, path)
    assert main(["decode", str(path), "--rtl", "verilator", "--codes", str(tmp_path / "c.safetensors")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["weights"] == q.num_weights
    from subbit.model import checkpoint
    codes = checkpoint.load_state_dict(tmp_path / "c.safetensors")
    for meta, want in q.export():
        np.testing.assert_array_equal(codes[meta.name], want)


def test_fit_with_a_metric_and_a_plain_module():
    m, tr, va = pretrained()
    seen = []

    def neg_loss(model):
        seen.append(model.training)
        with torch.no_grad():
            return -float(sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in va))
    res = sbt.fit(m, tr, metric=neg_loss, target_bits=3.0, epochs=1, log=None)   # a plain module: quantized here
    assert isinstance(res.model, sbt.QuantNet) and res.model.net is m
    assert "val_metric" in res.chosen and res.score == res.chosen["val_metric"] < 0
    with pytest.raises(ConfigError, match=r"the metric returned str 'x', not a number"):
        sbt.fit(Tiny(), tr, metric=lambda model: "x", target_bits=3.0, epochs=1, log=None)


class NoLen:
    def __iter__(self):
        return iter([])


@pytest.mark.parametrize("case,exc,msg", [
    ("wrong_inputs", DataError, r"the model fails on the first training batch, inputs \[32, 1, 28, 28\] float32: "
                                r"RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    ("wrong_targets", DataError, r"the loss fails on the first training batch: outputs \[32, 10\] float32, targets "
                                 r"\[32, 3\] int64: "),
    ("val_targets", DataError, r"the first validation batch gives outputs \[100, 10\] float32 for targets \[100\] "
                               r"float32: top-1 accuracy needs \(N, classes\) scores and N class indices"),
    ("not_pairs", DataError, r"the first training batch is a tuple of 3 items: a loader must yield \(inputs, "
                             r"targets\) pairs"),
    ("no_len", DataError, r"the training loader \(NoLen\) has no len\(\)"),
    ("empty", DataError, "the training loader is empty"),
    ("both", ConfigError, r"fit needs a validation loader \(val=\) or a metric= callable \(exactly one of them\)"),
    ("neither", ConfigError, r"exactly one of them"),
    ("epochs", ConfigError, "epochs must be an integer >= 1, not 0"),
    ("ramp", ConfigError, r"ramp must be a number in 0..1, not 2"),
    ("no_layer", ConfigError, "the model has no layer to quantize"),
])
def test_fit_bad_input_is_a_clear_error_before_anything(case, exc, msg, tmp_path):
    m, tr, va = pretrained(epochs=0)
    x, y = next(iter(tr))
    kw = dict(target_bits=2.0, epochs=1, checkpoint_dir=tmp_path / "ck", log=None)
    model, train, val = m, tr, va
    if case == "wrong_inputs":
        train = [(torch.randn(32, 1, 28, 28), y)] * 3
    elif case == "wrong_targets":
        train = [(x, torch.zeros(32, 3, dtype=torch.int64))]
    elif case == "val_targets":
        val = [(next(iter(va))[0], torch.zeros(100))]
    elif case == "not_pairs":
        train = [(x, y, y)]
    elif case == "no_len":
        train = NoLen()
    elif case == "empty":
        train = []
    elif case == "both":
        kw["metric"] = lambda model: 0.0
    elif case == "neither":
        val = None
    elif case == "epochs":
        kw["epochs"] = 0
    elif case == "ramp":
        kw["ramp"] = 2
    elif case == "no_layer":
        model = nn.Sequential(nn.Flatten(), nn.ReLU())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(exc, match=msg):
        sbt.fit(model, train, val, **kw)
    assert not os.listdir(tmp_path)                     # no checkpoint directory
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())    # the model untouched


# -- resume ----------------------------------------------------------------------------------

def _fit(ck, resume=False, stop_at=None, monkeypatch=None):
    m, tr, va = pretrained()
    q = sbt.quantize(m)
    if stop_at is not None:
        orig, count = ckmod.PhaseCheckpoint.save, [0]

        def save(self, state):
            orig(self, state)
            count[0] += 1
            if count[0] == stop_at:
                raise ckmod.Interrupted(signal.SIGTERM)
        monkeypatch.setattr(ckmod.PhaseCheckpoint, "save", save)
    try:
        res = sbt.fit(q, tr, va, target_bits=2.5, epochs=3, evals_per_epoch=2, checkpoint_dir=ck, resume=resume,
                      log=None)
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()
    return q, res


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    torch.set_num_threads(1)
    return _fit(tmp_path_factory.mktemp("ref") / "ck")


@pytest.mark.parametrize("stop_at", [1, 2, 4, 6])     # mid-epoch, end of epoch, ..., the last evaluation point
def test_fit_resumes_to_the_same_network(stop_at, tmp_path, monkeypatch, uninterrupted):
    """Stopped right after its k-th checkpoint (dropout, a shuffling DataLoader with its own
    generator), then resumed: the same history and the same network, bit for bit."""
    ck = tmp_path / "ck"
    with pytest.raises(ckmod.Interrupted):
        _fit(ck, stop_at=stop_at, monkeypatch=monkeypatch)
    assert os.listdir(ck) == ["qat.pt"]
    with pytest.raises(CheckpointError, match=r"holds the checkpoint of an earlier run: pass resume=True"):
        _fit(ck)
    q, res = _fit(ck, resume=True)
    q0, res0 = uninterrupted
    assert res.history == res0.history and res.chosen == res0.chosen
    for (k, a), b in zip(q0.state_dict().items(), q.state_dict().values()):
        assert torch.equal(a, b), k
    q2, res2 = _fit(ck, resume=True)          # done: nothing trained again, the same network
    assert res2.history == res0.history and all(torch.equal(a, b) for a, b in
                                                zip(q0.state_dict().values(), q2.state_dict().values()))


def test_fit_resume_refuses_another_model_version_or_setting(tmp_path):
    ck = tmp_path / "ck"
    m, tr, va = pretrained(epochs=0)
    sbt.fit(sbt.quantize(m), tr, va, target_bits=3.0, epochs=1, checkpoint_dir=ck, log=None)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(CheckpointError, match=r"qat.pt was made for another model: it lacks net.1.weight, net.1.bias; it has "
                                                r"net.conv.weight, net.conv.bias, net.bn.weight, net.bn.bias ... that "
                                                r"this model has not"):
        sbt.fit(sbt.quantize(other), [(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64))], va,
                target_bits=3.0, epochs=1, checkpoint_dir=ck, resume=True, log=None)
    with pytest.raises(CheckpointError, match=r"was made with other settings: epochs=1 there, 2 here"):
        sbt.fit(sbt.quantize(Tiny()), tr, va, target_bits=3.0, epochs=2, checkpoint_dir=ck, resume=True, log=None)
    blob = torch.load(ck / "qat.pt", weights_only=True)
    blob["identity"]["version"] = 0
    torch.save(blob, ck / "qat.pt")
    with pytest.raises(CheckpointError, match=r"qat.pt was written with checkpoint format 0, this is 1: it cannot "
                                              r"be resumed"):
        sbt.fit(sbt.quantize(Tiny()), tr, va, target_bits=3.0, epochs=1, checkpoint_dir=ck, resume=True, log=None)
    (ck / "qat.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*qat.pt"):
        sbt.fit(sbt.quantize(Tiny()), tr, va, target_bits=3.0, epochs=1, checkpoint_dir=ck, resume=True, log=None)


def test_signal_during_a_checkpoint_write_waits_for_it(tmp_path):
    """SIGTERM inside the write: held, raised when the file is complete."""
    m = Tiny()
    ck = ckmod.PhaseCheckpoint(tmp_path / "p.pt", phase="x", model=m, settings={})
    with ckmod.stop_on_signals():
        with pytest.raises(ckmod.Interrupted) as e:
            with ckmod.critical():
                os.kill(os.getpid(), signal.SIGTERM)
                ck.save({"a": 1})
        assert e.value.name == "SIGTERM" and e.value.signum == signal.SIGTERM
        assert ck.load() == {"a": 1}
        with pytest.raises(ckmod.Interrupted):       # outside a critical section: at once
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGTERM) is not ckmod._handler


# -- devices -----------------------------------------------------------------------------------

def test_device_names():
    from subbit.model.train.loop import resolve_device
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="--device must be auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda: CUDA is not available on this machine"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fit_on_cuda_follows_the_model(tmp_path):
    m, tr, va = pretrained()
    q = sbt.quantize(m.cuda())
    assert all(p.is_cuda for p in q.parameters())
    res = sbt.fit(q, tr, va, target_bits=3.0, epochs=1, log=None)     # CPU batches moved to the model
    sbt.save_sbw(q, tmp_path / "c.sbw")
    assert res.bits_per_weight == q.measure()


# -- the documented example --------------------------------------------------------------------

def test_training_md_example_runs(tmp_path, monkeypatch, capsys):
    """The python blocks of docs/training.md, in order, in one namespace: the worked example
    (a network defined in it, digits, fit to 1 bit/weight, stream, back into the class)."""
    with open(os.path.join(ROOT, "docs", "training.md")) as fh:
        blocks = re.findall(r"```python\n(.*?)```", fh.read(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    ns = {}
    for code in blocks:
        exec(compile(code, "docs/training.md", "exec"), ns)
    assert ns["stream"]["bits_per_weight"] <= 1.0 and (tmp_path / "net.sbw").is_file()
    assert ns["fp32"] - ns["acc"] <= 0.01
    assert "bits/weight, test accuracy" in capsys.readouterr().out


def test_subbit_error_hierarchy():
    assert all(issubclass(e, SubbitError) for e in (ConfigError, DataError, CheckpointError))


def test_the_first_batch_check_draws_no_random_number():
    """fit's look at the first batches leaves every RNG as it was: the user's loader shuffles as
    it would have without it."""
    from subbit.model.train.api import _dry_run
    m, tr, va = pretrained(epochs=0)
    g = tr.generator.get_state()
    cpu = torch.get_rng_state()
    _dry_run(sbt.quantize(m), tr, va, F.cross_entropy)
    assert torch.equal(tr.generator.get_state(), g) and torch.equal(torch.get_rng_state(), cpu)
