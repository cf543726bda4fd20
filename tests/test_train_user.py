"""`subbit train` on the user's code (`--model` / `--data MODULE:FUNCTION`, a module or a .py file),
the worked example examples/train_your_own.py (a network subbit does not ship, through the public
API only), and every bad input of user code: a clear error, exit code 2, nothing written."""

import json
import os
import sys

import pytest
import torch

from subbit.cli import main
from subbit.model import sbw
from train_util import fake_mnist_dir, one_torch_thread  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "train_your_own.py")

USER = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 10)

    def forward(self, x):
        return self.fc(torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


def make():
    return Net()


def loaders():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    return (DataLoader(TensorDataset(x[:600], y[:600]), batch_size=50, shuffle=True, generator=g),
            DataLoader(TensorDataset(x[600:800], y[600:800]), batch_size=100))


def three():
    tr, va = loaders()
    return {"train": tr, "val": va, "test": va}


def not_a_model():
    return 3


def no_layers():
    return nn.Sequential(nn.Flatten(), nn.ReLU())


def bad_loaders():
    return "loaders"


def broken():
    raise RuntimeError("no data today")
'''


@pytest.fixture
def user(tmp_path):
    p = tmp_path / "usercode.py"
    p.write_text(USER)
    from subbit.model.train import user as usermod
    usermod._FILES.clear()
    sys.modules.pop("usercode", None)
    yield p
    sys.modules.pop("usercode", None)


def test_your_model_and_your_loaders(tmp_path, user, capsys):
    out = tmp_path / "out"
    argv = ["train", "--model", f"{user}:make", "--data", f"{user}:loaders", "--qat-epochs", "3",
            "--ternary-epochs", "0", "--target-bits", "3", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["model"] == f"{user}:make" and rep["dataset"] == f"{user}:loaders"
    assert rep["config"]["epochs"] == 0 and rep["config"]["batch_size"] is None and rep["config"]["width"] is None
    assert rep["data"]["sizes"] == {"train": 600, "val": 200}
    assert rep["data"]["test"] == "the validation loader (no test loader given)"
    assert rep["weights"] == 72 + 1280 and rep["accuracy"] == rep["quantized_accuracy"]
    assert sorted(os.listdir(out)) == ["model.sbw", "pareto.png", "report.json"]
    sys.path.insert(0, str(user.parent))
    try:
        import usercode
        import subbit.train as sbt
        net = sbt.load_sbw(out / "model.sbw", usercode.Net())
        _, val = usercode.loaders()
        with torch.no_grad():
            acc = sum(int((net(x).argmax(1) == y).sum()) for x, y in val) / 200
        assert acc == rep["accuracy"]
    finally:
        sys.path.remove(str(user.parent))
    assert f"{user}:loaders / {user}:make: 1352 weights" in capsys.readouterr().out


def test_your_model_on_a_built_in_dataset(tmp_path, capsys):
    """The example's SmallVGG on digits, its factory given the dataset's geometry."""
    out = tmp_path / "vgg"
    assert main(["train", "--model", f"{EXAMPLE}:make_model", "--dataset", "digits", "--subset", "300", "--epochs",
                 "2", "--qat-epochs", "2", "--ternary-epochs", "0", "--target-bits", "3", "--no-progress",
                 "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["weights"] == 81824 and rep["dataset"] == "digits"
    assert [L["name"] for L in rep["layers"]] == ["features.0.weight", "features.3.weight", "features.7.weight",
                                                  "features.10.weight", "classifier.1.weight", "classifier.4.weight"]
    assert sbw.read_sbw(out / "model.sbw").info["model"] == f"{EXAMPLE}:make_model"


@pytest.mark.parametrize("args,msg", [
    (["--model", "{u}:make", "--data", "{u}:loaders", "--dataset", "digits"], "--dataset and --data are exclusive"),
    (["--data", "{u}:loaders"], "--data needs --model MODULE:FUNCTION (your model; the built-in models"),
    (["--model", "resnet8", "--data", "{u}:loaders"], "--data needs --model MODULE:FUNCTION"),
    (["--model", "{u}:make", "--data", "loaders"], "--data 'loaders': expected MODULE:FUNCTION"),
    (["--model", "{u}:make", "--data", "{u}:loaders", "--batch-size", "8"],
     "--batch-size applies to the built-in datasets: your loaders set it with --data"),
    (["--model", "no_such_module_xyz:make"], "--model 'no_such_module_xyz:make': cannot import no_such_module_xyz: "
                                             "ModuleNotFoundError"),
    (["--model", "{tmp}/none.py:make"], "--model '{tmp}/none.py:make': no file {tmp}/none.py"),
    (["--model", "{u}:nothing"], "--model '{u}:nothing': {u} has no function nothing"),
    (["--model", "{u}:not_a_model"], "--model '{u}:not_a_model': the factory returned int, not a torch.nn.Module"),
    (["--model", "{u}:no_layers"], "the model has no layer to quantize: no Conv1d, Conv2d or Linear with a weight"),
    (["--model", "{u}:make", "--data", "{u}:bad_loaders"],
     "--data '{u}:bad_loaders': the function must return (train, val), (train, val, test) or a dict of loaders, "
     "not str"),
    (["--model", "{u}:make", "--data", "{u}:broken"], "--data '{u}:broken': the function failed: RuntimeError: no "
                                                      "data today"),
    (["--model", "{u}:make", "--dataset", "fashion-mnist", "--data-dir", "{tmp}/fm"],
     "the model fails on the first training batch, inputs [128, 1, 28, 28] float32: RuntimeError: mat1 and mat2 "
     "shapes cannot be multiplied (128x1568 and 128x10)"),
    (["--model", "{u}:make", "--target-bits", "0.01"],
     "--target-bits 0.01 is below what the stream's headers alone cost: 0.5917 bits/weight for the 1352 coded "
     "weights of this model in 2 layers (every weight 0); ask for more than 0.5917"),
    (["--model", "{u}:make", "--sweep", "2,0.5"], "--sweep 0.5 is below what the stream's headers alone cost"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda[:N], not 'tpu'"),
    (["--model", "{u}:make", "--dataset", "mnist", "--epochs", None],
     "--model {u}:make on mnist: give --epochs N to train it in fp32 first, or --epochs 0 if the factory returns "
     "a trained network"),
])
def test_bad_user_input_is_a_clear_error_and_writes_nothing(args, msg, tmp_path, user, capsys):
    fake_mnist_dir(tmp_path / "fm", n_train=200, n_test=20)
    fmt = {"u": user, "tmp": tmp_path}
    out = tmp_path / "out"
    argv = ["train", "--target-bits", "1", "--epochs", "1", "--qat-epochs", "1", "--no-progress", "--out", str(out)]
    if "--target-bits" in args:
        argv = argv[:1] + argv[3:]
    if None in args:            # ["--epochs", None]: the option left out
        i = args.index(None)
        args = args[:i - 1] + args[i + 1:]
        argv = argv[:3] + argv[5:]
    assert main(argv + [a.format(**fmt) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("subbit train: error: ") and msg.format(**fmt) in err, err
    assert sorted(os.listdir(tmp_path)) == ["fm", "usercode.py"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
def test_cuda_without_cuda(tmp_path, capsys):
    assert main(["train", "--target-bits", "1", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "--device cuda: CUDA is not available on this machine" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def _example(argv):
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_your_own_test", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.main(argv)


def test_example_quick(tmp_path, capsys):
    """The example file end to end, short: stream written, read back by `subbit decode`, loaded
    into a fresh SmallVGG with the accuracy it reports."""
    out = tmp_path / "vgg"
    mod, res = _example(["--epochs", "2", "--qat-epochs", "2", "--target-bits", "3", "--out", str(out)])
    assert res["weights"] == 81824 and res["world_size"] == 1
    assert json.loads((out / "result.json").read_text()) == res
    assert sorted(os.listdir(out)) == ["checkpoint", "model.sbw", "result.json"]
    assert main(["decode", str(out / "model.sbw"), "-o", str(tmp_path / "w.pth")]) == 0
    m = mod.make_model()
    m.load_state_dict(torch.load(tmp_path / "w.pth"))
    _, _, test = mod.loaders()
    assert mod.accuracy(m, test) == res["accuracy"]
    assert "SmallVGG on digits: 81824 coded weights" in capsys.readouterr().err


@pytest.mark.slow
def test_example_reaches_one_bit_per_weight_within_one_point(tmp_path):
    """The issue's target, through the public API only: <= 1 bit/weight, <= 1 point drop
    (measured: 0.7818 b/w, 99.78 % -> 99.11 %, ~32 s)."""
    _, res = _example(["--target-bits", "1.0", "--out", str(tmp_path / "vgg")])
    assert res["bits_per_weight"] <= 1.0 and res["accuracy_drop_points"] <= 1.0
