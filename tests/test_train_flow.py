"""The training flow end to end: `subbit train` on digits (the CI run), its outputs, determinism,
DDP with two processes, and every bad input (clear error, exit code 2, nothing written)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from subbit.cli import main
from subbit.model import sbw
from subbit.model.report import stream_report
from train_util import fake_mnist_dir, one_torch_thread  # noqa: F401 (fixture)

# The CI end-to-end run: short, but every stage (fp32, baselines, QAT, ternary QAT, stream).
E2E = ["--dataset", "digits", "--target-bits", "1.0", "--epochs", "6", "--qat-epochs", "6",
       "--ternary-epochs", "1", "--no-progress"]
REPORT_KEYS = {"baseline_accuracy", "accuracy", "quantized_accuracy", "bits_per_weight", "entropy_bits_per_weight",
               "layers", "baselines", "budget_met", "target_bits", "weights", "stream_bits", "side_bytes",
               "file_bytes", "sweep", "history", "config", "data", "seconds", "world_size"}


def test_digits_end_to_end(tmp_path):
    """The CI run. Must hold: the network rebuilt from the decoded file scores exactly the reported
    accuracy, which equals the accuracy of the training-side quantized network."""
    from subbit.model.train.data import load_dataset
    from subbit.model.train.loop import evaluate, runtime
    from subbit.model.train.models import build_model
    from subbit.model.train.qnet import rebuild
    from subbit.cli.training import bench_markdown
    out = tmp_path / "run"
    assert main(["train", *E2E, "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())

    assert sorted(os.listdir(out)) == ["model.sbw", "pareto.png", "report.json"]
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert REPORT_KEYS <= set(rep)
    for L in rep["layers"]:
        assert {"name", "bits", "levels", "zero_fraction", "payload_bits_per_weight", "total_bits_per_weight"} <= set(L)
        assert L["levels"] == 2 ** L["bits"] - 1 and 2 <= L["bits"] <= 8
    assert {p["kind"] for p in rep["baselines"]} == {"fp32", "uniform", "ternary", "huffman", "ours"}
    names = [p["name"] for p in rep["baselines"]]
    assert {"uniform 8-bit", "uniform 4-bit", "uniform 2-bit", "ternary QAT", "huffman (our codes)"} <= set(names)
    assert rep["data"]["sizes"] == {"train": 1167, "val": 180, "test": 450}
    assert rep["baseline_accuracy"] > 0.8          # the short fp32 training does learn
    assert rep["budget_met"] == (rep["bits_per_weight"] <= rep["target_bits"])
    huff = next(p for p in rep["baselines"] if p["name"] == "huffman (our codes)")
    assert huff["bits_per_weight"] >= 1.0 and huff["accuracy"] == rep["accuracy"]

    f = sbw.read_sbw(out / "model.sbw")
    assert f.info["producer"] == "subbit train" and f.config.ways == rep["stream"]["ways"]
    data = load_dataset("digits")
    with runtime(0) as rt:
        acc = evaluate(rebuild(build_model("resnet8", image_size=8), f), data.test, rt)
    assert acc == rep["accuracy"] == rep["quantized_accuracy"]
    s = stream_report(f, file_bytes=os.path.getsize(out / "model.sbw"))
    assert s["bits_per_weight"] == rep["bits_per_weight"] == 16 * len(f.words()) / s["weights"]
    assert s["file_bytes"] == rep["file_bytes"]
    assert [L["bits"] for L in s["layers"]] == [L["bits"] for L in rep["layers"]]

    md = bench_markdown([("digits", E2E, rep, ("≤ 1.0 bits/weight, ≤ 1 % drop", 1.0, 0.01))])
    assert f"| {100 * rep['accuracy']:.2f} % |" in md and f"| {rep['bits_per_weight']:.4f} |" in md
    assert "`subbit train --dataset digits --target-bits 1.0" in md
    assert "![digits](train-digits-pareto.png)" in md


def small(out, *extra):
    return ["train", "--dataset", "digits", "--subset", "300", "--epochs", "2", "--qat-epochs", "2",
            "--ternary-epochs", "0", "--target-bits", "1.5", "--no-progress", "--out", str(out), *extra]


def test_deterministic_with_seed(tmp_path):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(small(tmp_path / name, "--seed", seed)) == 0
    a, b, c = ((tmp_path / n / "model.sbw").read_bytes() for n in "abc")
    assert a == b and a != c
    ra, rb = (json.loads((tmp_path / n / "report.json").read_text()) for n in "ab")
    ra.pop("seconds"), rb.pop("seconds")
    for r in (ra, rb):
        r["config"].pop("out"), r["config"].pop("command")
    assert ra == rb


def test_sweep_into_an_existing_output_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "model.sbw").write_bytes(b"old")
    assert main(small(out, "--sweep", "3,2.5")) == 0
    assert (out / "keep.txt").read_text() == "mine"
    sbw.read_sbw(out / "model.sbw")
    assert sorted(os.listdir(tmp_path)) == ["out"]          # no temporary directory left
    rep = json.loads((out / "report.json").read_text())
    assert [p["target_bits"] for p in rep["sweep"]] == [3.0, 2.5]
    assert sorted(os.listdir(out / "sweep")) == ["target-2.5.sbw", "target-3.sbw"]
    for pt in rep["sweep"]:
        f = sbw.read_sbw(out / pt["file"])
        assert stream_report(f)["bits_per_weight"] == pt["bits_per_weight"]
        assert pt["budget_met"] == (pt["bits_per_weight"] <= pt["target_bits"])
    assert sum(p["kind"] == "ours" for p in rep["baselines"]) == 3


def test_ccexam_finetune_smoke(tmp_path, capsys):
    """The pretrained ccexam CNN is loaded (no fp32 training) and fine-tuned on MNIST."""
    pytest.importorskip("mnist")
    out = tmp_path / "cc"
    assert main(["train", "--dataset", "mnist", "--subset", "256", "--qat-epochs", "1", "--ternary-epochs", "0",
                 "--target-bits", "1.0", "--no-progress", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["model"] == "ccexam-cnn" and rep["config"]["epochs"] == 0 and "fp32" not in rep["history"]
    assert rep["weights"] == 421408 and rep["baseline_accuracy"] > 0.97
    assert "mnist / ccexam-cnn: 421408 weights" in capsys.readouterr().out


@pytest.fixture
def bad_checkpoint(tmp_path):
    from subbit.model.train.models import build_model
    sd = build_model("resnet8", image_size=8, width=8).state_dict()     # width 8, the flow builds width 16
    torch.save(sd, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize("args,msg", [
    (["--dataset", "cifar10"], r"unknown dataset 'cifar10' \(expected one of digits, mnist, fashion-mnist\)"),
    (["--model", "vgg16"], r"unknown model 'vgg16' \(expected one of resnet8, resnet20, ccexam-cnn, or MODULE:FUNCTION"),
    (["--target-bits", "0"], "--target-bits must be a positive number of bits per weight, not 0.0"),
    (["--target-bits", "-1"], "--target-bits must be a positive number of bits per weight, not -1.0"),
    (["--target-bits", "nan"], "--target-bits must be a positive number of bits per weight, not nan"),
    (["--sweep", "1,-2"], "--sweep must be a positive number of bits per weight, not -2.0"),
    (["--sweep", "1,x"], "--sweep takes comma-separated numbers, not '1,x'"),
    (["--dataset", "fashion-mnist", "--data-dir", "{tmp}/nothing"], "data directory {tmp}/nothing does not exist"),
    (["--dataset", "mnist", "--data-dir", "{tmp}"], r"missing IDX file {tmp}/train-images-idx3-ubyte\[\.gz\]"),
    (["--checkpoint", "{ckpt}"], r"{ckpt} does not match the model: shape mismatch conv1.weight: "
                                 r"checkpoint \[8, 1, 3, 3\], model \[16, 1, 3, 3\]"),
    (["--checkpoint", "{tmp}/none.pt"], "checkpoint {tmp}/none.pt does not exist"),
    (["--model", "ccexam-cnn"], "model ccexam-cnn takes 1x28x28 inputs and 10 classes, the dataset has 1x8x8"),
    (["--init-bits", "9"], r"--init-bits must be in 2..8 \(--max-bits\), not 9"),
    (["--epochs", "0"], "model resnet8 has no pretrained weights: give --checkpoint or --epochs >= 1"),
    (["--ways", "0"], "ways must be an integer in 1..255, not 0"),
    (["--ramp", "nan"], r"--ramp must be in 0..1, not nan"),
    (["--weight-decay", "-1"], r"--weight-decay must be a number >= 0, not -1.0"),
    (["--lambda0", "0"], r"--lambda0 must be a positive number, not 0.0"),
    (["--threads", "0"], r"--threads must be an integer >= 1, not 0"),
    (["--batch-size", "5000"], "--batch-size 5000 exceeds the 1167 training samples"),
    (["--out", "{ckpt}/x"], "cannot create the output directory {ckpt}/x: {ckpt} is not a writable directory"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, bad_checkpoint, args, msg):
    out = tmp_path / "out"
    fmt = {"tmp": tmp_path, "ckpt": bad_checkpoint}
    argv = ["train", "--target-bits", "1", "--epochs", "1", "--qat-epochs", "1", "--out", str(out)]
    assert main(argv + [a.format(**fmt) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("subbit train: error: ")
    import re
    assert re.search(msg.format(**fmt), err), err
    assert sorted(os.listdir(tmp_path)) == ["bad.pt"]        # no output, no temporary directory


def test_bad_input_errors_are_subbit_errors():
    from subbit.model import SubbitError
    from subbit.model.train import CheckpointError, ConfigError, DataError, TrainConfig, run
    assert all(issubclass(e, SubbitError) for e in (ConfigError, DataError, CheckpointError))
    with pytest.raises(ConfigError, match="--target-bits must be a positive number"):
        run(TrainConfig(target_bits=-0.5))
    with pytest.raises(ConfigError, match="--qat-epochs must be an integer >= 1, not 0"):
        run(TrainConfig(qat_epochs=0))


def test_ddp_two_processes(tmp_path):
    """torchrun with 2 processes (gloo on CPU): Fashion-MNIST-style IDX data, ResNet-8."""
    data = fake_mnist_dir(tmp_path / "fmnist", n_train=192, n_test=64)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "subbit.cli", "train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--model", "resnet8",
           "--width", "4", "--epochs", "1", "--qat-epochs", "2", "--ternary-epochs", "1", "--batch-size", "32",
           "--target-bits", "2", "--no-progress", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["world_size"] == 2 and rep["data"]["sizes"] == {"train": 160, "val": 32, "test": 64}
    assert rep["accuracy"] == rep["quantized_accuracy"]
    assert "world size 2" in r.stderr and r.stdout.count("written:") == 1
    # the reported accuracy is that of rank 0's stream, evaluated here in a single process
    from subbit.model.train.data import load_dataset
    from subbit.model.train.loop import evaluate, runtime
    from subbit.model.train.models import build_model
    from subbit.model.train.qnet import rebuild
    f = sbw.read_sbw(out / "model.sbw")
    test = load_dataset("fashion-mnist", str(data)).test
    with runtime(0) as rt:
        acc = evaluate(rebuild(build_model("resnet8", image_size=28, width=4), f), test, rt)
    assert acc == rep["accuracy"]
    assert stream_report(f)["bits_per_weight"] == rep["bits_per_weight"]


def test_ddp_two_processes_through_the_api(tmp_path):
    """torchrun with 2 processes of examples/train_your_own.py: quantize + fit (DDP joined by fit,
    a DistributedSampler sharding the batches, checkpoints from rank 0) + save_sbw on digits; the
    stream decodes, in one process, to the accuracy rank 0 reports."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    example = os.path.join(root, "examples", "train_your_own.py")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", example,
           "--epochs", "2", "--qat-epochs", "2", "--target-bits", "3", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "result.json").read_text())
    assert res["world_size"] == 2 and r.stderr.count("SmallVGG on digits:") == 1
    assert os.listdir(out / "checkpoint") == ["qat.pt"]
    assert r.stderr.count("qat 2.00/2: ce") == 1                        # rank 0 logs
    spec = importlib.util.spec_from_file_location("train_your_own_ddp", example)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    import subbit.train as sbt
    net = sbt.load_sbw(out / "model.sbw", ex.make_model())
    assert ex.accuracy(net, ex.loaders()[2]) == res["accuracy"]
    assert stream_report(sbw.read_sbw(out / "model.sbw"))["bits_per_weight"] == res["bits_per_weight"]
