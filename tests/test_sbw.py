"""Word stream (v1) and .sbw file: round trips and every class of bad input."""

import os
import struct

import numpy as np
import pytest

from subbit.model import sbw, stream
from subbit.model.compress import build_sbw
from subbit.model.errors import DecodeError, FormatError, SubbitError
from subbit.model.faults import refix_payload
from subbit.model.sbw import LayerMeta

CFG = stream.StreamConfig(prob_bits=12, lanes=4, ways=5)


def make_file(cfg=CFG, seed=0):
    rng = np.random.default_rng(seed)
    layers = [
        (LayerMeta("conv.weight", (8, 3, 3, 3), 4, [0.1]), rng.choice(np.arange(-7, 8), (8, 3, 3, 3))),
        (LayerMeta("empty.weight", (0, 4), 2, [1.0]), np.zeros((0, 4), dtype=np.int64)),
        (LayerMeta("one.weight", (3, 5), 3, [0.5]), np.zeros((3, 5), dtype=np.int64)),
        (LayerMeta("fc.weight", (64, 100), 2, [0.02, ] * 64, scale_axis=0),
         rng.choice([-1, 0, 1], (64, 100), p=[0.05, 0.9, 0.05])),
    ]
    side = {"fc.bias": rng.standard_normal(64).astype(np.float32), "steps": np.array(3, dtype=np.int64)}
    return build_sbw(layers, side, cfg, info={"source": "test"}), dict((m.name, c) for m, c in layers)


@pytest.mark.parametrize("cfg", [stream.StreamConfig(12, 1, 5), CFG, stream.StreamConfig(15, 8, 4),
                                 stream.StreamConfig(8, 2, 1)])
def test_file_round_trip(tmp_path, cfg):
    f, codes = make_file(cfg)
    path = tmp_path / "w.sbw"
    size = sbw.write_sbw(path, f)
    assert size == os.path.getsize(path)
    g = sbw.read_sbw(path)
    assert g.config == cfg
    dec = g.decode_codes()
    for name, c in codes.items():
        np.testing.assert_array_equal(dec[name], c)
    sd = g.state_dict()
    np.testing.assert_allclose(sd["fc.weight"], codes["fc.weight"] * 0.02, rtol=1e-6)
    np.testing.assert_array_equal(sd["fc.bias"], f.side["fc.bias"])
    assert sd["steps"] == 3 and g.info == {"source": "test"}


def test_stream_layout_is_word_aligned_and_documented():
    f, _ = make_file()
    words = f.words()
    assert words[0] == stream.MAGIC and words[1] == stream.VERSION
    assert words[2] == 12 | 2 << 4 | 5 << 8 and words[3] == 4
    cfg, layers = stream.parse(words)
    for lay in layers:
        assert lay.offset % 2 == 0 and len(lay.header_words()) % 2 == 0
    empty = layers[1]
    assert empty.count == 0 and len(empty.states) == 0 and len(empty.payload) == 0
    one = layers[2]
    assert one.nsym == 1 and one.freqs.tolist() == [4096] and len(one.payload) == 0


def test_layer_header_fields():
    lay = stream.encode_codes(np.array([-2, -1, 3, 3, -2] * 10), CFG)
    assert (lay.nsym, lay.base, lay.count) == (6, -2, 50)
    h = lay.header_words()
    assert h[0] == 6 and h[1] == 0xFFFE and h[2] == 50 and h[3] == 0
    assert len(h) == 6 + 6 + 2 * 20 + 1 + 1          # fields, freqs, states, pad, check
    assert h[-1] == stream.check_word(h[:-1])


def test_field_tables_cover_their_headers_and_round_trip():
    """The format's field tables (issue 23): every bit of a header in exactly one field, pack and
    unpack inverse, signed and 32-bit fields, and the writer's words are the table's."""
    SH, LF = stream.STREAM_HEADER, stream.LAYER_FIELDS
    assert (SH.nwords, LF.nwords) == (stream.STREAM_HEADER_WORDS, stream.LAYER_FIXED_WORDS) == (6, 6)
    for header in (SH, LF):
        bits = sorted(b for f in header for b in range(16 * f.word + f.bit, 16 * f.word + f.bit + f.width))
        assert bits == list(range(16 * header.nwords))
    w = LF.pack(nsym=6, base=-2, count=0x12345, payload_words=0xABCDE)
    assert w == [6, 0xFFFE, 0x2345, 0x1, 0xBCDE, 0xA]
    assert LF.unpack(w) == {"nsym": 6, "nsym_zero": 0, "base": -2, "count": 0x12345, "payload_words": 0xABCDE}
    head = SH.pack(prob_bits=12, log2_lanes=2, ways=5, layers=4)
    assert head[:5] == [stream.MAGIC, stream.VERSION, 12 | 2 << 4 | 5 << 8, 4, 0]
    assert stream.StreamConfig(12, 4, 5).word() == head[2]
    f, _ = make_file()
    words = f.words()
    assert SH.unpack(words[:6])["check"] == stream.check_word(words[:5])
    cfg, layers = stream.parse(words)
    for lay in layers:
        h = lay.header_words()
        assert LF.unpack(h[:6]) == {"nsym": lay.nsym, "nsym_zero": 0, "base": lay.base, "count": lay.count,
                                    "payload_words": len(lay.payload)}
        spans = stream.layer_regions(lay.nsym, lay.count, len(lay.payload), cfg.states)
        assert [r for r, _, _ in spans] == ["layer fields"] + [r for r, _, _ in stream.LAYER_BODY]
        assert dict((r, e) for r, _, e in spans)["check"] == len(h)
    with pytest.raises(SubbitError, match="nsym = 256 does not fit in 8 bits"):
        LF.pack(nsym=256)
    with pytest.raises(SubbitError, match="has no field 'colour'"):
        SH.pack(colour=1)


def test_stream_format_doc_tables_are_the_field_tables():
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "stream-format.md")) as fh:
        text = fh.read()
    for table in (stream.STREAM_HEADER.markdown(), stream.LAYER_FIELDS.markdown(), stream.layer_body_markdown(),
                  stream.LAYER_FIELDS_V3.markdown(), stream.CLASS_FIELDS.markdown(),
                  stream.layer_body_markdown(stream.CLASSED_BODY)):
        assert table in text


def test_encode_codes_rejects_bad_layers():
    with pytest.raises(SubbitError, match="more than 255 levels"):
        stream.encode_codes(np.arange(300), CFG)
    with pytest.raises(SubbitError, match="must be integers"):
        stream.encode_codes(np.array([0.5]), CFG)


# -- bad input --------------------------------------------------------------------------

@pytest.fixture()
def image(tmp_path):
    f, _ = make_file()
    return bytearray(sbw.to_bytes(f)), f


def words_base(data):
    mlen, slen = struct.unpack_from("<IQ", data, 12)
    return sbw.HEADER_BYTES + mlen + slen


def refresh_hw_crc(data, f):
    """Recompute the stream-header CRC so a deeper check is reached."""
    import zlib
    base = words_base(data)
    words = np.frombuffer(bytes(data[base:]), dtype="<u2")
    struct.pack_into("<I", data, 44, zlib.crc32(sbw._header_words(words, f.hw)))


def test_bad_magic(image):
    data, _ = image
    data[0] ^= 1
    with pytest.raises(FormatError, match="byte offset 0: .*bad magic"):
        sbw.from_bytes(bytes(data))


def test_unknown_version(image):
    data, _ = image
    struct.pack_into("<H", data, 8, 3)
    with pytest.raises(FormatError, match="byte offset 8: .*unknown file version 3 \\(this reader knows 1, 2\\)"):
        sbw.from_bytes(bytes(data))


@pytest.mark.parametrize("cut", [0, 10, 47, 60, -1, -3])
def test_truncated_file(image, cut):
    data, _ = image
    with pytest.raises(FormatError, match="truncated"):
        sbw.from_bytes(bytes(data[:cut]))


def test_trailing_bytes(image):
    data, _ = image
    with pytest.raises(FormatError, match="trailing bytes"):
        sbw.from_bytes(bytes(data) + b"\0")


def test_header_checksum_mismatch(image):
    data, _ = image
    data[sbw.HEADER_BYTES + 5] ^= 0x20          # inside the metadata JSON
    with pytest.raises(FormatError, match="byte offset 36: .*header checksum mismatch"):
        sbw.from_bytes(bytes(data))


def test_word_stream_header_crc(image):
    data, f = image
    base = words_base(data)
    # freq word of layer 0 changed and its layer check word fixed up: only the CRC can tell
    off = base + 2 * (f.hw[0].offset + 6)
    delta = 1
    w = struct.unpack_from("<H", data, off)[0]
    struct.pack_into("<H", data, off, w + delta)
    k = base + 2 * (f.hw[0].offset + len(f.hw[0].header_words()) - 1)
    struct.pack_into("<H", data, k, (struct.unpack_from("<H", data, k)[0] + delta) & 0xFFFF)
    with pytest.raises(FormatError, match="sums to 4097"):
        sbw.from_bytes(bytes(data))


def test_layer_check_word_names_layer_and_offset(image):
    data, f = image
    base = words_base(data)
    off = base + 2 * (f.hw[3].offset + 2)        # count field of layer 3
    data[off] ^= 0x01
    start = base + 2 * (f.hw[3].offset + len(f.hw[3].header_words()) - 1)
    with pytest.raises(FormatError, match=f"layer 3 'fc.weight', byte offset {start}: layer header check word"):
        sbw.from_bytes(bytes(data))


def test_freq_table_not_summing(image):
    data, f = image
    data_words = f.words().copy()
    lay = f.hw[0]
    data_words[lay.offset + 6] += 1
    hl = len(lay.header_words())
    data_words[lay.offset + hl - 1] = stream.check_word(data_words[lay.offset:lay.offset + hl - 1])
    with pytest.raises(FormatError, match=r"layer 0, byte offset 24: frequency table sums to 4097, "
                                          r"expected 2\*\*12 = 4096"):
        stream.parse(data_words)


def test_stream_magic_version_and_config():
    f, _ = make_file()
    w = f.words()
    bad = w.copy()
    bad[0] = 0x1234
    with pytest.raises(FormatError, match="byte offset 0: bad magic 0x1234"):
        stream.parse(bad)
    bad = w.copy()
    bad[1] = 7
    with pytest.raises(FormatError, match="byte offset 2: unknown stream version 7"):
        stream.parse(bad)
    bad = w.copy()
    bad[2] = (int(bad[2]) & 0xFFF0) | 3
    bad[5] = stream.check_word(bad[:5])
    with pytest.raises(FormatError, match="byte offset 4: bad stream config .*M must be in 8..15, not 3"):
        stream.parse(bad)


def test_truncated_stream_names_layer():
    f, _ = make_file()
    w = f.words()
    with pytest.raises(FormatError, match="layer 3, byte offset .*stream truncated: payload needs"):
        stream.parse(w[:-4])


@pytest.mark.parametrize("layer", [0, 3])
def test_flipped_payload_bit_detected_by_payload_check_word(image, layer):
    """A flipped payload bit is a FormatError naming the layer and the byte offset of the
    layer's payload check word, raised when the file is read (before any decoding)."""
    data, f = image
    base = words_base(data)
    lay = f.hw[layer]
    off = base + 2 * (lay.offset + len(lay.header_words()))
    data[off + 1] ^= 0x10
    check = off + 2 * (len(lay.payload) + (len(lay.payload) % 2 == 0))
    name = f.layers[layer].name
    with pytest.raises(FormatError, match=f"layer {layer} '{name}', byte offset {check}: "
                                          "payload check word mismatch") as e:
        sbw.from_bytes(bytes(data))
    assert e.value.offset == check and e.value.layer == f"{layer} '{name}'"
    assert not isinstance(e.value, DecodeError)


@pytest.mark.parametrize("layer", [0, 3])
def test_flipped_payload_bit_detected_by_final_state(image, layer):
    """Issue 2: the same flip with the payload check word fixed up, so that only the rANS
    final-state check can see it: the headers and the payload check are fine, decoding is not."""
    data, f = image
    base = words_base(data)
    lay = f.hw[layer]
    start = lay.offset + len(lay.header_words())
    words = np.frombuffer(bytes(data[base:]), dtype="<u2").astype(np.uint16)
    words[start + len(lay.payload) - 1] ^= 0x0001                    # the last word read
    refix_payload(words, lay)
    g = sbw.from_bytes(bytes(data[:base]) + words.astype("<u2").tobytes())   # parses ...
    with pytest.raises(DecodeError, match=f"layer '{g.layers[layer].name}', byte offset "
                                          f"{base + 2 * (start + len(lay.payload))}: final state"):
        g.decode_codes()                     # ... the final-state check rejects the payload


def test_out_of_range_shapes(image):
    import json
    import zlib
    data, f = image
    for shape, msg in [([8, 3, 3, 4], "shape .* holds 288 weights, the stream codes 216"),
                       ([-1, 216], "shape .* out of range"),
                       ([1] * 9, "out of range")]:
        mlen = struct.unpack_from("<I", data, 12)[0]
        meta = json.loads(bytes(data[48:48 + mlen]))
        meta["layers"][0]["shape"] = shape
        raw = json.dumps(meta, separators=(",", ":")).encode()
        head = bytearray(data[:48])
        struct.pack_into("<I", head, 12, len(raw))
        struct.pack_into("<I", head, 36, zlib.crc32(raw, zlib.crc32(bytes(head[:36]))))
        with pytest.raises(FormatError, match=msg):
            sbw.from_bytes(bytes(head) + raw + bytes(data[48 + mlen:]))


def test_codes_outside_quantizer(tmp_path):
    with pytest.raises(SubbitError, match="codes exceed the 3-level quantizer"):
        build_sbw([(LayerMeta("w", (2, 2), 2, [1.0]), np.array([[0, 2], [1, 0]]))], {}, CFG)


def test_no_partial_file_on_error(tmp_path):
    out = tmp_path / "out.sbw"

    class Boom(sbw.SbwFile):
        def words(self):
            raise SubbitError("boom")
    f, _ = make_file()
    with pytest.raises(SubbitError):
        sbw.write_sbw(out, Boom(f.config, f.layers, f.hw, f.side))
    assert list(tmp_path.iterdir()) == []


def test_missing_file():
    with pytest.raises(SubbitError, match="cannot read /nonexistent.sbw"):
        sbw.read_sbw("/nonexistent.sbw")


def test_write_errors_name_the_path(tmp_path):
    """A path that cannot be written is a SubbitError naming it (not an OSError from mkstemp), and
    written files get the usual umask mode (mkstemp makes 0600)."""
    f, _ = make_file()
    for bad, why in ((tmp_path / "no" / "x.sbw", "No such file or directory"), (tmp_path, "Is a directory")):
        with pytest.raises(SubbitError, match=f"cannot write {bad}: {why}"):
            sbw.write_sbw(bad, f)
    assert list(tmp_path.iterdir()) == []
    mask = os.umask(0o027)
    try:
        sbw.write_sbw(tmp_path / "m.sbw", f)
    finally:
        os.umask(mask)
    assert (tmp_path / "m.sbw").stat().st_mode & 0o777 == 0o640
