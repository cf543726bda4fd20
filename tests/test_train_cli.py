"""`subbit train` argument handling and `subbit bench train` (smoke run, no docs written)."""

import json

from subbit.cli import build_parser, main
from train_util import one_torch_thread  # noqa: F401 (fixture)


def test_command_line_and_config():
    from subbit.cli.training import command_line, config_from_args
    args = build_parser().parse_args(["train", "--out", "o", "--target-bits", "0.5", "--dataset", "mnist",
                                      "--sweep", "1,0.75", "--per-channel", "--seed", "3"])
    assert command_line(args) == ("subbit train --out o --dataset mnist --target-bits 0.5 --sweep 1,0.75 "
                                  "--per-channel --seed 3")
    c = config_from_args(args).resolved()
    assert (c.model, c.epochs, c.sweep, c.per_channel, c.seed) == ("ccexam-cnn", 0, [1.0, 0.75], True, 3)
    from subbit.model.stream import StreamConfig
    assert (c.prob_bits, c.lanes, c.ways) == (StreamConfig().prob_bits, StreamConfig().lanes, StreamConfig().ways)


def test_bench_train_quick(tmp_path, capsys, monkeypatch):
    assert main(["bench", "train", "--quick", "--no-write", "--only", "digits", "--out-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "digits" / "report.json").read_text())
    assert "## Training flow" in out and f"| {rep['bits_per_weight']:.4f} |" in out
    assert f"--out {tmp_path}/digits --epochs 2" in out
    before = (tmp_path / "digits" / "model.sbw").stat().st_mtime_ns
    docs = tmp_path / "docs"
    docs.mkdir()
    import subbit.cli.training
    import subbit.results
    monkeypatch.setattr(subbit.cli.training, "DOCS", str(docs))
    monkeypatch.setattr(subbit.results, "RESULTS", str(docs / "results.md"))
    assert main(["bench", "train", "--quick", "--only", "digits", "--out-root", str(tmp_path), "--reuse"]) == 0
    assert f"reusing {tmp_path}/digits/report.json" in capsys.readouterr().err
    assert (tmp_path / "digits" / "model.sbw").stat().st_mtime_ns == before       # not trained again
    text = (docs / "results.md").read_text()
    assert "<!-- bench:train:start -->" in text and f"| {rep['bits_per_weight']:.4f} |" in text
    assert (docs / "train-digits-pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["bench", "train", "--only", "cifar", "--no-write"]) == 2
    assert "unknown benchmark run 'cifar'" in capsys.readouterr().err
    assert main(["bench", "train", "--only", " , ", "--no-write"]) == 2      # not: every run
    assert "--only names no run: ' , '" in capsys.readouterr().err


def test_documented_commands_parse():
    """Every `subbit train` / `torchrun ... subbit.cli train` line of the docs is a valid command."""
    import os
    import re
    import shlex
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    seen = 0
    for doc in ("README.md", "docs/training.md"):
        with open(os.path.join(root, doc)) as fh:
            blocks = re.findall(r"```sh\n(.*?)```", fh.read(), re.S)
        for line in "\n".join(blocks).splitlines():
            words = shlex.split(line.split("#")[0])
            if "train" not in words or not words:
                continue
            argv = words[words.index("train"):]
            args = build_parser().parse_args(argv)
            assert args.func.__name__ == "cmd_train"
            seen += 1
    assert seen >= 5
