"""Fault injection in software (`subbit.model.faults`): every corrupted stream is a subbit error
naming its layer and byte offset, or a consistent stream that the .sbw container catches."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from subbit.model import faults, rans, sbw, stream
from subbit.model.errors import DecodeError, FormatError, SubbitError

CONFIGS = [stream.StreamConfig(12, 1, 6), stream.StreamConfig(10, 4, 6)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"M{c.prob_bits}-K{c.lanes}")
def suite(request):
    cfg = request.param
    return cfg, faults.reference_codes(cfg), faults.cases(cfg)


def test_suite_covers_every_fault_class(suite):
    _, _, cases = suite
    kinds = {f.kind for f in cases}
    regions = {f.region for f in cases}
    assert kinds == {"truncate", "flip", "burst", "trailing", "swap", "edit"}
    assert {"stream header", "layer fields", "table", "states", "check", "payload", "payload pad",
            "payload check"} <= regions
    names = " ".join(f.name for f in cases)
    for what in ("wrong version", "maximal", "frequency 0", "empty layer declares", "swap layers", "trailing",
                 "payload check fixed"):
        assert what in names


def test_every_fault_is_detected_with_layer_and_offset(suite):
    """Detected: a SubbitError whose byte offset is at or after the first corrupted word
    (causal) and within the stream, naming the layer for faults inside a layer. Every
    channel fault (flip, burst, truncation, trailing words) is detected; a payload flip by
    the payload check word, before anything is decoded."""
    _, codes, cases = suite
    check_detected(codes, cases)


@pytest.fixture(scope="module")
def classed_suite():
    cfg = CONFIGS[1]
    return cfg, faults.reference_codes(cfg, classed=True), faults.cases(cfg, classed=True)


def test_classed_suite_covers_the_new_fields(classed_suite):
    """The v3 reference stream (two row-classed layers, issue 27): its class fields and class index
    are truncated, flipped and edited; the hardware's suite stays on the v2 stream."""
    cfg, _, cases = classed_suite
    assert {"class fields", "classes"} <= {f.region for f in cases}
    names = " ".join(f.name for f in cases)
    for what in ("row length one more", "out of range", "one table more", "rANS class index state below L",
                 "class index coding 2", "table 1 sums"):
        assert what in names
    assert stream.build(faults.reference_layers(cfg, classed=True), cfg)[1] == stream.VERSION_CLASSED
    assert stream.build(faults.reference_layers(cfg), cfg)[1] == stream.VERSION


def test_every_classed_fault_is_detected_with_layer_and_offset(classed_suite):
    _, codes, cases = classed_suite
    check_detected(codes, cases)


def check_detected(codes, cases):
    for f in cases:
        verdict, err = faults.outcome(f.words, codes)
        if not f.stream_detectable:
            assert verdict == "miss", f.name
            continue
        assert verdict == "detected", f"{f.name}: {verdict}"
        assert isinstance(err, FormatError) and err.offset is not None, f"{f.name}: {err!r}"
        # causal: never before the field holding the first corrupted word (32-bit fields: 2 words)
        lowest = 0 if f.kind == "truncate" else min(2 * f.at - 2, 2 * len(f.words))
        assert lowest <= err.offset <= 2 * len(f.words), f"{f.name}: {err}"
        if f.layer is not None and f.kind != "truncate" and f.region != "layer fields":
            assert err.layer is not None, f"{f.name}: {err}"
        if f.kind == "flip" and f.region in ("payload", "payload check"):
            assert "payload check word mismatch" in str(err) and not isinstance(err, DecodeError), f"{f.name}: {err}"
        if f.kind == "flip" and f.region == "payload pad":
            assert "non-zero payload pad word" in str(err), f"{f.name}: {err}"
        if f.kind == "edit" and f.region == "payload":          # check word fixed: the final-state check
            assert isinstance(err, DecodeError), f"{f.name}: {err!r}"


def _image(cfg, codes):
    hw = [stream.encode_codes(c, cfg) for c in codes]
    metas = [sbw.LayerMeta(name=f"layer{k}", shape=(len(c),), bits=4, scale=[0.1]) for k, c in enumerate(codes)]
    f = sbw.SbwFile(config=cfg, layers=metas, hw=hw)
    return sbw.to_bytes(f), f


def test_sbw_catches_consistent_stream_faults(suite):
    """Swapped layers, a rewritten base, relabelled zero-frequency slots: valid word streams,
    caught by the .sbw word-stream header CRC (or the metadata's shapes)."""
    cfg, codes, cases = suite
    data, f = _image(cfg, codes)
    base = len(data) - 2 * len(f.words())
    for fault in (c for c in cases if not c.stream_detectable):
        bad = data[:base] + fault.words.astype("<u2").tobytes()
        if len(bad) != len(data):
            continue
        with pytest.raises(FormatError, match="checksum mismatch|holds .* weights"):
            sbw.from_bytes(bad)


def test_sbw_truncation_at_every_file_header_field(suite):
    cfg, codes, _ = suite
    data, f = _image(cfg, codes)
    mlen = struct.unpack_from("<I", data, 12)[0]
    for cut in [0, 8, 10, 12, 16, 24, 32, 36, 40, 44, 47, 48, 48 + mlen // 2, 48 + mlen, len(data) - 1]:
        with pytest.raises(FormatError, match="truncated") as e:
            sbw.from_bytes(data[:cut])
        assert e.value.offset is not None and e.value.offset <= len(data)


def test_sbw_payload_flip_names_layer_and_file_offset(suite):
    """A flipped payload bit: the payload check word catches it when the file is read, naming
    the layer and the check word's file offset."""
    cfg, codes, _ = suite
    data, f = _image(cfg, codes)
    base = len(data) - 2 * len(f.words())
    h = f.hw[0]
    start = base + 2 * (h.offset + len(h.header_words()))
    check = start + 2 * (len(h.payload) + (len(h.payload) % 2 == 0))
    bad = bytearray(data)
    bad[start + 2 * (len(h.payload) - 1)] ^= 0x01          # the last payload word of layer 0
    with pytest.raises(FormatError, match=f"layer 0 'layer0', byte offset {check}: payload check word mismatch") as e:
        sbw.from_bytes(bytes(bad))
    assert e.value.offset == check and not isinstance(e.value, DecodeError)


def test_sbw_payload_flip_with_check_fixed_up_fails_final_state(suite):
    """The same flip with the payload check word recomputed (the .sbw CRC does not cover
    payloads): the file reads, and the rANS final-state check rejects the layer."""
    cfg, codes, _ = suite
    data, f = _image(cfg, codes)
    base = len(data) - 2 * len(f.words())
    h = f.hw[0]
    words = f.words().copy()
    words[h.offset + len(h.header_words()) + len(h.payload) - 1] ^= 0x01
    faults.refix_payload(words, h)
    g = sbw.from_bytes(data[:base] + words.astype("<u2").tobytes())
    start = base + 2 * (h.offset + len(h.header_words()))
    with pytest.raises(DecodeError, match="layer 'layer0', byte offset .*final state") as e:
        g.decode_codes()
    assert e.value.offset == start + 2 * len(h.payload)    # found at the end of the payload


def test_maximal_count_fails_fast():
    """A count field of 2**32 - 1 (check word valid) is a DecodeError at once, not a 34 GB
    allocation (it was a MemoryError)."""
    cfg = CONFIGS[0]
    f = next(c for c in faults.cases(cfg) if "count high word 0xFFFF" in c.name)
    with pytest.raises(DecodeError, match=r"layer 0, byte offset \d+: payload overrun: \d+ symbols cannot"):
        faults.golden(f.words)


def test_one_symbol_layer_of_any_count_decodes_in_constant_time():
    with pytest.raises(SubbitError, match="symbols must be integers, not float64"):
        rans.encode(np.zeros(10), [4096], 12, 1, 6)
    states, words = rans.encode(np.zeros(10, dtype=np.int64), [4096], 12, 1, 6)
    out = rans.decode(states, words, [4096], 12, 10, 1, 6)
    assert out.tolist() == [0] * 10
    with pytest.raises(DecodeError, match="final state of state 0 .* is 0x10001"):
        rans.decode([rans.RANS_L + 1] * 6, words, [4096], 12, (1 << 32) - 1, 1, 6)
    with pytest.raises(DecodeError, match="payload has 1 words but decoding read 0"):
        rans.decode(states, [7], [4096], 12, (1 << 32) - 1, 1, 6)
    with pytest.raises(SubbitError, match="do not fit in memory"):
        rans.decode(states[:1], [], [0, 4096], 12, 1 << 62, 1, 1)


def test_count_bound_never_rejects_a_valid_layer():
    """The overrun bound (23 * 2**M symbols per word and state) holds for the most skewed tables."""
    for M in (8, 15):
        f = [(1 << M) - 1, 1]
        sym = np.zeros(200_000, dtype=np.int64)
        sym[-1] = 1
        states, words = rans.encode(sym, f, M, 1, 1)
        assert rans.decode(states, words, f, M, len(sym), 1, 1).tolist() == sym.tolist()


def test_random_flip_detection():
    """Random single-bit flips over the reference stream: every flip is detected, payload flips
    by the payload check word. With the check word fixed up, the rANS final-state check alone
    still catches nearly all payload flips (measured rate in docs/reliability.md: rANS with
    frequencies that pack bits exactly cannot see some)."""
    cfg = CONFIGS[0]
    hw = [stream.encode_codes(c, cfg) for c in faults.reference_codes(cfg)]
    res = faults.flip_detection(hw, cfg, 1500, seed=3, final_state=True)
    assert res["flips"] == 1500
    assert res["detected"] == res["flips"] and not res["misses"], res["misses"]
    assert set(res["per_region"]) >= {"payload", "payload pad", "payload check", "check", "table"}
    tried, det = res["final_state_only"]
    assert tried == res["per_region"]["payload"][0] > 0
    assert det >= 0.99 * tried, res["final_state_misses"]
