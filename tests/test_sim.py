"""Generated Verilog in cocotb (Verilator, Icarus) against the golden model: traffic, errors, a real network."""

from __future__ import annotations

import numpy as np
import pytest

from subbit.hw.params import FIRST_WEIGHT_CLOCKS, DecoderParams, ErrorCode, recommended_prefetch, recommended_ways
from subbit.model import rans, stream
from subbit.model.errors import DecodeError
from subbit.model.faults import refix_payload
from subbit.sim import runner
from subbit.sim.rtl_decode import decode_words, pack_beats

# Hand-picked configurations: the reference (K=1, compare), wide bus + 4 lanes with the
# synchronous f/c read (the iCE40 build's), 8-bit layers through the slot table, and the widest
# datapath (with the S4b stage and a ring delay: ways=8; the ring-buffer window, K=8's default).
CONFIGS = {
    "K1-M12-compare": DecoderParams(lanes=1, prob_bits=12, max_symbols=15, word_width=16),
    "K4-M10-w32-compare-sync": DecoderParams(lanes=4, prob_bits=10, max_symbols=15, word_width=32,
                                             fc_read="sync"),
    "K2-M14-table255": DecoderParams(lanes=2, prob_bits=14, max_symbols=255, word_width=16, lookup="table"),
    "K8-M12-w32-compare7-D8": DecoderParams(lanes=8, prob_bits=12, max_symbols=7, word_width=32, ways=8),
}
SIMS = ["verilator", pytest.param("icarus", marks=pytest.mark.icarus)]


def edge_case_layers(p: DecoderParams, seed=0):
    """Layers that exercise the corners: short, empty, one symbol, minimum probability, full alphabet."""
    rng = np.random.default_rng(seed)
    S = p.max_symbols
    half = min(S // 2, 7)
    levels = np.arange(-half, half + 1)
    probs = np.exp(-np.abs(levels))
    layers = [
        rng.choice(levels, 700, p=probs / probs.sum()),                  # weight-like
        np.array([3 % (half + 1)]),                                      # one weight
        np.zeros(0, dtype=np.int64),                                     # empty layer
        np.full(40, -1 if half else 0),                                  # one-symbol alphabet
        rng.choice([-1, 0, 1] if half else [0], 2 * p.states + 3),       # just past lanes*ways
    ]
    minp = np.zeros(1 << p.prob_bits, dtype=np.int64)                    # a symbol at 2**-M ...
    minp[[5, 1000]] = 1 if half else 0                                   # ... once or twice
    layers.append(minp)
    if S >= 200:
        layers.append(rng.integers(-(S // 2), S // 2 + 1, 3000))         # full 8-bit alphabet
    return layers


def make_stream(p: DecoderParams, layers):
    cfg = p.stream_config
    hw = [stream.encode_codes(c, cfg) for c in layers]
    return hw, stream.build(hw, cfg)


def job_for(p, layers):
    hw, words = make_stream(p, layers)
    exp = [stream.decode_codes(h, p.stream_config) for h in hw]
    for e, c in zip(exp, layers):
        np.testing.assert_array_equal(e, c)      # the golden model is the reference
    return {"beats": pack_beats(words, p.word_width), "expected": np.concatenate(exp),
            "layer_ends": np.cumsum([len(c) for c in layers])}


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_traffic_patterns_match_golden_model(name, sim):
    """Every idle x backpressure pattern (cocotb-parametrized) on the edge-case stream."""
    p = CONFIGS[name]
    b = runner.build(p, sim)
    res = runner.run(b, "run_test", job_for(p, edge_case_layers(p)))
    assert len(res) == 9                                      # 3 idle x 3 backpressure patterns
    n = sum(len(c) for c in edge_case_layers(p))
    assert all(r["weights"] == n for r in res.values())


# the slot table filled 8 slots a clock (fill_rate; K2-M14-table255 fills 2): runs that start and end
# anywhere in a table word
FILL8 = {"K1-M10-table15": DecoderParams(lanes=1, prob_bits=10, max_symbols=15, word_width=16, lookup="table")}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["K1-M12-compare", "K4-M10-w32-compare-sync", *FILL8])
def test_random_streams(name, seed):
    p = CONFIGS.get(name) or FILL8[name]
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.integers(1, 8))
        q = rng.dirichlet(np.full(2 * k + 1, 0.5))
        layers.append(rng.choice(np.arange(-k, k + 1), int(rng.integers(0, 3000)), p=q))
    res = runner.run(runner.build(p), "run_test", job_for(p, layers))
    assert len(res) == 9


def test_one_symbol_decoder_decodes_both_banks():
    """max_symbols=1 (every layer one symbol), f/c in LUT-RAM: layers alternate between the table
    banks, and the f/c write address keeps the bank where the read looks (a zero-width symbol
    index once put it one bit lower: the second layer failed with PAYLOAD_LENGTH)."""
    p = DecoderParams(lanes=1, max_symbols=1)
    hw, words = make_stream(p, [np.zeros(100, np.int64), np.zeros(70, np.int64), np.zeros(90, np.int64)])
    r = decode_words(words, hw, p.stream_config, p)
    assert r["error"] == 0 and r["bit_exact"]


# M = 11 and 13: an odd number of low bits of x >> M multiplied in the fabric (3 and 1; the
# configurations above have 4, 2 and 0): at M = 11 the last radix-4 group of f's multiples
# (S2, `f3`) is one bit; M = 13 adds its one partial product in S3
ODD_SPLIT = {"K1-M11-compare": DecoderParams(lanes=1, prob_bits=11, max_symbols=15, word_width=16),
             "K2-M13-compare": DecoderParams(lanes=2, prob_bits=13, max_symbols=15, word_width=16, ways=7)}


@pytest.mark.parametrize("name", list(ODD_SPLIT))
def test_odd_fabric_split(name):
    p = ODD_SPLIT[name]
    assert p.mul_split % 2 == 1
    rng = np.random.default_rng(p.prob_bits)
    layers = [rng.choice(np.arange(-k, k + 1), n, p=rng.dirichlet(np.full(2 * k + 1, 0.5)))
              for k, n in ((7, 2500), (3, 900), (1, 400))]
    res = runner.run(runner.build(p), "run_test", job_for(p, layers))
    assert len(res) == 9 and all(r["weights"] == 3800 for r in res.values())


# -- errors ----------------------------------------------------------------------------

def refix_check(words, lay_offset, hw):
    """Recompute a layer header's check word after editing it."""
    n = len(hw.header_words())
    words[lay_offset + n - 1] = stream.check_word(words[lay_offset:lay_offset + n - 1])


def payload_flip(words, hw, config):
    """A payload bit flip that the golden model reports as a final-state error (word count intact)."""
    lay = hw[0]
    start = lay.offset + len(lay.header_words())
    for w in range(len(lay.payload) - 1, -1, -1):
        for bit in range(16):
            bad = lay.payload.copy()
            bad[w] ^= 1 << bit
            try:
                rans.decode(lay.states, bad, lay.freqs, config.prob_bits, lay.count, config.lanes, config.ways)
            except DecodeError as e:
                if "final state" in str(e):
                    out = words.copy()
                    out[start + w] ^= 1 << bit
                    refix_payload(out, lay)          # only the final-state check may see it
                    return out, start + w
    raise AssertionError("no final-state flip found")


def corrupt(kind, p: DecoderParams):
    """(words, lasts or None, index of the offending word, expected error code)."""
    cfg = p.stream_config
    layers = [np.random.default_rng(3).choice([-2, -1, 0, 1, 2], 2000, p=[.05, .1, .7, .1, .05]),
              np.arange(-3, 4).repeat(20)]
    hw, words = make_stream(p, layers)
    words = words.copy()
    h0, h1 = hw
    if kind == "BAD_MAGIC":
        words[0] ^= 1
        return words, None, 0, ErrorCode.BAD_MAGIC
    if kind == "BAD_VERSION":
        words[1] = stream.VERSION + 1
        return words, None, 1, ErrorCode.BAD_VERSION
    if kind == "CONFIG_MISMATCH":
        _, other = make_stream(DecoderParams.for_stream(stream.StreamConfig(p.prob_bits, p.lanes, p.ways + 1)),
                               layers)
        return other, None, 2, ErrorCode.CONFIG_MISMATCH
    if kind == "HEADER_CHECK":
        k = h1.offset + 6 + h1.nsym              # first initial-state word of layer 1
        words[k] ^= 0x0100
        return words, None, h1.offset + len(h1.header_words()) - 1, ErrorCode.HEADER_CHECK
    if kind == "BAD_TABLE":
        words[h0.offset + 6] += 1                # frequencies now sum to 2**M + 1
        refix_check(words, h0.offset, h0)
        return words, None, h0.offset + 6 + h0.nsym - 1, ErrorCode.BAD_TABLE
    if kind == "UNSUPPORTED":
        big = [np.arange(-(p.max_symbols // 2 + 1), p.max_symbols // 2 + 2)]
        _, w = make_stream(DecoderParams.for_stream(cfg, max_symbols=min(255, p.max_symbols + 2)), big)
        return w, None, 6, ErrorCode.UNSUPPORTED
    if kind == "UNSUPPORTED_BASE":                # nsym <= max_symbols, but the codes overflow code_bits
        top = 1 << (p.code_bits - 1)                 # codes top-3 .. top+3: base in range, top not
        (hb,), w = make_stream(p, [np.arange(top - 3, top + 4).repeat(5)])
        return w, None, hb.offset + 1, ErrorCode.UNSUPPORTED     # the base word
    if kind == "TRUNCATED":
        cut = h0.offset + len(h0.header_words()) + len(h0.payload) // 2
        cut -= cut % 2
        lasts = np.zeros(cut, dtype=bool)
        lasts[-1] = True
        return words[:cut], lasts, cut - 1, ErrorCode.TRUNCATED
    if kind == "TRAILING":
        lasts = np.zeros(len(words), dtype=bool)        # the final word without `last`
        return words, lasts, len(words) - 1, ErrorCode.TRAILING
    if kind == "PAYLOAD_CHECK":                   # one payload bit flipped: the check word's index
        start = h0.offset + len(h0.header_words())
        words[start + 3] ^= 0x0100
        return words, None, start + len(h0.payload) + (len(h0.payload) % 2 == 0), ErrorCode.PAYLOAD_CHECK
    if kind == "FINAL_STATE":
        bad, k = payload_flip(words, hw, cfg)
        return bad, None, -1, ErrorCode.FINAL_STATE
    if kind == "PAYLOAD_LENGTH":                  # layer 0 declares one word more than it reads
        parts = [words[:h0.offset]]
        h0b = stream.HwLayer(h0.nsym, h0.base, h0.count, h0.freqs, h0.states, np.append(h0.payload, 0))
        rebuilt = stream.build([h0b, h1], cfg)
        return rebuilt, None, -1, ErrorCode.PAYLOAD_LENGTH
    raise ValueError(kind)


# BAD_CLASS (row classes): tests/test_sim_classed.py
ERRORS = [e.name for e in ErrorCode if e not in (ErrorCode.NONE, ErrorCode.BAD_CLASS)] + ["UNSUPPORTED_BASE"]


@pytest.mark.parametrize("kind", ERRORS)
@pytest.mark.parametrize("name", ["K1-M12-compare", "K4-M10-w32-compare-sync", "K8-M12-w32-compare7-D8"])
def test_errors_flagged_bounded_and_recoverable(name, kind):
    p = CONFIGS[name]
    words, lasts, bad_word, code = corrupt(kind, p)
    wpb = p.words_per_beat
    if len(words) % wpb:
        words = np.append(words, 0)
    good = job_for(p, edge_case_layers(p, seed=9))
    job = {"beats": pack_beats(words, p.word_width), "expect_error": int(code.value),
           "bad_beat": bad_word // wpb if bad_word >= 0 else -1,
           "good_beats": good["beats"], "good_expected": good["expected"], "good_layer_ends": good["layer_ends"]}
    if lasts is not None:
        job["lasts"] = lasts[wpb - 1::wpb] if wpb > 1 else lasts
    res = runner.run(runner.build(p), "error", job)
    assert res["error"]["error"] == code.value
    if bad_word >= 0:                         # parse errors: flagged within 3 clocks of the word
        assert 0 <= res["error"]["latency"] <= 3, res
    else:                                     # layer 0's checks: by its `last` beat (+ the documented slack)
        # None: layer 0's `last` beat never left (the error stopped the output first)
        after = res["error"]["after_first_last"]
        assert after is None or after <= p.layer_check_clocks, res
        print(kind, name, "error clocks after layer 0's last beat:", after)
    assert res["recovered"] == len(good["expected"])


def test_error_codes_are_documented():
    import os
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "decoder.md")) as fh:
        doc = fh.read()
    for e in ErrorCode:
        assert f"`{e.name}`" in doc


# -- a real network ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def ccexam_codes():
    from subbit.model.compress import ccexam_codes
    return ccexam_codes(3)


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
def test_real_network_bit_exact_at_full_rate(ccexam_codes, lanes):
    """ccexam MNIST CNN (421k weights, 3-bit RTN): bit-exact, >= 0.99*K weights per clock, the
    first weight header words + 4 clocks after the first word (`first_weight_clocks`), and no idle
    clock at a layer switch beyond what the 16-bit bus explains (`tb.switch_metrics`); built
    with the ways and prefetch depth `subbit bench rtl` uses (the S4b stage from two lanes; 64
    prefetch words at K=8, where 32 let the parser run too few payload words ahead to read the
    next 148-word header before a long layer ends) and the default window (the ring at K=8)."""
    p = DecoderParams(lanes=lanes, max_symbols=7, ways=recommended_ways(lanes),
                      prefetch=recommended_prefetch(lanes))
    hw, words = make_stream(p, ccexam_codes)
    res = decode_words(words, hw, p.stream_config, p, "verilator")
    assert res["bit_exact"], {k: v for k, v in res.items() if k != "codes"}
    assert res["weights"] == sum(c.size for c in ccexam_codes)
    assert res["weights_per_cycle"] >= 0.99 * lanes
    assert p.first_weight_clocks == FIRST_WEIGHT_CLOCKS + 1 == 4     # compare: the weights leave from R2
    assert res["first_weight_latency_cycles"] == res["header_words_before_first_weight"] + p.first_weight_clocks
    assert len(res["switch_idle"]) == len(hw) - 1
    assert res["switch_bubbles"] == [0] * (len(hw) - 1), res["switch_idle"]


def test_switch_metrics_split_idle_clocks_into_bus_bound_and_bubbles():
    """Idle clocks at a switch count as bubbles only past the later of the previous layer's end
    and the next header's last beat (on a bus of one beat per clock) + the first-weight allowance."""
    from subbit.sim.tb import FIRST_WEIGHT_ALLOWANCE, switch_metrics
    r = {"out_cycles": [10, 11, 12, 20, 21, 40], "last_cycles": [12, 21, 40], "first_in_cycle": 1}
    assert FIRST_WEIGHT_ALLOWANCE == 5          # the target: header words + 4 clocks after the first word
    # layer 1's header ends in beat 10: its first weight is due by 1 + 10 + 5 = 16 (came at 20);
    # layer 2's in beat 30: due by 36 (came at 40), or in beat 5: due when layer 1 ends (22)
    assert switch_metrics(r, [3, 10, 30]) == ([7, 18], [4, 4])
    assert switch_metrics(r, [3, 10, 5]) == ([7, 18], [4, 18])
    assert switch_metrics(r, [3, 20, 40]) == ([7, 18], [0, 0])


def test_build_cache_builds_once_drops_headers_and_stays_bounded(tmp_path):
    """The simulation build cache: one build per entry, no precompiled headers kept, LRU-bounded."""
    import os
    calls = []

    def make_in(d):
        def make():
            calls.append(d)
            with open(os.path.join(d, "Vtop__pch.h.fast.gch"), "w") as fh:
                fh.write("x" * 1000)
            with open(os.path.join(d, "Vtop"), "w") as fh:
                fh.write("exe")
        return make

    entries = [str(tmp_path / f"e{i}") for i in range(5)]
    for i, d in enumerate(entries):
        runner.cached_build(d, f"digest{i}", make_in(d))
        os.utime(os.path.join(d, "built.ok"), (1000 + i, 1000 + i))    # long unused, oldest first
    assert calls == entries
    runner.cached_build(entries[0], "digest0", make_in(entries[0]))  # hit: no rebuild, marked used
    assert calls == entries
    assert os.listdir(entries[0]).count("Vtop") == 1
    assert not any(f.endswith(".gch") for d in entries for f in os.listdir(d))
    runner._evict(str(tmp_path), keep=2)
    # entries[0] was just used (and is within the grace period); of the rest only the newest survives
    assert sorted(os.listdir(tmp_path)) == ["e0", "e4"]


def test_decode_cli_rtl_writes_the_decoded_file_or_nothing(tmp_path, capsys):
    """`subbit decode --rtl`: the RTL's codes, bit-exact, into -o; a decoder too small for the file
    raises its status error, which the command names, and writes nothing."""
    import json

    from subbit.cli import main
    from subbit.model import checkpoint, sbw
    from subbit.model.compress import compress_state_dict
    rng = np.random.default_rng(3)
    sd = {"a.weight": rng.normal(size=(16, 20)), "b.weight": rng.normal(size=(4, 33)), "b.bias": rng.normal(size=4)}
    f = compress_state_dict(sd, 4, stream.StreamConfig())
    path, out, cod = tmp_path / "m.sbw", tmp_path / "w.safetensors", tmp_path / "c.safetensors"
    sbw.write_sbw(path, f)
    assert main(["decode", str(path), "--rtl", "verilator", "--max-symbols", "15", "-o", str(out),
                 "--codes", str(cod)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["error_name"] == "NONE" and res["weights"] == 16 * 20 + 4 * 33
    got, golden = checkpoint.load_state_dict(cod), f.decode_codes()
    for k in ("a.weight", "b.weight"):
        np.testing.assert_array_equal(got[k], golden[k])
    out.unlink()
    cod.unlink()
    assert main(["decode", str(path), "--rtl", "verilator", "--max-symbols", "3", "-o", str(out)]) == 2
    cap = capsys.readouterr()
    assert json.loads(cap.out)["error_name"] == "UNSUPPORTED"
    assert ("subbit decode: error: the RTL decoder (verilator) raised UNSUPPORTED (status.error = 6, "
            "docs/decoder.md); the smallest decoder for this file (the default) has --max-symbols 16; "
            "nothing written") in cap.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sbw"]


def test_decode_rtl_of_a_ptq_stream_is_bit_exact(tmp_path, capsys):
    """A stream from `compress --target-bits` (tensors in parts, a level count per part, all-zero
    parts of one symbol) decodes bit-exactly on the RTL, and `decode -o` puts the parts back."""
    import json

    from subbit.cli import main
    from subbit.model import sbw
    from subbit.model.compress import compress_to_budget
    rng = np.random.default_rng(5)
    fc = rng.laplace(scale=0.05, size=(48, 200)).astype(np.float32)
    fc[:12] *= 0.02
    sd = {"a.weight": rng.laplace(scale=0.1, size=(8, 27)).astype(np.float32), "fc.weight": fc}
    f, rep = compress_to_budget(sd, 1.0, stream.StreamConfig())
    assert f.partitions and len(f.layers) > 2
    path, out = tmp_path / "m.sbw", tmp_path / "w.safetensors"
    sbw.write_sbw(path, f)
    assert main(["decode", str(path), "--rtl", "verilator", "-o", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["error_name"] == "NONE" and res["weights"] == 8 * 27 + 48 * 200
    from safetensors.numpy import load_file
    got, golden = load_file(out), f.state_dict()
    for k in sd:
        np.testing.assert_array_equal(got[k], golden[k])


@pytest.mark.parametrize("lanes,pause", [(1, 0.0), (4, 0.3)])
def test_axi4_stream_wrapper_is_bit_exact(lanes, pause):
    """The AXI4-Stream top (hw/axis.py) under cocotbext-axi's source and sink with random pauses on
    both sides: one frame per layer (tlast), the codes in the bytes tkeep marks, the layer index on
    tuser, two streams back to back; every code equal to the golden model's."""
    from subbit.hw.params import DecoderParams
    from subbit.model.compress import build_sbw
    from subbit.model.sbw import LayerMeta
    from subbit.sim import axis_runner
    rng = np.random.default_rng(lanes)
    cfg = stream.StreamConfig(lanes=lanes)
    shapes = [(7, 9), (0, 4), (3, 50), (1, 1), (2, 33)]
    layers = [(LayerMeta(f"l{k}.weight", s, 4, [0.1]), rng.integers(-7, 8, size=s)) for k, s in enumerate(shapes)]
    f = build_sbw(layers, {}, cfg)
    words = [int(w) for w in f.words()]
    d = axis_runner.build(DecoderParams(lanes=lanes, max_symbols=15))
    res = axis_runner.run(d, {"streams": [words, words], "layers": len(shapes), "pause_in": pause, "word_width": 16,
                              "pause_out": pause})
    assert res["error"] == 0 and res["done"] == 1
    golden = [c.ravel().tolist() for _, c in layers]
    for frames in res["frames"]:
        assert [fr["codes"] for fr in frames] == golden
        assert [fr["tuser"] for fr in frames] == [k if golden[k] else None for k in range(len(shapes))]


def _gate_stream(params, seed=0):
    from subbit.model.compress import build_sbw
    from subbit.model.sbw import LayerMeta
    rng = np.random.default_rng(seed)
    cfg = params.stream_config
    shapes = [(8, 40), (0, 3), (5, 61)]
    layers = [(LayerMeta(f"l{k}.weight", s, 3, [0.1]), rng.choice([-3, -1, 0, 0, 0, 1, 2], size=s))
              for k, s in enumerate(shapes)]
    return build_sbw(layers, {}, cfg), [c.ravel() for _, c in layers]


@pytest.mark.parametrize("target", [pytest.param("ecp5", marks=pytest.mark.slow), "ice40"])
def test_gate_level_netlist_is_bit_exact(target):
    """The decoder as yosys synthesized it (synth_ecp5 -nodsp on Verilator, synth_ice40 -dsp on
    Icarus, with yosys's cell models) decodes a stream bit-exactly, clock for clock as the RTL.
    ECP5 is a slow test: Verilator's C++ build of the 1 MB netlist takes minutes."""
    from subbit.hw.params import DecoderParams
    from subbit.sim import gate, runner
    from subbit.sim.rtl_decode import header_last_beats, pack_beats
    params = DecoderParams(lanes=1, prob_bits=12, max_symbols=7,
                           **({"fc_read": "sync", "window": "shift"} if target == "ice40" else {}))
    f, golden = _gate_stream(params)
    words = f.words()
    job = {"beats": pack_beats(words, params.word_width), "header_last_beats": header_last_beats(f.hw, params.word_width)}
    r = runner.run(gate.build(params, target), "decode", job)["decode"]
    rtl = runner.run(runner.build(params, "verilator"), "decode", job)["decode"]
    assert r["error"] == 0 and not r["timed_out"]
    assert r["codes"] == np.concatenate(golden).tolist()
    assert r["layer_ends"] == np.cumsum([g.size for g in golden]).tolist()
    assert {k: r.get(k) for k in ("cycles", "first_weight_latency_cycles", "switch_idle")} == \
        {k: rtl.get(k) for k in ("cycles", "first_weight_latency_cycles", "switch_idle")}


@pytest.mark.parametrize("lanes,max_symbols", [(1, 15), (4, 255), (8, 7)])
def test_port_fields_come_from_the_layouts(lanes, max_symbols):
    """sim/ports.py: the benches' and C harnesses' packing is read from the Amaranth layouts."""
    from subbit.hw.infer_top import mac_params_for
    from subbit.sim.ports import c_header, decoder_ports, infer_ports
    p = DecoderParams(lanes=lanes, max_symbols=max_symbols)
    ports = decoder_ports(p)
    o, cb = ports["o"], p.code_bits
    assert [o.fields[f"codes[{j}]"] for j in range(lanes)] == [(j * cb, cb) for j in range(lanes)]
    assert o.fields["count"] == (lanes * cb, lanes.bit_length()) and o.fields["last"][0] == o.width() - 1
    codes = [(-1) ** j * (j % (1 << (cb - 1))) for j in range(lanes)]
    v = o.pack(**{f"codes[{j}]": c for j, c in enumerate(codes)}, count=lanes, last=1)
    assert [o.get(v, f"codes[{j}]") for j in range(lanes)] == codes and o.get(v, "count") == lanes
    assert ports["i"].pack(data=0xBEEF, last=1) == 0xBEEF | 1 << 16
    st = ports["status"]
    code = ErrorCode.PAYLOAD_CHECK.value
    assert st.get(st.pack(busy=1, error=code), "error") == code
    h = c_header(ports, lanes=lanes)
    assert f"#define SB_O_COUNT_OFFSET {lanes * cb}\n" in h and f"#define SB_O_CODE_BITS {cb}\n" in h
    assert "#define SB_STATUS_ERROR_OFFSET 2\n" in h
    inf = infer_ports(p, mac_params_for(p))
    assert set(inf["status"].fields) >= {"decoder.error", "mac.error", "mac.done", "mac.waiting"}
    assert "#define SB_STATUS_MAC_WAITING_OFFSET" in c_header(inf)


# (the ECP5 multiplier: its behavioural model goes into the harness build too, as `bench rtl` measures it)
@pytest.mark.parametrize("kw", [dict(lanes=2, max_symbols=7), dict(lanes=1, multiplier="ecp5")])
def test_c_harness_gives_the_cocotb_bench_figures(kw):
    """`decode --rtl verilator` runs the Verilated decoder in the C harness (sim/fast.py): on the
    measurement stream (the ccexam CNN, several layers) it gives the cocotb bench's codes, cycles,
    first-weight latency and switch figures exactly, and reports progress as it goes."""
    from subbit.sim.rtl_decode import measure_stream
    p = DecoderParams(**kw)
    hw, words = measure_stream(p.stream_config)
    seen = []
    fast = decode_words(words, hw, p.stream_config, p, "verilator", engine="harness", progress=seen.append)
    slow = decode_words(words, hw, p.stream_config, p, "verilator", engine="cocotb")
    assert fast["bit_exact"] and slow["bit_exact"]
    assert np.array_equal(fast.pop("codes"), slow.pop("codes"))
    assert (fast.pop("engine"), slow.pop("engine")) == ("harness", "cocotb")
    assert fast == slow
    assert seen and seen[-1] == fast["weights"] and seen == sorted(seen)
    with pytest.raises(ValueError, match="Verilator only"):
        decode_words(words, hw, p.stream_config, p, "icarus", engine="harness")
