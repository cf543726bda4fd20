"""Row-classed layers (word stream v3, issue 27) through the generated RTL, against the golden model:
traffic patterns, the table switch at row boundaries, and the class fields' errors."""

from __future__ import annotations

import numpy as np
import pytest

from subbit.hw.params import FIRST_WEIGHT_CLOCKS, DecoderParams, ErrorCode
from subbit.model import rowclass, stream
from subbit.model.errors import SubbitError
from subbit.sim import runner
from subbit.sim.rtl_decode import decode_words, pack_beats
from test_sim import edge_case_layers, job_for

# The comparators (cumulative tables in LUT-RAM, per lane) and the slot table: one lane, 16-bit bus,
# 8 tables, with the S2b stage (the f/c select registered) and the slot table without; four lanes on
# a 32-bit bus with the S4b stage, 4 tables (and the smallest class index memory); two lanes, 2
# tables, neither S2b nor S4b; eight lanes with the ring window, S2b, S4b and S4c (the ways `subbit bench
# rtl` builds it with), 8 tables.
CONFIGS = {
    "K1-M12-compare-T8-D7": DecoderParams(lanes=1, prob_bits=12, max_symbols=15, tables=8, ways=7),
    "K1-M12-table-T8": DecoderParams(lanes=1, prob_bits=12, max_symbols=15, lookup="table", tables=8),
    "K4-M10-w32-table-T4-D7": DecoderParams(lanes=4, prob_bits=10, max_symbols=15, word_width=32, lookup="table",
                                            tables=4, ways=7, class_words=16),
    "K2-M12-compare-T2": DecoderParams(lanes=2, prob_bits=12, max_symbols=9, tables=2),
    "K8-M12-w32-compare-T8-D9": DecoderParams(lanes=8, prob_bits=12, max_symbols=15, word_width=32, tables=8,
                                              ways=9),
}


def classed_layer(cfg, rows, row_length, T, seed, *, zero_class=False):
    """Rows of ``row_length`` weights in ``T`` shuffled classes of different zero rates (class 0 all
    zeros with ``zero_class``: a one-symbol table), coded with those classes and a fixed-bit index."""
    rng = np.random.default_rng(seed)
    cls = np.arange(rows) % T
    rng.shuffle(cls)
    pz = np.linspace(0.97, 0.15, T)[cls]
    if zero_class:
        pz[cls == 0] = 1.0
    codes = np.where(rng.random((rows, row_length)) < pz[:, None], 0, rng.integers(-4, 5, (rows, row_length)))
    codes[cls != 0, 0] = 3                         # every class but 0 holds a non-zero
    return stream.encode_with_classes(codes.ravel(), cfg, cls, row_length, codings=(rowclass.FIXED,))


def classed_stream(p: DecoderParams, seed=0):
    """v3 layers of every class width (T = 2: 1 bit, 3..4: 2, 5..8: 3), rows of exactly a beat and
    rows longer than a class index word's worth, a one-symbol class, a class index of one word and
    of 16-bit-aligned length, mixed with one-table layers (the edge-case layers)."""
    cfg, K = p.stream_config, p.lanes
    T = p.tables
    specs = [(30, 20, min(3, T)), (64, max(K, 9), 2), (40, 16, T), (7, K, min(5, T)), (96, K, T),
             (33, 3 * K + 1, min(4, T))]
    hw = [classed_layer(cfg, *s, seed + k, zero_class=(k == 2)) for k, s in enumerate(specs)]
    plain = [stream.encode_codes(c, cfg) for c in edge_case_layers(p, seed)[:4]]
    layers = [hw[0], plain[0], hw[1], plain[1], hw[2], plain[2], hw[3], hw[4], plain[3], hw[5]]
    assert sum(h.tables > 1 for h in layers) == 6
    return layers, stream.build(layers, cfg)


def job(p, layers, words):
    exp = [stream.decode_codes(h, p.stream_config) for h in layers]
    return {"beats": pack_beats(words, p.word_width), "expected": np.concatenate(exp),
            "layer_ends": np.cumsum([h.count for h in layers])}


# every configuration on Verilator, one on Icarus
TRAFFIC = [(n, "verilator") for n in CONFIGS] + [
    pytest.param("K4-M10-w32-table-T4-D7", "icarus", marks=pytest.mark.icarus)]


@pytest.mark.parametrize("name,sim", TRAFFIC)
def test_classed_traffic_patterns_match_golden_model(name, sim):
    """Every idle x backpressure pattern on a v3 stream: bit-exact, with the layer ends."""
    p = CONFIGS[name]
    layers, words = classed_stream(p)
    assert words[1] == stream.VERSION_CLASSED
    res = runner.run(runner.build(p, sim), "run_test", job(p, layers, words))
    assert len(res) == 9 and all(r["weights"] == sum(h.count for h in layers) for r in res.values())


@pytest.mark.parametrize("name", ["K4-M10-w32-table-T4-D7", "K2-M12-compare-T2", "K1-M12-compare-T8-D7"])
def test_classed_decoder_still_decodes_v2_streams_and_full_rate_on_long_rows(name):
    """A decoder with tables reads v2 streams as before, and a long classed layer decodes at a weight
    per lane per clock (the table switch at a row boundary costs no clock); with the comparators
    the first weight is header words + ``first_weight_clocks`` (one more than the S1 figure when the
    weights leave from R2, as with every compare lookup) after the first word."""
    p = CONFIGS[name]
    runner.run(runner.build(p), "run_test", job_for(p, edge_case_layers(p, seed=5)))
    cfg = p.stream_config
    lay = classed_layer(cfg, 120, 200, p.tables, 11)          # <= 15 class index words: the memory holds 16
    r = decode_words(stream.build([lay], cfg), [lay], cfg, p)
    assert r["bit_exact"] and r["error"] == 0
    span = r["cycles"] - r["first_weight_latency_cycles"]
    assert lay.count / span >= 0.99 * p.lanes, r
    if p.lookup == "compare":
        assert p.first_weight_clocks == FIRST_WEIGHT_CLOCKS + 1
        assert r["first_weight_latency_cycles"] == r["header_words_before_first_weight"] + p.first_weight_clocks, r


# -- errors ---------------------------------------------------------------------------------------

def _edit(words, lay, at, value):
    """``words`` with word ``at`` of layer ``lay``'s header set to ``value``, its check word recomputed."""
    out = np.array(words, dtype=np.uint16)
    out[lay.offset + at] = value
    n = len(lay.header_words())
    out[lay.offset + n - 1] = stream.check_word(out[lay.offset:lay.offset + n - 1])
    return out


def corrupt(kind, p):
    """(words, index of the offending word or -1 for an end-of-layer check, expected code)."""
    cfg = p.stream_config
    LF3, CF = stream.LAYER_FIELDS_V3, stream.CLASS_FIELDS
    a = classed_layer(cfg, 30, 20, 3, 1)           # 2-bit classes, 4 index words
    b = classed_layer(cfg, 40, 16, 2, 2)
    words = stream.build([a, b], cfg)
    cf = a.offset + LF3.nwords
    idx = cf + CF.nwords + a.tables * a.nsym + 2 * len(a.states)   # the first class index word
    w0 = lambda **kw: LF3.pack(**{"nsym": a.nsym, "extra_tables": a.tables - 1, "class_code": 0, **kw})[0]
    if kind == "class out of range":
        return _edit(words, a, idx - a.offset, int(a.class_index[0]) | 3), -1, ErrorCode.BAD_CLASS
    if kind == "row length does not divide":
        return _edit(words, a, LF3.nwords + CF.row_length.word, a.row_length + 1), -1, ErrorCode.BAD_CLASS
    if kind == "class index one word more":
        return (_edit(words, a, LF3.nwords + CF.class_words.word, len(a.class_index) + 1), -1,
                ErrorCode.BAD_CLASS)     # the header then also reads one word too many: HEADER_CHECK may win
    if kind == "non-zero unused class bits":
        return _edit(words, a, idx - a.offset + len(a.class_index) - 1, int(a.class_index[-1]) | 0x8000), -1, \
            ErrorCode.BAD_CLASS
    if kind == "row length 0":
        return _edit(words, a, LF3.nwords + CF.row_length.word, 0), cf + 3, ErrorCode.BAD_CLASS
    if kind == "unknown class coding":
        return _edit(words, a, 0, w0(class_code=2)), a.offset, ErrorCode.BAD_CLASS
    if kind == "rANS class index":
        return _edit(words, a, 0, w0(class_code=1)), a.offset, ErrorCode.UNSUPPORTED
    if kind == "more tables than the decoder":
        if p.tables == 8:
            pytest.skip("a stream declares at most 8 tables")
        return _edit(words, a, 0, w0(extra_tables=p.tables)), a.offset, ErrorCode.UNSUPPORTED
    if kind == "class index longer than the memory":
        return (_edit(words, a, LF3.nwords + CF.class_words.word, p.class_words + 1), cf + 3,
                ErrorCode.UNSUPPORTED)
    if kind == "rows shorter than a beat":
        short = classed_layer(cfg, 60, 2, 2, 3) if p.lanes > 2 else None
        if short is None:
            pytest.skip("rows of 2 weights fit a beat of 1 or 2 lanes")
        return stream.build([short, b], cfg), stream.STREAM_HEADER_WORDS + LF3.nwords + 3, ErrorCode.UNSUPPORTED
    raise ValueError(kind)


KINDS = ["class out of range", "row length does not divide", "class index one word more", "non-zero unused class bits",
         "row length 0", "unknown class coding", "rANS class index", "more tables than the decoder",
         "class index longer than the memory", "rows shorter than a beat"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["K1-M12-compare-T8-D7", "K4-M10-w32-table-T4-D7"])
def test_classed_errors_flagged_bounded_and_recoverable(name, kind):
    """Each bad class field: the golden reader rejects the stream; the RTL raises the code (a header
    field within 3 clocks of its word; the end-of-layer checks by the layer's last beat), and the
    next stream after reset decodes bit-exactly."""
    from subbit.model import faults
    p = CONFIGS[name]
    words, bad_word, code = corrupt(kind, p)
    if kind not in ("more tables than the decoder", "class index longer than the memory", "rows shorter than a beat",
                    "rANS class index"):
        with pytest.raises(SubbitError):       # the golden model rejects it too
            faults.golden(words)
    wpb = p.words_per_beat
    if len(words) % wpb:
        words = np.append(words, 0)
    layers, good_words = classed_stream(p, seed=4)
    good = job(p, layers, good_words)
    j = {"beats": pack_beats(words, p.word_width), "expect_error": int(code.value),
         "bad_beat": bad_word // wpb if bad_word >= 0 else -1,
         "good_beats": good["beats"], "good_expected": good["expected"], "good_layer_ends": good["layer_ends"]}
    # other rows or one word more in the header: the payload or the header check may fail first
    also = {"class index one word more": [ErrorCode.HEADER_CHECK],
            "row length does not divide": [ErrorCode.FINAL_STATE, ErrorCode.PAYLOAD_LENGTH]}.get(kind, [])
    j["expect_error"] = np.array([c.value for c in [code, *also]])
    res = runner.run(runner.build(p), "error", j)
    assert res["error"]["error"] in j["expect_error"].tolist(), res
    if bad_word >= 0:
        assert 0 <= res["error"]["latency"] <= 3, res
    else:
        after = res["error"]["after_first_last"]
        assert after is None or after <= p.layer_check_clocks, res
    assert res["recovered"] == len(good["expected"])
