"""Fault injection: the corrupted, truncated and adversarial word streams of the reliability suite.

The fault model and the measured detection figures are in ``docs/reliability.md``.
Every fault is built from a *reference* stream (:func:`reference_codes`) by one
operation on its 16-bit words:

``truncate``   the stream ends early, at a header field boundary or mid-payload
``flip``       one bit inverted (header, table, states, check words, payload, pads)
``burst``      2..48 consecutive bits inverted (a burst may span words)
``trailing``   words after the last layer
``swap``       two layers exchanged (each is still self-consistent)
``edit``       a field rewritten *and its check word recomputed*: a buggy or
               adversarial writer rather than a channel error (bad tables,
               zero-frequency symbols that occur anyway, maximal sizes, wrong
               version, zero-length layers that declare a payload, a payload bit
               flipped with its payload check word recomputed, ...; with
               ``classed``: row lengths that do not divide the count, classes out of
               range, wrong numbers of tables, bad class index codings)

``cases(config, classed=True)`` adds two row-classed layers (word stream v3, `subbit.model.rowclass`)
to the reference stream: every region of theirs (class fields, tables, class index) is truncated,
flipped and edited too. With ``hardware`` as well, the classed layers are those the hardware decoder
reads (class indices in fixed bits, rows of at least a beat): the hardware fault suite
(`subbit.sim.rtl_faults`) of a decoder with ``tables > 1`` runs that stream.

:func:`golden` is the software reader: it parses and decodes the whole
stream, so it raises a `SubbitError` (with layer and byte offset) exactly when
the golden model rejects the stream. Pure numpy, like the rest of
`subbit.model`; the RTL side is `subbit.sim.rtl_faults`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import rowclass, stream
from .errors import SubbitError

__all__ = ["Fault", "reference_codes", "golden", "regions", "cases", "flip", "random_flips", "outcome"]


@dataclass(frozen=True)
class Fault:
    """One corrupted stream.

    Members
    -------
    name : str
        Unique, human readable (``flip L0 payload w57 b3``).
    kind, region : str
        The operation (see the module docstring) and the stream region it hits
        (``stream header``, ``layer fields``, ``table``, ``states``, ``pad``,
        ``check``, ``payload``, ``payload pad``, ``payload check``, ``end``,
        ``layers``).
    layer : int or None
        The layer the fault hits.
    words : uint16 array
        The corrupted stream.
    at : int
        Index of the first word the fault changes (``len(words)`` for a
        truncation: the word that is missing).
    truncated : bool
        The stream ends before its end (a bus signals ``last`` early).
    stream_detectable : bool
        False for faults that leave a consistent stream (swapped layers, a
        rewritten ``base``): only the ``.sbw`` container's CRC and metadata can
        catch them.
    """
    name: str
    kind: str
    region: str
    layer: int | None
    words: np.ndarray
    at: int
    truncated: bool = False
    stream_detectable: bool = True


def classed_reference(seed: int = 0, *, hardware: bool = False) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """``(codes, row_length, classes)`` of the row-classed reference layers: ``T = 3`` with a
    fixed 2-bit class index (so a stored class 3 is out of range), and ``T = 2`` with a rANS
    class index (class 1 rare) whose class 0 is all-zero rows (a one-symbol table). With
    ``hardware``, what the hardware decoder reads: the second layer's rows are 8 weights (at
    least a beat of up to 8 lanes) and its class index fixed bits (see :func:`reference_layers`)."""
    rng = np.random.default_rng(seed + 1)
    cls_a = np.arange(30) % 3
    a = np.where(rng.random((30, 20)) < np.array([0.9, 0.5, 0.1])[cls_a][:, None], 0, rng.integers(-3, 4, (30, 20)))
    rows, rl = (100, 8) if hardware else (200, 4)
    cls_b = (rng.random(rows) < 0.05).astype(np.int64)
    cls_b[:2] = [0, 1]
    b = np.where(cls_b[:, None] == 1, rng.integers(-2, 3, (rows, rl)), 0)
    b[1, :4] = [-2, -1, 1, 2]
    return [(a.ravel(), 20, cls_a), (b.ravel(), rl, cls_b)]


def reference_layers(config: stream.StreamConfig, seed: int = 0, *, classed: bool = False,
                     hardware: bool = False) -> list[stream.HwLayer]:
    """:func:`reference_codes` coded: one table each, and the classed layers with their classes
    (``hardware``: :func:`classed_reference`'s hardware variant, class indices in fixed bits)."""
    hw = [stream.encode_codes(c, config) for c in reference_codes(config, seed)]
    if classed:
        codings = (rowclass.FIXED,) if hardware else rowclass.CODINGS
        hw += [stream.encode_with_classes(c, config, k, n, codings=codings)
               for c, n, k in classed_reference(seed, hardware=hardware)]
    return hw


def reference_codes(config: stream.StreamConfig, seed: int = 0, *, classed: bool = False,
                    hardware: bool = False) -> list[np.ndarray]:
    """Layers with every corner a fault can hit: weight-like, one weight, empty, one symbol,
    just past ``lanes*ways`` states, a zero-frequency symbol inside the alphabet, a minimum-
    probability symbol; with ``classed``, then the layers of :func:`classed_reference`. Codes
    stay in -7..7 (a decoder with ``max_symbols = 15`` accepts them)."""
    if classed:
        return reference_codes(config, seed) + [c for c, _, _ in classed_reference(seed, hardware=hardware)]
    rng = np.random.default_rng(seed)
    levels = np.arange(-3, 4)
    probs = np.exp(-np.abs(levels))
    minp = np.zeros(1 << config.prob_bits, dtype=np.int64)
    minp[[5, 1000 % minp.size]] = 1
    return [
        rng.choice(levels, 700, p=probs / probs.sum()),
        np.array([2]),
        np.zeros(0, dtype=np.int64),
        np.full(40, -1),
        rng.choice([-1, 0, 1], 2 * config.states + 3),
        rng.choice([-2, 2], 300),                    # nsym 5: symbols 1..3 have frequency 0
        minp,
    ]


def golden(words, *, names: list[str] | None = None, byte_offset: int = 0) -> list[np.ndarray]:
    """Parse and decode a word stream; the codes of every layer.

    Raises
    ------
    FormatError, DecodeError
        Naming the layer and byte offset, exactly as `subbit.model.sbw` reports them.
    """
    config, hw = stream.parse(words, byte_offset=byte_offset, names=names)
    out = []
    for k, h in enumerate(hw):
        label = f"{k}" + (f" '{names[k]}'" if names else "")
        out.append(stream.decode_codes(h, config, name=label, byte_offset=byte_offset))
    return out


def regions(words) -> list[tuple[int, int, str, int | None]]:
    """``(start, end, region, layer)`` spans of a valid stream, in order, covering every word."""
    config, hw = stream.parse(words)
    spans = [(0, stream.STREAM_HEADER.nwords, "stream header", None)]
    for k, h in enumerate(hw):
        for region, s, e in _layer_regions(h, config):
            if e > s:
                spans.append((h.offset + s, h.offset + e, region, k))
    return spans


def _layer_regions(h: stream.HwLayer, config: stream.StreamConfig):
    return stream.layer_regions(h.nsym, h.count, len(h.payload), config.states, tables=h.tables,
                                class_words=0 if h.class_index is None else len(h.class_index))


def flip(words, bits) -> np.ndarray:
    """A copy of ``words`` with the given stream bit positions (``16 * word + bit``) inverted."""
    out = np.array(words, dtype=np.uint16)
    for b in bits:
        out[b // 16] ^= np.uint16(1 << (b % 16))
    return out


def random_flips(words, n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct random single-bit positions, uniform over the stream."""
    rng = np.random.default_rng(seed)
    total = 16 * len(words)
    return rng.choice(total, size=min(n, total), replace=False)


def _refix(words, h: stream.HwLayer):
    """Recompute layer ``h``'s check word in place, for its header as stored in ``words``."""
    n = len(h.header_words())
    words[h.offset + n - 1] = stream.check_word(words[h.offset:h.offset + n - 1])


def refix_payload(words, h: stream.HwLayer) -> None:
    """Recompute layer ``h``'s payload check word in place, over its payload and pad as stored
    in ``words`` (so that only the rANS final-state check can see a payload change)."""
    s = h.offset + len(h.header_words())
    n = len(h.payload) + (len(h.payload) % 2 == 0)
    words[s + n] = stream.check_word(words[s:s + n])


def _edited(words, h, field, value):
    w = np.array(words, dtype=np.uint16)
    w[h.offset + field] = value
    _refix(w, h)
    return w


def cases(config: stream.StreamConfig, seed: int = 0, *, payload_bits: int = 3, classed: bool = False,
          hardware: bool = False) -> list[Fault]:
    """The deterministic fault-injection suite on the reference stream of ``config`` (with
    ``classed``: the v3 stream of :func:`reference_layers`, classed layers included; ``hardware``:
    its hardware variant).

    ``payload_bits`` bits (spread over the word) are flipped in the first, middle
    and last payload word of every layer; every other region gets all 16 bits of
    its first and last word.
    """
    hw = reference_layers(config, seed, classed=classed, hardware=hardware)
    words = stream.build(hw, config)
    n = len(words)
    out: list[Fault] = []

    def add(name, kind, region, layer, w, at, **kw):
        out.append(Fault(name, kind, region, layer, np.asarray(w, dtype=np.uint16), at, **kw))

    spans = regions(words)
    # truncation: every header and payload-tail word boundary, the start, middle and last word
    # of each payload
    cuts = set()
    for s, e, region, k in spans:
        if region == "payload":
            cuts.update({s, (s + e) // 2, e - 1})
        else:
            cuts.update(range(s, e))
    for c in sorted(cuts):
        region, k = next((r, k) for s, e, r, k in spans if s <= c < e)
        add(f"truncate {c}/{n} ({region} L{k})", "truncate", region, k, words[:c], c, truncated=True)
    # single-bit flips
    for s, e, region, k in spans:
        if region == "payload":
            picks = [(w, b) for w in sorted({s, (s + e) // 2, e - 1})
                     for b in np.linspace(0, 15, payload_bits).astype(int).tolist()]
        else:
            picks = [(w, b) for w in sorted({s, e - 1}) for b in range(16)]
        for w, b in picks:
            add(f"flip L{k} {region} w{w} b{b}", "flip", region, k, flip(words, [16 * w + b]), w)
    # bursts: 2, 5, 16, 17, 48 bits starting mid-word, so most span two or more words
    for s, e, region, k in spans:
        for length in (2, 5, 16, 17, 48):
            start = 16 * s + 9
            if start + length > 16 * n:
                continue
            add(f"burst{length} L{k} {region} w{s}", "burst", region, k,
                flip(words, range(start, start + length)), s)
    # trailing garbage
    add("trailing 2 zero words", "trailing", "end", None, np.append(words, [0, 0]), n)
    add("trailing 2 words 0x5342", "trailing", "end", None, np.append(words, [0x5342, 0x0001]), n)
    add("trailing copy of layer 1", "trailing", "end", None,
        np.concatenate([words, words[hw[1].offset:hw[2].offset]]), n)
    # swapped layers (each still valid: caught by the .sbw CRC / metadata, not by the stream)
    for a in (0, 4):
        b = a + 1
        blocks = [words[hw[i].offset:(hw[i + 1].offset if i + 1 < len(hw) else n)] for i in range(len(hw))]
        blocks[a], blocks[b] = blocks[b], blocks[a]
        add(f"swap layers {a} and {b}", "swap", "layers", a, np.concatenate([words[:6]] + blocks),
            hw[a].offset, stream_detectable=False)
    # adversarial edits with check words recomputed
    head = np.array(words, dtype=np.uint16)

    SH, LF = stream.STREAM_HEADER, stream.LAYER_FIELDS

    def stream_edit(name, field, value, **kw):
        w = head.copy()
        field.put(w, value)
        SH.check.put(w, stream.check_word(w[:SH.check.word]))
        add(name, "edit", "stream header", None, w, field.word, **kw)

    bad_version = max(stream.VERSIONS) + 1
    add(f"wrong version {bad_version}", "edit", "stream header", None,
        np.concatenate([[words[0], bad_version], words[2:]]), SH.version.word)
    stream_edit(f"wrong version {bad_version}, check fixed", SH.version, bad_version)
    stream_edit(f"old version {stream.VERSION - 1}, check fixed", SH.version, stream.VERSION - 1)
    other = stream.StreamConfig(config.prob_bits + 1 if config.prob_bits < 15 else 8, config.lanes, config.ways)
    stream_edit(f"config word for M={other.prob_bits}, check fixed", SH.prob_bits, other.prob_bits)
    stream_edit("reserved stream word set, check fixed", SH.reserved, 1)
    stream_edit("65535 layers (maximal), check fixed", SH.layers, 0xFFFF)
    stream_edit("one layer fewer, check fixed", SH.layers, len(hw) - 1)
    stream_edit("zero layers, check fixed", SH.layers, 0)
    h0, h1, h2, h5 = hw[0], hw[1], hw[2], hw[5]
    nsym, count, npay, table = LF.nsym.word, LF.count.word, LF.payload_words.word, LF.nwords
    edits = [
        ("alphabet size 0", h0, nsym, 0, True),
        (f"alphabet size 255 (maximal) in a {h0.nsym}-symbol layer", h0, nsym, 255, True),
        ("count 2**16-1 low word (maximal)", h0, count, 0xFFFF, True),
        ("count high word 0xFFFF (maximal)", h0, count + 1, 0xFFFF, True),
        ("payload length low word 0xFFFF (maximal)", h0, npay, 0xFFFF, True),
        ("payload length high word 0xFFFF (maximal)", h0, npay + 1, 0xFFFF, True),
        ("payload length one short", h0, npay, len(h0.payload) - 1, True),
        ("payload length one long", h0, npay, len(h0.payload) + 1, True),
        ("count one more", h0, count, h0.count + 1, True),
        ("count one less", h0, count, h0.count - 1, True),
        ("table sums to 2**M + 1", h0, table, int(h0.freqs[0]) + 1, True),
        ("state below L", h0, table + h0.nsym + 1, 0, True),
        ("base moved by one (a consistent stream)", h0, LF.base.word, (h0.base + 1) & 0xFFFF, False),
        ("empty layer declares 2 payload words", h2, npay, 2, True),
        ("one-weight layer: state below L", h1, table + h1.nsym + 1, 0, True),
    ]
    hp = next(h for h in hw if h.nsym % 2 == 0)           # a layer with a header pad word
    edits.append(("non-zero header pad word", hp, len(hp.header_words()) - 2, 1, True))
    for name, h, field, value, det in edits:
        k = hw.index(h)
        region = next(r for r, s, e in _layer_regions(h, config) if s <= field < e)
        add(f"edit L{k}: {name}", "edit", region, k, _edited(words, h, field, value), h.offset + field,
            stream_detectable=det)
    # zero-frequency symbols that occur anyway: layer 5 codes {-2, 2} (symbols 0 and 4; 1..3
    # have frequency 0). Symbol 4 loses its frequency, so the payload holds a symbol the
    # table cannot produce: given to symbol 0 the slots change and the final-state check
    # fails; given to the unused symbol 3 only the labels of the same slots change, which
    # no payload check can see (a consistent stream; the .sbw CRC catches it).
    f = h5.freqs
    assert f[1] == f[2] == f[3] == 0 and f[4] > 0
    for to, det in ((0, True), (3, False)):
        w = np.array(words, dtype=np.uint16)
        w[h5.offset + table + to] += np.uint16(f[4])
        w[h5.offset + table + 4] = 0
        _refix(w, h5)
        add(f"edit L5: occurring symbol 4 given frequency 0, its share to symbol {to}", "edit", "table", 5, w,
            h5.offset + table + min(to, 4), stream_detectable=det)
    # payload faults no channel makes: a payload bit flipped (or a non-zero pad word) with the
    # payload check word recomputed, so only the rANS final-state check (or the pad check) sees it
    with_payload = [k for k, h in enumerate(hw) if len(h.payload)]
    for k in sorted({with_payload[0], with_payload[-1]}):
        h = hw[k]
        s = h.offset + len(h.header_words())
        npay = len(h.payload)
        for w in sorted({s, s + npay // 2, s + npay - 1}):
            bad = np.array(words, dtype=np.uint16)
            bad[w] ^= np.uint16(1)
            refix_payload(bad, h)
            try:
                stream.decode_codes(replace(h, payload=bad[s:s + npay]), config)
                det = False
            except SubbitError:
                det = True
            add(f"edit L{k}: payload w{w} b0 flipped, payload check fixed", "edit", "payload", k, bad, w,
                stream_detectable=det)
    hp = next(h for h in hw if len(h.payload) % 2 == 0)   # a layer with a payload pad word
    k = hw.index(hp)
    pad = hp.offset + len(hp.header_words()) + len(hp.payload)
    bad = np.array(words, dtype=np.uint16)
    bad[pad] = 1
    refix_payload(bad, hp)
    add(f"edit L{k}: non-zero payload pad word, payload check fixed", "edit", "payload pad", k, bad, pad)
    if classed:
        _classed_edits(words, hw, config, add)
    # every fault must actually change the stream
    for fault in out:
        assert not np.array_equal(fault.words, words), fault.name
    return out


def _classed_edits(words, hw, config, add):
    """Edits (check word recomputed) of the classed layers' own fields: the last two layers."""
    ha, hb = hw[-2], hw[-1]
    assert (ha.tables, ha.class_code, hb.tables) == (3, 0, 2), "classed reference changed"
    LF3, CF = stream.LAYER_FIELDS_V3, stream.CLASS_FIELDS
    cf = stream.LAYER_FIELDS.nwords                         # the class fields' first word
    table = cf + CF.nwords
    cls_a = table + ha.tables * ha.nsym + 2 * len(ha.states)
    cls_b = table + hb.tables * hb.nsym + 2 * len(hb.states)

    def word0(h, **kw):
        v = dict(nsym=h.nsym, extra_tables=h.tables - 1, class_code=h.class_code)
        v.update(kw)
        return LF3.pack(**v)[0]

    edits = [
        ("row length one more", ha, cf + CF.row_length.word, ha.row_length + 1, True),
        ("row length 0", ha, cf + CF.row_length.word, 0, True),
        ("row length high word set", ha, cf + CF.row_length.word + 1, 1, True),
        ("row length = count (one row)", ha, cf + CF.row_length.word, ha.count, True),
        ("class index words one more", ha, cf + CF.class_words.word, len(ha.class_index) + 1, True),
        ("class index words high word set", ha, cf + CF.class_words.word + 1, 1, True),
        ("one table more", ha, 0, word0(ha, extra_tables=ha.tables), True),
        ("one table less", ha, 0, word0(ha, extra_tables=ha.tables - 2), True),
        ("one table (no classes) declared", ha, 0, word0(ha, extra_tables=0, class_code=0), True),
        ("class index coding 2 (unknown)", ha, 0, word0(ha, class_code=2), True),
        ("fixed class index read as rANS", ha, 0, word0(ha, class_code=1), True),
        ("class 3 in a 3-table layer (out of range)", ha, cls_a, int(ha.class_index[0]) | 3, True),
        ("non-zero bits after the last class", ha, cls_a + len(ha.class_index) - 1,
         int(ha.class_index[-1]) | 0x8000, True),
        ("table 1 sums to 2**M + 1", ha, table + ha.nsym, int(ha.freqs[1, 0]) + 1, True),
    ]
    if hb.class_code == rowclass.RANS:
        edits += [
            ("rANS class index read as fixed bits", hb, 0, word0(hb, class_code=0), True),
            ("rANS class table sums to 2**M + 1", hb, cls_b, int(hb.class_index[0]) + 1, True),
            ("rANS class index state below L", hb, cls_b + hb.tables + 1, 0, True),
        ]
    else:                                                   # the hardware variant: a 1-bit fixed index
        edits += [("every class bit flipped in the first index word", hb, cls_b, int(hb.class_index[0]) ^ 0xFFFF,
                   True)]
    for name, h, field, value, det in edits:
        k = hw.index(h)
        region = next(r for r, s, e in _layer_regions(h, config) if s <= field < e)
        add(f"edit L{k}: {name}", "edit", region, k, _edited(words, h, field, value), h.offset + field,
            stream_detectable=det)
    # a rANS class index payload bit flipped: other classes (then the payload's final state fails), or
    # its own final-state check
    for w in range(cls_b + hb.tables + 2, cls_b + len(hb.class_index) if hb.class_code == rowclass.RANS else 0):
        bad = _edited(words, hb, w, int(words[hb.offset + w]) ^ 1)
        add(f"edit L{len(hw) - 1}: rANS class index w{hb.offset + w} b0 flipped", "edit", "classes",
            len(hw) - 1, bad, hb.offset + w)


def outcome(words, expected: list[np.ndarray]) -> tuple[str, SubbitError | None]:
    """Classify the golden reader's verdict on a corrupted stream.

    ``"detected"`` (a `SubbitError` naming a byte offset), ``"same"`` (decodes to the
    reference: a harmless fault), or ``"miss"`` (decodes without error to other codes).
    """
    try:
        got = golden(words)
    except SubbitError as e:
        return "detected", e
    same = len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    return ("same" if same else "miss"), None



def flip_detection(hw: list[stream.HwLayer], config: stream.StreamConfig, flips: int, seed: int = 0,
                   *, final_state: bool = False) -> dict:
    """Detection rate of ``flips`` random single-bit flips, uniform over the word stream of ``hw``.

    A flip is *detected* when the golden reader raises a `SubbitError`; a *miss*
    decodes without error to other codes. The stream is parsed whole; a payload flip
    that the parser lets through decodes only its layer (the others are untouched),
    every other flip the whole stream.

    With ``final_state``, every payload flip is also decoded with its payload check
    word recomputed (the flipped layer's payload decoded directly): what the rANS
    final-state check alone catches, i.e. what a v1 stream detected.

    Returns
    -------
    dict
        ``flips``, ``detected``, ``missed``, per-region ``{region: [tried, detected]}``,
        ``misses``: ``(word, bit, region, layer)`` of every missed flip; with
        ``final_state`` also ``final_state_only``: ``[payload flips, detected]`` and
        ``final_state_misses``: ``(word, bit, layer)`` of the payload flips it misses.
    """
    words = stream.build(hw, config)
    expected = [stream.decode_codes(h, config) for h in hw]
    spans = regions(words)
    starts = [s for s, _, _, _ in spans]
    per_region: dict[str, list[int]] = {}
    misses = []
    fs_tally, fs_misses = [0, 0], []

    def decode_layer(h, payload, k):
        bad = replace(h, payload=payload)
        try:
            got = stream.decode_codes(bad, config)
            return "same" if np.array_equal(got, expected[k]) else "miss"
        except SubbitError:
            return "detected"

    for pos in random_flips(words, flips, seed).tolist():
        w, b = divmod(pos, 16)
        s, e, region, k = spans[int(np.searchsorted(starts, w, side="right")) - 1]
        if region == "payload":
            h = hw[k]
            payload = flip(h.payload, [16 * (w - s) + b])
            try:
                stream.parse(flip(words, [pos]))
                verdict = decode_layer(h, payload, k)
            except SubbitError:
                verdict = "detected"
            if final_state:
                fs = decode_layer(h, payload, k)
                fs_tally[0] += 1
                fs_tally[1] += fs == "detected"
                if fs != "detected":
                    fs_misses.append((w, b, k))
        else:
            verdict, _ = outcome(flip(words, [pos]), expected)
        tally = per_region.setdefault(region, [0, 0])
        tally[0] += 1
        tally[1] += verdict == "detected"
        if verdict != "detected":
            misses.append((w, b, region, k))
    n = sum(t for t, _ in per_region.values())
    det = sum(d for _, d in per_region.values())
    out = {"flips": n, "detected": det, "missed": n - det, "per_region": per_region, "misses": misses}
    if final_state:
        out.update(final_state_only=fs_tally, final_state_misses=fs_misses)
    return out
