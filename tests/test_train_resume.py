"""Resumable `subbit train` runs: stopped after any checkpoint (fp32 epoch, QAT evaluation point
mid-epoch or at an epoch's end, a sweep budget, the ternary baseline) or by a real SIGTERM, then
`--resume`d, a run writes what the uninterrupted run writes, bit for bit; a resume of another
run, model, version or parameters is a clear error that changes nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from subbit.cli import main
from subbit.model.train import checkpoint as ckmod
from train_util import one_torch_thread  # noqa: F401 (fixture)

# 15 checkpoint writes: fp32 2 (one per epoch); qat 4 (2 per epoch) + done; qat@2.5 the same;
# ternary 2 + done
ARGS = ["--dataset", "digits", "--subset", "300", "--epochs", "2", "--qat-epochs", "2", "--evals-per-epoch", "2",
        "--ternary-epochs", "1", "--sweep", "2.5", "--target-bits", "1.5", "--no-progress"]


def outputs(out):
    rep = json.loads((out / "report.json").read_text())
    rep.pop("seconds")
    for k in ("out", "resume", "command"):
        rep["config"].pop(k)
    return (out / "model.sbw").read_bytes(), (out / "sweep" / "target-2.5.sbw").read_bytes(), rep


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", *ARGS, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["model.sbw", "pareto.png", "report.json", "sweep"]   # checkpoint removed
    return outputs(out)


def stop_after(monkeypatch, k):
    orig, count = ckmod.PhaseCheckpoint.save, [0]

    def save(self, state):
        orig(self, state)
        count[0] += 1
        if count[0] == k:
            raise ckmod.Interrupted(signal.SIGTERM)
    monkeypatch.setattr(ckmod.PhaseCheckpoint, "save", save)


@pytest.mark.parametrize("k", [1, 3, 4, 9, 14, pytest.param(2, marks=pytest.mark.slow),
                               pytest.param(7, marks=pytest.mark.slow)])
def test_resumed_run_writes_what_the_uninterrupted_run_writes(k, tmp_path, monkeypatch, capsys, reference):
    out = tmp_path / "run"
    stop_after(monkeypatch, k)
    assert main(["train", *ARGS, "--out", str(out)]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert f"subbit train: stopped by SIGTERM; its checkpoint is in {out}/checkpoint: continue with " \
           f"`subbit train --resume {out}`" in err
    assert os.listdir(out) == ["checkpoint"] and "run.json" in os.listdir(out / "checkpoint")
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert outputs(out) == reference
    assert not (out / "checkpoint").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_a_run_with_its_checkpoint_kept(sig, tmp_path, reference):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "subbit.cli", "train", *ARGS, "--out", str(out)],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 300
    while not (out / "checkpoint" / "qat.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 128 + sig, err[-2000:]
    assert f"subbit train: stopped by {sig.name}; its checkpoint is in" in err
    assert os.listdir(out) == ["checkpoint"]
    assert not [f for f in os.listdir(out / "checkpoint") if f.startswith(".")]      # no half-written file
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert outputs(out) == reference


NET_A = """
from torch import nn
def make(in_channels=1, num_classes=10, image_size=8):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * image_size * image_size, num_classes))
"""


def test_resume_refuses_what_it_cannot_continue(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    stop_after(monkeypatch, 1)
    assert main(["train", *ARGS, "--out", str(out)]) == 143
    monkeypatch.undo()
    capsys.readouterr()
    snapshot = {f: (out / "checkpoint" / f).read_bytes() for f in os.listdir(out / "checkpoint")}

    def fails(argv, msg):
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("subbit train: error: ") and msg in err, err
        assert {f: (out / "checkpoint" / f).read_bytes() for f in os.listdir(out / "checkpoint")} == snapshot
        assert os.listdir(out) == ["checkpoint"]

    fails([*ARGS, "--out", str(out)], f"{out} holds the checkpoint of an unfinished run ({out}/checkpoint): "
                                      f"continue it with --resume {out}, or remove {out}/checkpoint")
    fails(["--resume", str(out), "--qat-epochs", "3"], f"--resume {out}: the run was made with --qat-epochs 2, not 3: "
                                                       "a resumed run keeps its parameters")
    fails(["--resume", str(out), "--seed", "1"], "the run was made with --seed 0, not 1")
    fails(["--resume", str(out), "--out", str(tmp_path / "x")], f"--resume {out} continues the run in {out}: --out")
    fails(["--resume", str(tmp_path)], f"--resume {tmp_path}: no checkpoint there")
    fails(["--resume", str(tmp_path / "none")], f"--resume {tmp_path}/none: no such directory")
    fails(["--dataset", "digits", "--out", str(tmp_path / "y")], "--target-bits is required (or --resume DIR")
    run = json.loads((out / "checkpoint" / "run.json").read_text())
    (out / "checkpoint" / "run.json").write_text(json.dumps(dict(run, version=0)))
    snapshot["run.json"] = (out / "checkpoint" / "run.json").read_bytes()
    fails(["--resume", str(out)], f"--resume {out}: the run was checkpointed with checkpoint format 0, this is 1: "
                                  "it cannot be resumed")

    # the user's model changed between the run and its resume
    nets = tmp_path / "nets.py"
    nets.write_text(NET_A)
    user = ["--model", f"{nets}:make", "--dataset", "digits", "--subset", "200", "--epochs", "2", "--qat-epochs", "1",
            "--ternary-epochs", "0", "--target-bits", "3", "--no-progress"]
    out2 = tmp_path / "user"
    stop_after(monkeypatch, 1)
    assert main(["train", *user, "--out", str(out2)]) == 143
    monkeypatch.undo()
    capsys.readouterr()
    nets.write_text(NET_A.replace("4, 3, padding=1), nn.ReLU(), nn.Flatten(),\n                         nn.Linear(4 *",
                                  "6, 3, padding=1), nn.ReLU(), nn.Flatten(),\n                         nn.Linear(6 *"))
    from subbit.model.train import user as usermod
    usermod._FILES.clear()
    sys.modules.pop("nets", None)
    assert main(["train", "--resume", str(out2)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {out2}/checkpoint/fp32.pt was made for another model: 0.weight is [4, 1, 3, 3] float32 " \
           "there, [6, 1, 3, 3] float32 here" in err, err
