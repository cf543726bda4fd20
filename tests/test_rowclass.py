"""Row-classed tables (issue 27, word stream v3): the golden coder `subbit.model.rowclass` against
its compiled twin, round trips through the stream for random shapes, T, alphabets and coder
configurations, the fallback to one table (and to a v2 stream, word for word), the class index
codings, and the reader's errors on bad classed layers (layer and byte offset)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subbit.model import fast, rans, rowclass, stream
from subbit.model.errors import DecodeError, FormatError, SubbitError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def structured(rng, rows, row_length, nsym):
    """Codes whose rows differ in zero rate (what row classes exploit), with a few dead rows."""
    zero = rng.random(rows) ** 2
    lo = -(nsym // 2)
    q = rng.integers(lo, lo + nsym, (rows, row_length))
    q = np.where(rng.random((rows, row_length)) < zero[:, None], 0, q)
    q[rng.random(rows) < 0.1] = 0
    return q


@st.composite
def layers(draw):
    rows = draw(st.integers(1, 40))
    row_length = draw(st.integers(1, 50))
    nsym = draw(st.integers(1, 12))
    T = draw(st.integers(1, rowclass.MAX_TABLES))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, nsym, (rows, row_length))
    cls = rng.integers(0, T, rows)
    F = []
    for t in range(T):                      # each table codes the symbols of its rows (+ random others)
        counts = np.bincount(sym[cls == t].ravel(), minlength=nsym) + rng.integers(0, 2, nsym) * 3
        counts[0] += counts.sum() == 0
        F.append(rans.normalize_freqs(counts, 12))
    return sym, np.stack(F), cls, row_length


@SETTINGS
@given(layers(), st.sampled_from([(1, 1), (1, 6), (2, 6), (4, 3), (8, 6)]))
def test_golden_and_fast_are_bit_exact(layer, kd):
    sym, F, cls, row_length = layer
    K, D = kd
    states, words = rowclass.encode(sym, F, cls, row_length, 12, K, D)
    fstates, fwords = fast.encode_classed(sym, 0, F, cls, row_length, 12, K, D)
    assert np.array_equal(states, fstates) and np.array_equal(words, fwords)
    dec = rowclass.decode(states, words, F, cls, row_length, 12, sym.size, K, D)
    assert np.array_equal(dec, sym.ravel())
    assert np.array_equal(fast.decode_classed(states, words, F, cls, row_length, 12, sym.size, K, D, base=-3),
                          sym.ravel() - 3)


def test_one_table_is_the_plain_coder():
    rng = np.random.default_rng(1)
    sym = rng.integers(0, 5, (7, 30))
    f = rans.normalize_freqs(np.bincount(sym.ravel()), 10)
    a = rowclass.encode(sym, f[None], np.zeros(7, np.int64), 30, 10, 2, 6)
    b = rans.encode(sym, f, 10, 2, 6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_same_errors_golden_and_fast():
    rng = np.random.default_rng(2)
    sym = rng.integers(0, 4, (6, 20))
    cls = np.arange(6) % 2
    F = np.stack([rans.normalize_freqs(np.bincount(sym[cls == t].ravel(), minlength=4), 12) for t in range(2)])
    states, words = rowclass.encode(sym, F, cls, 20, 12, 2, 6)
    bad = words.copy()
    bad[len(bad) // 2] ^= 1
    for w, st_ in ((bad, states), (words[:-1], states), (np.append(words, 7), states)):
        errs = []
        for fn in (rowclass.decode, fast.decode_classed):
            with pytest.raises(DecodeError) as e:
                fn(st_, w, F, cls, 20, 12, sym.size, 2, 6, layer="x")
            errs.append((str(e.value), e.value.word))
        assert errs[0] == errs[1]
    F0 = F.copy()
    F0[1, int(sym[1, 0])] = 0                       # a symbol of a class-1 row has frequency 0 there
    F0[1, [s for s in range(4) if s != int(sym[1, 0])][0]] += int(F[1, int(sym[1, 0])])
    for fn in (lambda: rowclass.encode(sym, F0, cls, 20, 12), lambda: fast.encode_classed(sym, 0, F0, cls, 20, 12)):
        with pytest.raises(SubbitError, match="frequency 0 in table 1"):
            fn()


@SETTINGS
@given(st.integers(1, 60), st.integers(1, 40), st.integers(1, 9), st.sampled_from(list(stream.TABLE_CHOICES)),
       st.sampled_from([(12, 1, 6), (10, 2, 6), (15, 4, 7), (8, 8, 6)]), st.integers(0, 2**31))
def test_stream_round_trip_and_never_larger(rows, row_length, nsym, tables, cfg, seed):
    config = stream.StreamConfig(*cfg)
    q = structured(np.random.default_rng(seed), rows, row_length, nsym)
    plain = stream.encode_codes(q, config)
    lay = stream.encode_codes(q, config, tables=tables)
    assert lay.words() <= plain.words()
    if tables == 1 or lay.tables == 1:
        assert np.array_equal(lay.header_words(), plain.header_words())
        assert np.array_equal(lay.payload, plain.payload)
    words = stream.build([lay, stream.encode_codes(q[:1], config)], config)
    assert words[1] == (stream.VERSION_CLASSED if lay.tables > 1 else stream.VERSION)
    got_config, hw = stream.parse(words)
    assert got_config == config and hw[0].tables == lay.tables
    assert np.array_equal(stream.decode_codes(hw[0], config), q.ravel())


def test_unclassed_stream_is_v2_word_for_word():
    """Layers where classes do not pay keep one table: the stream is version 2, identical."""
    rng = np.random.default_rng(3)
    config = stream.StreamConfig(12, 2, 6)
    codes = [rng.integers(-2, 3, (16, 40)), np.zeros((3, 3), np.int64), np.zeros((0, 4), np.int64)]
    a = stream.build([stream.encode_codes(c, config) for c in codes], config)
    b = stream.build([stream.encode_codes(c, config, tables="auto") for c in codes], config)
    assert np.array_equal(a, b) and a[1] == 2


def test_classes_pay_on_structured_rows():
    rng = np.random.default_rng(4)
    q = structured(rng, 200, 300, 7)
    config = stream.StreamConfig()
    lay = stream.encode_codes(q, config, tables="auto")
    assert 2 <= lay.tables <= 8 and lay.words() < 0.95 * stream.encode_codes(q, config).words()
    assert np.array_equal(stream.decode_codes(lay, config), q.ravel())
    with pytest.raises(SubbitError, match="row length 7 does not divide"):
        stream.encode_codes(q, config, tables=4, row_length=7)
    with pytest.raises(SubbitError, match="tables must be one of"):
        stream.encode_codes(q, config, tables=3)


@pytest.mark.parametrize("tables", [2, 3, 5, 8])
def test_class_index_codings(tables):
    rng = np.random.default_rng(tables)
    # uniform over 2**b classes: fixed bits; skewed, or T = 3 or 5 (fixed wastes a fraction of a bit): rANS
    for p in (None, [0.9] + [0.1 / (tables - 1)] * (tables - 1)):
        k = rng.choice(tables, 500, p=p)
        k[:tables] = np.arange(tables)
        code, words = rowclass.encode_class_index(k, tables, 12)
        assert code == (rowclass.FIXED if p is None and tables in (2, 8) else rowclass.RANS)
        if code == rowclass.FIXED:
            assert len(words) == -(-500 * rowclass.class_bits(tables) // 16)
        assert np.array_equal(rowclass.decode_class_index(words, 500, tables, code, 12), k)


def test_class_index_errors():
    words = rowclass._pack_fixed(np.array([0, 1, 2, 2]), 3)
    with pytest.raises(DecodeError, match="row 2 has class 3, the layer has 3 tables"):
        rowclass.decode_class_index(rowclass._pack_fixed(np.array([0, 1, 3, 2]), 4), 4, 3, rowclass.FIXED, 12)
    with pytest.raises(DecodeError, match="non-zero unused bits"):
        rowclass.decode_class_index(words | np.uint16(1 << 15), 4, 3, rowclass.FIXED, 12)
    with pytest.raises(DecodeError, match="class index has 1 words, 9 rows of 2 bits need 2"):
        rowclass.decode_class_index(words, 9, 3, rowclass.FIXED, 12)
    with pytest.raises(DecodeError, match="unknown class index coding 2"):
        rowclass.decode_class_index(words, 4, 3, 2, 12)


def classed_stream():
    config = stream.StreamConfig(12, 2, 6)
    q = structured(np.random.default_rng(5), 64, 100, 5)
    lay = stream.encode_codes(q, config, tables=4)
    assert lay.tables > 1
    return config, [stream.encode_codes(q[:2], config), lay]


def edited(layers, config, fn):
    """The stream with ``fn(words, layer 1's offset)`` applied and layer 1's check word recomputed."""
    w = stream.build(layers, config)
    h = layers[1]
    fn(w, h.offset)
    n = len(h.header_words())
    w[h.offset + n - 1] = stream.check_word(w[h.offset:h.offset + n - 1])
    return w


def test_reader_errors_name_layer_and_offset():
    config, hw = classed_stream()
    stream.build(hw, config)                # sets the offsets
    h = hw[1]
    T, nsym = h.tables, h.nsym
    base = 2 * h.offset
    first_table = h.offset + 10

    def field(name, value):
        return lambda w, o: _put(w, o + 6, stream.CLASS_FIELDS, name, value)

    cases = [
        (field("row_length", 99), "row length 99 does not divide the layer's 6400 weights", base + 2 * 6),
        (field("row_length", 0), "row length 0 does not divide", base + 2 * 6),
        (lambda w, o: w.__setitem__(first_table + nsym, w[first_table + nsym] + 1),
         "frequency table 1 sums to 4097, expected 2\\*\\*12", 2 * (first_table + nsym)),
        (lambda w, o: _put(w, o, stream.LAYER_FIELDS_V3, "class_code", 3), "unknown class index coding 3", None),
    ]
    for fn, msg, offset in cases:
        with pytest.raises(FormatError, match=msg) as e:
            stream.parse(edited(hw, config, fn), names=["a", "b"])
        assert e.value.layer == "1 'b'"
        if offset is not None:
            assert e.value.offset == offset
    # a class beyond T: rewrite the index for T - 1 tables, declared with T
    w = stream.build(hw, config)
    _put(w, h.offset, stream.LAYER_FIELDS_V3, "extra_tables", T - 2)
    with pytest.raises(FormatError):
        stream.parse(w)
    # a one-table layer with a class coding set (v3 stream)
    w = edited(hw, config, lambda w, o: None)
    w[hw[0].offset] |= np.uint16(1 << 11)
    n = len(hw[0].header_words())
    w[hw[0].offset + n - 1] = stream.check_word(w[hw[0].offset:hw[0].offset + n - 1])
    with pytest.raises(FormatError, match="class index coding 1 set in a layer with one table") as e:
        stream.parse(w)
    assert e.value.offset == 2 * hw[0].offset
    # v2 stream: the v3 bits are not fields there
    v2 = stream.build([hw[0]], config)
    v2[hw[0].offset] |= np.uint16(1 << 8)
    n = len(hw[0].header_words())
    v2[hw[0].offset + n - 1] = stream.check_word(v2[hw[0].offset:hw[0].offset + n - 1])
    with pytest.raises(FormatError, match="alphabet size"):
        stream.parse(v2)


def _put(w, start, header, name, value):
    words = [int(x) for x in w[start:start + header.nwords]]
    getattr(header, name).put(words, value)
    w[start:start + header.nwords] = words


def test_out_of_range_class_in_stream():
    """T = 3 with fixed 2-bit classes: a stored 3 is out of range, at the class index's word."""
    config = stream.StreamConfig(12, 1, 6)
    rng = np.random.default_rng(6)
    sym = rng.integers(0, 3, (8, 10))
    cls = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    F = np.stack([rans.normalize_freqs(np.bincount(sym[cls == t].ravel(), minlength=3), 12) for t in range(3)])
    states, pay = rowclass.encode(sym, F, cls, 10, 12, 1, 6)
    bad = cls.copy()
    bad[5] = 3
    lay = stream.HwLayer(3, 0, sym.size, F, states, pay, row_length=10, classes=bad, class_code=rowclass.FIXED,
                         class_index=rowclass._pack_fixed(bad, 4))
    w = stream.build([lay], config)
    with pytest.raises(FormatError, match="row 5 has class 3, the layer has 3 tables") as e:
        stream.parse(w)
    cls_word = lay.offset + 10 + 9 + 2 * 6
    assert e.value.offset == 2 * cls_word and e.value.layer == "0"


def test_ccexam_reaches_the_issue_target():
    """Issue 27: the ccexam CNN's 3-bit RTN codes, whole word stream <= 0.72 bits/weight."""
    pytest.importorskip("ccexam")
    from subbit.model.compress import ccexam_codes
    codes = ccexam_codes(3)
    config = stream.StreamConfig()
    words = stream.build([stream.encode_codes(c, config, tables="auto") for c in codes], config)
    bpw = 16 * len(words) / sum(c.size for c in codes)
    assert bpw <= 0.72 and words[1] == stream.VERSION_CLASSED
    _, hw = stream.parse(words)
    assert all(np.array_equal(stream.decode_codes(h, config), c.ravel()) for h, c in zip(hw, codes))


def test_cli_compress_row_classes_inspect_and_rtl_decode(tmp_path, capsys):
    """`compress --row-classes auto` gives a v3 stream (smaller, the same codes), `inspect` shows T
    and per-class rates, and `decode --rtl` decodes it bit-exactly on a decoder sized for it (the
    comparators with 8 tables); without the option the stream is v2."""
    pytest.importorskip("ccexam")
    import json
    from subbit.cli import main
    from subbit.model import sbw
    from subbit.model.data import ccexam_weights
    from subbit.sim.rtl_decode import params_for
    out = {}
    for opt in ("1", "auto"):
        out[opt] = tmp_path / f"cc-{opt}.sbw"
        assert main(["compress", ccexam_weights(), "-o", str(out[opt]), "--bits", "3", "--step", "maxabs",
                     "--row-classes", opt]) == 0
    plain, classed = sbw.read_sbw(out["1"]), sbw.read_sbw(out["auto"])
    assert plain.words()[1] == stream.VERSION and classed.words()[1] == stream.VERSION_CLASSED
    assert len(classed.words()) < 0.9 * len(plain.words())
    a, b = plain.decode_codes(), classed.decode_codes()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main(["inspect", str(out["auto"]), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    fc = next(L for L in rep["layers"] if L["name"] == "classifier.0.weight")
    assert fc["tables"] > 1 and len(fc["classes"]) == fc["tables"]
    assert sum(k["rows"] for k in fc["classes"]) == 128
    assert main(["inspect", str(out["auto"])]) == 0
    assert "  class 0" in capsys.readouterr().out
    p = params_for(classed.hw, classed.config)
    assert (p.lookup, p.tables) == ("compare", 8) and params_for(plain.hw, plain.config).tables == 1
    assert main(["decode", "--rtl", "verilator", str(out["auto"])]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["decoder"]["tables"] == 8 and res["weights"] == sum(v.size for v in a.values())


def test_hardware_refuses_rans_class_indices_and_short_rows():
    """A rANS-coded class index (``class_index="auto"`` where it is smaller) is software only: the
    RTL sizing helper refuses it naming the layer and the option that avoids it; the encoder never
    gives rows shorter than the lanes classes, and the default (fixed bits) is hardware-decodable."""
    from subbit.sim.rtl_decode import params_for
    cfg = stream.StreamConfig(12, 2, 7)
    rng = np.random.default_rng(3)
    cls = (rng.random(400) < 0.03).astype(np.int64)
    cls[:2] = [0, 1]
    codes = np.where(cls[:, None] == 1, rng.integers(-2, 3, (400, 64)), 0)
    auto = stream.encode_codes(codes, cfg, tables=2, class_index="auto")
    fixed = stream.encode_codes(codes, cfg, tables=2)
    assert (auto.tables, auto.class_code, fixed.tables, fixed.class_code) == (2, 1, 2, 0)
    with pytest.raises(SubbitError, match="layer 1 has a rANS-coded class index.*--class-index fixed"):
        params_for([fixed, auto], cfg)
    assert params_for([fixed], cfg).tables == 2
    with pytest.raises(SubbitError, match="class_index must be one of fixed, auto"):
        stream.encode_codes(codes, cfg, tables=2, class_index="rans")
    # rows of 1 weight at 2 lanes: one table
    assert stream.encode_codes(codes.reshape(-1, 1), cfg, tables=2).tables == 1


def test_hardware_refuses_a_class_index_longer_than_its_memory():
    """A class index longer than the largest class memory is named with its layer, before any
    decoder is sized (not as a decoder-parameter error)."""
    import dataclasses

    from subbit.sim.rtl_decode import params_for
    cfg = stream.StreamConfig(12, 1, 6)
    rng = np.random.default_rng(5)
    cls = (rng.random(300) < 0.1).astype(np.int64)
    codes = np.where(cls[:, None] == 1, rng.integers(-2, 3, (300, 32)), 0)
    lay = stream.encode_codes(codes, cfg, tables=2)
    assert lay.tables == 2
    at_limit = dataclasses.replace(lay, class_index=np.zeros(stream.MAX_CLASS_WORDS, np.uint16))
    assert stream.hardware_needs([at_limit], cfg)["class_words"] == stream.MAX_CLASS_WORDS
    long = dataclasses.replace(lay, class_index=np.zeros(stream.MAX_CLASS_WORDS + 1, np.uint16))
    with pytest.raises(SubbitError, match=f"layer 1 has a class index of {stream.MAX_CLASS_WORDS + 1} words, "
                       f"more than the {stream.MAX_CLASS_WORDS} a hardware decoder holds"):
        params_for([lay, long], cfg)
