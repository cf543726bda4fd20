"""Row classes (word stream v3): which of its layer's tables each lane decodes a beat with."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .logic import le_const
from .params import DecoderParams

__all__ = ["ClassSelect", "class_fields_layout", "class_word_layout"]


def class_fields_layout(params: DecoderParams) -> data.StructLayout:
    """The parser's write of a layer's class fields into a bank: is it row-classed, its largest
    class ``top = T - 1``, the bits of a class (``ceil(log2 T)``), the row length and the class
    index words."""
    return data.StructLayout({"we": 1, "bank": 1, "classed": 1, "top": unsigned(params.table_bits),
                              "bits": unsigned(2), "row_length": unsigned(32),
                              "words": range(params.class_words + 1)})


def class_word_layout(params: DecoderParams) -> data.StructLayout:
    """The parser's write of one class index word into a bank."""
    return data.StructLayout({"we": 1, "bank": 1, "index": range(params.class_words), "data": unsigned(16)})


class ClassSelect(wiring.Component):
    """The table of each lane in each issued beat, from its row's class (``tables > 1``).

    The class index of a layer (``ceil(log2 T)`` bits per row, packed into 16-bit words,
    `subbit.model.rowclass`, coding ``FIXED``) is written into a memory bank by the parser
    while the header streams in; its first two words are also kept in registers, so a layer's
    first beat needs no memory read. Rows are decoded in order and a row is at least ``lanes``
    weights long (the parser reports shorter ones as ``UNSUPPORTED``), so a beat spans at most
    two rows: the current row's class ``cur`` (a register) for its first ``left`` lanes and the
    next row's for the others, read from a two-word window ``w0, w1`` at bit offset ``o``. When
    a beat ends a row, ``cur`` takes the next class and the window moves on by a class; when it
    moves past ``w0``, ``w1`` takes the memory word read ahead (at most one word every five
    rows, so a read issued at the previous move is always there).

    Checks (``error``, for a clock): a lane with weights uses a class ``> top``; at a layer's
    last beat the rows do not end with it (the row length does not divide the count), or the
    class index words are not exactly those of the layer's rows (too few, too many, or
    non-zero bits after the last class).

    Members
    -------
    en : In(1)
        The datapath advances (the issued beat is taken).
    issue : In(StructLayout({"valid": 1, "bank": 1, "first": 1, "last": 1, "count": range(K + 1)}))
        The beat issued this clock (:class:`~subbit.hw.sequencer.Sequencer`).
    fields : In(class_fields_layout(params)); word : In(class_word_layout(params))
        The parser's (registered) writes.
    entering_tab, r1_tab, r2_tab : Out(ArrayLayout(table_bits, K))
        Each lane's table for the beat whose states enter R0 (the slot RAM's or the cumulative
        table's address) and for the beats in R1 and R2 (the f/c read's address, synchronous or
        not). 0 in a layer without row classes.
    error : Out(1)
        ``BAD_CLASS``: a class out of range a clock after its beat is issued; the end-of-layer
        checks two clocks after the layer's last beat is issued.

    Latency: the tables of an issued beat a clock later (with the beat entering R0).
    Throughput: a beat a clock, across layers (a layer's first beat needs no memory read).
    Backpressure: ``en`` low holds everything.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        K, tb = p.lanes, p.table_bits
        assert p.classed, "ClassSelect is for decoders of row-classed layers (tables > 1)"
        super().__init__({
            "en": In(1),
            "issue": In(data.StructLayout({"valid": 1, "bank": 1, "first": 1, "last": 1, "count": range(K + 1)})),
            "fields": In(class_fields_layout(p)),
            "word": In(class_word_layout(p)),
            "entering_tab": Out(data.ArrayLayout(tb, K)),
            "r1_tab": Out(data.ArrayLayout(tb, K)),
            "r2_tab": Out(data.ArrayLayout(tb, K)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K, tb, W = p.lanes, p.table_bits, p.class_words
        aw = (W - 1).bit_length()
        fields, word, issue = self.fields, self.word, self.issue

        # ---- per bank: the fields and the first two class words -----------------------------
        def banked(name, shape):
            return Array(Signal(shape, name=f"{name}{b}") for b in range(2))
        classed, top, bits = banked("classed", 1), banked("top", tb), banked("bits", 2)
        row_length, nwords = banked("row_length", 32), banked("class_words", range(W + 1))
        head0, head1 = banked("head0_", 16), banked("head1_", 16)
        with m.If(fields.we):
            m.d.sync += [classed[fields.bank].eq(fields.classed), top[fields.bank].eq(fields.top),
                         bits[fields.bank].eq(fields.bits), row_length[fields.bank].eq(fields.row_length),
                         nwords[fields.bank].eq(fields.words)]
        m.submodules.mem = mem = Memory(shape=16, depth=2 * W, init=[])
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(Cat(word.index, word.bank)), wp.data.eq(word.data), wp.en.eq(word.we)]
        with m.If(word.we & (word.index == 0)):
            m.d.sync += head0[word.bank].eq(word.data)
        with m.If(word.we & (word.index == 1)):
            m.d.sync += head1[word.bank].eq(word.data)

        # ---- the running layer ---------------------------------------------------------------
        r_classed, r_top, r_bits = Signal(), Signal(tb), Signal(2)
        r_rl, r_words = Signal(32), Signal(range(W + 1))
        left = Signal(32)                          # weights of the current row from the next beat on
        cur = Signal(tb)                           # the current row's class
        w0, w1 = Signal(16), Signal(16)            # the class words around the next row's class
        o = Signal(4)                              # its bit offset in w0
        wi = Signal(range(W + 2))                  # w0's index in the class index
        rbank = Signal()
        raddr = Signal(aw + 1)                     # the word read ahead (w0's index + 2)
        rp = mem.read_port()
        m.d.comb += rp.addr.eq(Cat(raddr[:aw], rbank))

        first, b_ = issue.first, issue.bank
        s_classed = Mux(first, classed[b_], r_classed)
        s_top = Mux(first, top[b_], r_top)
        s_bits = Mux(first, bits[b_], r_bits)
        s_rl = Mux(first, row_length[b_], r_rl)
        s_words = Mux(first, nwords[b_], r_words)
        s_left = Mux(first, row_length[b_], left)
        h0 = head0[b_]
        mask = Mux(s_bits == 3, 7, Mux(s_bits == 2, 3, 1))[:tb]
        s_cur = Mux(first, h0[:tb] & mask, cur)
        s_w0 = Mux(first, h0, w0)
        s_w1 = Mux(first, head1[b_], w1)
        s_o = Mux(first, s_bits, o)                 # the first beat: row 0's class taken from h0
        s_wi = Mux(first, 0, wi)
        s_raddr = Mux(first, 2, raddr)
        nxt = (Cat(s_w0, s_w1) >> s_o)[:tb] & mask   # the next row's class

        # each lane's table: its row is the current one for the first `left` lanes
        n = issue.count
        tab = [Mux(s_classed & ~(le_const(s_left, j)), s_cur, Mux(s_classed, nxt, 0))[:tb] for j in range(K)]
        bad = Cat(*[(j < n) & (tab[j] > s_top) for j in range(K)]).any() if tb else Const(0)

        # the state after the beat: the row goes on, or the next row starts (the window moves)
        ends_row = s_left <= n
        o2 = s_o + s_bits                           # 0..18
        moves = o2[4]                               # past w0
        a_o = Mux(ends_row, o2[:4], s_o)
        # w0's index saturates past the memory (then no class index length matches it)
        a_wi = Mux(ends_row & moves & (s_wi != W + 1), s_wi + 1, s_wi)
        a_w0 = Mux(ends_row & moves, s_w1, s_w0)
        tab_r = Signal(data.ArrayLayout(tb, K))
        err_r = Signal()
        # the end-of-layer checks (registered first): the last beat must end the last row, and the
        # window before it points just after the last row's class (a valid last beat lies within
        # the last row: rows are at least a beat long)
        end_v, end_o, end_wi, end_w, end_words, end_rows = (Signal(), Signal(4), Signal(range(W + 2)),
                                                            Signal(16), Signal(range(W + 1)), Signal())
        m.d.sync += [end_v.eq(0), err_r.eq(0)]
        with m.If(self.en & issue.valid):
            m.d.sync += [tab_r.eq(Cat(*tab)), err_r.eq(s_classed & bad),
                         r_classed.eq(s_classed), r_top.eq(s_top), r_bits.eq(s_bits), r_rl.eq(s_rl),
                         r_words.eq(s_words),
                         left.eq(Mux(ends_row, s_left + s_rl, s_left)[:32] - n), cur.eq(Mux(ends_row, nxt, s_cur)),
                         o.eq(a_o), wi.eq(a_wi), w0.eq(a_w0), w1.eq(Mux(ends_row & moves, rp.data, s_w1)),
                         raddr.eq(Mux(ends_row & moves, s_raddr + 1, s_raddr)), rbank.eq(b_),
                         end_v.eq(issue.last & s_classed), end_o.eq(s_o), end_wi.eq(s_wi), end_w.eq(s_w0),
                         end_words.eq(s_words), end_rows.eq(s_left == n)]
        # after the last row: ceil(bits / 16) words, the bits above the last class zero
        used = end_wi + (end_o != 0)
        unused_zero = Mux(end_o == 0, 1, (end_w >> end_o) == 0)
        end_bad = Signal()
        m.d.sync += end_bad.eq(end_v & (~end_rows | (used != end_words) | ~unused_zero))
        m.d.comb += self.error.eq(err_r | end_bad)

        # the tables along the ring: entering (the issued beat registered), R0, R1, R2
        r0_tab = Signal.like(tab_r)
        with m.If(self.en):
            m.d.sync += [r0_tab.eq(tab_r), self.r1_tab.eq(r0_tab), self.r2_tab.eq(self.r1_tab)]
        m.d.comb += self.entering_tab.eq(tab_r)
        return m
