"""The subbit command-line tool: compress, inspect, decode, and its errors."""

import json

import numpy as np
import pytest
import torch

from subbit.cli import main
from subbit.model import checkpoint, quant, sbw


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    g = torch.Generator().manual_seed(0)
    sd = {"conv.weight": torch.randn(8, 3, 3, 3, generator=g), "conv.bias": torch.randn(8, generator=g),
          "fc.weight": torch.randn(10, 72, generator=g) * 0.1, "bn.num_batches_tracked": torch.tensor(5)}
    torch.save(sd, d / "m.pt")
    torch.save({"state_dict": sd}, d / "wrapped.pth")
    from safetensors.torch import save_file
    save_file(sd, d / "m.safetensors")
    return d, sd


@pytest.mark.parametrize("name", ["m.pt", "wrapped.pth", "m.safetensors"])
def test_compress_inspect_decode(ckpt, tmp_path, capsys, name):
    d, sd = ckpt
    out = tmp_path / "m.sbw"
    assert main(["compress", str(d / name), "-o", str(out), "--bits", "3", "--step", "maxabs", "--lanes", "4"]) == 0
    assert "2 coded tensors (2 stream layers), 936 weights" in capsys.readouterr().out
    f = sbw.read_sbw(out)
    assert [m.name for m in f.layers] == ["conv.weight", "fc.weight"]
    assert set(f.side) == {"conv.bias", "bn.num_batches_tracked"} and f.config.lanes == 4

    assert main(["inspect", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [L["name"] for L in rep["layers"]] == ["conv.weight", "fc.weight"]
    assert rep["weights"] == 936 and 0 < rep["bits_per_weight"] < 8
    assert main(["inspect", str(out)]) == 0
    assert "fc.weight" in capsys.readouterr().out

    dec, cod = tmp_path / "w.safetensors", tmp_path / "codes.safetensors"
    assert main(["decode", str(out), "-o", str(dec), "--codes", str(cod)]) == 0
    got, got_codes = checkpoint.load_state_dict(dec), checkpoint.load_state_dict(cod)
    assert set(got) == set(sd) and set(got_codes) == {"conv.weight", "fc.weight"}
    for k in ("conv.weight", "fc.weight"):
        codes, scale = quant.quantize_rtn(sd[k].numpy(), 3)
        np.testing.assert_array_equal(got_codes[k], codes)
        np.testing.assert_allclose(got[k], codes * scale[0], rtol=1e-6)
    np.testing.assert_array_equal(got["conv.bias"], sd["conv.bias"].numpy())


@pytest.mark.parametrize("argv,msg", [
    (["compress", "/nope.pt", "-o", "{out}"], "checkpoint /nope.pt does not exist"),
    (["compress", "{ckpt}/m.pt", "-o", "{out}", "--bits", "9"], "--bits must be in 2..8 .*, not 9"),
    (["compress", "{ckpt}/m.pt", "-o", "{out}", "--lanes", "3"], "lanes must be one of"),
    (["compress", "{ckpt}/bad.txt", "-o", "{out}"], "unknown checkpoint extension '.txt'"),
    (["compress", "{ckpt}/junk.pt", "-o", "{out}"], "cannot read .*junk.pt as a PyTorch state_dict: the file is a "
     "text file \\(starting 'not a zip'\\)"),
    (["compress", "{ckpt}/junkzip.pt", "-o", "{out}"], "cannot read .*junkzip.pt as a PyTorch state_dict: "
     "not a torch.save file"),
    # a pickled module, not a state_dict: torch's one-line reason and ours, not its page of advice
    (["compress", "{ckpt}/module.pt", "-o", "{out}"],
     r"cannot read .*module.pt as a PyTorch state_dict: Unsupported global: .*Linear .*by default\. "
     r"\(subbit loads tensors only, never code: save `model.state_dict\(\)`\)\n$"),
    (["compress", "{ckpt}/nan.pt", "-o", "{out}"],
     r"tensor 'fc.weight' \(2, 2\): cannot quantize a tensor with NaN or infinite values"),
    (["compress", "{ckpt}/empty.pt", "-o", "{out}"], r"no weight tensors \(floating, rank >= 2, not empty\)"),
    (["inspect", "{ckpt}/m.pt"], r"not a .sbw file: it is a PyTorch checkpoint \(torch.save\)"),
    (["decode", "/nope.sbw", "-o", "{out}.safetensors"], "cannot read /nope.sbw"),
])
def test_errors_are_clear_and_leave_no_file(ckpt, tmp_path, capsys, argv, msg):
    d, _ = ckpt
    (d / "bad.txt").write_text("x")
    (d / "junk.pt").write_bytes(b"not a zip")
    (d / "junkzip.pt").write_bytes(b"\x80\x02not a pickle at all")
    torch.save(torch.nn.Linear(2, 2), d / "module.pt")
    torch.save({"conv.weight": torch.ones(2, 2), "fc.weight": torch.tensor([[1.0, float("nan")], [0, 1]])},
               d / "nan.pt")
    torch.save({"fc.weight": torch.ones(0, 3), "fc.bias": torch.ones(3)}, d / "empty.pt")
    out = tmp_path / "out.sbw"
    argv = [a.format(out=out, ckpt=d) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"subbit {argv[0]}: error: ")
    import re
    assert re.search(msg, err), err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_help_on_every_subcommand(capsys):
    from subbit.cli import build_parser
    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: subbit " + name in capsys.readouterr().out


def test_the_parser_imports_no_torch_amaranth_numba_or_cocotb():
    """`subbit COMMAND --help` starts fast: the heavy packages load inside the commands that need them."""
    import subprocess
    import sys
    code = ("import sys\n"
            "from subbit.cli import build_parser\n"
            "build_parser().parse_args(['compress', 'm.pt', '-o', 'm.sbw'])\n"
            "print(sorted(m for m in ('torch', 'amaranth', 'numba', 'cocotb') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stderr


def test_decoder_options_come_from_the_parameters():
    """Every field of DecoderParams is an option of `subbit verilog` with the dataclass's default; the
    other commands take the same names."""
    import dataclasses

    from subbit.cli import build_parser
    from subbit.cli.options import params_from_args
    from subbit.hw.params import DecoderParams
    ap = build_parser()
    assert params_from_args(ap.parse_args(["verilog", "-o", "x.v"])) == DecoderParams()
    args = ap.parse_args(["verilog", "-o", "x.v", "-K", "4", "-M", "10", "--max-symbols", "31", "--word-width", "32",
                          "--lookup", "table", "--ways", "7", "--prefetch", "64", "--window", "shift"])
    assert params_from_args(args) == DecoderParams(lanes=4, prob_bits=10, max_symbols=31, word_width=32,
                                                   lookup="table", ways=7, prefetch=64, window="shift")
    for f in dataclasses.fields(DecoderParams):
        assert f.metadata["option"]["help"]
    synth = ap.parse_args(["synth", "-K", "2", "--ways", "7"])
    assert (synth.lanes, synth.ways, synth.prefetch) == (2, 7, None)           # None: the target chooses
    rtl = ap.parse_args(["bench", "rtl", "-K", "1", "2", "-M", "12"])
    assert (rtl.lanes, rtl.prob_bits, rtl.lookup) == ([1, 2], [12], ["compare", "table"])


def test_a_bad_decoder_parameter_is_the_dataclass_message(capsys):
    assert main(["verilog", "--lanes", "3", "-o", "-"]) == 2
    assert capsys.readouterr().err == "subbit verilog: error: lanes must be one of (1, 2, 4, 8), not 3\n"


def test_verilog_names_its_ring_stages_and_suggests_the_s2b_way(tmp_path, capsys):
    """`subbit verilog` says which extra ring stages the decoder has; a row-classed comparator
    decoder without the S2b way gets a note (synth's, for the same reason), with it none."""
    out = str(tmp_path / "d.v")
    assert main(["verilog", "--tables", "8", "-o", out]) == 0
    err = capsys.readouterr().err
    assert "ways=6 (ring stages S0..S5) tables=8" in err and "runs faster with --ways 7 (the S2b stage" in err
    assert main(["verilog", "--tables", "8", "--ways", "7", "-o", out]) == 0
    err = capsys.readouterr().err
    assert "(ring stages S0..S5+S2b)" in err and "note" not in err
    assert main(["verilog", "--tables", "8", "--lookup", "table", "-o", out]) == 0   # no S2b there
    assert "note" not in capsys.readouterr().err
