"""The decoder's formal properties: a harness that wraps :class:`~subbit.hw.decoder.Decoder` with
``Assert`` / ``Assume`` / ``Cover`` statements, checked by SymbiYosys (:mod:`subbit.fpga.sby`).

Formal only: nothing here is part of the decoder's Verilog (``subbit verilog`` never elaborates
this module). The harness has the decoder's ports; the solver drives ``i`` (any words, any
``valid``, any ``last``), ``o.ready`` and ``rst`` freely, so every property holds for every input
sequence up to the checked depth (or for all, where k-induction proves it). docs/reliability.md
lists what is proven for which configurations.

The properties (each can be checked alone, :data:`PROPERTIES`):

``stream``
    On ``o``: once ``valid`` is high it stays high, with the same payload, until ``ready``.
    (That ``valid`` never depends on ``ready`` is a structural fact, checked on the netlist by
    :func:`subbit.fpga.sby.valid_cone_check`.)
``errors``
    ``status.error`` is sticky until reset; a clock after an error the decoder accepts every
    input word (it never blocks its source); ``status.done`` is high with an error.
``parse``
    Error codes and their latency, against a second parser written here from
    docs/stream-format.md (16-bit bus, ``lookup="compare"``): a malformed word raises exactly the
    code the format gives it, on ``status.error`` 2 clocks after the word is accepted (the
    ``base`` range check: 3), unless an earlier error (the datapath's ``FINAL_STATE`` /
    ``PAYLOAD_LENGTH`` included) is already held; and no parse error is ever raised for a
    well-formed word. The decoder's documented bound is 3 clocks.
``progress``
    No deadlock: if the source offers a word at least every ``patience`` clocks and the sink is
    ready at least every ``patience`` clocks (assumptions), a word is accepted on ``i`` or a beat
    leaves on ``o`` at least every ``bound`` clocks: :func:`progress_bound`. After an error
    the decoder keeps accepting (``errors``), so this covers error states too.
``reset``
    The clock after ``rst``: ``status`` is idle (not busy, not done, no error), ``o`` holds no
    beat, and a word offered on ``i`` is accepted (16-bit bus; on a 32-bit bus the first beat
    takes two clocks, one per word).

Covers (so the proofs are not vacuous): each :class:`~subbit.hw.params.ErrorCode` on
``status.error``; a layer switch (a beat of the second layer leaves ``o`` with no error); a
two-layer stream decoded to ``status.done`` with no error, a beat holding weights; stalls of
each length below the progress bound.

Two more harnesses: :class:`ParserProperties` (the parser and the status register alone, the
rest of the decoder left to the solver) proves ``parse`` and the parser's part of ``errors`` by
k-induction, with invariants that tie the parser's registers to the reference's
(:func:`parser_lemmas`); :class:`AxisProperties` puts the AXI4-Stream rule on
:class:`~subbit.hw.axis.AxisDecoder`'s ``m_axis``.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cat, Cover, Fragment, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import stream as fmt
from .decoder import Decoder
from .frontend import Frontend, input_layout
from .output import output_layout
from .params import DecoderParams, ErrorCode, rejected
from .status import Status, status_layout

__all__ = ["PROPERTIES", "MUTATIONS", "DecoderProperties", "ParserProperties", "AxisProperties", "progress_bound",
           "parse_reference"]

PROPERTIES = ("stream", "errors", "parse", "progress", "reset")
#: Deliberate bugs, injected between the decoder and the harness's ports, that the checks must
#: catch: ``drop_valid`` lowers ``o.valid`` after a beat has waited 2 clocks for ``ready``;
#: ``late_error`` shows ``status.error`` a clock late.
MUTATIONS = ("drop_valid", "late_error")
#: Parse errors that the `parse` reference raises (not the datapath's FINAL_STATE / PAYLOAD_LENGTH).
PARSE_CODES = tuple(c for c in ErrorCode if c not in (ErrorCode.NONE, ErrorCode.FINAL_STATE,
                                                       ErrorCode.PAYLOAD_LENGTH, ErrorCode.BAD_CLASS))


def progress_bound(params: DecoderParams, patience: int) -> int:
    """Clocks within which a word is accepted on ``i`` or a beat leaves ``o``, when the source
    offers a word and the sink is ready at least every ``patience`` clocks (the ``progress``
    property asserts it).

    The sum of the waits that can follow one another without a transfer: the source's
    (``patience - 1`` clocks without ``valid``), the sink's (a full output buffer waits
    ``patience - 1`` clocks for ``ready``), and the datapath's own, at most the end-of-layer
    checks (``layer_check_clocks``) plus the 4 clocks from a layer's ready bank to its first
    beat on ``o`` (ready flag, sequencer, R0, R1; one more, R2, when the weights leave from R2:
    ``DecoderParams.late_weights``). An upper bound,
    checked by BMC; the covers show the longest stall actually reached (docs/results.md,
    section formal).
    """
    return 2 * (patience - 1) + params.layer_check_clocks + 4 + params.late_weights


class DecoderProperties(wiring.Component):
    """A :class:`Decoder` under formal properties (see the module docstring).

    Parameters
    ----------
    params : DecoderParams
        ``parse`` needs ``word_width=16`` and ``lookup="compare"`` (its reference parser takes a
        word a clock).
    properties : tuple of str
        A subset of :data:`PROPERTIES` to assert (the covers are always there).
    patience : int >= 1
        ``progress``: the longest wait, in clocks, for the source's ``valid`` and the sink's
        ``ready`` (assumed).
    mutation : None or one of :data:`MUTATIONS`
        A deliberate bug, for the test that shows the checks catch it.

    Members
    -------
    i, o, status
        As the decoder's.

    Raises
    ------
    SubbitError
        An unknown property or mutation, a patience below 1, or ``parse`` on a configuration
        its reference parser does not model.
    """

    def __init__(self, params: DecoderParams, properties=PROPERTIES, patience: int = 2, mutation=None):
        bad = [p for p in properties if p not in PROPERTIES]
        if bad or not properties:
            raise rejected(self, f"properties must be a non-empty subset of {PROPERTIES}, not {tuple(properties)!r}")
        if not (isinstance(patience, int) and patience >= 1):
            raise rejected(self, f"patience must be an integer >= 1, not {patience!r}")
        if mutation not in (None,) + MUTATIONS:
            raise rejected(self, f"mutation must be None or one of {MUTATIONS}, not {mutation!r}")
        if "parse" in properties and (params.word_width != 16 or params.lookup != "compare"):
            raise rejected(self, "the 'parse' property's reference parser models word_width=16 and "
                           f"lookup='compare', not word_width={params.word_width!r}, lookup={params.lookup!r}")
        self.p, self.properties, self.patience, self.mutation = params, tuple(properties), patience, mutation
        super().__init__({
            "i": In(stream.Signature(input_layout(params.word_width))),
            "o": Out(stream.Signature(output_layout(params))),
            "status": Out(status_layout),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        m.submodules.dut = dut = Decoder(p)
        wiring.connect(m, wiring.flipped(self.i), dut.i)
        m.d.comb += [self.o.payload.eq(dut.o.payload), dut.o.ready.eq(self.o.ready), self.o.valid.eq(dut.o.valid),
                     self.status.eq(dut.status)]
        self._mutate(m, dut)

        # the previous clock's values: registers outside the reset (`rst` is free)
        def past(value, name):
            r = Signal.like(value, name=f"past_{name}", reset_less=True)
            m.d.sync += r.eq(value)
            return r
        rst = ResetSignal()
        started = past(1, "started")                       # not the first clock
        rst_1 = past(rst, "rst")
        after = started & ~rst_1                           # the previous clock was a normal one
        o_take = self.o.valid & self.o.ready
        i_take = self.i.valid & self.i.ready
        error = self.status.error
        held = error != ErrorCode.NONE

        if "stream" in self.properties:
            waiting = past(self.o.valid & ~self.o.ready, "o_waiting")
            payload_1 = past(self.o.payload.as_value(), "o_payload")
            with m.If(after & waiting):
                m.d.comb += [Assert(self.o.valid, "o.valid dropped before ready"),
                             Assert(self.o.payload.as_value() == payload_1, "o.payload changed before ready")]

        if "errors" in self.properties:
            error_1 = past(error, "error")
            with m.If(after & (error_1 != ErrorCode.NONE)):
                m.d.comb += [Assert(error == error_1, "status.error changed without reset"),
                             Assert(self.i.ready, "input blocked after an error")]
            with m.If(held):
                m.d.comb += Assert(self.status.done & ~self.status.busy, "an error without done")

        if "reset" in self.properties:
            with m.If(started & rst_1):
                m.d.comb += [Assert(~self.status.busy & ~self.status.done & ~held, "status not idle after reset"),
                             Assert(~self.o.valid, "a beat on o after reset")]
                if p.word_width == 16:
                    m.d.comb += Assert(~self.i.valid | self.i.ready, "the first word after reset not accepted")
            if p.word_width == 32:
                rst_2 = past(rst_1, "rst_2")
                with m.If(started & rst_2 & ~rst_1 & past(self.i.valid & ~self.i.ready, "i_waiting")):
                    m.d.comb += Assert(~self.i.valid | self.i.ready, "the first beat after reset not accepted")

        if "progress" in self.properties:
            bound = progress_bound(p, self.patience)
            idle_in = Signal(range(self.patience + 1), reset_less=True)
            idle_out = Signal(range(self.patience + 1), reset_less=True)
            m.d.sync += [idle_in.eq(Mux(self.i.valid, 0, idle_in + 1)), idle_out.eq(Mux(self.o.ready, 0, idle_out + 1))]
            m.d.comb += [Assume(self.i.valid | (idle_in < self.patience - 1)),
                         Assume(self.o.ready | (idle_out < self.patience - 1))]
            quiet = Signal(range(bound + 1))               # clocks without a transfer since reset
            with m.If(i_take | o_take):
                m.d.sync += quiet.eq(0)
            with m.Elif(quiet < bound):
                m.d.sync += quiet.eq(quiet + 1)
            m.d.comb += Assert(quiet < bound, f"no transfer on i or o for {bound} clocks")
            for n in range(1, bound):                      # how long the decoder does wait (cover mode)
                m.d.comb += Cover(quiet == n, f"{n} clocks without a transfer")

        if "parse" in self.properties:
            parse_asserts(m, error, parse_reference(m, p, i_take, self.i.payload.data, self.i.payload.last))

        # covers: every error code; a layer switch; a two-layer stream decoded without error
        for code in ErrorCode:
            if code != ErrorCode.NONE and (code != ErrorCode.BAD_CLASS or p.classed):
                m.d.comb += Cover(error == code, f"error {code.name}")
        layers_out = Signal(range(3))                      # layers whose last beat has left o
        weights_out = Signal(range(3))
        with m.If(o_take):
            with m.If(self.o.payload.last & (layers_out < 2)):
                m.d.sync += layers_out.eq(layers_out + 1)
            with m.If(self.o.payload.count != 0):
                m.d.sync += weights_out.eq(Mux(weights_out == 2, 2, weights_out + 1))
        m.d.comb += [Cover((layers_out == 1) & o_take & ~held, "layer switch"),
                     Cover((layers_out == 2) & (weights_out != 0) & self.status.done & ~held,
                           "two layers decoded, done")]
        return m

    def _mutate(self, m, dut):
        if self.mutation == "drop_valid":
            waited = Signal(range(3))
            with m.If(dut.o.valid & ~self.o.ready):
                m.d.sync += waited.eq(Mux(waited == 2, 2, waited + 1))
            with m.Else():
                m.d.sync += waited.eq(0)
            m.d.comb += self.o.valid.eq(dut.o.valid & (waited != 2))
        elif self.mutation == "late_error":
            late = Signal(ErrorCode)
            m.d.sync += late.eq(dut.status.error)
            m.d.comb += self.status.error.eq(late)



def parse_asserts(m, error, expected):
    """``status.error`` (``error``) against the reference's ``expected``: a parse error is always the
    expected one, at the expected clock; an expected error is always held (the datapath's, raised
    earlier, may stand in its place)."""
    is_parse = Signal()
    m.d.comb += is_parse.eq(sum((error == c) for c in PARSE_CODES) != 0)
    with m.If(is_parse):
        m.d.comb += Assert(error == expected, "a parse error other than the format's, or at another clock")
    with m.If(expected != ErrorCode.NONE):
        m.d.comb += Assert(error != ErrorCode.NONE, "a malformed word's error not raised in time")


class AxisProperties(wiring.Component):
    """:class:`~subbit.hw.axis.AxisDecoder` under the AXI4-Stream rule on ``m_axis``: once
    ``tvalid`` is high it stays high with ``tdata``, ``tkeep``, ``tlast`` and ``tuser`` unchanged
    until ``tready``. Its ports are the wrapper's; the solver drives the inputs.
    """

    def __init__(self, params: DecoderParams, layer_bits: int = 2):
        from .axis import AxisDecoder
        self.p, self.layer_bits = params, layer_bits
        self.dut = AxisDecoder(params, layer_bits)
        super().__init__(self.dut.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        for name, member in self.signature.members.items():
            if member.flow == In:
                m.d.comb += getattr(dut, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(dut, name))
        started = Signal(reset_less=True)
        rst_1 = Signal(reset_less=True)
        waiting = Signal(reset_less=True)
        beat = Cat(self.m_axis_tdata, self.m_axis_tkeep, self.m_axis_tlast, self.m_axis_tuser)
        beat_1 = Signal.like(beat, reset_less=True)
        m.d.sync += [started.eq(1), rst_1.eq(ResetSignal()), waiting.eq(self.m_axis_tvalid & ~self.m_axis_tready),
                     beat_1.eq(beat)]
        with m.If(started & ~rst_1 & waiting):
            m.d.comb += [Assert(self.m_axis_tvalid, "m_axis_tvalid dropped before tready"),
                         Assert(beat == beat_1, "m_axis beat changed before tready")]
        return m


class ParserProperties(wiring.Component):
    """The parser (:class:`~subbit.hw.frontend.Frontend`) and the status register, under the
    ``parse`` and ``errors`` properties, with the rest of the decoder left to the solver: the
    payload path's ``ready``, the banks' busy flags, ``drained`` and the datapath's error flags
    are free inputs. What holds here holds inside the decoder, whatever its datapath does (the
    parser sees the datapath only through those signals), and without the datapath the solver
    reaches much deeper (docs/reliability.md).

    Parameters
    ----------
    params : DecoderParams
        ``word_width=16`` and ``lookup="compare"`` (the reference parser takes a word a clock).
    mutation : None or one of :data:`MUTATIONS`

    Members
    -------
    i : In(stream.Signature(input_layout(16)))
    push_ready, drained, shadow_busy : In(1)
    bank_busy, layer_flags : In(2)
    status : Out(status_layout)
    """

    def __init__(self, params: DecoderParams, mutation=None):
        if params.word_width != 16 or params.lookup != "compare":
            raise rejected(self, "the parser's reference models word_width=16 and lookup='compare', not "
                           f"word_width={params.word_width!r}, lookup={params.lookup!r}")
        if mutation not in (None,) + MUTATIONS:
            raise rejected(self, f"mutation must be None or one of {MUTATIONS}, not {mutation!r}")
        self.p, self.mutation = params, mutation
        super().__init__({"i": In(stream.Signature(input_layout(16))), "push_ready": In(1), "drained": In(1),
                          "shadow_busy": In(1), "bank_busy": In(2), "layer_flags": In(2),
                          "status": Out(status_layout)})

    def elaborate(self, platform):
        m = Module()
        p = self.p
        fe = Frontend(p)
        fe_frag = Fragment.get(fe, platform)       # elaborated here: its registers are the lemmas'
        m.submodules.frontend = fe_frag
        m.submodules.status_unit = st = Status()
        wiring.connect(m, wiring.flipped(self.i), fe.i)
        m.d.comb += [fe.push.ready.eq(self.push_ready), fe.drained.eq(self.drained),
                     fe.shadow_busy.eq(self.shadow_busy), fe.bank_busy.eq(self.bank_busy),
                     st.parse_error.eq(fe.error), st.layer_flags.eq(self.layer_flags),
                     st.stream_start.eq(fe.stream_start), st.stream_end.eq(fe.stream_end), fe.halt.eq(st.halt),
                     self.status.eq(st.status)]
        if self.mutation == "late_error":
            late = Signal(ErrorCode)
            m.d.sync += late.eq(st.status.error)
            m.d.comb += self.status.error.eq(late)
        rst = ResetSignal()
        started = Signal(reset_less=True)
        rst_1 = Signal(reset_less=True)
        error_1 = Signal(ErrorCode, reset_less=True)
        error = self.status.error
        m.d.sync += [started.eq(1), rst_1.eq(rst), error_1.eq(error)]
        with m.If(started & ~rst_1 & (error_1 != ErrorCode.NONE)):
            m.d.comb += [Assert(error == error_1, "status.error changed without reset"),
                         Assert(self.i.ready, "input blocked after an error"),
                         Assert(fsm_in(fe_frag, "DRAIN"), "lemma: the parser drains after an error")]
        take = self.i.valid & self.i.ready
        ref = {}
        expected = parse_reference(m, p, take, self.i.payload.data, self.i.payload.last, ref)
        parse_asserts(m, error, expected)
        for name, holds in parser_lemmas(fe_frag, ref, p).items():
            ok = Signal(name=f"lemma_{name}")
            m.d.comb += ok.eq(holds | (error != ErrorCode.NONE))
            m.d.comb += Assert(ok, f"lemma {name}")
        for code in PARSE_CODES:
            m.d.comb += Cover(error == code, f"error {code.name}")
        return m


def registers(fragment) -> dict:
    """The signals an elaborated fragment and its subfragments assign, by name (the lemmas read the
    parser's)."""
    found = {}
    for stmts in fragment.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                found.setdefault(sig.name, sig)
    for sub, *_ in fragment.subfragments:
        if hasattr(sub, "statements"):
            for name, sig in registers(sub).items():
                found.setdefault(name, sig)
    return found


def fsm_in(fragment, *names):
    """The parser's FSM is in one of the states ``names``."""
    state = registers(fragment)["parse_state"]
    code = {}
    for v in range(1 << len(state)):
        try:
            code[state.decoder(v).split("/")[0]] = v
        except KeyError:                       # past the last state
            break
    return sum((state == code[n]) for n in names) != 0


def parser_lemmas(fragment, ref: dict, p: DecoderParams) -> dict:
    """Invariants tying the parser's registers to the reference's, while no error is held: the
    same FSM state, position, check sum, counters and fields, and the parser's registered flags
    agreeing with their counters. They are asserted too (so proven), and make the property
    inductive (k-induction at depth 2 proves it); in a BMC run the asserts proven at a clock are
    assumed at the later ones, which spares the solver from re-deriving that two 16-bit running
    sums are equal (without them the check grows steeply with depth, docs/reliability.md).

    They read the parser's registers by name (``chk``, ``left``, ``rem``, ``pos``,
    ``parse_state``, ...): renaming one in :class:`~subbit.hw.frontend.Frontend` means renaming it
    here (the parser's proof in tests/test_formal.py then fails with a KeyError naming it).
    """
    hw = registers(fragment)
    K, D = p.lanes, p.ways

    def hw_in(*names):
        return fsm_in(fragment, *names)
    on = ref["ongoing"]
    loaded = on("FREQ") | on("STATES") | on("PAD") | on("CHECK") | on("PAY") | on("PPAD") | on("PCHK")
    return {
        "state_hdr": on("HDR") == hw_in("HDR", "END"), "state_fields": on("FIELDS") == hw_in("FIELDS"),
        "state_freq": on("FREQ") == hw_in("FREQ"), "state_states": on("STATES") == hw_in("STATES"),
        "state_pad": on("PAD") == hw_in("PAD"), "state_check": on("CHECK") == hw_in("CHECK"),
        "state_pay": on("PAY") == hw_in("PAY"), "state_ppad": on("PPAD") == hw_in("PPAD", "MARK"),
        "state_pchk": on("PCHK") == hw_in("PCHK"),
        "end_pos": ~hw_in("END") | (ref["pos"] == 0),
        "hdr_pos": ~hw_in("HDR") | ((ref["pos"] == hw["pos"]) & (hw["pos"] < fmt.STREAM_HEADER.nwords)),
        "fields_pos": ~on("FIELDS") | (ref["pos"] == hw["pos"]),
        # the parser's sum starts from the seed (the reference adds the seed to the magic word)
        "chk": hw_in("END") | Mux(hw_in("HDR") & (hw["pos"] == 0), hw["chk"] == fmt.CHECK_SEED,
                                  ref["chk"] == hw["chk"]),
        "freq": ~on("FREQ") | ((ref["left"] == hw["left"]) & (ref["room"] == hw["room"])),
        "states": ~on("STATES") | (ref["left"] == hw["left"]),
        "pay": ~on("PAY") | (ref["left"] == hw["rem"]),
        "fields": ~loaded | ((ref["nsym"] == hw["nsym"]) & (ref["count"] == hw["count"]) & (ref["npay"] == hw["npay"])),
        # the parser counts the layers from the current one on, the reference those after it
        "layers": ~(on("FIELDS") | loaded) | ((ref["layers_left"] + 1)[:16] == hw["layers_left"]),
        "encodings": fsm_in(fragment, "HDR", "END", "FIELDS", "DRAIN", "FREQ", "STATES", "PAD", "CHECK", "MARK",
                            "PAY", "PPAD", "PCHK")
                     & (on("HDR") | on("FIELDS") | loaded),
        "nsym_ok": ~((on("FIELDS") & (ref["pos"] != 0)) | loaded) | ((ref["nsym"] != 0) & (ref["nsym"] <= p.max_symbols))
                    | ref["raised_1"][ErrorCode.BAD_TABLE] | ref["raised_1"][ErrorCode.UNSUPPORTED],
        "freq_left": ~on("FREQ") | ((ref["left"] != 0) & (ref["left"] <= ref["nsym"]) & (ref["room"] <= 1 << p.prob_bits))
                      | ref["raised_1"][ErrorCode.BAD_TABLE],
        "states_left": ~on("STATES") | ((ref["left"] != 0) & (ref["left"] <= 2 * K * D)),
        "pay_left": ~on("PAY") | (ref["left"] != 0),
        # the parser's own redundant flags (registered compares) agree with their counters
        "nsym": ~on("FIELDS") | (ref["pos"] == 0) | ((hw["nsym"] == ref["nsym"]) & (hw["left"] == hw["nsym"])),
        "base": ~on("FIELDS") | (ref["pos"] < 2) | (hw["base"] == ref["base"]),
        "count": ~on("FIELDS") | (ref["pos"] < 3) | ((hw["count"][:16] == ref["count"][:16])
                                                     & ((ref["pos"] < 4) | (hw["count"] == ref["count"]))),
        "npay": ~on("FIELDS") | (ref["pos"] < 5) | (hw["npay"][:16] == ref["npay"][:16]),
        "flast": ~on("FIELDS") | (hw["flast"] == (hw["pos"] == 5)),
        "lastw": ~(on("FREQ") | on("STATES") | (on("FIELDS") & (ref["pos"] != 0))) | (hw["lastw"] == (hw["left"] == 1)),
        "nstates": ~on("FREQ") | ((hw["ns_zero"] == (hw["count"] == 0))
                                  & (hw["nstates2"] == 2 * Mux(hw["count"] < K * D, hw["count"], K * D))),
        "npay_zero": ~(on("FREQ") | on("STATES") | on("PAD") | on("CHECK")) | (hw["npay_zero"] == (hw["npay"] == 0)),
        "pay_last": ~on("PAY") | (hw["pay_last"] == (hw["rem"] <= 1)),
        "last_layer": ~(on("FIELDS") | loaded) | (hw["last_layer"] == (hw["layers_left"] == 1)),
        "no_layers": ~on("HDR") | (ref["pos"] < 4) | ((hw["no_layers"] == (hw["layers_left"] == 0))
                                                       & (hw["last_layer"] == (hw["layers_left"] == 1))
                                                       & (hw["layers_left"] == (ref["layers_left"] + 1)[:16])),
        "check_base": hw["check_base"] == ref["check_1"],
        "base_bad": hw["base_bad_r"] == ref["base_bad_2"],
        **{f"raised_{c.name.lower()}": hw[f"err_{c.name.lower()}_r"] == ref["raised_1"][c] for c in PARSE_CODES},
    }


def parse_reference(m, p: DecoderParams, take, word, last, ref=None):
    """The error code the format gives the words accepted so far (``take``: ``word`` and ``last``
    are accepted this clock), as ``status.error`` shows it: a parser of docs/stream-format.md, a
    word per accepted beat, whose codes go through the decoder's documented pipeline (ParseErrors'
    register, then the status register; the ``base`` check a clock later): the first code that
    arrives stays."""
    M, K, D, S = p.prob_bits, p.lanes, p.ways, p.max_symbols
    cw = fmt.StreamConfig(M, K, D).word()
    raised = {c: Signal(name=f"ref_{c.name.lower()}") for c in PARSE_CODES}
    base_now = Signal()                     # the base word: check its range against nsym
    to_end = Signal()                       # this word ends the stream
    pos = Signal(3)
    chk = Signal(16)
    layers_left = Signal(16)
    nsym = Signal(8)
    base = Signal(signed(16))
    count = Signal(32)
    npay = Signal(32)
    left = Signal(32)
    room = Signal(M + 1)
    seed = fmt.CHECK_SEED

    def fail(code):
        m.d.comb += raised[code].eq(1)

    def layer_end():
        with m.If(layers_left == 0):           # the stream ends: the next word starts another
            m.d.comb += to_end.eq(1)
            m.d.sync += pos.eq(0)
            m.next = "HDR"
        with m.Else():
            m.d.sync += [layers_left.eq(layers_left - 1), pos.eq(0), chk.eq(seed)]
            m.next = "FIELDS"

    with m.If(take):
        with m.If(last & ~to_end):
            fail(ErrorCode.TRUNCATED)
        with m.If(to_end & ~last):
            fail(ErrorCode.TRAILING)
        with m.FSM(name="reference") as fsm:
            with m.State("HDR"):
                m.d.sync += [pos.eq(pos + 1), chk.eq(chk + word)]
                with m.Switch(pos):
                    with m.Case(0):
                        m.d.sync += chk.eq(seed + word)
                        with m.If(word != fmt.MAGIC):
                            fail(ErrorCode.BAD_MAGIC)
                    with m.Case(1):
                        with m.If(word != fmt.VERSION):
                            fail(ErrorCode.BAD_VERSION)
                    with m.Case(2):
                        with m.If(word != cw):
                            fail(ErrorCode.CONFIG_MISMATCH)
                    with m.Case(3):
                        m.d.sync += layers_left.eq(word - 1)
                    with m.Case(4):
                        with m.If(word != 0):
                            fail(ErrorCode.BAD_VERSION)
                    with m.Case(5):
                        with m.If(word != chk):
                            fail(ErrorCode.HEADER_CHECK)
                        m.d.sync += [pos.eq(0), chk.eq(seed)]
                        with m.If(layers_left == 0xFFFF):      # no layers: the stream ends
                            m.d.comb += to_end.eq(1)
                        with m.Else():
                            m.next = "FIELDS"
            with m.State("FIELDS"):
                m.d.sync += [pos.eq(pos + 1), chk.eq(chk + word)]
                with m.Switch(pos):
                    with m.Case(0):
                        m.d.sync += nsym.eq(word[:8])
                        with m.If((word == 0) | (word > 255)):
                            fail(ErrorCode.BAD_TABLE)
                        with m.Elif(word > S):
                            fail(ErrorCode.UNSUPPORTED)
                    with m.Case(1):
                        m.d.sync += base.eq(word)
                        m.d.comb += base_now.eq(1)
                    with m.Case(2):
                        m.d.sync += count[:16].eq(word)
                    with m.Case(3):
                        m.d.sync += count[16:].eq(word)
                    with m.Case(4):
                        m.d.sync += npay[:16].eq(word)
                    with m.Case(5):
                        m.d.sync += [npay[16:].eq(word), left.eq(nsym), room.eq(1 << M)]
                        m.next = "FREQ"
            with m.State("FREQ"):
                m.d.sync += [chk.eq(chk + word), room.eq(room - word), left.eq(left - 1)]
                with m.If(word > room):
                    fail(ErrorCode.BAD_TABLE)
                with m.If(left == 1):
                    with m.If(word != room):
                        fail(ErrorCode.BAD_TABLE)
                    m.d.sync += left.eq(2 * Mux(count < K * D, count, K * D))
                    with m.If(count != 0):
                        m.next = "STATES"
                    with m.Elif(nsym[0] == 0):
                        m.next = "PAD"
                    with m.Else():
                        m.next = "CHECK"
            with m.State("STATES"):
                m.d.sync += [chk.eq(chk + word), left.eq(left - 1)]
                with m.If(left == 1):
                    with m.If(nsym[0] == 0):
                        m.next = "PAD"
                    with m.Else():
                        m.next = "CHECK"
            with m.State("PAD"):
                m.d.sync += chk.eq(chk + word)
                with m.If(word != 0):
                    fail(ErrorCode.HEADER_CHECK)
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(word != chk):
                    fail(ErrorCode.HEADER_CHECK)
                m.d.sync += [chk.eq(seed), left.eq(npay)]
                # an empty payload: its pad word (0 is even) and check word follow at once
                with m.If(npay == 0):
                    m.next = "PPAD"
                with m.Else():
                    m.next = "PAY"
            with m.State("PAY"):
                m.d.sync += [chk.eq(chk + word), left.eq(left - 1)]
                with m.If(left == 1):
                    with m.If(npay[0]):
                        m.next = "PCHK"
                    with m.Else():
                        m.next = "PPAD"
            with m.State("PPAD"):
                m.d.sync += chk.eq(chk + word)
                with m.If(word != 0):
                    fail(ErrorCode.PAYLOAD_CHECK)
                m.next = "PCHK"
            with m.State("PCHK"):
                with m.If(word != chk):
                    fail(ErrorCode.PAYLOAD_CHECK)
                layer_end()

    # the decoder's pipeline: ParseErrors registers the raised codes (the base check a clock
    # later), the lowest wins, the status register holds the first
    raised_1 = {c: Signal(name=f"ref_{c.name.lower()}_1") for c in PARSE_CODES}
    m.d.sync += [raised_1[c].eq(raised[c]) for c in PARSE_CODES]
    cb = p.code_bits
    base_bad = Signal()
    m.d.comb += base_bad.eq((base < -(1 << (cb - 1))) | (base + nsym > (1 << (cb - 1))))
    check_1, base_bad_2 = Signal(), Signal()
    m.d.sync += [check_1.eq(base_now), base_bad_2.eq(check_1 & base_bad)]
    code = Signal(ErrorCode)
    for c in reversed(PARSE_CODES):
        with m.If(raised_1[c] | (base_bad_2 if c == ErrorCode.UNSUPPORTED else 0)):
            m.d.comb += code.eq(c)
    expected = Signal(ErrorCode)
    with m.If(expected == ErrorCode.NONE):
        m.d.sync += expected.eq(code)
    if ref is not None:
        ref.update(ongoing=fsm.ongoing, pos=pos, chk=chk, left=left, room=room, nsym=nsym, count=count,
                   npay=npay, layers_left=layers_left, base=base, check_1=check_1, base_bad_2=base_bad_2,
                   raised_1=raised_1)
    return expected
