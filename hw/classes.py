"""Row classes (word stream v3): which of its layer's tables each lane decodes a beat with."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
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
    rows, so a read issued at the previous move is always there, registered).

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
    entering_tab, r1_tab : Out(ArrayLayout(table_bits, K))
        Each lane's table for the beat whose states enter R0 (the slot RAM's or the cumulative
        table's address) and for the beat in R1 (the f/c read's address: the symbol's, or with
        ``fc_read="async"`` the whole table's). 0 in a layer without row classes.
    error : Out(1)
        ``BAD_CLASS``: a class out of range two clocks after its beat is issued; the end-of-layer
        checks three clocks after the layer's last beat is issued.

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
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K, tb, W = p.lanes, p.table_bits, p.class_words
        kb = K.bit_length() - 1
        aw = (W - 1).bit_length()
        fields, word, issue = self.fields, self.word, self.issue

        def banked(name, shape):
            return Array(Signal(shape, name=f"{name}{b}") for b in range(2))

        def cls_mask(nbits):
            return Mux(nbits == 3, 7, Mux(nbits == 2, 3, 1))[:tb]

        def flags(a2):
            """(a2 < 0: the next beat ends its row, and per lane j: a2 >= j - K, it is still in the
            row) for ``a2`` = L - K - 1, L the weights left in the row (L >= 1, so a2 >= -K): the
            sign bit, and a few low bits (no zero test after the adder)."""
            neg, low = a2[32], a2[:kb + 1].as_signed()
            return neg, Cat(*[~neg | (low >= j - K) for j in range(K)])

        # ---- per bank: the fields, the first two class words, and the state after a first beat --
        # Timing: everything a layer's first beat needs, and the state after it, is a register per
        # bank, chosen by `nb` (the bank the next layer starts in: layers alternate); the issued
        # beat's `first` only selects, at the registers' inputs, between those and the running
        # layer's next state (made from registers alone).
        classed, top, bits = banked("classed", 1), banked("top", tb), banked("bits", 2)
        rlk, le0 = banked("rlk", signed(33)), banked("rl_le_k", 1)       # row length - K, rl <= K
        a2f, ends2f, use2f = banked("a2_first", signed(33)), banked("ends2_first", 1), banked("use2_first", K)
        nwords = banked("class_words", range(W + 1))
        head0, head1 = banked("head0_", 16), banked("head1_", 16)
        cur_f, cur2f = banked("cur_first", tb), banked("cur2_first", tb)  # classes of rows 0 and (rl <= K) 1
        with m.If(fields.we):
            rl, b, ends_row0 = fields.row_length, fields.bank, le_const(fields.row_length, K)
            m.d.sync += [classed[b].eq(fields.classed), top[b].eq(fields.top), bits[b].eq(fields.bits),
                         rlk[b].eq(rl - K), le0[b].eq(ends_row0), nwords[b].eq(fields.words),
                         # L - K - 1 after the first beat: rl - 2K - 1, or 2 rl - 2K - 1 when it ends row 0
                         a2f[b].eq(Mux(ends_row0, 2 * rl - 2 * K - 1, rl - 2 * K - 1))]
        for b in range(2):                          # the flags a clock after the bank's fields
            e, u = flags(a2f[b])
            m.d.sync += [ends2f[b].eq(e), use2f[b].eq(u)]
        # LUT-RAM up to 64 words a bank: a block RAM's clock-to-out (5.8 ns on ECP5 grade 6; yosys does
        # not use its output register) would set Fmax; beyond, the synthesis tool's choice
        m.submodules.mem = mem = Memory(shape=16, depth=2 * W, init=[],
                                        attrs={"ram_style": "distributed"} if W <= 64 else None)
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(Cat(word.index, word.bank)), wp.data.eq(word.data), wp.en.eq(word.we)]
        wb = word.bank
        with m.If(word.we & (word.index == 0)):
            c0 = word.data[:tb] & cls_mask(bits[wb])
            c1 = (word.data >> bits[wb])[:tb] & cls_mask(bits[wb])
            m.d.sync += [head0[wb].eq(word.data), cur_f[wb].eq(c0), cur2f[wb].eq(Mux(le0[wb], c1, c0))]
        with m.If(word.we & (word.index == 1)):
            m.d.sync += head1[wb].eq(word.data)

        # ---- the running layer ---------------------------------------------------------------
        # `a` = L - K - 1 for the weights L left in the current row at the next beat (rows are at
        # least K long, so a >= -K), with its flags as registers: `ends` (a < 0: the beat ends the
        # row) and `use_cur[j]` (L > j: lane j is still in the row).
        nb = Signal()                              # the bank the next layer starts in
        r_classed, r_top, r_bits, r_words = Signal(), Signal(tb), Signal(2), Signal(range(W + 1))
        r_rlk = Signal(signed(33))
        a, ends, use_cur = Signal(signed(33)), Signal(), Signal(K)
        cur = Signal(tb)                           # the current row's class
        w0, w1 = Signal(16), Signal(16)            # the class words around the next row's class
        o = Signal(4)                              # its bit offset in w0
        wi = Signal(range(W + 2))                  # w0's index in the class index
        rbank = Signal()
        raddr = Signal(aw + 1)                     # the word read ahead (w0's index + 2)
        rp = mem.read_port()
        m.d.comb += rp.addr.eq(Cat(raddr[:aw], rbank))
        # the word read ahead, registered (a block RAM's output is slow): the window moves past a
        # word at most every fifth row (a class is at most 3 bits), a row is at least a beat, and
        # the address changes only when the window moves, so it is there long before it is used
        ahead = Signal(16)
        m.d.sync += ahead.eq(rp.data)

        nxt = (Cat(w0, w1) >> o)[:tb] & cls_mask(r_bits)     # the next row's class
        run_tab = Cat(*[Mux(r_classed & use_cur[j], cur, Mux(r_classed, nxt, 0))[:tb] for j in range(K)])
        first_tab = Cat(*[Mux(classed[nb], cur_f[nb], 0)] * K)      # a layer's first beat is in row 0
        first = issue.first
        # the running layer's next state: the row goes on (a - K) or the next row starts
        # (a + rl - K), the window moving on by a class (`a` is L - K - 1 with L the row's weights left)
        a2 = Signal(signed(33))
        m.d.comb += a2.eq(Mux(ends, a + r_rlk, a - K))      # both sums from registers, then `ends`
        ends2, use2 = flags(a2)
        o2 = o + r_bits                             # 0..18
        moves = ends & o2[4]                        # past w0

        tab_r = Signal(data.ArrayLayout(tb, K))
        n_r, top_r, classed_r = Signal(range(K + 1)), Signal(tb), Signal()
        # the end-of-layer checks, on registers: the last beat must end the last row, and the
        # window before it points just after the last row's class (a valid last beat lies within
        # the last row: rows are at least a beat long)
        # (of the last beat: `end_l` = `a` = L - K - 1, or for a layer's first beat rl - K = L - K,
        # L being the weights left in the row; so L = end_l + K + 1, or + K after a first beat)
        end_v, end_l, end_first, end_n, end_o, end_wi, end_w, end_words = (
            Signal(), Signal(signed(33)), Signal(), Signal(range(K + 1)), Signal(4), Signal(range(W + 2)), Signal(16),
            Signal(range(W + 1)))
        valid_r = Signal()
        m.d.sync += [end_v.eq(0), valid_r.eq(0)]
        with m.If(self.en & issue.valid):
            m.d.sync += [tab_r.eq(Mux(first, first_tab, run_tab)), valid_r.eq(1), n_r.eq(issue.count),
                         top_r.eq(Mux(first, top[nb], r_top)), classed_r.eq(Mux(first, classed[nb], r_classed)),
                         a.eq(Mux(first, a2f[nb], a2)), ends.eq(Mux(first, ends2f[nb], ends2)),
                         use_cur.eq(Mux(first, use2f[nb], use2)),
                         cur.eq(Mux(first, cur2f[nb], Mux(ends, nxt, cur))),
                         o.eq(Mux(first, Mux(le0[nb], bits[nb] << 1, bits[nb]), Mux(ends, o2[:4], o))),
                         # w0's index saturates past the memory (then no class index length matches it)
                         wi.eq(Mux(first, 0, Mux(moves & (wi != W + 1), wi + 1, wi))),
                         w0.eq(Mux(first, head0[nb], Mux(moves, w1, w0))),
                         w1.eq(Mux(first, head1[nb], Mux(moves, ahead, w1))),
                         raddr.eq(Mux(first, 2, Mux(moves, raddr + 1, raddr))),
                         end_v.eq(issue.last & Mux(first, classed[nb], r_classed)),
                         end_l.eq(Mux(first, rlk[nb], a)), end_first.eq(first), end_n.eq(issue.count),
                         end_o.eq(Mux(first, bits[nb], o)), end_wi.eq(Mux(first, 0, wi)),
                         end_w.eq(Mux(first, head0[nb], w0)), end_words.eq(Mux(first, nwords[nb], r_words))]
            with m.If(first):
                m.d.sync += [nb.eq(~nb), rbank.eq(nb), r_classed.eq(classed[nb]), r_top.eq(top[nb]),
                             r_bits.eq(bits[nb]), r_rlk.eq(rlk[nb]), r_words.eq(nwords[nb])]
        # a class out of range in a lane with a weight (checked on the registered tables)
        bad = Cat(*[(j < n_r) & (tab_r[j] > top_r) for j in range(K)]).any()
        err_r = Signal()
        m.d.sync += err_r.eq(valid_r & classed_r & bad)
        # after the last row: L = count of the last beat, and ceil(bits / 16) words with the bits
        # above the last class zero
        # (two registered steps: the count of words used and the unused bits' test, then the compares)
        used, unused_zero, rows_end_r, end_v2, words2 = (Signal(range(W + 3)), Signal(), Signal(), Signal(),
                                                         Signal(range(W + 1)))
        end_bad = Signal()
        # L == the last beat's weights: end_l == d = end_n - K - 1 + end_first, d in -K-1..0, so the
        # test is of end_l's low bits and of its high bits being d's sign (no 33-bit adder)
        dw = (K + 1).bit_length() + 1
        d = Signal(signed(dw))
        m.d.comb += d.eq(end_n + end_first - (K + 1))
        rows_end = (end_l[:dw] == d.as_unsigned()) & Mux(d[-1], end_l[dw:].all(), end_l[dw:] == 0)
        m.d.sync += [used.eq(end_wi + (end_o != 0)), unused_zero.eq(Mux(end_o == 0, 1, (end_w >> end_o) == 0)),
                     rows_end_r.eq(rows_end), end_v2.eq(end_v), words2.eq(end_words),
                     end_bad.eq(end_v2 & (~rows_end_r | (used != words2) | ~unused_zero))]
        m.d.comb += self.error.eq(err_r | end_bad)

        # the tables along the ring: entering (the issued beat registered), R0, R1
        r0_tab = Signal.like(tab_r)
        with m.If(self.en):
            m.d.sync += [r0_tab.eq(tab_r), self.r1_tab.eq(r0_tab)]
        m.d.comb += self.entering_tab.eq(tab_r)
        return m
