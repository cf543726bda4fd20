"""Stream parser: headers and tables into the layer banks, payload words into the window."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import stream as fmt
from .classes import class_fields_layout, class_word_layout
from .lane import state_write_layout
from .logic import le_const, select
from .params import DecoderParams, ErrorCode
from .tables import freq_write_layout, slot_write_layout

__all__ = ["Frontend", "ParseErrors", "SlotFill", "input_layout", "payload_layout"]


def input_layout(word_width: int) -> data.StructLayout:
    """Payload of the decoder's input stream: ``word_width`` bits of stream words, ``last`` on
    the stream's final beat."""
    return data.StructLayout({"data": unsigned(word_width), "last": 1})


def payload_layout(words_per_beat: int) -> data.StructLayout:
    """A beat of payload words: ``n`` valid words, ``end`` on the layer's last beat (an empty
    beat with ``n = 0`` ends a layer without payload), ``tag``: the layer's bank."""
    return data.StructLayout({"data": data.ArrayLayout(unsigned(16), words_per_beat),
                              "n": range(words_per_beat + 1), "end": 1, "tag": 1})


class ParseErrors(wiring.Component):
    """The parser's checks: raised conditions, registered, into one error code.

    Each condition is raised for a clock by the parser's FSM (one port per code: separate
    signals, not bits of one vector: a comb vector whose bits are partly constant becomes an
    ``always @*`` without inputs in the generated Verilog, which Icarus never evaluates); it is
    registered before it is encoded, so no check sits on the FSM's paths. The base's range check
    (codes ``base .. base + nsym - 1`` fit ``code_bits``) is made here on the parser's registers a
    clock after the base word (``check_base``), straight into its own flag: the base must be a
    sign extension of its low ``code_bits`` (a zero/ones test), and then ``base + nsym <=
    2**(code_bits - 1)`` on a few bits (``nsym > max_symbols`` is ``UNSUPPORTED`` anyway, so only
    its low ``bits(max_symbols)`` bits take part).

    Members
    -------
    <code> : In(1)
        One per :class:`ErrorCode` but ``NONE`` (``bad_magic``, ``bad_version``, ...): raised.
    check_base : In(1)
        The layer's base word was taken on the previous clock: check ``base`` against ``nsym``.
    base : In(signed(16)), nsym : In(8)
        The parser's registers.
    halt : In(1)
        An error is held: nothing more is registered.
    error : Out(ErrorCode)
        The lowest code raised, a clock after (the base check: two clocks after its word).
    """

    def __init__(self, params: DecoderParams):
        self.p = params
        #: the codes it raises (``BAD_CLASS`` only in a decoder of row-classed layers)
        self.CODES = tuple(c for c in ErrorCode if c != ErrorCode.NONE and (c != ErrorCode.BAD_CLASS or params.classed))
        super().__init__({**{c.name.lower(): In(1) for c in self.CODES}, "check_base": In(1),
                          "base": In(signed(16)), "nsym": In(8), "halt": In(1), "error": Out(ErrorCode)})

    def elaborate(self, platform):
        m = Module()
        p = self.p
        codes = self.CODES
        errs_r = {c: Signal(name=f"err_{c.name.lower()}_r") for c in codes}
        with m.If(~self.halt):
            m.d.sync += [errs_r[c].eq(getattr(self, c.name.lower())) for c in codes]
        cb, base, nsym = p.code_bits, self.base, self.nsym
        base_bad_r = Signal()
        hi = base[cb - 1:]
        ext_ok = (hi == 0) | (hi == (1 << len(hi)) - 1)
        top = base[:cb].as_signed() + nsym[:p.max_symbols.bit_length()]
        with m.If(~self.halt):
            m.d.sync += base_bad_r.eq(self.check_base & (~ext_ok | (top > (1 << (cb - 1)))))
        for code in reversed(codes):           # lowest code wins
            with m.If(errs_r[code] | (base_bad_r if code == ErrorCode.UNSUPPORTED else 0)):
                m.d.comb += self.error.eq(code)
        return m


class SlotFill(wiring.Component):
    """``lookup="table"``: which slots of one slot-table word a frequency word's run fills this clock.

    A symbol's slots ``[c, c + f)`` are written up to ``fill_rate`` (R) a clock: the part of the
    run that falls into one R-slot word of the table. The slots still to fill (``todo``) fit the
    word when ``todo <= R - flo`` (``flo``: the next slot's position in its word); then they take
    the slots ``[flo, flo + todo)``, else the rest of the word ``[flo, R)``. Timing: no carry chain
    -- the fit and the mask are a small truth table of ``flo`` and ``todo``'s low bits (mux trees
    of constants: yosys builds a carry chain for even a narrow compare or subtraction).

    Members
    -------
    flo : In(log2(R))
    todo : In(16)
    fits : Out(1)
        All of ``todo`` fits this word (the symbol is done this clock).
    space : Out(range(R + 1))
        Slots left in this word (``R - flo``).
    mask : Out(R)
        The slots written this clock.

    Combinational.
    """

    def __init__(self, params: DecoderParams):
        self.R, self.rb = params.fill_rate, params.fill_rate.bit_length() - 1
        super().__init__({"flo": In(self.rb), "todo": In(16), "fits": Out(1), "space": Out(range(self.R + 1)),
                          "mask": Out(self.R)})

    def elaborate(self, platform):
        m = Module()
        R, rb = self.R, self.rb
        flo, todo = self.flo, self.todo
        t = todo[:rb + 1]

        def run(start, n):
            """The write mask of the slots [start, start + n) of a table word."""
            return Const(((1 << n) - 1) << start & ((1 << R) - 1), R)
        # per (flo, t): t <= R - flo, and the slots [flo, flo + t) of the table word
        table = [Cat(Const(tv <= R - lv, 1), run(lv, tv)) for lv in range(1 << rb) for tv in range(1 << (rb + 1))]
        fit_lo, mask_fit = Signal(), Signal(R)
        m.d.comb += [Cat(fit_lo, mask_fit).eq(select(table, Cat(t, flo))),
                     self.space.eq(R - flo if rb else 1),
                     self.fits.eq((todo[rb + 1:] == 0) & fit_lo)]
        # the slots [flo, R): the rest of the table word
        mask_rest = select([run(lv, R) for lv in range(1 << rb)], flo)
        m.d.comb += self.mask.eq(Mux(self.fits, mask_fit, mask_rest))
        return m


class TableLoader(wiring.Component):
    """A layer's frequency table as the parser takes it, a word at a time: the symbol of the
    current frequency word (``index``), its cumulative frequency ``c`` and the ``room`` left
    (``2**M - c``, which keeps the parser's table checks to one compare), and with
    ``lookup="table"`` the slot fill (:class:`SlotFill`): the slot RAM word (``slot_index``) and
    the slots of it (``slot_mask``) that the word's symbol takes this clock.

    Members
    -------
    word : In(16)
        The frequency word the parser holds.
    clear : In(1)
        A table starts: symbol 0, ``c = 0``, ``room = 2**M`` from the next clock.
    fill : In(1)
        ``lookup="table"``: the parser holds a frequency word this clock; the fill advances.
    take : In(1)
        The word is consumed (with ``lookup="table"`` only when ``fits``): the next symbol.
    index : Out(sym_bits); c : Out(M); room : Out(M + 1)
        Registers (``c`` without its top bit: ``c = 2**M`` is ``room = 0``).
    fits : Out(1)
        The word's last slots are written this clock (always 1 with ``lookup="compare"``).
    slot_index : Out(M - log2(fill_rate)); slot_mask : Out(fill_rate)
        ``lookup="table"``: where the word's symbol goes this clock.

    Latency: the registers follow ``clear`` / ``take`` / ``fill`` a clock later. Throughput: a
    frequency word a clock with ``lookup="compare"``; ``f / fill_rate + 1`` clocks or fewer with
    ``lookup="table"``. No backpressure: the parser drives it.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        self.fill_bits = p.fill_rate.bit_length() - 1
        M = p.prob_bits
        super().__init__({
            "word": In(16), "clear": In(1), "fill": In(1), "take": In(1),
            "index": Out(p.sym_bits), "c": Out(M), "room": Out(M + 1), "fits": Out(1),
            "slot_index": Out(max(1, M - self.fill_bits)), "slot_mask": Out(p.fill_rate),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        M, word = p.prob_bits, self.word
        idx = Signal(8)                            # symbol of the current frequency word
        cum = Signal(M + 1)
        m.d.comb += [self.index.eq(idx), self.c.eq(cum)]
        take_sync = [idx.eq(idx + 1), cum.eq(cum + word), self.room.eq(self.room - word)]
        clear_sync = [cum.eq(0), self.room.eq(1 << M), idx.eq(0)]
        if p.lookup == "table":
            # Slots [c, c + f) get the symbol, up to R per clock (SlotFill). The slots still to fill
            # are the word itself (`fresh`) or a register `rest` (made as `todo - space`, off the
            # path); `fpos` is a register advanced by the slots written.
            rb = self.fill_bits
            m.submodules.slot_fill = fill = SlotFill(p)
            fresh = Signal(init=1)                 # no slot of the word's symbol filled yet
            rest = Signal(16)                      # slots of the symbol still to fill (when not fresh)
            fpos = Signal(M + 1)                   # next slot to fill
            todo = Signal(16)                      # slots of the symbol still to write
            fits, space, t = fill.fits, fill.space, todo[:rb + 1]
            m.d.comb += [fill.flo.eq(fpos[:rb]), fill.todo.eq(todo), todo.eq(Mux(fresh, word, rest)),
                         self.fits.eq(fits), self.slot_index.eq(fpos[rb:M]), self.slot_mask.eq(fill.mask)]
            clear_sync += [fresh.eq(1), fpos.eq(0)]
            take_sync += [fresh.eq(1)]
            with m.If(self.fill):
                m.d.sync += fpos.eq(Mux(fits, fpos + t, Cat(Const(0, rb), fpos[rb:] + 1)))
                with m.If(~fits):
                    m.d.sync += [rest.eq(todo - space), fresh.eq(0)]
        else:
            m.d.comb += self.fits.eq(1)
        with m.If(self.take):
            m.d.sync += take_sync
        with m.If(self.clear):
            m.d.sync += clear_sync
        return m


class StateLoader(wiring.Component):
    """A layer's initial states as the parser takes them: each 32-bit state from its low and high
    words, addressed to its lane and way (lane first: state ``j`` goes to lane ``j mod K``, way
    ``j div K``).

    Members
    -------
    restart : In(1)
        The layer's states start: lane 0, way 0 from the next clock.
    word : In(16); odd : In(1)
        The state word the parser holds, and whether an odd number of the section's words is
        left (then it is a high half).
    take : In(1)
        ``word`` is taken: a low half is kept, a high half completes a state.
    beat : In(32); aligned : In(1); take_pair : In(1)
        32-bit bus: the beat; it holds a whole state (``aligned``: its low half first) or the
        high half of one and the low half of the next; ``take_pair``: both words are taken (a
        state is completed either way).
    write : Out(StructLayout({"we": 1, "lane": ..., "way": ..., "x": 32}))
        The state completed this clock (``we``), its lane and way.

    Latency: combinational write; the lane, way and the kept low half follow a clock later.
    Throughput: a state word a clock (16-bit bus), a beat a clock (32-bit). No backpressure.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        wide = p.word_width == 32
        lane = {"lane": range(p.lanes)} if p.lanes > 1 else {}
        super().__init__({
            "restart": In(1), "word": In(16), "odd": In(1), "take": In(1),
            **({"beat": In(32), "aligned": In(1), "take_pair": In(1)} if wide else {}),
            "write": Out(data.StructLayout({"we": 1, **lane, "way": range(p.ways), "x": 32})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K, wide = p.lanes, p.word_width == 32
        lo = Signal(16)                        # low half of a state
        lane = Signal(range(K)) if K > 1 else None   # one lane: no lane counter
        way = Signal(range(p.ways))
        w = self.write
        pair = self.take_pair if wide else Const(0)
        m.d.comb += [w.we.eq(pair | (self.take & self.odd)), w.way.eq(way), *([w.lane.eq(lane)] if K > 1 else []),
                     w.x.eq(Mux(self.aligned, self.beat, Cat(lo, self.word)) if wide else Cat(lo, self.word))]
        if wide:
            with m.If(pair):
                m.d.sync += lo.eq(self.beat[16:])
        with m.If(self.take):
            m.d.sync += lo.eq(self.word)
        with m.If(w.we):
            if K == 1:
                m.d.sync += way.eq(way + 1)
            else:
                m.d.sync += lane.eq(lane + 1)
                with m.If(lane == K - 1):
                    m.d.sync += [lane.eq(0), way.eq(way + 1)]
        with m.If(self.restart):
            m.d.sync += [way.eq(0), *([lane.eq(0)] if K > 1 else [])]
        return m


class PayloadPush(wiring.Component):
    """A layer's payload words from the input beats into the payload path, counted down from the
    layer's ``npay``.

    Members
    -------
    beat : In(ArrayLayout(16, words_per_beat)); valid : In(1)
        The input beat and its ``valid``.
    active : In(1)
        The parser is in the layer's payload: push the beat.
    start : In(1); npay : In(32)
        The layer's payload follows (its word count, loaded for the next clock).
    mark : In(1)
        Push an empty beat with ``end``: the end of a layer without payload.
    bank : In(1)
        The layer's bank (the pushed beats' ``tag``).
    push : Out(stream.Signature(payload_layout(words_per_beat)))
    take : Out(1)
        The beat is pushed this clock (the parser consumes it).
    last : Out(1)
        The beat is the payload's last (a register: ``rem <= words_per_beat``).
    second : Out(1)
        32-bit bus: the beat's second word is a payload word too (not the payload's pad or
        check word).

    Latency: the beat goes to ``push`` the clock it is valid. Throughput: a beat a clock.
    Backpressure: ``push.ready`` low holds the beat (``take`` low).
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        wpb = p.words_per_beat
        super().__init__({
            "beat": In(data.ArrayLayout(16, wpb)), "valid": In(1), "active": In(1), "start": In(1),
            "npay": In(32), "mark": In(1), "bank": In(1),
            "push": Out(stream.Signature(payload_layout(wpb))),
            "take": Out(1), "last": Out(1), "second": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        wpb = self.p.words_per_beat
        rem = Signal(32)                       # payload words left to push
        pay_last = Signal()                    # rem <= words per beat
        push = self.push
        n = Mux(pay_last, rem[:2], wpb) if wpb == 2 else Const(1)
        # the words go out unqualified (``valid`` says when they count): no gating in front of them
        m.d.comb += [self.second.eq(n == 2), self.last.eq(pay_last), push.payload.tag.eq(self.bank),
                     self.take.eq(self.active & self.valid & push.ready),
                     *[push.payload.data[k].eq(self.beat[k]) for k in range(wpb)]]
        with m.If(self.mark):
            m.d.comb += [push.valid.eq(1), push.payload.end.eq(1)]
        with m.If(self.active):
            m.d.comb += [push.valid.eq(self.valid), push.payload.n.eq(n), push.payload.end.eq(pay_last)]
        with m.If(self.take):
            # unless this is the last beat, n == wpb: compare before subtracting
            m.d.sync += [rem.eq(rem - n), pay_last.eq(le_const(rem, 2 * wpb))]
        with m.If(self.start):
            m.d.sync += [rem.eq(self.npay), pay_last.eq(le_const(self.npay, wpb))]
        return m


class Frontend(wiring.Component):
    """Parses a v2 word stream (``docs/stream-format.md``) into the layer banks and the payload path;
    with ``tables > 1`` also v3 streams (row-classed layers: class fields, ``T`` tables, the class
    index).

    It writes each layer's fields, frequency table (``c``, ``f``), slot table
    (``lookup="table"``) and initial states into bank ``bank`` (layers
    alternate between two banks) and pushes payload words into the word
    window. A bank is written only when ``bank_busy[bank]`` is low; with
    ``lookup="compare"`` also only when ``shadow_busy`` is low (the shadow copy
    of the cumulative table is free).

    Members
    -------
    i : In(stream.Signature(input_layout(word_width)))
        Stream words; a 32-bit beat carries two (first in bits 0..15).
    push : Out(stream.Signature(payload_layout(words_per_beat)))
        Payload words, a whole beat per clock, with the layer's bank as ``tag``;
        ``end`` marks the layer's last payload beat (or an empty beat for a
        layer without payload).
    bank_busy : In(2)
    shadow_busy : In(1)
    halt : In(1)
        An error was raised anywhere: stop parsing, accept and drop all input.
    fields, freq, slot, state : Out(...)
        Write strobes (``we``) with the bank and the value, registered: all the writes into
        the banks reach them a clock after the parser makes them, which keeps the FSM off the
        paths into the tables.
    ready : Out(StructLayout({"we": 1, "bank": 1}))
        Layer header complete: the bank may decode (registered with the writes, so it still
        follows the last table or state write).
    ready_soon : Out(StructLayout({"we": 1, "bank": 1}))
        ``ready`` a clock earlier, as the parser makes it (the sequencer compares it with its
        next bank a clock ahead).
    loading : Out(StructLayout({"we": 1, "bank": 1}))
        The parser starts writing bank ``bank``.
    class_fields, class_word : Out(...)
        ``tables > 1``: a layer's class fields and its class index words, for its bank
        (:class:`~subbit.hw.classes.ClassSelect`), registered as the other writes.
    error : Out(ErrorCode)
        A parse error, for one clock.
    stream_start, stream_end : Out(1)
        Strobes: first word of a stream taken; stream fully parsed and
        ``drained`` high (all layers decoded), ready for the next stream.
    drained : In(1)

    Throughput: one header word per clock on a 16-bit bus. On a 32-bit bus
    the layer fields, the initial states and the pad + check word go a beat
    (two words) per clock; the stream header and the frequency table a word
    per clock. Payload at the full bus width.
    A ``lookup="table"`` frequency word takes about ``f / fill_rate + 1`` clocks
    (up to ``fill_rate`` slots written per clock).
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        self.fill_bits = p.fill_rate.bit_length() - 1
        self.fields_layout = data.StructLayout({"we": 1, "bank": 1, "count": 32, "base": signed(16)})
        super().__init__({
            "i": In(stream.Signature(input_layout(p.word_width))),
            "push": Out(stream.Signature(payload_layout(p.words_per_beat))),
            "bank_busy": In(2),
            "shadow_busy": In(1),
            "halt": In(1),
            "fields": Out(self.fields_layout),
            "freq": Out(freq_write_layout(p)),
            "slot": Out(slot_write_layout(p)),
            "state": Out(state_write_layout(p)),
            "ready": Out(data.StructLayout({"we": 1, "bank": 1})),
            "ready_soon": Out(data.StructLayout({"we": 1, "bank": 1})),
            "loading": Out(data.StructLayout({"we": 1, "bank": 1})),
            "error": Out(ErrorCode),
            "stream_start": Out(1),
            "stream_end": Out(1),
            "drained": In(1),
            **({"class_fields": Out(class_fields_layout(p)), "class_word": Out(class_word_layout(p))}
               if p.classed else {}),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        # The writes into the banks are made here and registered on their way out (all by one
        # clock, so `ready` still follows the last table/state write): keeps the FSM off the
        # paths into the tables. `ready` also leaves as it is made (`ready_soon`).
        fields, freq, slot, state = (Signal(getattr(self, n).shape(), name=f"{n}_next")
                                     for n in ("fields", "freq", "slot", "state"))
        ready = self.ready_soon
        m.d.sync += [self.fields.eq(fields), self.freq.eq(freq), self.slot.eq(slot), self.state.eq(state),
                     self.ready.eq(ready)]
        classed = p.classed
        if classed:
            cfields, cword = (Signal(getattr(self, n).shape(), name=f"{n}_next") for n in ("class_fields", "class_word"))
            m.d.sync += [self.class_fields.eq(cfields), self.class_word.eq(cword)]
        M, K, D, S = p.prob_bits, p.lanes, p.ways, p.max_symbols
        wide = p.word_width == 32

        half = Signal()                        # 32-bit bus: which half is the current word
        word = Signal(16)
        beat = self.i.payload
        m.d.comb += word.eq(Mux(half, beat.data[16:32], beat.data[0:16]) if wide else beat.data)
        word_lo = beat.data[0:16]
        word_hi = beat.data[16:32] if wide else word    # the payload check word's position

        # Timing: every decision of the FSM is a registered flag or a small counter compare;
        # checks only raise error flags, registered and encoded a clock later.
        pos = Signal(3)                        # word index in the fixed-size headers
        flast = Signal()                       # ... and this is the layer fields' last word
        left = Signal(13)                      # words left in a table / states section
        lastw = Signal()                       # ... and this word is its last (left == 1)
        last2 = Signal()                       # left == 2 (32-bit bus: the beat ends the section)
        chk = Signal(16, init=fmt.CHECK_SEED)  # running check sum (the seed at a stream's start)
        layers_left = Signal(16)               # layers from the current one on
        last_layer = Signal()
        no_layers = Signal()
        bank = Signal()
        nsym = Signal(8)
        base = Signal(signed(16))
        count = Signal(32)
        npay = Signal(32)
        ns_zero = Signal()                     # count == 0: no initial states
        few = Signal()                         # count <= lanes: all initial states in way 0
        npay_zero = Signal()
        nstates2 = Signal(13)                  # 2 * min(count, lanes * ways)
        # the frequency table's symbol, c, room and slot fill
        m.submodules.table = table = TableLoader(p)
        room = table.room
        m.d.comb += table.word.eq(word)
        # the initial states' assembly and addresses, and the payload's push
        m.submodules.states = states = StateLoader(p)
        m.d.comb += [states.word.eq(word), states.odd.eq(left[0])]
        if wide:
            m.d.comb += [states.beat.eq(beat.data), states.aligned.eq(~half & ~left[0])]
        m.submodules.payload = pay = PayloadPush(p)
        m.d.comb += [pay.beat.eq(beat.data), pay.valid.eq(self.i.valid), pay.npay.eq(npay), pay.bank.eq(bank)]
        wiring.connect(m, pay.push, wiring.flipped(self.push))
        pay_last = pay.last
        if classed:                            # row classes (stream v3)
            v3 = Signal()                      # the stream is version 3
            lclassed = Signal()                # the layer has T > 1 tables
            ntop = Signal(3)                   # T - 1
            tleft = Signal(3)                  # tables after the current one
            tix = Signal(p.table_bits)         # the current table
            cbits = Signal(2)                  # bits of a class
            row_len = Signal(32)
            ncls = Signal(range(p.class_words + 1))
            ncls_lo = Signal(16)               # 16-bit bus: the class fields' third word
            ci = Signal(range(p.class_words))  # the class index word being taken
            padded = Signal()                  # the header has a pad word (T * nsym + ncls even)
        else:
            padded = ~nsym[0]

        to_end = Signal()                      # the word taken now is the stream's final word
        # the checks: conditions raised by the FSM, registered and encoded in ParseErrors
        m.submodules.errors = errors = ParseErrors(p)
        check_base = Signal()                  # the base word was taken: check it next clock
        m.d.sync += check_base.eq(0)
        m.d.comb += [errors.check_base.eq(check_base), errors.base.eq(base), errors.nsym.eq(nsym),
                     errors.halt.eq(self.halt), self.error.eq(errors.error)]

        def take():
            """Consume the current word (and the beat, when it is the beat's last word)."""
            if wide:
                m.d.comb += self.i.ready.eq(half)
                m.d.sync += half.eq(~half)
            else:
                m.d.comb += self.i.ready.eq(1)

        def fail(code):
            m.d.comb += getattr(errors, code.name.lower()).eq(1)

        def load(n):
            m.d.sync += [left.eq(n), lastw.eq(n == 1)]
            if wide:
                m.d.sync += last2.eq(n == 2)

        def step():
            m.d.sync += [left.eq(left - 1), lastw.eq(left == 2)]
            if wide:
                m.d.sync += last2.eq(left == 3)

        def step2():
            m.d.sync += [left.eq(left - 2), lastw.eq(left == 3), last2.eq(left == 4)]

        def next_layer():
            m.d.sync += [bank.eq(~bank), layers_left.eq(layers_left - 1), last_layer.eq(layers_left == 2)]
            with m.If(last_layer):
                m.d.comb += to_end.eq(1)
                m.next = "END"
            with m.Else():
                to_fields()

        def to_fields():
            m.d.sync += [pos.eq(0), flast.eq(0), chk.eq(fmt.CHECK_SEED)]
            m.next = "FIELDS"

        v = self.i.valid
        cw = fmt.StreamConfig(M, K, D).word()
        # The header fields' words come from the format's field tables (model/stream.py); the parser
        # below is built for the layout they describe (words in this order, 32-bit fields as a low and
        # a high word, a 32-bit bus pairing nsym with base), which these lines check at elaboration.
        SH, LF = fmt.STREAM_HEADER, fmt.LAYER_FIELDS
        assert [SH.magic.word, SH.version.word, SH.prob_bits.word, SH.layers.word, SH.reserved.word,
                SH.check.word] == list(range(SH.nwords)) and SH.nwords == 6, "stream header layout changed"
        assert (LF.nsym.word, LF.base.word, LF.count.words, LF.payload_words.words, LF.nwords) == \
            (0, 1, range(2, 4), range(4, 6), 6) and LF.nsym.bit == 0 and LF.base.width == 16, \
            "layer header layout changed"
        # A beat with `last` must end the stream; the stream's last beat must carry it.
        with m.If(self.i.valid & self.i.ready):
            with m.If(beat.last & ~to_end):
                fail(ErrorCode.TRUNCATED)
            with m.If(to_end & ~beat.last):
                fail(ErrorCode.TRAILING)

        def drain_on_error():
            with m.If(self.halt):
                m.next = "DRAIN"

        def pad_word(code, nxt):
            """A pad word: summed into its section's check word, and it must be zero."""
            with m.If(v):
                take()
                m.d.sync += chk.eq(chk + word)
                with m.If(word != 0):
                    fail(code)
                nxt()
            drain_on_error()

        def pad_check_beat(code, check):
            """32-bit bus: the beat [pad word, check word] that ends a section. The pad word must
            be zero and is summed with the section; ``check(total)`` tests the check word."""
            with m.If(v):
                m.d.comb += self.i.ready.eq(1)
                with m.If(word_lo != 0):
                    fail(code)
                check(chk + word_lo)
            drain_on_error()

        # The bank is ready when its tables and states are all written (the last write is this
        # clock's, registered on the way): before the header's check word, which like every
        # check only raises an error flag, so decoding need not wait for it. Except when all
        # states are in way 0 (count <= lanes): the sequencer reads way 0 the clock `ready`
        # arrives, which would meet the last state write; such a layer is ready with its
        # check word, a clock later.
        def to_pad():
            """After the tables and states, a pad word, then the check word. On a 32-bit bus
            both are one beat, so the bank is ready now."""
            if wide:
                m.d.comb += ready.we.eq(~few)
            m.next = "PAD"

        def to_check():
            m.d.comb += ready.we.eq(~few)
            m.next = "CHECK"

        # Data outputs are driven in every state (only the `we` strobes depend on the FSM): no
        # state decode in front of the registers that take them.
        data_out = [self.loading.bank.eq(bank), ready.bank.eq(bank),
                    fields.bank.eq(bank), fields.count.eq(count), fields.base.eq(base),
                    freq.bank.eq(bank), freq.index.eq(table.index), freq.f.eq(word), freq.c.eq(table.c),
                    freq.full.eq(room == 0),     # c = 2**M: a trailing symbol of frequency 0
                    state.bank.eq(bank), *([state.lane.eq(states.write.lane)] if K > 1 else []),
                    state.way.eq(states.write.way), state.x.eq(states.write.x), state.we.eq(states.write.we)]
        if classed:
            data_out += [freq.table.eq(tix), cfields.bank.eq(bank), cfields.classed.eq(lclassed),
                         cfields.top.eq(ntop), cfields.bits.eq(cbits), cfields.row_length.eq(row_len),
                         cword.bank.eq(bank), cword.index.eq(ci), cword.data.eq(word),
                         # the class index words, as the class fields' last word (`class_done`) has them
                         cfields.words.eq(Cat(word_lo, word_hi) if wide else Cat(ncls_lo, word))]
            if p.lookup == "table":
                data_out += [slot.table.eq(tix)]
        if p.lookup == "table":
            # the slot fill is made outside the FSM (used in FREQ only): no state decode either
            data_out += [slot.bank.eq(bank), slot.index.eq(table.slot_index), slot.sym.eq(table.index),
                         slot.mask.eq(table.slot_mask)]

        with m.FSM(name="parse"):
            with m.State("HDR"):
                with m.If(v):
                    take()
                    m.d.sync += [pos.eq(pos + 1), chk.eq(chk + word)]
                    with m.Switch(pos):
                        with m.Case(SH.magic.word):
                            m.d.comb += self.stream_start.eq(1)
                            with m.If(word != fmt.MAGIC):
                                fail(ErrorCode.BAD_MAGIC)
                        with m.Case(SH.version.word):
                            if classed:
                                m.d.sync += v3.eq(word == fmt.VERSION_CLASSED)
                                with m.If((word != fmt.VERSION) & (word != fmt.VERSION_CLASSED)):
                                    fail(ErrorCode.BAD_VERSION)
                            else:
                                with m.If(word != fmt.VERSION):
                                    fail(ErrorCode.BAD_VERSION)
                        with m.Case(SH.prob_bits.word):       # the config word
                            with m.If(word != cw):
                                fail(ErrorCode.CONFIG_MISMATCH)
                        with m.Case(SH.layers.word):
                            m.d.sync += [layers_left.eq(word), last_layer.eq(word == 1),
                                         no_layers.eq(word == 0)]
                        with m.Case(SH.reserved.word):    # a later format would set it
                            with m.If(word != 0):
                                fail(ErrorCode.BAD_VERSION)
                        with m.Case(SH.check.word):
                            with m.If(word != chk):
                                fail(ErrorCode.HEADER_CHECK)
                            with m.If(no_layers):
                                m.d.comb += to_end.eq(1)
                                m.next = "END"
                            with m.Else():
                                to_fields()
                drain_on_error()

            def fields_done(npay_lo, npay_hi):
                """The last field word(s): the bank's fields are complete (`count` was written a
                clock earlier)."""
                m.d.comb += table.clear.eq(1)
                m.d.sync += [nstates2.eq(Mux(le_const(count, K * D - 1), count[:13] << 1, 2 * K * D)),
                             ns_zero.eq(count == 0), npay_zero.eq((npay_lo == 0) & (npay_hi == 0)),
                             few.eq(le_const(count, K))]
                m.d.comb += fields.we.eq(1)
                if classed:
                    with m.If(lclassed):
                        m.d.sync += pos.eq(0)
                        m.next = "CLASSF"
                    with m.Else():
                        m.d.comb += cfields.we.eq(1)
                        m.next = "FREQ"
                else:
                    m.next = "FREQ"

            def nsym_word(w):
                nb = LF.nsym.width                  # the rest of the word is `nsym_zero`
                m.d.sync += nsym.eq(w[:nb])
                load(w[:nb])
                if not classed:
                    with m.If((w == 0) | (w[nb:] != 0)):
                        fail(ErrorCode.BAD_TABLE)
                    with m.Elif(~le_const(w, S)):
                        fail(ErrorCode.UNSUPPORTED)
                    return
                # v3: the high byte holds T - 1 and the class index coding (zero in a v2 stream)
                LF3 = fmt.LAYER_FIELDS_V3
                assert (LF3.extra_tables.bit, LF3.extra_tables.width, LF3.class_code.bit, LF3.class_code.width,
                        LF3.nsym_zero.bit) == (8, 3, 11, 2, 13), "v3 layer word 0 layout changed"
                ext, code = w[8:11], w[11:13]
                high_ok = Mux(v3, w[13:] == 0, w[nb:] == 0)
                m.d.sync += [ntop.eq(Mux(v3, ext, 0)), tleft.eq(Mux(v3, ext, 0)), tix.eq(0),
                             lclassed.eq(v3 & (ext != 0)),
                             cbits.eq(Mux(ext[2], 3, Mux(ext[1], 2, 1))), padded.eq(~w[0])]
                with m.If((w[:nb] == 0) | ~high_ok):
                    fail(ErrorCode.BAD_TABLE)
                with m.Elif(~le_const(w[:nb], S)):
                    fail(ErrorCode.UNSUPPORTED)
                with m.If(v3):
                    if p.tables < 8:                       # (a 3-bit field: 8 tables always fit)
                        with m.If(ext > p.tables - 1):
                            fail(ErrorCode.UNSUPPORTED)    # more tables than the decoder holds
                    with m.If(code[1] | ((ext == 0) & code[0])):
                        fail(ErrorCode.BAD_CLASS)          # an unknown coding, or a coding without classes
                    with m.If((ext != 0) & (code == 1)):
                        fail(ErrorCode.UNSUPPORTED)        # a rANS-coded class index

            # A layer's first field word waits for its bank (and the shadow table) to be free,
            # with no state (and clock) of its own. `free` is a register per bank (so neither the
            # decoder's busy flags nor their logic are in front of the FSM): the banks' state a
            # clock ago, and not free while one of our own `ready` strobes is on its way into the
            # busy flags (they follow it by two clocks; only it makes a bank or the shadow busy).
            free = Signal(2)
            ready_d = Signal()
            busy = self.bank_busy | (Mux(self.shadow_busy, 0b11, 0) if p.lookup == "compare" else 0)
            m.d.sync += [ready_d.eq(ready.we), free.eq(Mux(ready.we | ready_d, 0, ~busy))]
            with m.State("FIELDS"):
                with m.If(v & (free.bit_select(bank, 1) | (pos != 0))):
                    with m.If(pos == 0):
                        m.d.comb += self.loading.we.eq(1)
                    if wide:
                        # a layer header starts a beat (its offset is even): two fields a clock
                        m.d.comb += self.i.ready.eq(1)
                        m.d.sync += [pos.eq(pos + 2), flast.eq(pos == LF.nwords - 4),
                                     chk.eq(chk + word_lo + word_hi)]
                        with m.Switch(pos):
                            with m.Case(LF.nsym.word):
                                nsym_word(word_lo)
                                m.d.sync += [base.eq(word_hi), check_base.eq(1)]
                            with m.Case(LF.count.word):
                                m.d.sync += count.eq(Cat(word_lo, word_hi))
                            with m.Case(LF.payload_words.word):
                                m.d.sync += npay.eq(Cat(word_lo, word_hi))
                    else:
                        take()
                        m.d.sync += [pos.eq(pos + 1), flast.eq(pos == LF.nwords - 2), chk.eq(chk + word)]
                        with m.Switch(pos):
                            with m.Case(LF.nsym.word):
                                nsym_word(word)
                            with m.Case(LF.base.word):
                                m.d.sync += [base.eq(word), check_base.eq(1)]
                            with m.Case(LF.count.word):
                                m.d.sync += count[:16].eq(word)
                            with m.Case(LF.count.word + 1):
                                m.d.sync += count[16:].eq(word)
                            with m.Case(LF.payload_words.word):
                                m.d.sync += npay[:16].eq(word)
                            with m.Case(LF.payload_words.word + 1):
                                m.d.sync += npay[16:].eq(word)
                # the last field word, from a registered flag (neither the bank wait nor a decode
                # of `pos`): the end of the fields resets the frequency table's counters
                with m.If(v & flast):
                    fields_done(word_lo, word_hi) if wide else fields_done(npay[:16], word)
                drain_on_error()

            def pad_or_check():
                with m.If(padded):
                    to_pad()
                with m.Else():
                    to_check()

            def after_states():
                """The initial states are taken: the class index, or the pad / check word."""
                if classed:
                    with m.If(lclassed & (ncls != 0)):
                        load(ncls)
                        m.d.sync += ci.eq(0)
                        m.next = "CLASSES"
                    with m.Else():
                        pad_or_check()
                else:
                    pad_or_check()

            def tables_done():
                m.d.comb += states.restart.eq(1)
                load(nstates2)
                with m.If(~ns_zero):
                    m.next = "STATES"
                with m.Else():
                    after_states()

            if classed:
                def class_done(n_lo, n_hi):
                    """The class fields' last word: the row length and the class index words."""
                    n = Cat(n_lo, n_hi)
                    m.d.sync += [ncls.eq(n), padded.eq(~((~ntop[0] & nsym[0]) ^ n_lo[0])),
                                 few.eq(few | le_const(n, 2))]   # head words written late: ready a clock later
                    with m.If(row_len == 0):
                        fail(ErrorCode.BAD_CLASS)
                    if K > 1:
                        with m.If((row_len != 0) & le_const(row_len, K - 1)):
                            fail(ErrorCode.UNSUPPORTED)    # rows shorter than a beat
                    with m.If(~le_const(n, p.class_words)):
                        fail(ErrorCode.UNSUPPORTED)        # more class index words than the memory holds
                    m.d.comb += cfields.we.eq(1)        # `words` is driven in every state (data_out)
                    m.next = "FREQ"

                CF = fmt.CLASS_FIELDS
                assert (CF.row_length.word, CF.class_words.word, CF.nwords) == (0, 2, 4), "class fields layout changed"
                with m.State("CLASSF"):
                    with m.If(v):
                        if wide:
                            m.d.comb += self.i.ready.eq(1)
                            m.d.sync += [pos.eq(pos + 2), chk.eq(chk + word_lo + word_hi)]
                            with m.If(pos == 0):
                                m.d.sync += row_len.eq(Cat(word_lo, word_hi))
                            with m.Else():
                                class_done(word_lo, word_hi)
                        else:
                            take()
                            m.d.sync += [pos.eq(pos + 1), chk.eq(chk + word)]
                            with m.Switch(pos):
                                with m.Case(0):
                                    m.d.sync += row_len[:16].eq(word)
                                with m.Case(1):
                                    m.d.sync += row_len[16:].eq(word)
                                with m.Case(2):
                                    m.d.sync += ncls_lo.eq(word)
                                with m.Case(3):
                                    class_done(ncls_lo, word)
                    drain_on_error()

                with m.State("CLASSES"):
                    with m.If(v):
                        take()
                        step()
                        m.d.sync += [chk.eq(chk + word), ci.eq(ci + 1)]
                        m.d.comb += cword.we.eq(1)
                        with m.If(lastw):
                            pad_or_check()
                    drain_on_error()

            with m.State("FREQ"):
                with m.If(v):
                    with m.If(word > room):
                        fail(ErrorCode.BAD_TABLE)
                    if p.lookup == "table":
                        m.d.comb += [slot.we.eq((word != 0) & (word <= room)), table.fill.eq(1)]
                    with m.If(table.fits):
                        take()
                        step()
                        m.d.comb += [freq.we.eq(1), table.take.eq(1)]
                        m.d.sync += chk.eq(chk + word)
                        with m.If(lastw):
                            with m.If(word != room):
                                fail(ErrorCode.BAD_TABLE)
                            if classed:
                                with m.If(tleft != 0):          # the layer's next table
                                    m.d.sync += [tleft.eq(tleft - 1), tix.eq(tix + 1)]
                                    m.d.comb += table.clear.eq(1)
                                    load(nsym)
                                with m.Else():
                                    tables_done()
                            else:
                                tables_done()
                drain_on_error()

            def states_done():
                after_states()

            with m.State("STATES"):
                # 32-bit bus: a whole beat of state words a clock (one state: its two halves,
                # or the high half of one and the low half of the next), one word at a time
                # only where the section starts or ends in mid-beat
                pair = (~half & ~lastw) if wide else Const(0)
                with m.If(v & pair):
                    m.d.comb += self.i.ready.eq(1)
                    step2()
                    m.d.sync += chk.eq(chk + word_lo + word_hi)
                    if wide:
                        m.d.comb += states.take_pair.eq(1)
                    with m.If(last2):
                        states_done()
                with m.Elif(v):
                    take()
                    step()
                    m.d.sync += chk.eq(chk + word)
                    m.d.comb += states.take.eq(1)       # a high half (odd words left) completes a state
                    with m.If(lastw):
                        states_done()
                drain_on_error()

            def header_check(w, total):
                """The layer header's check word ``w`` against the sum ``total``; the payload
                follows."""
                with m.If(w != total):
                    fail(ErrorCode.HEADER_CHECK)
                m.d.comb += ready.we.eq(few)
                m.d.sync += chk.eq(fmt.CHECK_SEED)
                m.d.comb += pay.start.eq(1)
                with m.If(npay_zero):
                    m.next = "MARK"
                with m.Else():
                    m.next = "PAY"

            with m.State("PAD"):
                if wide:                            # [pad word, check word]: always a whole beat
                    pad_check_beat(ErrorCode.HEADER_CHECK, lambda total: header_check(word_hi, total))
                else:
                    pad_word(ErrorCode.HEADER_CHECK, to_check)

            with m.State("CHECK"):
                with m.If(v):
                    take()
                    header_check(word, chk)
                drain_on_error()

            with m.State("MARK"):                  # end-of-payload marker of an empty payload
                m.d.comb += pay.mark.eq(1)
                with m.If(self.push.ready):
                    m.next = "PCHK" if wide else "PPAD"
                drain_on_error()

            # after the payload: a zero pad word if its length is even, then the payload check
            # word over payload and pad (on a 32-bit bus the check word is always a high half)
            def payload_check(total):
                with m.If(word_hi != total[:16]):
                    fail(ErrorCode.PAYLOAD_CHECK)
                next_layer()

            with m.State("PAY"):
                m.d.comb += pay.active.eq(1)
                with m.If(pay.take):
                    m.d.comb += self.i.ready.eq(1)
                    if wide:
                        m.d.sync += chk.eq(chk + word_lo + Mux(pay.second, word_hi, 0))
                        with m.If(pay_last):
                            with m.If(npay[0]):         # [last payload word, check word]
                                payload_check(chk + word_lo)
                            with m.Else():
                                m.next = "PCHK"
                    else:
                        m.d.sync += chk.eq(chk + word)
                        with m.If(pay_last):
                            with m.If(npay[0]):
                                m.next = "PCHK"
                            with m.Else():
                                m.next = "PPAD"
                drain_on_error()

            if wide:
                with m.State("PCHK"):               # [pad word, check word]
                    pad_check_beat(ErrorCode.PAYLOAD_CHECK, payload_check)
            else:
                def to_pchk():
                    m.next = "PCHK"

                with m.State("PPAD"):
                    pad_word(ErrorCode.PAYLOAD_CHECK, to_pchk)

                with m.State("PCHK"):
                    with m.If(v):
                        take()
                        payload_check(chk)
                    drain_on_error()

            with m.State("END"):
                with m.If(self.drained):
                    m.d.comb += self.stream_end.eq(1)
                    m.d.sync += [pos.eq(0), half.eq(0), chk.eq(fmt.CHECK_SEED)]
                    m.next = "HDR"
                drain_on_error()

            with m.State("DRAIN"):               # after an error: swallow everything until reset
                m.d.comb += self.i.ready.eq(1)
        m.d.comb += data_out
        return m
