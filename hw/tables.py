"""The layers' symbol tables, in two banks: f and c per symbol, and the slot -> symbol lookup."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import DecoderParams

__all__ = ["SymbolTables", "fc_layout", "freq_write_layout", "slot_write_layout"]


def fc_layout(params: DecoderParams) -> data.StructLayout:
    """A symbol's frequency ``f`` and cumulative frequency ``c``; with three or more low bits
    of ``x >> M`` multiplied in the fabric (``mul_split >= 3``, M <= 11 on a MULT18) also
    ``f3`` = 3·f, so S2 selects radix-4 multiples of f (0, f, 2f, 3f) per two bits and S3 adds
    half as many terms (measured: docs/architecture.md, "What is left")."""
    M = params.prob_bits
    return data.StructLayout({"f": unsigned(M + 1), "c": unsigned(M),
                              **({"f3": unsigned(M + 2)} if params.mul_split >= 3 else {})})


def freq_write_layout(params: DecoderParams) -> data.StructLayout:
    """The parser's write of one symbol's frequency (``full``: c = 2**M, a trailing symbol of
    frequency 0)."""
    M = params.prob_bits
    return data.StructLayout({"we": 1, "bank": 1, **_table_field(params), "index": unsigned(params.sym_bits),
                              "f": unsigned(M + 1), "c": unsigned(M), "full": 1})


def _table_field(params: DecoderParams) -> dict:
    """The ``table`` field of the parser's table writes (``tables > 1`` only)."""
    return {"table": unsigned(params.table_bits)} if params.classed else {}


def slot_write_layout(params: DecoderParams) -> data.StructLayout:
    """The parser's write of up to ``fill_rate`` slots of the slot table (``mask``) with a symbol."""
    fill_bits = params.fill_rate.bit_length() - 1
    return data.StructLayout({"we": 1, "bank": 1, **_table_field(params),
                              "index": unsigned(params.prob_bits - fill_bits),
                              "mask": unsigned(params.fill_rate), "sym": unsigned(params.sym_bits)})


class SymbolTables(wiring.Component):
    """Both banks' symbol tables, written by the parser, read by the lanes.

    - f and c (and 3f at M <= 11) per symbol, read by each lane in S2 from its symbol:
      ``fc_read="async"``: one LUT-RAM for both banks, read with the symbol registered in R2
      and the beat's bank; ``"sync"`` (always with ``lookup="table"``): one memory per bank,
      both read with the symbol of S1 (block RAM where there is no LUT-RAM, as on iCE40), the
      bank chosen in S2 from the read registers.
    - ``lookup="compare"``: the cumulative frequencies as registers, broadcast to the lanes'
      comparators (``cum``, ``cum_mask``: which symbols exist). The parser fills a shadow copy,
      which becomes active when the layer's first beat enters R0; ``shadow_busy`` keeps the
      parser from the shadow copy from its ``ready`` until then.
    - ``lookup="table"``: the slot -> symbol RAM (block RAM, ``fill_rate`` symbols a word), read
      with the state entering R0 (``slot_index`` and the beat's bank), the word in S0.

    Members
    -------
    en : In(1)
        The datapath advances (the slot RAM's read enable).
    en_next, issue_first : In(1)
        ``params.early_activation`` only: ``en`` on the next clock
        (:class:`~subbit.hw.flow.FlowControl`), and the beat issued now starts a layer: the
        shadow table's activation as the layer's first beat enters R0 is a register made from
        them a clock ahead, so the load enable of the active table's registers comes from a
        flip-flop, not from ``en`` and ``entering``.
    lane_en : In(K)
        Each lane's copy of ``en`` (the synchronous f/c reads' enables).
    clear : In(1)
        A layer's fields were written: its shadow table starts empty (``compare``).
    freq : In(freq_write_layout(params))
        A symbol's f and c, for a bank.
    slot : In(slot_write_layout(params))
        Slots of the slot table, for a bank (``table``).
    ready : In(1)
        A layer is loaded: the shadow table is taken until its first beat (``compare``).
    entering : In(StructLayout({"valid": 1, "first": 1, "bank": 1}))
        The beat whose states enter R0 (its first beat activates a layer's table; ``table``:
        its bank addresses the slot RAM).
    r2_bank : In(1)
        The bank of the beat in R2 (f/c are read for it).
    fc_symbol : In(ArrayLayout(sym_bits, K))
        Each lane's symbol to read f/c for: the one registered in R2 (``async``) or made in S1
        (``sync``).
    fc : Out(ArrayLayout(fc_layout(params), K))
        Each lane's f and c in S2; in S2b with the S2b stage (``params.s2b``): S2 selects,
        by the symbol's low two bits, one of each group of four symbols' f/c into registers,
        and S2b the symbol's among them by its high bits.
    cum : Out(ArrayLayout(prob_bits, max_symbols)), cum_mask : Out(max_symbols)
        ``compare``: the active layer's cumulative frequencies, and which symbols it has.
    shadow_busy : Out(1)
        ``compare``: the shadow table holds a loaded layer that is not active yet.
    slot_index : In(ArrayLayout(prob_bits - log2(fill_rate), K)), slot_word : Out(ArrayLayout(fill_rate * sym_bits, K))
        ``table``: each lane's slot (of the state entering R0) and the RAM word holding it, a
        clock later.

    entering_tab, r1_tab : In(ArrayLayout(table_bits, K))
        ``tables > 1``: each lane's table in the beat entering R0 (the slot RAM's or the
        cumulative table's address), in R1 (the f/c reads': ``sync``, the symbol's; ``async``,
        the whole table's, into registers from which S2 selects the symbol's); the
        memories hold ``tables`` tables per bank
        (:class:`~subbit.hw.classes.ClassSelect`). With ``lookup="compare"`` the cumulative
        frequencies are then LUT-RAM, read per lane for the beat entering R0 into ``cum[j]``
        (registers), so there is no shadow copy (``shadow_busy`` is 0).

    r1_bank : In(1)
        ``tables > 1`` with ``async``: the bank of the beat in R1 (its table's f/c are read).

    Latency: a write is readable the clock after it; f/c in S2 (the same clock, ``async``; a
    read issued in S1, ``sync``), in S2b with the S2b stage (selected over S2 and S2b); the
    slot word a clock after its address.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        K, M, S, SB = p.lanes, p.prob_bits, p.max_symbols, p.sym_bits
        members = {
            "en": In(1),
            **({"en_next": In(1), "issue_first": In(1)} if p.early_activation else {}),
            "lane_en": In(K),
            "clear": In(1),
            "freq": In(freq_write_layout(p)),
            "slot": In(slot_write_layout(p)),
            "ready": In(1),
            "entering": In(data.StructLayout({"valid": 1, "first": 1, "bank": 1})),
            "r2_bank": In(1),
            "fc_symbol": In(data.ArrayLayout(SB, K)),
            "fc": Out(data.ArrayLayout(fc_layout(p), K)),
        }
        if p.lookup == "compare" and p.classed:
            members.update({"cum": Out(data.ArrayLayout(data.ArrayLayout(M, S), K)),
                            "cum_mask": Out(data.ArrayLayout(S, K)), "shadow_busy": Out(1)})
        elif p.lookup == "compare":
            members.update({"cum": Out(data.ArrayLayout(M, S)), "cum_mask": Out(S), "shadow_busy": Out(1)})
        else:
            rb = p.fill_rate.bit_length() - 1
            members.update({"slot_index": In(data.ArrayLayout(M - rb, K)),
                            "slot_word": Out(data.ArrayLayout(p.fill_rate * SB, K))})
        if p.classed:
            members.update({"entering_tab": In(data.ArrayLayout(p.table_bits, K)),
                            "r1_tab": In(data.ArrayLayout(p.table_bits, K))})
            if not p.fc_sync:
                members["r1_bank"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K, M, S, SB = p.lanes, p.prob_bits, p.max_symbols, p.sym_bits
        freq, slot = self.freq, self.slot
        f3 = p.mul_split >= 3
        layout = fc_layout(p)

        # f and c (and 3f)
        # with row classes, each memory holds `tables` tables: the table index extends the addresses
        tb = p.table_bits
        w_tab = [freq.table] if tb else []
        entry = Signal(layout)                      # the symbol's f/c memory word, as the parser writes it
        m.d.comb += [entry.f.eq(freq.f), entry.c.eq(freq.c)]
        if f3:
            m.d.comb += entry.f3.eq(freq.f + (freq.f << 1))
        if p.fc_sync:
            fc_r = []
            for b in range(2):
                m.submodules[f"fc_mem{b}"] = mem = Memory(shape=layout, depth=1 << (SB + tb), init=[])
                fc_w = mem.write_port()
                m.d.comb += [fc_w.addr.eq(Cat(freq.index, *w_tab)), fc_w.data.eq(entry),
                             fc_w.en.eq(freq.we & (freq.bank == b))]
                fc_r.append([mem.read_port(domain="sync") for _ in range(K)])
            for j in range(K):
                for b in range(2):
                    m.d.comb += [fc_r[b][j].addr.eq(Cat(self.fc_symbol[j], *([self.r1_tab[j]] if tb else []))),
                                 fc_r[b][j].en.eq(self.lane_en[j])]
                m.d.comb += self.fc[j].eq(Mux(self.r2_bank, fc_r[1][j].data, fc_r[0][j].data))
        elif tb:
            # T tables: the beat's table and bank are known a stage before its symbol, so each
            # lane reads its table's f/c of every symbol in S1 (one LUT-RAM word of `max_symbols`
            # fields at (bank, table)) into registers, and S2 selects the symbol's from them: the
            # symbol's path is then a max_symbols-way select, as with one table, instead of a
            # read T times deeper (measured: docs/results.md, "Row-classed streams through the RTL");
            # with S2b that select itself takes two steps, S2 and S2b (below)
            fw = layout.size
            m.submodules.fc_mem = fc_mem = Memory(shape=unsigned(S * fw), depth=2 << tb, init=[])
            fc_w = fc_mem.write_port(granularity=fw)
            m.d.comb += [fc_w.addr.eq(Cat(freq.table, freq.bank)), fc_w.data.eq(Cat(*[entry] * S)),
                         fc_w.en.eq(Mux(freq.we, 1 << freq.index, 0))]
            for j in range(K):
                rd = fc_mem.read_port(domain="comb")
                rows = [Signal(layout, name=f"fc_row{j}_{k}") for k in range(S)]
                m.d.comb += rd.addr.eq(Cat(self.r1_tab[j], self.r1_bank))
                with m.If(self.lane_en[j]):
                    m.d.sync += [rows[k].eq(rd.data[k * fw:(k + 1) * fw]) for k in range(S)]
                if p.s2b:
                    # S2: one of each four by the symbol's low bits, registered; S2b: of those
                    lo = min(2, SB)
                    cand = [Signal(layout, name=f"fc_cand{j}_{g}") for g in range(-(-S // (1 << lo)))]
                    hi = Signal(SB - lo, name=f"fc_sym_hi{j}")
                    with m.If(self.lane_en[j]):
                        for g, c in enumerate(cand):
                            group = rows[g << lo:(g + 1) << lo]
                            m.d.sync += c.eq(Array(group)[self.fc_symbol[j][:lo]] if len(group) > 1 else group[0])
                        m.d.sync += hi.eq(self.fc_symbol[j][lo:])
                    m.d.comb += self.fc[j].eq(Array(cand)[hi] if len(cand) > 1 else cand[0])
                else:
                    m.d.comb += self.fc[j].eq(Array(rows)[self.fc_symbol[j]])
        else:
            m.submodules.fc_mem = fc_mem = Memory(shape=layout, depth=2 << SB, init=[])
            fc_w = fc_mem.write_port()
            m.d.comb += [fc_w.addr.eq(Cat(freq.index, freq.bank)), fc_w.data.eq(entry), fc_w.en.eq(freq.we)]
            fc_r = [fc_mem.read_port(domain="comb") for _ in range(K)]
            for j in range(K):
                m.d.comb += [fc_r[j].addr.eq(Cat(self.fc_symbol[j], self.r2_bank)),
                             self.fc[j].eq(fc_r[j].data)]

        if p.lookup == "table":
            R, rb = p.fill_rate, p.fill_rate.bit_length() - 1
            m.submodules.slot_mem = slot_mem = Memory(shape=unsigned(R * SB), depth=2 << (M - rb + tb), init=[])
            sw = slot_mem.write_port(granularity=SB)
            m.d.comb += [sw.addr.eq(Cat(slot.index, *([slot.table] if tb else []), slot.bank)),
                         sw.data.eq(Cat(*[slot.sym] * R)),
                         sw.en.eq(Mux(slot.we, slot.mask, 0))]
            for j in range(K):
                rd = slot_mem.read_port()
                m.d.comb += [rd.addr.eq(Cat(self.slot_index[j], *([self.entering_tab[j]] if tb else []),
                                            self.entering.bank)), rd.en.eq(self.en),
                             self.slot_word[j].eq(rd.data)]
        elif p.classed:
            # T tables per bank, each lane comparing against its own: the cumulative frequencies
            # in LUT-RAM (a symbol's c and "dead" flag per field, at (bank, table)), read for the
            # beat entering R0 with each lane's table into registers that the lane compares in S0.
            # Which symbols the bank's layer has (`live`) is a register per bank.
            field = M + 1
            m.submodules.cum_mem = cum_mem = Memory(shape=unsigned(S * field), depth=2 << tb, init=[])
            cw = cum_mem.write_port(granularity=field)
            m.d.comb += [cw.addr.eq(Cat(freq.table, freq.bank)), cw.data.eq(Cat(*[Cat(freq.c, freq.full)] * S)),
                         cw.en.eq(Mux(freq.we, 1 << freq.index, 0))]
            live = Array(Signal(S, name=f"live{b}") for b in range(2))
            with m.If(self.clear):
                m.d.sync += live[freq.bank].eq(0)       # `clear` comes with the fields write of its bank
            with m.If(freq.we):
                m.d.sync += live[freq.bank].bit_select(freq.index, 1).eq(1)
            for j in range(K):
                rd = cum_mem.read_port(domain="comb")
                m.d.comb += rd.addr.eq(Cat(self.entering_tab[j], self.entering.bank))
                with m.If(self.lane_en[j]):
                    m.d.sync += [self.cum[j][k].eq(rd.data[k * field:k * field + M]) for k in range(S)]
                    m.d.sync += self.cum_mask[j].eq(live[self.entering.bank]
                                                   & ~Cat(*[rd.data[k * field + M] for k in range(S)]))
            m.d.comb += self.shadow_busy.eq(0)
        else:
            # the cumulative table for the comparators: the parser fills the shadow copy, which
            # becomes active when the layer's first beat enters the datapath
            shadow = [Signal(M, name=f"shadow_cum{k}") for k in range(S)]
            shadow_mask = Signal(S)
            active = [Signal(M, name=f"cum{k}") for k in range(S)]
            active_mask = Signal(S)
            shadow_busy = Signal()
            with m.If(self.clear):
                m.d.sync += shadow_mask.eq(0)
            with m.If(freq.we):
                m.d.sync += [Array(shadow)[freq.index].eq(freq.c),
                             shadow_mask.bit_select(freq.index, 1).eq(~freq.full)]
            with m.If(self.ready):
                m.d.sync += shadow_busy.eq(1)
            first_entering = self.entering.valid & self.entering.first
            if p.early_activation:
                # en & first_entering as a register: `entering` is the issued beat registered on
                # `en`, so on the next clock it is the beat issued now if `en`, else the one
                # entering now
                activate = Signal(attrs={"keep": 1})
                m.d.sync += activate.eq(self.en_next & Mux(self.en, self.issue_first, first_entering))
            else:
                activate = self.en & first_entering
            with m.If(activate):
                m.d.sync += [Cat(*active).eq(Cat(*shadow)), active_mask.eq(shadow_mask), shadow_busy.eq(0)]
            m.d.comb += [self.cum.eq(Cat(*active)), self.cum_mask.eq(active_mask), self.shadow_busy.eq(shadow_busy)]
        return m
