"""A checkpoint's round trip as a user expects it (issue 22): `decode -o` gives back the original
state_dict (names, dtypes, 0-dim shapes, container and safetensors metadata), subbit never writes
onto its input, and each mistake gets one clear message before any work."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from subbit.cli import main
from subbit.model import checkpoint, sbw
from subbit.model.report import entropy_bits, format_table, stream_report


class Net(torch.nn.Module):
    """A user's network: conv + batch norm (its 0-dim num_batches_tracked) + linear."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(72, 10)


def _net(dtype=None):
    torch.manual_seed(0)
    net = Net()
    net.bn.num_batches_tracked.fill_(7)
    return net.to(dtype) if dtype is not None else net


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("src,dst", [("m.safetensors", "out.safetensors"), ("m.pth", "out.pth"),
                                     ("m.pth", "out.safetensors")])
def test_decode_gives_back_a_loadable_state_dict(tmp_path, capsys, dtype, src, dst):
    net = _net(dtype)
    sd = net.state_dict()
    if src.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, tmp_path / src, metadata={"format": "pt", "producer": "me"})
    else:
        torch.save(sd, tmp_path / src)
    assert main(["compress", str(tmp_path / src), "-o", str(tmp_path / "m.sbw"), "--bits", "8"]) == 0
    assert main(["decode", str(tmp_path / "m.sbw"), "-o", str(tmp_path / dst)]) == 0
    if dst.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file
        got = load_file(tmp_path / dst)
        with safe_open(tmp_path / dst, framework="pt") as fh:
            meta = fh.metadata()
        # the source's metadata comes back; a .pth source gets what torch users' files carry
        assert meta == ({"format": "pt", "producer": "me"} if src.endswith(".safetensors") else {"format": "pt"})
    else:
        got = torch.load(tmp_path / dst, weights_only=True)
        assert list(got) == list(sd)                 # the checkpoint's order of names
    assert set(got) == set(sd)                       # no codes/<name> tensors mixed in
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
    assert got["bn.num_batches_tracked"].shape == () and int(got["bn.num_batches_tracked"]) == 7
    for k in ("conv.bias", "bn.weight", "bn.running_var"):        # side data: bit-exact
        assert torch.equal(got[k], sd[k]), k
    for k in ("conv.weight", "fc.weight"):                        # 8-bit codes: close
        err = (got[k].double() - sd[k].double()).abs().max() / sd[k].double().abs().max()
        assert 0 < err < 0.01, (k, err)
    fresh = _net(dtype)
    fresh.load_state_dict(got, strict=True)
    # the size of the original, not 1.5x (the codes are not mixed in)
    assert os.path.getsize(tmp_path / dst) < 1.1 * os.path.getsize(tmp_path / src) + 2048


def test_codes_only_with_codes(tmp_path):
    torch.save(_net().state_dict(), tmp_path / "m.pth")
    assert main(["compress", str(tmp_path / "m.pth"), "-o", str(tmp_path / "m.sbw"), "--bits", "3"]) == 0
    f = sbw.read_sbw(tmp_path / "m.sbw")
    assert main(["decode", str(tmp_path / "m.sbw"), "--codes", str(tmp_path / "c.safetensors")]) == 0
    got = checkpoint.load_checkpoint(tmp_path / "c.safetensors")
    golden = f.decode_codes()
    assert set(got.tensors) == set(golden) == {"conv.weight", "fc.weight"}
    for k, v in golden.items():
        assert got.dtypes[k] == "int8" and np.array_equal(got.tensors[k], v)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors", "m.pth", "m.sbw"]


def test_dequantisation_per_dtype():
    """codes × scale in float32 (float64 for a float64 layer), then rounded to nearest even into the
    original dtype: what docs/stream-format.md states."""
    from subbit.model.sbw import LayerMeta
    codes = np.array([[-3, 0, 1, 3]])
    m32 = LayerMeta("w", (1, 4), 3, [0.1])
    m64 = LayerMeta("w", (1, 4), 3, [0.1], dtype="float64")
    assert m32.dequantize(codes).dtype == np.float32
    np.testing.assert_array_equal(m32.dequantize(codes), np.float32(0.1) * codes.astype(np.float32))
    assert m64.dequantize(codes).dtype == np.float64
    np.testing.assert_array_equal(m64.dequantize(codes), float(np.float32(0.1)) * codes)


@pytest.fixture
def files(tmp_path):
    torch.save(_net().state_dict(), tmp_path / "m.pth")
    assert main(["compress", str(tmp_path / "m.pth"), "-o", str(tmp_path / "x.sbw")]) == 0
    (tmp_path / "text.pth").write_text("these are my notes\n")
    (tmp_path / "short.bin").write_bytes(b"0123456789ab")
    (tmp_path / "adir").mkdir()
    os.symlink(tmp_path / "m.pth", tmp_path / "link.pth")
    return tmp_path


@pytest.mark.parametrize("argv,msg", [
    # 3: never onto an input, by its name or another
    (["compress", "{d}/m.pth", "-o", "{d}/m.pth"], r"output .*m.pth is the input file .*m.pth: refusing to overwrite"),
    (["compress", "{d}/link.pth", "-o", "{d}/m.pth"], r"is the input file .*link.pth: refusing to overwrite"),
    (["decode", "{d}/x.sbw", "-o", "{d}/x.sbw"], r"output .*x.sbw is the input file .*x.sbw"),
    (["decode", "{d}/x.sbw", "--codes", "{d}/x.sbw"], r"--codes file .*x.sbw is the input file"),
    (["decode", "{d}/x.sbw", "-o", "{d}/w.safetensors", "--codes", "{d}/w.safetensors"],
     r"--codes file .*w.safetensors is the input file .*w.safetensors"),
    # 4: what kind of file it got
    (["compress", "{d}/adir", "-o", "{d}/y.sbw"], r"checkpoint .*adir is a directory \(give a .pt, .pth or .safetensors"),
    (["compress", "{d}/text.pth", "-o", "{d}/y.sbw"],
     r"cannot read .*text.pth as a PyTorch state_dict: the file is a text file \(starting 'these are my notes'\)"),
    (["compress", "{d}/x.sbw", "-o", "{d}/y.sbw"], r"the file is a subbit .sbw weight stream"),
    (["decode", "{d}/short.bin"], r"short.bin: not a .sbw file: it is a text file \(starting '0123456789ab'\)"),
    (["decode", "{d}/m.pth", "-o", "{d}/w.pth"], r"m.pth: not a .sbw file: it is a PyTorch checkpoint \(torch.save\)"),
    (["inspect", "{d}/adir"], r"cannot read .*adir: it is a directory, not a .sbw file"),
    # 5: options and the output location, before any work
    (["compress", "{d}/m.pth", "-o", "{d}/y.sbw", "--bits", "99"], r"--bits must be in 2..8 .*not 99"),
    (["compress", "{d}/m.pth", "-o", "{d}/y.sbw", "--ways", "1"],
     r"--ways 1: the hardware decoder needs at least 6 interleaved states per lane"),
    (["compress", "{d}/m.pth", "-o", "{d}/nodir/y.sbw"], r"cannot write output .*y.sbw: directory .*nodir does not exist"),
    (["compress", "{d}/m.pth", "-o", "{d}/adir"], r"output .*adir is a directory: give a file name"),
    (["compress", "{d}/m.pth", "-o", "{d}/y.pth"], r"output .*y.pth: the name should end in .sbw, not '.pth'"),
    (["decode", "{d}/x.sbw", "-o", "{d}/w.npz"], r"output .*w.npz: the name should end in .pt, .pth, .bin, .ckpt or "
     r".safetensors, not '.npz'"),
    (["decode", "{d}/x.sbw", "-o", "{d}/nodir/w.pth"], r"directory .*nodir does not exist"),
])
def test_each_mistake_one_clear_message_before_any_work(files, capsys, monkeypatch, argv, msg):
    import re
    before = sorted(p.name for p in files.iterdir())
    stamp = {p.name: p.stat().st_mtime_ns for p in files.iterdir()}

    def no_work(*a, **k):
        raise AssertionError("the work started before the options were checked")
    monkeypatch.setattr(checkpoint, "load_checkpoint", no_work)
    monkeypatch.setattr(sbw.SbwFile, "decode_codes", no_work)
    assert main([a.format(d=files) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"subbit {argv[0]}: error: ") and err.count("\n") == 1, err
    assert re.search(msg, err), err
    assert sorted(p.name for p in files.iterdir()) == before            # nothing written or removed
    assert {p.name: p.stat().st_mtime_ns for p in files.iterdir()} == stamp


def test_hardware_ways_match_the_pipeline_depth():
    from subbit.hw.params import PIPELINE_DEPTH
    from subbit.model.stream import HW_MIN_WAYS
    assert HW_MIN_WAYS == PIPELINE_DEPTH


def test_inspect_into_a_closed_pipe_is_quiet(files):
    """6: `subbit inspect --json f.sbw | head -1` ends without a BrokenPipeError traceback."""
    r = subprocess.run(f"'{sys.executable}' -m subbit inspect --json '{files}/x.sbw' | head -1", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout == "{\n" and r.stderr == "", r.stderr


def test_zero_entropy_and_one_definition_of_the_rates(tmp_path, capsys):
    """9: an all-zero layer has entropy 0 (not -0); payload, header and total are one definition,
    named the same in inspect and in the training summary."""
    from subbit.model.compress import build_sbw
    from subbit.model.sbw import LayerMeta
    from subbit.model.stream import StreamConfig
    from subbit.cli.training import summary
    assert str(entropy_bits(np.zeros(10))) == "0.0"
    z, r = np.zeros((4, 16), int), np.random.default_rng(0).integers(-3, 4, size=(8, 64))
    f = build_sbw([(LayerMeta("zero", z.shape, 3, [0.1]), z), (LayerMeta("rand", r.shape, 3, [0.1]), r)],
                  {}, StreamConfig())
    rep = stream_report(f)
    for L, h in zip(rep["layers"], f.hw):
        assert L["total_bits_per_weight"] == pytest.approx(L["payload_bits_per_weight"] + L["header_bits"] / h.count)
        assert L["header_bits"] == 16 * len(h.header_words())
    text = format_table(rep)
    import re
    assert "-0.0" not in text and re.search(r"entropy +payload +header bits +total\n", text)
    assert "total = payload + header" in text
    train_rep = dict(rep, dataset="d", model="m", compression_vs_fp32=1.0, target_bits=1.0, budget_met=True,
                     baseline_accuracy=0.9, accuracy=0.9, accuracy_drop=0.0, baselines=[])
    for L in train_rep["layers"]:
        L.update(bits=3)
    s = summary(train_rep)
    assert re.search(r"entropy +payload +header bits +total\n", s) and "total = payload + header" in s


def test_readme_common_mistakes_are_what_the_tool_prints(tmp_path, monkeypatch, capsys):
    """The README's "Common mistakes" block is the tool's real output (paths aside)."""
    import re
    import shlex
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as fh:
        text = fh.read()
    block = re.search(r"### Common mistakes\n.*?```text\n(.*?)```", text, re.S).group(1)
    pairs = re.findall(r"^\$ subbit (.*)\n(.*)$", block, re.M)
    assert len(pairs) >= 8
    monkeypatch.chdir(tmp_path)
    torch.save(_net().state_dict(), "model.pth")
    assert main(["compress", "model.pth", "-o", "model.sbw"]) == 0
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "notes.pth").write_text("hello notes\n")
    capsys.readouterr()
    for cmd, want in pairs:
        assert main(shlex.split(cmd)) == 2, cmd
        got = capsys.readouterr().err.strip()
        assert got == want.replace("/home/me", str(tmp_path)), cmd


def test_safetensors_are_read_and_written_without_torch(tmp_path):
    """`compress` and `decode -o` of .safetensors files never import torch (it costs most of their
    start-up), and what they read and write is what torch's safetensors gives."""
    from safetensors.torch import save, save_file
    sd = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in _net().state_dict().items()}
    sd["flag"] = torch.tensor([True, False])
    save_file(sd, tmp_path / "m.safetensors", metadata={"producer": "me"})
    ck = checkpoint.load_checkpoint(tmp_path / "m.safetensors")
    assert list(ck.tensors) == sorted(sd) and ck.metadata == {"producer": "me"}
    for k, t in sd.items():
        want = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert ck.dtypes[k] == str(t.dtype).removeprefix("torch.")
        assert ck.tensors[k].dtype == want.dtype and np.array_equal(ck.tensors[k], want), k
    code = ("import sys\n"
            "from subbit.cli import main\n"
            f"assert main(['compress', {str(tmp_path / 'm.safetensors')!r}, '-o', {str(tmp_path / 'm.sbw')!r}]) == 0\n"
            f"assert main(['decode', {str(tmp_path / 'm.sbw')!r}, '-o', {str(tmp_path / 'd.safetensors')!r}]) == 0\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "False", r.stderr
    # the writer: the bytes of safetensors.torch.save after torch's casts, bfloat16 rounded to nearest even
    rng = np.random.default_rng(0)
    halfway = ((rng.integers(0, 1 << 32, 4000, dtype=np.uint64) & 0xFFFF0000) | 0x8000).astype(np.uint32)
    x = np.concatenate([rng.standard_normal(4000).astype(np.float32), halfway.view(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, 1e-40, -1e-45], np.float32)])
    x = x[~np.isnan(x)]
    tensors = {"w": x, "m": x[:120].reshape(3, 40), "n": np.arange(6).reshape(2, 3), "b": np.array(True),
               "s": np.array(1.5)}
    for dtypes in ({"w": "bfloat16", "m": "float16", "n": "int64", "b": "bool", "s": "bfloat16"},
                   {"w": "float32", "m": "bfloat16", "n": "int32", "b": "bool", "s": "float64"}, {}):
        checkpoint.save_checkpoint(tmp_path / "o.safetensors", tensors, dtypes, metadata={"format": "pt"})
        ts = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
        ts = {k: t.to(getattr(torch, dtypes[k])) if k in dtypes else t for k, t in ts.items()}
        assert (tmp_path / "o.safetensors").read_bytes() == save(ts, metadata={"format": "pt"})
