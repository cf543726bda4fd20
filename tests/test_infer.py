"""Inference-time decoding: MAC engine (Amaranth simulator), integer reference, the inference top
on Verilator (cocotb bench, C harness) and the `subbit infer` / `subbit decode-speed` commands."""

import random
import time

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from subbit.hw.infer_top import InferTop, mac_params_for
from subbit.hw.mac import MacEngine, MacError, MacParams
from subbit.hw.params import DecoderParams
from subbit.model.errors import SubbitError
from subbit.model.integer_net import IntegerNet, im2col, matmul, requant, SHIFT


# -- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, msg", [
    (dict(lanes=3), "lanes must be one of (1, 2, 4, 8), not 3"),
    (dict(code_bits=10), "code_bits must be an integer in 2..9, not 10"),
    (dict(act_depth=100), "act_depth must be a power of two in 16..65536, not 100"),
    (dict(max_positions=0), "max_positions must be a power of two in 1..4096, not 0"),
])
def test_mac_params_errors(kw, msg):
    with pytest.raises(SubbitError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        MacParams(**kw)


def test_engine_rejects_other_params():
    with pytest.raises(SubbitError, match="params must be a MacParams, not 4"):
        MacEngine(4)


def test_infer_top_rejects_mismatched_engine():
    with pytest.raises(SubbitError, match="the MAC engine takes 2 codes of 4 bits per beat, the decoder makes 1 of 4"):
        InferTop(DecoderParams(lanes=1), MacParams(lanes=2, code_bits=4))


# -- MAC engine in the Amaranth simulator ---------------------------------------------------------

def simulate_engine(K, rows, cols, positions, *, idle=0.0, backpressure=0.0, seed=0, codes=None, cfg=None):
    """Drive one layer through a MacEngine; returns (accumulators, lasts, status.error, clocks)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(-7, 8, (rows, cols)) if codes is None else codes
    x = rng.integers(-127, 128, (positions, cols))
    flat = codes.ravel()
    beats = [flat[k:k + K] for k in range(0, len(flat), K)] or [flat[:0]]
    dut = MacEngine(MacParams(lanes=K, code_bits=4, act_depth=128, max_positions=4))
    rnd = random.Random(seed)
    res = {"acc": [], "last": [], "error": 0, "clocks": 0}

    async def tb(ctx):
        for k, v in enumerate(x.ravel()):
            ctx.set(dut.act.valid, 1)
            ctx.set(dut.act.payload.addr, k)
            ctx.set(dut.act.payload.data, int(v))
            await ctx.tick()
        ctx.set(dut.act.valid, 0)
        c, p = cfg or (cols, positions)
        ctx.set(dut.cfg.cols, c)
        ctx.set(dut.cfg.positions, p)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        bi, presenting = 0, False
        for clk in range(20 * rows * cols * positions + 100):
            if not presenting and bi < len(beats) and rnd.random() >= idle:
                presenting = True
                b = beats[bi]
                for j in range(K):
                    ctx.set(dut.i.payload.codes[j], int(b[j]) if j < len(b) else 0)
                ctx.set(dut.i.payload.count, len(b))
                ctx.set(dut.i.payload.last, bi == len(beats) - 1)
            ctx.set(dut.i.valid, presenting)
            ctx.set(dut.o.ready, rnd.random() >= backpressure)
            i_fire = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                res["acc"].append(ctx.get(dut.o.payload.acc))
                res["last"].append(ctx.get(dut.o.payload.last))
            err = ctx.get(dut.status.error)
            if err != MacError.NONE or (bi == len(beats) and not ctx.get(dut.status.busy)
                                        and not ctx.get(dut.o.valid)):
                res["error"], res["clocks"] = err, clk
                return
            await ctx.tick()
            if i_fire:
                bi, presenting = bi + 1, False
        raise AssertionError("the engine did not finish")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    acc = np.array(res["acc"], dtype=np.int64)
    return acc, res["last"], res["error"], res["clocks"], matmul(codes, x)


@pytest.mark.parametrize("K, rows, cols, positions, idle, bp", [
    (1, 3, 5, 1, 0.0, 0.0),        # fully connected, one weight per clock
    (2, 4, 5, 3, 0.3, 0.3),        # odd rows: every other row starts mid-beat
    (4, 3, 6, 2, 0.2, 0.5),        # rows straddle beats; the layer ends on a partial beat
    (4, 2, 4, 4, 0.0, 0.0),        # rows aligned to beats
])
def test_engine_matches_reference(K, rows, cols, positions, idle, bp):
    acc, last, err, clocks, ref = simulate_engine(K, rows, cols, positions, idle=idle, backpressure=bp, seed=K)
    assert err == MacError.NONE
    assert acc.tolist() == ref.ravel().tolist()        # r major, p minor
    assert last == [0] * (rows * positions - 1) + [1]
    if idle == bp == 0:                                 # one beat per position per clock
        assert clocks <= -(-rows * cols // K) * positions + 2


def test_engine_errors():
    *_, err, _, _ = simulate_engine(2, 2, 4, 1, cfg=(1, 1))          # cols < lanes
    assert err == MacError.BAD_CONFIG
    *_, err, _, _ = simulate_engine(2, 2, 4, 1, cfg=(4, 8))          # more positions than memory
    assert err == MacError.BAD_CONFIG
    *_, err, _, _ = simulate_engine(1, 2, 5, 1, cfg=(4, 1))          # 10 weights are not rows of 4
    assert err == MacError.PARTIAL_ROW


# -- integer reference -----------------------------------------------------------------------------

def test_im2col_is_convolution():
    rng = np.random.default_rng(0)
    x = rng.integers(-127, 128, (3, 7, 6))
    w = rng.integers(-7, 8, (5, 3, 3, 3))
    for stride, pad in ((1, 1), (2, 1), (2, 0)):
        got = matmul(w.reshape(5, -1), im2col(x, 3, stride, pad))
        ref = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64)[None], torch.tensor(w, dtype=torch.float64),
                                         stride=stride, padding=pad)[0]
        assert got.tolist() == ref.reshape(5, -1).long().tolist()


def test_matmul_wraps_and_requant_rounds():
    assert matmul(np.array([[2 ** 20]]), np.array([[2 ** 12]])).tolist() == [[0]]    # int32 wraps
    half = 1 << (SHIFT - 1)
    assert requant(np.array([[1, -1, 3]]), np.array([half]), np.array([0])).tolist() == [[1, 0, 2]]


def small_resnet(seed=0, width=4, bits=3, lanes=1):
    """A random ResNet-8 for 8x8 digits with random batch-norm statistics, as a weight stream."""
    from subbit.model.compress import compress_state_dict
    from subbit.model.stream import StreamConfig
    from subbit.model.train.models import build_model
    torch.manual_seed(seed)
    net = build_model("resnet8", in_channels=1, image_size=8, width=width)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    f = compress_state_dict(sd, bits, StreamConfig(lanes=lanes), info={"model": "resnet8"})
    return f


@pytest.fixture(scope="module")
def small_net():
    from subbit.model.train.data import load_dataset
    from subbit.model.train.models import build_model
    from subbit.model.train.qnet import rebuild
    f = small_resnet(width=2)
    data = load_dataset("digits")
    net = rebuild(build_model("resnet8", in_channels=1, image_size=8, width=2), f)
    return f, IntegerNet(f, net, data.val.x[:64].numpy()), data


def test_integer_net_structure(small_net):
    f, inet, data = small_net
    assert [q.name for q in inet.ordered()] == [m.name for m in f.layers]
    geom = inet.geometry((1, 8, 8))
    assert geom[0] == (2, 9, 64) and geom[-1] == (10, 8, 1)
    assert all(0 < s for s in inet.scales.values())
    x = inet.quantize_input(data.test.x[0].numpy())
    assert x.dtype == np.int8 and np.abs(x).max() <= 127
    assert inet.run(x).dtype == np.int64


def test_integer_net_rejects_other_models():
    from subbit.model.train.models import build_model
    with pytest.raises(SubbitError, match="integer inference supports the ResNet models only"):
        IntegerNet(small_resnet(), build_model("ccexam-cnn"), np.zeros((1, 1, 28, 28)))


# -- RTL: cocotb bench on Verilator ---------------------------------------------------------------

def test_cocotb_inference_bit_exact(small_net):
    """The small ResNet's layers on the Verilated decoder + MAC engine (cocotb): every layer's
    accumulators and every image's logits bit-exact, classes identical, no waiting for weights."""
    from subbit.sim import infer_runner
    from subbit.sim.fast import input_beats
    from subbit.sim.rtl_decode import pack_beats, params_for
    f, inet, data = small_net
    dec = params_for(f.hw, f.config)
    b = infer_runner.build(dec, mac_params_for(dec, act_depth=1 << 11, max_positions=64))
    images = [inet.quantize_input(x) for x in data.test.x[:2].numpy()]
    logits = [inet.run(x) for x in images]
    job = {"net": inet, "images": images, "logits": logits,
           "beats": input_beats(pack_beats(f.words(), dec.word_width), dec.word_width)}
    r = infer_runner.run(b, "infer", job)
    classes = [int(np.argmax(v)) for v in logits]
    assert r["none"]["classes"] == r["random"]["classes"] == classes
    assert r["none"]["wait_cycles"] == [0, 0]


# -- RTL: C harness (slow: one Verilator build each) -----------------------------------------------

@pytest.mark.slow
def test_fast_inference_lanes2(small_net):
    """Two lanes: the decoder's K=2 beats straddle rows; accumulators bit-exact, and the engine
    never waits for weights on its fully-connected layer (2 weights per clock = decoder rate)."""
    from subbit.model.train.data import load_dataset  # noqa: F401
    from subbit.model.train.models import build_model
    from subbit.model.train.qnet import rebuild
    from subbit.sim import fast
    from subbit.sim.rtl_decode import pack_beats, params_for
    f = small_resnet(seed=1, lanes=2)
    _, _, data = small_net
    inet = IntegerNet(f, rebuild(build_model("resnet8", in_channels=1, image_size=8, width=4), f),
                      data.val.x[:64].numpy())
    dec = params_for(f.hw, f.config)
    beats = fast.input_beats(pack_beats(f.words(), dec.word_width), dec.word_width)
    waits = []
    with fast.InferSim(dec, mac_params_for(dec, act_depth=1 << 12, max_positions=64)) as sim:
        for x in data.test.x[:3].numpy():
            sim.push(beats)

            def mac(q, xm):
                acc, info = sim.layer(xm, q.rows)
                assert np.array_equal(acc, matmul(q.codes, xm)), q.name
                waits.append(info["wait_cycles"])
                return acc
            xq = inet.quantize_input(x)
            assert np.array_equal(inet.run(xq, mac), inet.run(xq))
    assert sum(waits) == 0


@pytest.mark.slow
def test_decode_speed_ccexam():
    """Issue 6 scale: the whole ccexam CNN stream (421k weights) through the Verilated decoder,
    bit-exact, in under 2 minutes including the build."""
    from subbit.rtl_inference import decode_speed
    t = time.perf_counter()
    r = decode_speed(3, 1, log=lambda *a: None)
    assert r["bit_exact"] and r["weights"] >= 400_000
    assert time.perf_counter() - t < 120


@pytest.mark.slow
def test_infer_cli(tmp_path, capsys):
    from subbit.cli import main
    from subbit.model import sbw
    path = tmp_path / "m.sbw"
    sbw.write_sbw(str(path), small_resnet())
    assert main(["infer", str(path), "--n", "3"]) == 0
    out = capsys.readouterr().out
    assert "classes identical to the integer reference, accumulators bit-exact" in out
    assert "waited for weights 0.00e+00" in out
    assert main(["infer", str(path), "--n", "0", "--rtl", "none"]) == 2
    assert "--n must be a positive number of images, not 0" in capsys.readouterr().err


def test_infer_defaults_to_the_dataset_the_stream_was_trained_on(tmp_path, capsys):
    """A stream's metadata names its training dataset: infer uses it, and refuses another (an
    8x8-digits ResNet runs on 28x28 MNIST images without complaint, at chance accuracy)."""
    import dataclasses
    from subbit.cli import main
    from subbit.model import sbw
    path = tmp_path / "m.sbw"
    f = small_resnet(width=2)
    sbw.write_sbw(str(path), dataclasses.replace(f, info={**f.info, "dataset": "digits"}))
    assert main(["infer", str(path), "--n", "2", "--rtl", "none"]) == 0
    assert "on 2 digits test images" in capsys.readouterr().out
    assert main(["infer", str(path), "--n", "2", "--rtl", "none", "--dataset", "mnist"]) == 2
    err = capsys.readouterr().err
    assert f"subbit infer: error: {path} was trained on digits (its metadata), not mnist" in err
    assert "pass --dataset digits" in err


def test_infer_of_a_stream_that_names_no_network(tmp_path, capsys):
    """`subbit compress` output carries no network name: infer tries resnet8 and, when the tensors do
    not fit it, says that it guessed."""
    from subbit.cli import main
    from subbit.model import sbw
    from subbit.model.compress import compress_state_dict
    from subbit.model.stream import StreamConfig
    sd = {"features.0.weight": np.ones((4, 1, 3, 3), np.float32), "classifier.weight": np.ones((10, 4), np.float32)}
    sbw.write_sbw(str(tmp_path / "m.sbw"), compress_state_dict(sd, 3, StreamConfig()))
    assert main(["infer", str(tmp_path / "m.sbw"), "--rtl", "none", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not match the model: missing conv1.weight" in err
    assert "names no network in its metadata, so infer tried resnet8" in err


def test_documented_commands_parse():
    """Every `subbit ...` line of docs/inference.md is a valid command of the right sub-command."""
    import os
    import re
    import shlex
    from subbit.cli import build_parser
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "inference.md")) as fh:
        blocks = re.findall(r"```sh\n(.*?)```", fh.read(), re.S)
    lines = [shlex.split(ln.split("#")[0]) for ln in "\n".join(blocks).splitlines() if ln.startswith("subbit ")]
    for words in lines:
        args = build_parser().parse_args(words[1:])
        assert args.func.__name__ == f"cmd_{words[1].replace('-', '_')}"
    assert len(lines) == 3
