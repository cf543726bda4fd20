"""Hardware word stream, format v2: what the decoder hardware consumes.

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
    "MAGIC", "VERSION", "CHECK_SEED", "StreamConfig", "HwLayer",
    "check_word", "encode_codes", "decode_codes", "build", "parse",
]

MAGIC = 0x5342
VERSION = 2
CHECK_SEED = 0xA5A5
MAX_LAYERS = 0xFFFF


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
    Field("version", 1, 0, 16, f"`{VERSION}`", value=VERSION),
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


STREAM_HEADER_WORDS = STREAM_HEADER.nwords
LAYER_FIXED_WORDS = LAYER_FIELDS.nwords


def layer_body_markdown() -> str:
    """:data:`LAYER_BODY` as a table (docs/stream-format.md holds it; a test keeps them equal)."""
    return "\n".join(["| region | words | content |", "|---|---|---|"]
                     + [f"| {name} | {n} | {meaning} |" for name, n, meaning in LAYER_BODY])


def layer_regions(nsym: int, count: int, npay: int, states_per_layer: int) -> list[tuple[str, int, int]]:
    """``(region, start, end)`` word spans of one layer relative to its first word, in order:
    ``layer fields`` then the regions of :data:`LAYER_BODY` (empty ones included)."""
    sizes = [("layer fields", LAYER_FIELDS.nwords), ("table", nsym), ("states", 2 * min(count, states_per_layer)),
             ("pad", int(nsym % 2 == 0)), ("check", 1), ("payload", npay), ("payload pad", int(npay % 2 == 0)),
             ("payload check", 1)]
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
    """One layer as the hardware sees it: table, initial states, payload."""
    nsym: int
    base: int
    count: int
    freqs: np.ndarray
    states: np.ndarray
    payload: np.ndarray
    offset: int = field(default=0, compare=False)   # word offset of the header in the stream

    def payload_tail(self) -> np.ndarray:
        """What follows the payload: a zero pad word if its length is even, then its check word."""
        pad = [0] if len(self.payload) % 2 == 0 else []
        return np.array(pad + [check_word(np.concatenate([np.asarray(self.payload, dtype=np.uint16),
                                                          np.array(pad, dtype=np.uint16)]))], dtype=np.uint16)

    def header_words(self) -> np.ndarray:
        """The layer header, check word included."""
        st = np.asarray(self.states, dtype=np.uint64)
        w = LAYER_FIELDS.pack(nsym=self.nsym, base=self.base, count=self.count, payload_words=len(self.payload))
        w += [int(v) for v in self.freqs]
        for x in st.tolist():
            w += [x & 0xFFFF, x >> 16]
        if self.nsym % 2 == 0:
            w.append(0)
        w.append(check_word(w))
        return np.array(w, dtype=np.uint16)


def encode_codes(codes, config: StreamConfig) -> HwLayer:
    """Entropy-code one layer of signed integer weight codes.

    The alphabet is trimmed to the occurring range ``[min, max]`` (so
    ``base = min``); frequencies come from :func:`rans.normalize_freqs`.
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
    return HwLayer(nsym=nsym, base=lo, count=int(q.size), freqs=freqs, states=states, payload=payload)


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
        if fast.enabled():
            return fast.decode_into(layer.states, layer.payload, layer.freqs, config.prob_bits, layer.count,
                                    config.lanes, config.ways, layer=name, base=layer.base)
        sym = rans.decode(layer.states, layer.payload, layer.freqs, config.prob_bits, layer.count,
                          config.lanes, config.ways, layer=name)
    except DecodeError as e:
        word = layer.offset + len(layer.header_words()) + (e.word or 0)
        raise DecodeError(e.message, layer=name, offset=byte_offset + 2 * word, word=e.word) from None
    return sym + layer.base


def build(layers: list[HwLayer], config: StreamConfig) -> np.ndarray:
    """Serialise layers into a v2 word stream (uint16); sets each layer's ``offset``."""
    if len(layers) > MAX_LAYERS:
        raise SubbitError(f"a stream holds at most {MAX_LAYERS} layers, not {len(layers)}")
    head = STREAM_HEADER.pack(**config.fields(), layers=len(layers))
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
    """Parse and validate a v2 word stream without decoding payloads.

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
        frequency table not summing to 2**M, non-zero padding, trailing words.
    """
    r = _Reader(words, byte_offset, names)
    SH, LF = STREAM_HEADER, LAYER_FIELDS
    head = r.take(SH.nwords, "stream header")
    h = SH.unpack(head)
    if h["magic"] != MAGIC:
        raise r.error(f"bad magic {h['magic']:#06x}, expected {MAGIC:#06x}", SH.magic.word)
    if h["version"] != VERSION:
        raise r.error(f"unknown stream version {h['version']} (this reader knows {VERSION})", SH.version.word)
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
        nsym = f["nsym"] | f["nsym_zero"] << LF.nsym.width      # the whole word: its high bits must be 0
        if not 1 <= nsym <= rans.MAX_SYMBOLS:
            raise r.error(f"alphabet size {nsym} outside 1..{rans.MAX_SYMBOLS}", start + LF.nsym.word)
        base, count, npay = f["base"], f["count"], f["payload_words"]
        freqs = r.take(nsym, "frequency table").astype(np.int64)
        nst = min(count, config.states)
        st = r.take(2 * nst, "initial states").astype(np.uint32)
        states = st[0::2] | st[1::2] << np.uint32(16)
        if nsym % 2 == 0:
            r.take(1, "pad word")
        r.check(start, "layer header")
        if nsym % 2 == 0 and r.w[r.pos - 2]:
            raise r.error("non-zero header pad word", r.pos - 2)
        if int(freqs.sum()) != 1 << config.prob_bits:
            raise r.error(f"frequency table sums to {int(freqs.sum())}, "
                          f"expected 2**{config.prob_bits} = {1 << config.prob_bits}",
                          start + LF.nwords)
        for j, x in enumerate(states.tolist()):
            if x < rans.RANS_L:
                raise r.error(f"initial state {j} = {x:#x} below 2**16",
                              start + LF.nwords + nsym + 2 * j)
        if count == 0 and npay:
            raise r.error(f"empty layer declares {npay} payload words", start + LF.payload_words.word)
        pay_start = r.pos
        payload = r.take(npay, "payload").copy()
        if npay % 2 == 0 and r.take(1, "payload pad word")[0]:
            raise r.error("non-zero payload pad word", r.pos - 1)
        r.check(pay_start, "payload")
        layers.append(HwLayer(nsym=nsym, base=base, count=count, freqs=freqs, states=states,
                              payload=payload, offset=start))
    r.layer = None
    if r.pos != len(r.w):
        raise r.error(f"{len(r.w) - r.pos} trailing words after the last layer")
    return config, layers
