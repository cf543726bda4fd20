"""Decoder parameters: validated once, with every derived width in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import rans
from ..model.errors import SubbitError
from ..model.stream import MAX_CLASS_WORDS, StreamConfig

__all__ = ["PIPELINE_DEPTH", "LAYER_CHECK_CLOCKS", "FIRST_WEIGHT_CLOCKS", "LOOKUPS", "WINDOWS", "WORD_WIDTHS",
           "MULTIPLIERS", "FC_READS", "TABLES", "recommended_ways", "reads_fc_sync",
           "default_window",
           "DecoderParams", "ErrorCode", "rejected"]


def __getattr__(name):
    # ErrorCode is an Amaranth enum: loaded on first use, so that the parameters (and the command
    # line's options generated from them) import without Amaranth
    if name == "ErrorCode":
        from .error_code import ErrorCode
        return ErrorCode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _option(help: str, legal: str | None = None, *, short: str | None = None, metavar: str | None = None,
            choices: tuple | None = None, default_text: str | None = None) -> dict:
    """A field's command-line option, as the field's metadata (`subbit.cli.options` makes
    ``--field-name`` from it): what the field is, its legal values in words (``__post_init__``
    checks them; ``choices`` for the named ones) and, for a None default, what None means."""
    return {"option": dict(help=help, legal=legal, short=short, metavar=metavar, choices=choices,
                           default_text=default_text)}


def rejected(component, message: str) -> SubbitError:
    """The error for a component whose parameters are invalid; the half-built component is
    marked used so Amaranth does not also warn that it was never elaborated."""
    component._MustUse__used = True
    return SubbitError(message)

#: Loop latency of the rANS datapath in clocks: state -> symbol lookup -> f/c read ->
#: multiply -> add -> renormalise -> state (see docs/architecture.md). A lane needs at
#: least this many interleaved states ("ways") to produce a weight every clock.
PIPELINE_DEPTH = 6
#: Clocks after a layer's ``last`` output beat leaves ``o`` within which its end-of-layer
#: checks (FINAL_STATE, PAYLOAD_LENGTH underrun) raise ``status.error``: with the weights
#: leaving from S1 (lookup="table"; with "compare" they leave from R2, a clock later, so the
#: bound has a clock to spare there), the checks are made in S5 and registered twice. Two clocks
#: more with the S4b stage (``ways > PIPELINE_DEPTH``, one way more with S2b): the stage, and
#: the checks registered per lane first; one more with S4c. S2b delays the weights (from R2)
#: and the checks alike: :attr:`DecoderParams.layer_check_clocks` (docs/decoder.md).
LAYER_CHECK_CLOCKS = 5
#: With a 16-bit bus and input always valid, the first weight is on ``o`` (header words + this)
#: clocks after the stream's first word is accepted, when the weights leave from S1
#: (``lookup="table"``, after its slot fill); ``lookup="compare"`` takes one clock more, its
#: weights leaving from R2 (:attr:`DecoderParams.first_weight_clocks`). The first layer's
#: bank is ready with its last state (or pad) word; its header check word only raises an error
#: flag, so decoding does not wait for it: ready (registered) -> sequencer -> R0 -> R1 -> output
#: (-> R2 with ``lookup="compare"``: :attr:`DecoderParams.first_weight_clocks`).
#: (A first layer of at most ``lanes`` weights is ready with its check word: one clock more.)
FIRST_WEIGHT_CLOCKS = 3
LOOKUPS = ("compare", "table")
WINDOWS = ("shift", "ring")
WORD_WIDTHS = (16, 32)
MULTIPLIERS = ("generic", "ecp5")
FC_READS = ("async", "sync")
TABLES = (1, 2, 4, 8)


def recommended_ways(lanes: int, tables: int = 1, lookup: str = "compare", fc_read: str | None = None) -> int:
    """The ways ``subbit bench rtl`` builds each K with: the pipeline depth, plus the S4b stage
    (one way more) from 2 lanes, where counting the lanes' payload words otherwise limits Fmax,
    and at 8 lanes (ring window) the S4c stage too (the measured Fmax with and without them:
    docs/architecture.md, "Where the clock goes"). A decoder of row-classed layers
    (``tables > 1``) that reads f/c asynchronously (``lookup="compare"``, ``fc_read`` not
    ``"sync"``) takes one way more for its S2b stage (the symbol's f/c select registered before
    the multiplier, :attr:`DecoderParams.s2b`). Streams and the other tools default to
    ``PIPELINE_DEPTH``."""
    s2b = tables > 1 and not reads_fc_sync(lookup, fc_read)
    return PIPELINE_DEPTH + s2b + (lanes >= 2) + (lanes >= 8)


def reads_fc_sync(lookup: str, fc_read: str | None) -> bool:
    """f/c are read synchronously (``fc_read="sync"``, always with ``lookup="table"``): the one
    rule :attr:`DecoderParams.fc_sync` and :func:`recommended_ways` (where S2b exists) share."""
    return fc_read == "sync" or lookup == "table"


def recommended_prefetch(lanes: int) -> int:
    """The payload prefetch depth (words) ``subbit bench rtl`` builds each K with: 32, and 64 at 8
    lanes. The parser reads a layer's header only after pushing all of the previous layer's
    payload, so the FIFO must hold enough words for the lanes to decode while it reads the next
    header (2·K·ways state words); on the ccexam stream K=8 with 32 words idles 30 and 4 clocks
    at two layer switches past what the bus explains, with 64 none, at the same Fmax
    (docs/architecture.md, "Layer switches")."""
    return 64 if lanes >= 8 else 32


def default_window(lanes: int) -> str:
    """The payload window a decoder of ``lanes`` lanes gets unless told (``DecoderParams.window``):
    the ring buffer from 4 lanes, else the shift register: from 4 lanes the ring is smaller, and at
    8 lanes faster (the 8-word shift is the critical path there; figures of ``subbit synth --window
    shift|ring`` in docs/architecture.md)."""
    return "ring" if lanes >= 4 else "shift"


@dataclass(frozen=True)
class DecoderParams:
    """Hardware configuration of a :class:`~subbit.hw.decoder.Decoder`.

    Parameters
    ----------
    lanes : 1, 2, 4 or 8
        Weights decoded per clock (K).
    prob_bits : 8..15
        rANS probability precision M; must equal the stream's.
    max_symbols : 1..255
        Largest alphabet (trimmed range of codes of a layer) the decoder accepts.
    word_width : 16 or 32
        Input bus width; a 32-bit beat carries two 16-bit stream words.
    lookup : "compare" or "table"
        Symbol lookup: parallel comparators against the cumulative table
        (registers, ~max_symbols comparators per lane) or a slot -> symbol RAM of
        2**M entries (BRAM; filled ``fill_rate`` slots per clock while a layer
        header is loaded).
    ways : int >= PIPELINE_DEPTH
        Interleaved states per lane; must equal the stream's. The first way beyond
        ``PIPELINE_DEPTH`` becomes a ring stage (S4b) that takes the lanes' word
        counting off the multiplier's path, at 2K more header words per layer
        (:func:`recommended_ways`). With the ring window the second extra way is a stage too
        (S4c: the word count is registered before it makes the window's read addresses);
        further ways are delay registers. With row classes (``tables > 1``, ``fc_read="async"``)
        the first extra way is the S2b stage instead (:attr:`s2b`), before S4b and S4c.
        Measured Fmax: docs/architecture.md.
    prefetch : 0 or a power of two in 16..4096
        Payload words the parser may run ahead of the lanes (a FIFO), so the
        next layer's header is parsed while the current layer still decodes.
        32 (default) sits in LUT-RAM; deeper FIFOs may go to block RAM (yosys's
        choice: 128 words on a 16-bit bus do), whose clock-to-out on ECP5
        then limits Fmax (docs/architecture.md).
        0: no FIFO (the parser waits for the window).
    multiplier : "generic" or "ecp5"
        How the lane multiplier is built (`subbit.hw.mul.Multiplier`): portable
        Verilog, or an ECP5 ``MULT18X18D`` with its registers enabled. Cycle
        behaviour is identical.
    fc_read : None, "async" or "sync"
        How each lane reads its symbol's f and c. ``"async"`` (the default with
        ``lookup="compare"``): LUT-RAM, read in S2 from the registered symbol.
        ``"sync"`` (always with ``lookup="table"``): a read issued in S1, one memory
        per bank, so block RAM can hold them on devices without LUT-RAM: on iCE40
        (``subbit synth --target ice40`` uses it) K1-M12 measured 3,905 -> 2,517 logic
        cells; on ECP5 it is slower from 4 lanes (docs/architecture.md). Cycle
        behaviour is identical.
    window : None, "shift" or "ring"
        The payload word window (`subbit.hw.window`). ``"shift"``: a register file whose words
        move up by the words taken, each lane selecting from its head. ``"ring"``: a ring buffer
        in distributed RAM, one copy per lane read at a registered address, so no word moves.
        None: :func:`default_window`. Cycle behaviour is identical.
    tables : 1, 2, 4 or 8
        Most frequency tables a layer may have (row-classed layers, word stream v3,
        `subbit.model.rowclass`). 1: the v2 decoder, which reports a v3 stream as
        ``BAD_VERSION``. With more, each lane's table is chosen per beat by its row's class: the
        slot or cumulative-frequency and the f/c memories hold ``tables`` tables per bank.
    class_words : a power of two in 16..4096
        ``tables > 1``: the class index words one layer may have (a memory of two banks of
        this many 16-bit words: LUT-RAM up to 64, else the synthesis tool's choice, block RAM
        on ECP5, whose clock-to-out then limits Fmax); a layer with more is ``UNSUPPORTED``.
    """
    lanes: int = field(default=1, metadata=_option(
        "lanes K, weights decoded per clock", "1, 2, 4 or 8", short="-K", metavar="K"))
    prob_bits: int = field(default=12, metadata=_option(
        "rANS probability precision M", "8..15", short="-M", metavar="M"))
    max_symbols: int = field(default=15, metadata=_option(
        "largest alphabet accepted (15: layers of up to 4 bits)", "1..255", short="-S", metavar="S"))
    word_width: int = field(default=16, metadata=_option(
        "input bus width", choices=WORD_WIDTHS))
    lookup: str = field(default="compare", metadata=_option(
        "symbol lookup: comparators (small alphabets) or a 2**M-entry slot table in block RAM",
        choices=LOOKUPS))
    ways: int = field(default=PIPELINE_DEPTH, metadata=_option(
        "interleaved states per lane", f"{PIPELINE_DEPTH}..{rans.MAX_WAYS}, at least the "
        "datapath's pipeline depth", metavar="D"))
    multiplier: str = field(default="generic", metadata=_option(
        "lane multiplier: portable Verilog, or an ECP5 MULT18X18D with its registers", choices=MULTIPLIERS))
    prefetch: int = field(default=32, metadata=_option(
        "payload words the parser may run ahead of the lanes", "0 or a power of two 16..4096; 32 sits in "
        "LUT-RAM, deeper may use block RAM", metavar="WORDS"))
    fc_read: str | None = field(default=None, metadata=_option(
        "how the lanes read f/c: async (LUT-RAM) or sync (block RAM where there is no LUT-RAM)",
        choices=FC_READS, default_text="async with --lookup compare, sync with table"))
    window: str | None = field(default=None, metadata=_option(
        "payload word window: shift (a register file) or ring (LUT-RAM, one copy per lane)", choices=WINDOWS,
        default_text=", ".join(f"K={k}: {default_window(k)}" for k in (1, 2, 4, 8))))

    tables: int = field(default=1, metadata=_option(
        "most frequency tables per layer (row classes, stream v3)",
        "1, 2, 4 or 8", metavar="T"))
    class_words: int = field(default=64, metadata=_option(
        "class index words per layer the decoder holds (with --tables > 1)", "a power of two 16..4096",
        metavar="WORDS"))

    def __post_init__(self):
        if self.lanes not in rans.LANES_ALLOWED:
            raise SubbitError(f"lanes must be one of {rans.LANES_ALLOWED}, not {self.lanes!r}")
        if self.prob_bits not in rans.PROB_BITS_RANGE:
            raise SubbitError(f"prob_bits must be in 8..15, not {self.prob_bits!r}")
        if not (isinstance(self.max_symbols, int) and 1 <= self.max_symbols <= rans.MAX_SYMBOLS):
            raise SubbitError(f"max_symbols must be an integer in 1..{rans.MAX_SYMBOLS}, "
                              f"not {self.max_symbols!r}")
        if self.word_width not in WORD_WIDTHS:
            raise SubbitError(f"word_width must be 16 or 32, not {self.word_width!r}")
        if self.lookup not in LOOKUPS:
            raise SubbitError(f"lookup must be 'compare' or 'table', not {self.lookup!r}")
        if not (self.prefetch == 0 or (isinstance(self.prefetch, int) and 16 <= self.prefetch <= 4096
                                       and self.prefetch & (self.prefetch - 1) == 0)):
            raise SubbitError(f"prefetch must be 0 or a power of two in 16..4096, not {self.prefetch!r}")
        if self.fc_read not in (None,) + FC_READS:
            raise SubbitError(f"fc_read must be 'async' or 'sync', not {self.fc_read!r}")
        if self.fc_read == "async" and self.lookup == "table":
            raise SubbitError("fc_read='async' needs lookup='compare' (the slot table's symbol is "
                              "known a clock later; lookup='table' reads f/c synchronously)")
        if self.window not in (None,) + WINDOWS:
            raise SubbitError(f"window must be 'shift' or 'ring', not {self.window!r}")
        if self.multiplier not in MULTIPLIERS:
            raise SubbitError(f"multiplier must be 'generic' or 'ecp5', not {self.multiplier!r}")
        if self.tables not in TABLES:
            raise SubbitError(f"tables must be one of {', '.join(map(str, TABLES))}, not {self.tables!r}")
        if not (isinstance(self.class_words, int) and 16 <= self.class_words <= MAX_CLASS_WORDS
                and self.class_words & (self.class_words - 1) == 0):
            raise SubbitError(f"class_words must be a power of two in 16..{MAX_CLASS_WORDS}, "
                              f"not {self.class_words!r}")
        if not (isinstance(self.ways, int) and PIPELINE_DEPTH <= self.ways <= rans.MAX_WAYS):
            raise SubbitError(f"ways must be an integer in {PIPELINE_DEPTH}..{rans.MAX_WAYS} (the "
                              f"datapath loop is {PIPELINE_DEPTH} clocks deep), not {self.ways!r}")

    @property
    def fc_sync(self) -> bool:
        """f/c are read synchronously, issued in S1 (``fc_read``)."""
        return reads_fc_sync(self.lookup, self.fc_read)

    @property
    def ring_window(self) -> bool:
        """The payload window is a ring buffer (``window``, else :func:`default_window`)."""
        return (self.window or default_window(self.lanes)) == "ring"

    @property
    def s2b(self) -> bool:
        """The lanes have the S2b stage: row-classed layers (``tables > 1``) with ``fc_read="async"``
        and ``ways > PIPELINE_DEPTH`` (the first extra way). S2 selects the symbol's f/c among
        its table's, registered; S2b feeds them to the multiplier and subtracts c."""
        return self.classed and not self.fc_sync and self.ways > PIPELINE_DEPTH

    @property
    def late_weights(self) -> bool:
        """The weights leave from R2, the lanes' registered symbol, instead of S1
        (``lookup="compare"``): the thermometer encode stops at a register, off the output's
        adder (measured: docs/results.md, the RTL section's "The weights leave from R2 at every
        K"). One clock more to
        the first weight (:attr:`first_weight_clocks`)."""
        return self.lookup == "compare"

    @property
    def early_activation(self) -> bool:
        """The comparators' table is activated by a register made a clock ahead from the next
        ``en`` and the issued beat, instead of ``en`` and the beat entering R0 (one table,
        ``lookup="compare"``, eight lanes: measured there +6.5 % Fmax over twenty seeds, at one
        and four lanes no gain and 14 to 32 LUT4 sites more: docs/results.md, the RTL section's
        "Eight lanes: the comparators' table activated from a register")."""
        return self.lookup == "compare" and not self.classed and self.lanes >= 8

    @property
    def prefetch_lookahead(self) -> bool:
        """The prefetch FIFO's read pointer and count are updated from values made on registers,
        so the window's ``ready`` only selects them (eight lanes: with the lanes' subtraction in
        S3 at M >= 14, K8-M14 132.2 -> 140.2 MHz over twenty seeds; at one lane, with both,
        162.3 MHz against 166.8 on ten seeds, so it is not built there: docs/results.md, the RTL
        section's "Eight lanes: the prefetch FIFO's read side from registers")."""
        return self.lanes >= 8

    @property
    def s4b(self) -> bool:
        """The lanes have the S4b stage (an extra way beyond ``PIPELINE_DEPTH`` and S2b)."""
        return self.ways > PIPELINE_DEPTH + self.s2b

    @property
    def s4c(self) -> bool:
        """The lanes have the S4c stage too (the ring window and a second extra way beyond
        ``PIPELINE_DEPTH`` and S2b)."""
        return self.ring_window and self.ways > PIPELINE_DEPTH + 1 + self.s2b

    @property
    def ring_stages(self) -> int:
        """Registered stages of a lane's loop: ``PIPELINE_DEPTH`` plus S2b, S4b, S4c; the
        other ways are delay registers."""
        return PIPELINE_DEPTH + self.s2b + self.s4b + self.s4c

    @property
    def layer_check_clocks(self) -> int:
        """:data:`LAYER_CHECK_CLOCKS` for this configuration (two more with the S4b stage, one
        more with S4c; S2b delays the checks and the weights alike)."""
        return LAYER_CHECK_CLOCKS + 2 * self.s4b + self.s4c

    @property
    def first_weight_clocks(self) -> int:
        """:data:`FIRST_WEIGHT_CLOCKS` for this configuration: one more when the weights leave
        from R2 (:attr:`late_weights`: ``lookup="compare"``, so 4, the issue's target of header
        words + 4)."""
        return FIRST_WEIGHT_CLOCKS + self.late_weights

    @classmethod
    def for_stream(cls, config: StreamConfig, **kw) -> "DecoderParams":
        """Parameters that decode streams of ``config``.

        Raises
        ------
        SubbitError
            The stream's coder parameters have no decoder (fewer ways than the datapath's
            depth): the message names the stream's value and how to re-encode.
        """
        if config.ways < PIPELINE_DEPTH:
            raise SubbitError(f"the stream was coded with ways={config.ways}; the decoder needs at least "
                              f"{PIPELINE_DEPTH} (one state per stage of its datapath loop): re-encode it with "
                              f"ways >= {PIPELINE_DEPTH} (`subbit compress --ways {PIPELINE_DEPTH}`)")
        return cls(lanes=config.lanes, prob_bits=config.prob_bits, ways=config.ways, **kw)

    @property
    def stream_config(self) -> StreamConfig:
        return StreamConfig(self.prob_bits, self.lanes, self.ways)

    # -- derived widths ------------------------------------------------------------
    @property
    def sym_bits(self) -> int:
        """Bits of a symbol index 0..max_symbols-1."""
        return max(1, (self.max_symbols - 1).bit_length())

    @property
    def code_bits(self) -> int:
        """Signed output code width: a trimmed alphabet of S symbols centred on 0 fits."""
        return max(2, (self.max_symbols // 2).bit_length() + 1)

    @property
    def fill_rate(self) -> int:
        """Slots written per clock into the slot table (``lookup="table"``): as many symbols as
        fit a 36-bit block-RAM word."""
        r = 1
        while 2 * r * self.sym_bits <= 36 and 2 * r <= 1 << self.prob_bits:
            r *= 2
        return r

    @property
    def words_per_beat(self) -> int:
        return self.word_width // 16

    @property
    def window_depth(self) -> int:
        """Payload word buffer: two beats of demand (the registered clock enable looks one beat
        ahead) plus an input beat; with several lanes a third beat of demand absorbs the
        clocks where many lanes renormalise at once."""
        return (2 if self.lanes == 1 else 3) * self.lanes + self.words_per_beat

    @property
    def mul_split(self) -> int:
        """Low bits of ``x >> M`` multiplied in the fabric, so the DSP operand is <= 18 bits."""
        return max(0, 32 - self.prob_bits - 18)

    @property
    def table_bits(self) -> int:
        """Bits of a table index (0 with one table)."""
        return (self.tables - 1).bit_length()

    @property
    def classed(self) -> bool:
        """The decoder reads row-classed layers (``tables > 1``)."""
        return self.tables > 1

    @property
    def states(self) -> int:
        return self.lanes * self.ways
