"""Hardware word stream, format v2 (and v3: row-classed tables): what the decoder hardware consumes.

READ ME FIRST
=============
A stream is a sequence of 16-bit words (little-endian when stored as bytes;
on a 32-bit bus the first word of a pair is in bits 0..15). Every section
has an even number of words, so a 32-bit bus never splits a section.
Full specification with diagrams: ``docs/stream-format.md``.

Stream header (6 words)::

    0  MAGIC = 0x5342
    1  VERSION = 2
    2  config: bits 0..3 M (probability bits), bits 4..5 log2(lanes),
               bits 6..7 zero, bits 8..15 ways
    3  number of layers
    4  zero (reserved)
    5  check word

Then, for each layer, a *layer header* followed by its *payload*::

    0  nsym: alphabet size 1..255 in bits 0..7, bits 8..15 zero
    1  base: int16, weight code of symbol 0 (code = symbol + base)
    2  count, low word      (number of weights, 32 bits)
    3  count, high word
    4  payload words, low   (32 bits)
    5  payload words, high
    6  freq[0] .. freq[nsym-1]        (sum = 2**M)
    .  state[j] low, state[j] high    for j < min(count, lanes*ways)
    .  zero pad word if nsym is even
    .  check word
    payload words (see `subbit.model.rans` for their order),
    then one zero pad word if the payload length is even,
    then the payload check word (over the payload and the pad word)

Version 3 (issue 27) differs only in layers with *row classes* (``T > 1`` frequency tables, a
class per row; the coder is `subbit.model.rowclass`): word 0 of such a layer holds ``T - 1`` in
bits 8..10 and the class index coding in bits 11..12, four *class fields* (row length, class
index words) follow the six fixed words, its ``T`` tables follow each other, and its class index
follows the initial states. A stream is version 3 exactly when one of its layers has ``T > 1``;
otherwise it is version 2, word for word (what the hardware decodes today).

Check word: ``(0xA5A5 + sum of the section's other words) mod 2**16``; the
seed makes an all-zero section fail. Any single-bit flip changes the sum, so
every single flip in a header or a payload is detected; the rANS final-state
check additionally catches most multi-word corruption of a payload.
(v1 had no payload check word: its final-state check alone missed about one
payload bit flip in a thousand.)

:func:`encode_codes` and :func:`decode_codes` code with the compiled coder
`subbit.model.fast` (bit-exact with the golden model, same errors), or with the
golden model `subbit.model.rans` when the environment sets ``SUBBIT_GOLDEN=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import fast, rans
from .errors import DecodeError, FormatError, SubbitError

__all__ = [
    "MAGIC", "VERSION", "VERSION_CLASSED", "VERSIONS", "CHECK_SEED", "StreamConfig", "HwLayer",
    "check_word", "encode_codes", "encode_with_classes", "decode_codes", "hardware_needs", "build",
    "parse",
]

MAGIC = 0x5342
VERSION = 2             #: a stream with one table per layer: what the hardware decodes
VERSION_CLASSED = 3     #: a stream with a row-classed layer (issue 27; decoders built with tables > 1)
VERSIONS = (VERSION, VERSION_CLASSED)
CHECK_SEED = 0xA5A5
MAX_LAYERS = 0xFFFF
#: The longest class index (16-bit words per layer) a hardware decoder holds: its class memory's
#: largest size (`subbit.hw.params.DecoderParams.class_words`).
MAX_CLASS_WORDS = 4096


@dataclass(frozen=True)
class Field:
    """One header field: ``width`` bits from bit ``bit`` of word ``word``; a field wider than
    16 bits continues in the following words, low word first. ``value`` is what every valid
    stream holds there (magic, version, reserved zeros); ``signed`` reads it as two's complement."""
    name: str
    word: int
    bit: int
    width: int
    meaning: str
    value: int | None = None
    signed: bool = False

    @property
    def words(self) -> range:
        """The word indices the field occupies."""
        return range(self.word, self.word + (self.bit + self.width + 15) // 16)

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def get(self, words) -> int:
        """The field's value in a header's ``words``."""
        raw = 0
        for k, w in enumerate(self.words):
            raw |= int(words[w]) << (16 * k)
        v = raw >> self.bit & self.mask
        return v - (v >> (self.width - 1) << self.width) if self.signed else v

    def put(self, words, value: int) -> None:
        """Write ``value`` into the field of ``words`` (a list or uint16 array) in place."""
        v = int(value) & self.mask
        if not self.signed and v != value:
            raise SubbitError(f"{self.name} = {value} does not fit in {self.width} bits")
        for k, w in enumerate(self.words):
            lo = self.bit - 16 * k          # the field's bit 0 relative to this word's bit 0
            word_mask = ((self.mask << lo) if lo >= 0 else (self.mask >> -lo)) & 0xFFFF
            part = ((v << lo) if lo >= 0 else (v >> -lo)) & 0xFFFF
            words[w] = (int(words[w]) & ~word_mask & 0xFFFF) | part


class Header:
    """A header's fields, by name (``STREAM_HEADER.ways``) and in word order (iteration)."""

    def __init__(self, name: str, words: int, fields: list[Field]):
        self.name, self.nwords, self.fields = name, words, tuple(fields)
        self._by_name = {f.name: f for f in fields}
        owner = {}                          # every bit of the header belongs to exactly one field
        for f in fields:
            for b in range(16 * f.word + f.bit, 16 * f.word + f.bit + f.width):
                assert b not in owner and b < 16 * words, f"{name}: {f.name} overlaps {owner.get(b)} or ends late"
                owner[b] = f.name
        assert len(owner) == 16 * words and len(self._by_name) == len(fields), f"{name}: gaps or repeated names"

    def __getattr__(self, name: str) -> Field:
        try:
            return self.__dict__["_by_name"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self):
        return iter(self.fields)

    def pack(self, **values) -> list[int]:
        """The header's words: each named field set, the fixed fields at their value, others 0."""
        unknown = set(values) - set(self._by_name)
        if unknown:
            raise SubbitError(f"{self.name} has no field {sorted(unknown)[0]!r}")
        words = [0] * self.nwords
        for f in self.fields:
            v = values.get(f.name, f.value)
            if v is not None:
                f.put(words, v)
        return words

    def unpack(self, words) -> dict[str, int]:
        """Every field's value in the header's ``words``."""
        return {f.name: f.get(words) for f in self.fields}

    def markdown(self) -> str:
        """The header as a table (docs/stream-format.md holds it; a test keeps them equal)."""
        rows = ["| word | bits | field | content |", "|---|---|---|---|"]
        for f in self.fields:
            ws = ", ".join(str(w) for w in f.words)
            bits = f"{f.bit}..{f.bit + f.width - 1}"
            rows.append(f"| {ws} | {bits} | `{f.name}` | {f.meaning} |")
        return "\n".join(rows)


#: The stream header: 6 words.
STREAM_HEADER = Header("stream header", 6, [
    Field("magic", 0, 0, 16, f"`{MAGIC:#06x}`", value=MAGIC),
    Field("version", 1, 0, 16, f"`{VERSION}`, or `{VERSION_CLASSED}` when a layer has row classes", value=VERSION),
    Field("prob_bits", 2, 0, 4, "`M`, the probability bits (8..15)"),
    Field("log2_lanes", 2, 4, 2, "`log2(lanes)`"),
    Field("config_zero", 2, 6, 2, "zero", value=0),
    Field("ways", 2, 8, 8, "`ways`, interleaved states per lane (1..255)"),
    Field("layers", 3, 0, 16, "number of layers (0..65535)"),
    Field("reserved", 4, 0, 16, "zero (reserved; the hardware reports a non-zero word as `BAD_VERSION`)",
          value=0),
    Field("check", 5, 0, 16, "check word over words 0..4"),
])

#: A layer header's fixed fields: its first 6 words. The rest of the header (:data:`LAYER_BODY`)
#: has lengths that follow from them.
LAYER_FIELDS = Header("layer fields", 6, [
    Field("nsym", 0, 0, 8, "alphabet size 1..255"),
    Field("nsym_zero", 0, 8, 8, "zero", value=0),
    Field("base", 1, 0, 16, "int16, the weight code of symbol 0 (`code = symbol + base`)", signed=True),
    Field("count", 2, 0, 32, "number of weights, low word then high word"),
    Field("payload_words", 4, 0, 32, "`npay`, the number of payload words, low word then high word"),
])

#: A layer's fixed fields in a version-3 stream: those of :data:`LAYER_FIELDS`, with the high byte
#: of word 0 holding the number of tables and the class index coding (all zero: a v2 layer).
LAYER_FIELDS_V3 = Header("layer fields (version 3)", 6, [
    LAYER_FIELDS.nsym,
    Field("extra_tables", 0, 8, 3, "`T - 1`: the layer has `T` frequency tables (1..8) and row classes if `T > 1`"),
    Field("class_code", 0, 11, 2, "class index coding: 0 fixed bits, 1 rANS (`model/rowclass.py`); 0 if `T = 1`"),
    Field("nsym_zero", 0, 13, 3, "zero", value=0),
    LAYER_FIELDS.base, LAYER_FIELDS.count, LAYER_FIELDS.payload_words,
])

#: The class fields: 4 words after the fixed fields of a layer with ``T > 1`` (version 3 only).
CLASS_FIELDS = Header("class fields", 4, [
    Field("row_length", 0, 0, 32, "weights per row (>= 1, divides `count`): `rows = count / row_length`"),
    Field("class_words", 2, 0, 32, "`ncls`, the words of the class index, low word then high word"),
])

#: What follows a layer's fixed fields, in order: (region, length in words, content).
LAYER_BODY = (
    ("table", "nsym", "`freq[s]`, the rANS frequency of symbol `s`; they sum to `2^M`"),
    ("states", "2 min(count, lanes × ways)",
     "initial states `x[j]`, `j < min(count, lanes × ways)`, each as low word, high word"),
    ("pad", "1 if nsym is even", "zero pad word"),
    ("check", "1", "check word over the layer header from word 0 through the pad word"),
    ("payload", "npay", "payload words, in decoder read order"),
    ("payload pad", "1 if npay is even", "zero pad word"),
    ("payload check", "1", "payload check word, over the payload words and the pad word"),
)


#: A layer with ``T > 1`` (version 3): what follows its fixed fields, in order.
CLASSED_BODY = (
    ("class fields", "4", "`row_length`, `class_words` (:data:`CLASS_FIELDS`)"),
    ("table", "T × nsym", "table `t` (`t < T`): `freq_t[s]` at word `t × nsym + s`; each sums to `2^M`"),
    ("states", "2 min(count, lanes × ways)", "initial states, as in version 2"),
    ("classes", "ncls", "the class index: the class `k[r] < T` of every row (fixed bits or rANS, `model/rowclass.py`)"),
    ("pad", "1 if T × nsym + ncls is even", "zero pad word"),
    ("check", "1", "check word over the layer header from word 0 through the pad word"),
    ("payload", "npay", "payload words: weight `i` coded with table `k[i // row_length]`"),
    ("payload pad", "1 if npay is even", "zero pad word"),
    ("payload check", "1", "payload check word, over the payload words and the pad word"),
)

STREAM_HEADER_WORDS = STREAM_HEADER.nwords
LAYER_FIXED_WORDS = LAYER_FIELDS.nwords


def layer_body_markdown(body=LAYER_BODY) -> str:
    """:data:`LAYER_BODY` (or :data:`CLASSED_BODY`) as a table (docs/stream-format.md holds it; a
    test keeps them equal)."""
    return "\n".join(["| region | words | content |", "|---|---|---|"]
                     + [f"| {name} | {n} | {meaning} |" for name, n, meaning in body])


def layer_regions(nsym: int, count: int, npay: int, states_per_layer: int, *, tables: int = 1,
                  class_words: int = 0) -> list[tuple[str, int, int]]:
    """``(region, start, end)`` word spans of one layer relative to its first word, in order:
    ``layer fields`` then the regions of :data:`LAYER_BODY` (empty ones included), or with
    ``tables > 1`` those of :data:`CLASSED_BODY`."""
    head = [("layer fields", LAYER_FIELDS.nwords)]
    if tables > 1:
        head.append(("class fields", CLASS_FIELDS.nwords))
    sizes = head + [("table", tables * nsym), ("states", 2 * min(count, states_per_layer))]
    if tables > 1:
        sizes.append(("classes", class_words))
    sizes += [("pad", int((tables * nsym + class_words) % 2 == 0)), ("check", 1), ("payload", npay),
              ("payload pad", int(npay % 2 == 0)), ("payload check", 1)]
    out, pos = [], 0
    for name, n in sizes:
        out.append((name, pos, pos + n))
        pos += n
    return out


def check_word(words) -> int:
    """16-bit check word of a section's words (the check word itself excluded)."""
    return (CHECK_SEED + int(np.sum(np.asarray(words, dtype=np.uint64)))) & 0xFFFF


#: Interleaved states per lane the hardware decoder needs at least: its datapath loop is this
#: many clocks deep (``subbit.hw.params.PIPELINE_DEPTH``; a test keeps them equal).
HW_MIN_WAYS = 6


@dataclass(frozen=True)
class StreamConfig:
    """Coder parameters shared by all layers of a stream (and by the hardware).

    The default ``ways`` is the pipeline depth of the reference decoder
    (``subbit.hw.params.PIPELINE_DEPTH``; a test keeps them equal).
    """
    prob_bits: int = 12
    lanes: int = 1
    ways: int = HW_MIN_WAYS

    def __post_init__(self):
        rans.check_params(self.prob_bits, self.lanes, self.ways)

    @property
    def states(self) -> int:
        return self.lanes * self.ways

    def word(self) -> int:
        """The stream header's config word (word 2)."""
        return STREAM_HEADER.pack(**self.fields())[STREAM_HEADER.prob_bits.word]

    def fields(self) -> dict[str, int]:
        """The stream header fields that hold this configuration."""
        return {"prob_bits": self.prob_bits, "log2_lanes": self.lanes.bit_length() - 1, "ways": self.ways}


@dataclass
class HwLayer:
    """One layer as the hardware sees it: table(s), initial states, payload.

    A row-classed layer (``tables > 1``, word stream v3) has ``freqs`` of shape ``(T, nsym)``,
    ``row_length`` weights per row, ``classes`` (one per row), and ``class_index``: those classes
    as stored (coding ``class_code``, `subbit.model.rowclass`). A one-table layer has 1-D
    ``freqs`` and nothing else."""
    nsym: int
    base: int
    count: int
    freqs: np.ndarray
    states: np.ndarray
    payload: np.ndarray
    offset: int = field(default=0, compare=False)   # word offset of the header in the stream
    row_length: int = 0
    classes: np.ndarray | None = None
    class_code: int = 0
    class_index: np.ndarray | None = None

    @property
    def tables(self) -> int:
        """``T``, the number of frequency tables."""
        return 1 if np.ndim(self.freqs) == 1 else int(np.shape(self.freqs)[0])

    def payload_tail(self) -> np.ndarray:
        """What follows the payload: a zero pad word if its length is even, then its check word."""
        pad = [0] if len(self.payload) % 2 == 0 else []
        return np.array(pad + [check_word(np.concatenate([np.asarray(self.payload, dtype=np.uint16),
                                                          np.array(pad, dtype=np.uint16)]))], dtype=np.uint16)

    def words(self) -> int:
        """All the layer's words: header, payload, pad and check word."""
        return len(self.header_words()) + len(self.payload) + len(self.payload_tail())

    def header_words(self) -> np.ndarray:
        """The layer header, check word included."""
        st = np.asarray(self.states, dtype=np.uint64)
        T = self.tables
        if T > 1:
            ncls = len(self.class_index)
            w = LAYER_FIELDS_V3.pack(nsym=self.nsym, extra_tables=T - 1, class_code=self.class_code,
                                     base=self.base, count=self.count, payload_words=len(self.payload))
            w += CLASS_FIELDS.pack(row_length=self.row_length, class_words=ncls)
        else:
            ncls = 0
            w = LAYER_FIELDS.pack(nsym=self.nsym, base=self.base, count=self.count, payload_words=len(self.payload))
        w += [int(v) for v in np.asarray(self.freqs).ravel()]
        for x in st.tolist():
            w += [x & 0xFFFF, x >> 16]
        if T > 1:
            w += [int(v) for v in self.class_index]
        if (T * self.nsym + ncls) % 2 == 0:
            w.append(0)
        w.append(check_word(w))
        return np.array(w, dtype=np.uint16)


#: ``tables`` of :func:`encode_codes`: the candidates ``T`` it tries
TABLE_CHOICES = {"auto": (2, 3, 4, 5, 6, 7, 8), 1: (), 2: (2,), 4: (4,), 8: (8,)}
#: ``class_index`` of :func:`encode_codes`: the class index codings it may use (``"fixed"``: the one
#: the hardware decoder reads; ``"auto"``: also rANS, when smaller)
CLASS_INDEX_CHOICES = {"fixed": (0,), "auto": (0, 1)}


def encode_codes(codes, config: StreamConfig, *, tables=1, row_length: int | None = None,
                 class_index: str = "fixed") -> HwLayer:
    """Entropy-code one layer of signed integer weight codes.

    The alphabet is trimmed to the occurring range ``[min, max]`` (so
    ``base = min``); frequencies come from :func:`rans.normalize_freqs`.

    ``tables`` (a key of :data:`TABLE_CHOICES`: 1, 2, 4, 8 or ``"auto"``) lets the layer have
    row classes (`subbit.model.rowclass`, word stream v3): up to that many tables (``"auto"``:
    the best of 2..8), rows of ``row_length`` weights (default: ``codes``' axis 0 is the rows).
    The encoder keeps one table unless classes make the layer's words strictly fewer (tables,
    class fields and class index included), so no layer ever costs more than with ``tables=1``,
    and for rows shorter than the stream's lanes (which the hardware decoder does not take).
    ``class_index`` (a key of :data:`CLASS_INDEX_CHOICES`): ``"fixed"`` (default) codes the class
    index in fixed bits, what the hardware decoder reads; ``"auto"`` also tries rANS.
    """
    q = np.asarray(codes).ravel()
    if q.size and not np.issubdtype(q.dtype, np.integer):
        raise SubbitError(f"weight codes must be integers, not {q.dtype}")
    # the compiled coder reads signed codes as they are (no int64 copy); SUBBIT_GOLDEN=1: the golden model
    use_fast = fast.enabled()
    if not (use_fast and q.dtype in fast.KERNEL_DTYPES):
        q = q.astype(np.int64)
    if q.size >= 1 << 32:
        raise SubbitError(f"a layer holds at most 2**32-1 weights, not {q.size}")
    if q.size == 0:
        lo = hi = 0
    else:
        lo, hi = int(q.min()), int(q.max())
    nsym = hi - lo + 1
    if nsym > rans.MAX_SYMBOLS or lo < -0x8000 or hi > 0x7FFF:
        raise SubbitError(f"weight codes span {lo}..{hi}: more than {rans.MAX_SYMBOLS} levels "
                          "or outside int16")
    if use_fast:
        counts = fast.histogram(q, lo, nsym) if q.size else np.ones(1, dtype=np.int64)
        freqs = rans.normalize_freqs(counts, config.prob_bits)
        states, payload = fast.encode_offset(q, lo, freqs, config.prob_bits, config.lanes, config.ways)
    else:
        sym = q - lo
        counts = np.bincount(sym, minlength=nsym) if q.size else np.ones(1, dtype=np.int64)
        freqs = rans.normalize_freqs(counts, config.prob_bits)
        states, payload = rans.encode(sym, freqs, config.prob_bits, config.lanes, config.ways)
    plain = HwLayer(nsym=nsym, base=lo, count=int(q.size), freqs=freqs, states=states, payload=payload)
    if tables not in TABLE_CHOICES:
        raise SubbitError(f"tables must be one of {', '.join(map(str, TABLE_CHOICES))}, not {tables!r}")
    if class_index not in CLASS_INDEX_CHOICES:
        raise SubbitError(f"class_index must be one of {', '.join(CLASS_INDEX_CHOICES)}, not {class_index!r}")
    if not TABLE_CHOICES[tables] or nsym == 1 or q.size == 0:
        return plain
    if row_length is None:
        shape = np.shape(codes)
        row_length = q.size // shape[0] if len(shape) >= 2 else q.size
    if not (isinstance(row_length, (int, np.integer)) and 1 <= row_length and q.size % row_length == 0):
        raise SubbitError(f"row length {row_length!r} does not divide the layer's {q.size} weights")
    if row_length < config.lanes:
        return plain
    return _classed(q, lo, nsym, int(row_length), TABLE_CHOICES[tables], config, plain,
                    CLASS_INDEX_CHOICES[class_index])


def _classed(q, lo, nsym, row_length, candidates, config, plain, codings) -> HwLayer:
    """The row-classed coding of ``q`` if it takes fewer words than ``plain``, else ``plain``."""
    from . import rowclass
    rows = q.size // row_length
    sym2 = q.reshape(rows, row_length).astype(np.int64) - lo
    counts = np.bincount((sym2 + nsym * np.arange(rows)[:, None]).ravel(), minlength=rows * nsym)
    choice = rowclass.choose(counts.reshape(rows, nsym), config.prob_bits, candidates, codings=codings)
    if choice is None:
        return plain
    lay = encode_with_classes(q, config, choice[0], row_length, lo=lo, nsym=nsym, codings=codings)
    return lay if lay.words() < plain.words() else plain


def encode_with_classes(codes, config: StreamConfig, classes, row_length: int, *, lo: int | None = None,
                        nsym: int | None = None, codings=(0, 1)) -> HwLayer:
    """A row-classed layer of ``codes`` with the given ``classes`` (one per row of ``row_length``
    weights, ``0 .. T-1``, each used): a table per class from its rows' counts, the class index in
    the smaller of the ``codings`` (`subbit.model.rowclass`). No fallback (see :func:`encode_codes`)."""
    from . import rowclass
    q = np.asarray(codes).ravel()
    if lo is None:
        lo, nsym = int(q.min()), int(q.max()) - int(q.min()) + 1
    cls = np.asarray(classes, dtype=np.int64).ravel()
    rowclass.table_of_weights(cls, row_length, q.size)                  # checks the shape
    T = int(cls.max()) + 1
    if not 2 <= T <= rowclass.MAX_TABLES or np.bincount(cls).min() == 0:
        raise SubbitError(f"classes must use every one of 2..{rowclass.MAX_TABLES} tables, got {np.bincount(cls)}")
    sym2 = q.reshape(cls.size, row_length).astype(np.int64) - lo
    C = np.bincount((sym2 + nsym * cls[:, None]).ravel(), minlength=T * nsym).reshape(T, nsym)
    M, K, D = config.prob_bits, config.lanes, config.ways
    F = np.stack([rans.normalize_freqs(c, M) for c in C])
    if fast.enabled():
        states, payload = fast.encode_classed(q, lo, F, cls, row_length, M, K, D)
    else:
        states, payload = rowclass.encode(sym2, F, cls, row_length, M, K, D)
    code, index = rowclass.encode_class_index(cls, T, M, codings)
    return HwLayer(nsym=nsym, base=lo, count=int(q.size), freqs=F, states=states, payload=payload,
                   row_length=row_length, classes=cls, class_code=code, class_index=index)


def decode_codes(layer: HwLayer, config: StreamConfig, *, name: str | None = None,
                 byte_offset: int = 0) -> np.ndarray:
    """Decode one layer to its signed weight codes (int64), with the final-state check.

    The compiled coder (`subbit.model.fast`) by default, the golden model with
    ``SUBBIT_GOLDEN=1``: the same codes and the same errors.

    Raises
    ------
    DecodeError
        From the final-state check, naming ``name`` and the byte offset of the
        payload word where decoding failed (``byte_offset`` is where the word
        stream starts in its file; ``layer.offset`` places the layer in it).
    """
    try:
        if layer.tables > 1:
            args = (layer.states, layer.payload, layer.freqs, layer.classes, layer.row_length, config.prob_bits,
                    layer.count, config.lanes, config.ways)
            if fast.enabled():
                return fast.decode_classed(*args, layer=name, base=layer.base)
            from . import rowclass
            return rowclass.decode(*args, layer=name) + layer.base
        if fast.enabled():
            return fast.decode_into(layer.states, layer.payload, layer.freqs, config.prob_bits, layer.count,
                                    config.lanes, config.ways, layer=name, base=layer.base)
        sym = rans.decode(layer.states, layer.payload, layer.freqs, config.prob_bits, layer.count,
                          config.lanes, config.ways, layer=name)
    except DecodeError as e:
        word = layer.offset + len(layer.header_words()) + (e.word or 0)
        raise DecodeError(e.message, layer=name, offset=byte_offset + 2 * word, word=e.word) from None
    return sym + layer.base


def hardware_needs(layers: list[HwLayer], config: StreamConfig) -> dict:
    """What a hardware decoder needs to decode ``layers``: ``tables`` (the most tables of a layer,
    rounded up to 1, 2, 4 or 8) and ``class_words`` (the longest class index, rounded up to a power
    of two, at least 16) -- the `subbit.hw.params.DecoderParams` fields of the same names.

    Raises
    ------
    SubbitError
        A row-classed layer the hardware does not decode: a rANS-coded class index, rows shorter
        than the stream's lanes (a beat would span more than two rows), or a class index longer than
        :data:`MAX_CLASS_WORDS`; the message names the first such layer and how to re-encode.
    """
    from . import rowclass
    tables, words = 1, 16
    for k, h in enumerate(layers):
        if h.tables == 1:
            continue
        if h.class_code != rowclass.FIXED:
            raise SubbitError(f"layer {k} has a rANS-coded class index, which the hardware decoder does not "
                              "decode (it reads fixed-bit class indices); `subbit compress --row-classes ... "
                              "--class-index fixed` gives a hardware-decodable stream")
        if h.row_length < config.lanes:
            raise SubbitError(f"layer {k} has rows of {h.row_length} weights, fewer than the stream's "
                              f"{config.lanes} lanes: the hardware decoder needs rows of at least a beat")
        if len(h.class_index) > MAX_CLASS_WORDS:
            raise SubbitError(f"layer {k} has a class index of {len(h.class_index)} words, more than the "
                              f"{MAX_CLASS_WORDS} a hardware decoder holds per layer: `subbit compress` without "
                              "--row-classes (or with fewer tables, --row-classes 2 or 4) gives a hardware-"
                              "decodable stream")
        tables = max(tables, 1 << (h.tables - 1).bit_length())
        words = max(words, 1 << max(0, (len(h.class_index) - 1).bit_length()))
    return {"tables": tables, "class_words": words}


def build(layers: list[HwLayer], config: StreamConfig) -> np.ndarray:
    """Serialise layers into a word stream (uint16): version 2, or version 3 when a layer has
    row classes; sets each layer's ``offset``."""
    if len(layers) > MAX_LAYERS:
        raise SubbitError(f"a stream holds at most {MAX_LAYERS} layers, not {len(layers)}")
    version = VERSION_CLASSED if any(lay.tables > 1 for lay in layers) else VERSION
    head = STREAM_HEADER.pack(**config.fields(), layers=len(layers), version=version)
    STREAM_HEADER.check.put(head, check_word(head[:STREAM_HEADER.check.word]))
    parts = [np.array(head, dtype=np.uint16)]
    pos = STREAM_HEADER_WORDS
    for lay in layers:
        lay.offset = pos
        parts.append(lay.header_words())
        tail = lay.payload_tail()
        pos += len(parts[-1]) + len(lay.payload) + len(tail)
        parts.append(np.asarray(lay.payload, dtype=np.uint16))
        parts.append(tail)
    return np.concatenate(parts)


class _Reader:
    """Word reader that turns a short stream into a FormatError with the byte offset."""

    def __init__(self, words, byte_offset, names):
        self.w = np.asarray(words, dtype=np.uint16)
        self.pos = 0
        self.byte_offset = byte_offset
        self.names = names
        self.layer = None

    def error(self, msg, pos=None):
        pos = self.pos if pos is None else pos
        return FormatError(msg, offset=self.byte_offset + 2 * pos, layer=self.layer)

    def take(self, n, what):
        if self.pos + n > len(self.w):
            raise self.error(f"stream truncated: {what} needs {n} words, "
                             f"{len(self.w) - self.pos} remain")
        out = self.w[self.pos:self.pos + n]
        self.pos += n
        return out

    def check(self, start, what):
        got = int(self.take(1, "check word")[0])
        want = check_word(self.w[start:self.pos - 1])
        if got != want:
            raise self.error(f"{what} check word mismatch: stored {got:#06x}, computed {want:#06x}",
                             self.pos - 1)


def parse(words, *, byte_offset: int = 0, names: list[str] | None = None):
    """Parse and validate a v2 or v3 word stream without decoding payloads (the class index of a
    row-classed layer is decoded: it is part of the header).

    Parameters
    ----------
    words : uint16 array
    byte_offset : where the stream starts in its file (for error messages)
    names : optional layer names (for error messages)

    Returns
    -------
    (StreamConfig, list[HwLayer])

    Raises
    ------
    FormatError
        Naming the byte offset (and layer) of: bad magic, unknown version,
        bad config, truncation, check-word mismatch, bad alphabet size,
        frequency table not summing to 2**M, non-zero padding, trailing words; in a
        row-classed layer also: more than 8 tables, a row length that does not divide the
        count, a bad class index (class out of range, wrong length, corrupted).
    """
    r = _Reader(words, byte_offset, names)
    SH, LF = STREAM_HEADER, LAYER_FIELDS
    head = r.take(SH.nwords, "stream header")
    h = SH.unpack(head)
    if h["magic"] != MAGIC:
        raise r.error(f"bad magic {h['magic']:#06x}, expected {MAGIC:#06x}", SH.magic.word)
    if h["version"] not in VERSIONS:
        raise r.error(f"unknown stream version {h['version']} (this reader knows "
                      f"{', '.join(map(str, VERSIONS))})", SH.version.word)
    LF = LAYER_FIELDS_V3 if h["version"] == VERSION_CLASSED else LAYER_FIELDS
    r.pos = SH.check.word
    r.check(0, "stream header")
    cw = int(head[SH.prob_bits.word])
    if h["config_zero"]:
        raise r.error(f"reserved stream header bits set (config {cw:#06x})", SH.config_zero.word)
    if h["reserved"]:
        raise r.error(f"reserved stream header word is {h['reserved']:#06x}, not zero", SH.reserved.word)
    try:
        config = StreamConfig(prob_bits=h["prob_bits"], lanes=1 << h["log2_lanes"], ways=h["ways"])
    except SubbitError as e:
        raise r.error(f"bad stream config word {cw:#06x}: {e}", SH.prob_bits.word) from None
    nlayers = h["layers"]
    if names is not None and len(names) != nlayers:
        raise r.error(f"stream has {nlayers} layers, metadata names {len(names)}", SH.layers.word)
    layers = []
    for k in range(nlayers):
        r.layer = f"{k}" + (f" '{names[k]}'" if names else "")
        start = r.pos
        f = LF.unpack(r.take(LF.nwords, "layer header"))
        nsym = f["nsym"] | f["nsym_zero"] << LF.nsym_zero.bit      # the unused high bits must be 0
        if not 1 <= nsym <= rans.MAX_SYMBOLS:
            raise r.error(f"alphabet size {nsym} outside 1..{rans.MAX_SYMBOLS}", start + LF.nsym.word)
        base, count, npay = f["base"], f["count"], f["payload_words"]
        T, code = f.get("extra_tables", 0) + 1, f.get("class_code", 0)
        cf = CLASS_FIELDS.unpack(r.take(CLASS_FIELDS.nwords, "class fields")) if T > 1 else \
            {"row_length": 0, "class_words": 0}
        body = r.pos                                    # the first table word
        freqs = r.take(T * nsym, "frequency table").astype(np.int64)
        nst = min(count, config.states)
        st = r.take(2 * nst, "initial states").astype(np.uint32)
        states = st[0::2] | st[1::2] << np.uint32(16)
        ncls = cf["class_words"]
        cls_start = r.pos
        class_index = r.take(ncls, "class index").copy()
        padded = (T * nsym + ncls) % 2 == 0
        if padded:
            r.take(1, "pad word")
        r.check(start, "layer header")
        if padded and r.w[r.pos - 2]:
            raise r.error("non-zero header pad word", r.pos - 2)
        if T == 1 and code:
            raise r.error(f"class index coding {code} set in a layer with one table", start + LF.nsym.word)
        freqs = freqs.reshape(T, nsym) if T > 1 else freqs
        for t, ft in enumerate(np.atleast_2d(freqs)):
            if int(ft.sum()) != 1 << config.prob_bits:
                raise r.error(f"frequency table{f' {t}' if T > 1 else ''} sums to {int(ft.sum())}, "
                              f"expected 2**{config.prob_bits} = {1 << config.prob_bits}", body + t * nsym)
        for j, x in enumerate(states.tolist()):
            if x < rans.RANS_L:
                raise r.error(f"initial state {j} = {x:#x} below 2**16", body + T * nsym + 2 * j)
        classes, rl = None, cf["row_length"]
        if T > 1:
            if rl == 0 or count % rl or count == 0:
                raise r.error(f"row length {rl} does not divide the layer's {count} weights into rows",
                              start + LF.nwords + CLASS_FIELDS.row_length.word)
            from . import rowclass
            try:
                classes = rowclass.decode_class_index(class_index, count // rl, T, code, config.prob_bits)
            except DecodeError as e:
                raise r.error(e.message, cls_start + (e.word or 0)) from None
        if count == 0 and npay:
            raise r.error(f"empty layer declares {npay} payload words", start + LF.payload_words.word)
        pay_start = r.pos
        payload = r.take(npay, "payload").copy()
        if npay % 2 == 0 and r.take(1, "payload pad word")[0]:
            raise r.error("non-zero payload pad word", r.pos - 1)
        r.check(pay_start, "payload")
        layers.append(HwLayer(nsym=nsym, base=base, count=count, freqs=freqs, states=states, payload=payload,
                              offset=start, **({} if T == 1 else dict(row_length=rl, classes=classes,
                                                                     class_code=code, class_index=class_index))))
    r.layer = None
    if r.pos != len(r.w):
        raise r.error(f"{len(r.w) - r.pos} trailing words after the last layer")
    return config, layers
