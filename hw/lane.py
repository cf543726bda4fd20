"""A lane: the rANS decoding loop of ``ways`` interleaved states, cut into a ring of registered stages."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.rans import RANS_L
from .mul import Multiplier
from .params import DecoderParams, rejected
from .tables import fc_layout

__all__ = ["Lane", "state_write_layout", "window_word_width"]


def state_write_layout(params: DecoderParams) -> data.StructLayout:
    """The parser's write of one initial state, for a lane, a way and a bank (no ``lane`` field
    with one lane: a zero-width field is written ``wire [-1:0]`` in the Verilog)."""
    lane = {"lane": range(params.lanes)} if params.lanes > 1 else {}
    return data.StructLayout({"we": 1, "bank": 1, **lane, "way": range(params.ways), "x": 32})


def window_word_width(params: DecoderParams) -> int:
    """Bits of a word in the payload window: the 16-bit word, its layer's bank (the tag), and
    with the ring window a "word is 0" flag made on the write side (the final-state test)."""
    return 18 if params.ring_window else 17


def encode_thermometer(therm, width):
    """Number of set bits of a thermometer code ``therm[0..n-1]`` (ones first).

    Bit ``b`` of the count is set when the count lies in ``[m * 2**b, (m + 1) * 2**b)`` for an
    odd ``m``: one AND-NOT term per odd ``m``, so a shallow OR tree.
    """
    n = len(therm)

    def at_least(v):                             # count >= v
        return therm[v - 1] if v <= n else Const(0)
    bits = []
    for b in range(width):
        bit = Const(0)
        for mm in range(1, (n >> b) + 1, 2):
            bit = bit | (at_least(mm << b) & ~at_least((mm + 1) << b))
        bits.append(bit)
    return Cat(*bits)


class Lane(wiring.Component):
    """One lane: decodes a weight per clock from ``ways`` interleaved rANS states.

    rANS decoding of a state is a loop: ``slot = x mod 2**M`` -> symbol ``s`` (lookup) ->
    ``x' = f[s]·(x >> M) + slot - c[s]`` -> renormalise (``x' < 2**16``: ``x = x'·2**16 + word``).
    The loop is cut into registered stages R0..R5, each holding a different state, so the lane
    finishes a symbol every clock although a state takes 6 (docs/architecture.md, "The lane"):

    - S0 (R0 -> R1): ``compare``: the slot against the layer's cumulative frequencies ->
      thermometer code; ``table``: the slot RAM was read with the state entering R0, its word
      goes into R1.
    - S1 (R1 -> R2): the symbol (``symbol``: encoded from the thermometer code, or selected from
      the RAM word); ``fc_read="sync"``: its f/c read is issued here.
    - S2 (R2 -> R3): f, c (``fc``); the multiplier's operands; ``slot - c`` (at M >= 14, where
      the DSP takes all of ``x >> M``, S2 registers the slot and c and S3 subtracts); at M <= 11
      the radix-4 multiples of f for the low bits of ``x >> M``.
    - S2b (R2b -> R3, row classes with an extra way, ``params.s2b``): S2 registers x >> M and
      the slot while the tables select the symbol's f/c (``fc`` comes in S2b); S2b does the
      rest of S2.
    - S3 (R3 -> R4): the DSP multiplies f by the high bits of ``x >> M``; the fabric adds the
      low partial products and ``slot - c`` (at M >= 14: makes ``slot - c``, with nothing to add).
    - S4 (R4 -> R5): the new state ``x'`` and its "needs a word" flag (from the low 16-bit
      carry and zero tests, not a 32-bit compare). With ``ways > 6`` the state and flag pass
      a stage S4b (and with the ring window and ``ways > 7`` S4c; each a way later with S2b,
      which takes the first extra way: ``params.s4b``, ``params.s4c``), so the flag is counted
      across lanes from a register (:class:`~subbit.hw.words.WordPositions`).
    - S5 (R5 -> R0): renormalise with ``word`` (the window's word at the lane's position) when
      the flag is set; the state goes round again (through ``ways`` - stages delay
      registers), or the layer's next beat starts from an initial state (``init``).

    The lane keeps its initial states of both banks (``initial_states``, written by the parser,
    read a clock ahead with the issued beat's way and bank).

    Members
    -------
    en : In(1)
        The datapath advances (this lane's copy of the enable).
    state_write : In(state_write_layout(params))
        The parser's initial-state write (taken when ``lane`` is this lane's index).
    state_read : In(StructLayout({"way": ..., "bank": 1}))
        The issued beat's way and bank: its initial state is read now, used next clock.
    init : In(1)
        The beat entering R0 starts its state from the bank (the first ``ways`` beats of a layer).
    cum, cum_mask : In
        ``lookup="compare"``: the active layer's cumulative frequencies and which symbols exist.
    slot_index : Out(prob_bits - log2(fill_rate)), slot_word : In(fill_rate * sym_bits)
        ``lookup="table"``: the slot RAM's address (of the state entering R0) and its word.
    symbol : Out(sym_bits)
        The symbol of the beat in R2 (registered: ``params.late_weights``, ``lookup="compare"``),
        else of the beat in R1 (S1): the
        weight, less its layer's base.
    fc_symbol : Out(sym_bits)
        The symbol to read f/c for (registered in R2, or S1's with ``fc_read="sync"``).
    fc : In(fc_layout(params))
        Its f and c, in S2 (S2b with S2b).
    s4_active : In(1)
        The beat in R4 is one and this lane holds one of its weights.
    counts_word : Out(1)
        The lane's state in R4 (R4b with S4b) will take a word in S5: what the lanes' word
        positions are counted from.
    word : In(window_word_width(params))
        S5: the window's word at this lane's position (16 bits, the layer's bank, [ring: is 0]).
    needs_word : Out(1)
        S5: the lane takes ``word`` (renormalises).
    final_ok : Out(1)
        S5: the state after renormalisation is ``L = 2**16``, the value every state must end
        a layer with.

    Latency: 6 clocks a state per symbol (one more for each of S2b, S4b, S4c; ``ways`` with
    delay registers); the symbol 2 clocks after the state enters R0 (3 with S2b, registered).
    Throughput: a symbol per
    enabled clock. Backpressure: ``en`` low holds every register (the multiplier's too).
    """

    def __init__(self, params: DecoderParams, index: int):
        if not (isinstance(index, int) and 0 <= index < params.lanes):
            raise rejected(self, f"lane index must be in 0..{params.lanes - 1}, not {index!r}")
        self.p = p = params
        self.index = index
        M, SB = p.prob_bits, p.sym_bits
        members = {
            "en": In(1),
            "state_write": In(state_write_layout(p)),
            "state_read": In(data.StructLayout({"way": unsigned(max(1, (p.ways - 1).bit_length())), "bank": 1})),
            "init": In(1),
            "symbol": Out(SB),
            "fc_symbol": Out(SB),
            "fc": In(fc_layout(p)),
            "s4_active": In(1),
            "counts_word": Out(1),
            "word": In(window_word_width(p)),
            "needs_word": Out(1),
            "final_ok": Out(1),
        }
        if p.lookup == "compare":
            members.update({"cum": In(data.ArrayLayout(M, p.max_symbols)), "cum_mask": In(p.max_symbols)})
        else:
            rb = p.fill_rate.bit_length() - 1
            members.update({"slot_index": Out(M - rb), "slot_word": In(p.fill_rate * SB)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        M, S, SB, D = p.prob_bits, p.max_symbols, p.sym_bits, p.ways
        en = self.en
        xs, xc = p.s4b, p.s4c
        f3 = p.mul_split >= 3
        L = p.mul_split                             # x >> M = hh * 2**L + hl; DSP: f * hh
        WB = max(1, (D - 1).bit_length())           # way index bits

        # the initial states of both banks, read a clock ahead (a synchronous read: block RAM
        # where there is no LUT-RAM, as on iCE40): the state joins the ring as its beat enters
        # R0. The parser makes a layer ready only after its last state write has landed.
        m.submodules.initial_states = mem = Memory(shape=32, depth=2 << WB, init=[])
        w = mem.write_port()
        sw = self.state_write
        m.d.comb += [w.addr.eq(Cat(sw.way, sw.bank)), w.data.eq(sw.x),
                     w.en.eq(sw.we & (sw.lane == self.index) if p.lanes > 1 else sw.we)]
        state_r = mem.read_port()
        m.d.comb += [state_r.addr.eq(Cat(self.state_read.way, self.state_read.bank)), state_r.en.eq(en)]

        # the stage registers: R1 holds the lookup's result: compare the thermometer code
        # (`therm`), table the slot-RAM word of `fill_rate` symbols (`s`), from which S1 selects
        # the symbol; R3: slot - c, and f with the low bits hl (L <= 2), or (L >= 3, `f3`) the
        # multiples of f for hl, two bits each (the last group of an odd L one bit); with no low
        # bits (L = 0, M >= 14) the slot and c, S3 subtracting them from registers: S3 has
        # nothing else to do, and S2 then ends at the f/c read (measured: docs/results.md, the RTL
        # section's "Eight lanes: the prefetch FIFO's read side from registers")
        def stage(name, **fields):
            return {k: Signal(shape, name=f"{name}_{k}") for k, shape in fields.items()}
        groups = [(k, min(2, L - k)) for k in range(0, L, 2)]
        r0 = stage("r0", x=32)
        r1 = stage("r1", hi=32 - M, slot=M, **({"therm": max(S - 1, 1)} if p.lookup == "compare"
                                                 else {"s": SB * p.fill_rate}))
        r2 = stage("r2", hi=32 - M, slot=M)
        # S2b (row classes): S2 registers x >> M and the slot while the tables select the
        # symbol's f/c among its table's (in two steps: ``fc`` arrives in S2b); S2b does what
        # S2 does otherwise
        x2 = p.s2b
        r2b = stage("r2b", hi=32 - M, slot=M) if x2 else None
        late_sub = L == 0                           # slot - c in S3
        r3 = stage("r3", **({f"m{k}": M + 2 for k, _ in groups} if f3 else {"hl": max(L, 1), "f": M + 1}),
                   **({"slot": M, "c": M} if late_sub else {"r": M}))
        r4 = stage("r4", q=M + 2 + L)
        # ring window with S4b: the final-state test's comparisons of x are made in S4b, so in S5
        # only the word's "is 0" flag, read from the ring's RAM, is on the path to the check
        early_at_l = p.ring_window and xs
        r5 = stage("r5", x=32, need=1, **({"x_one": 1, "x_l": 1} if early_at_l else {}))
        r4b = stage("r4b", x=32, need=1) if xs else None
        r4c = stage("r4c", x=32, need=1) if xc else None
        r2s = Signal(SB, name="r2_s") if p.late_weights or not p.fc_sync else None

        m.submodules.mul = mul = Multiplier(32 - M - L, M + 1, p.multiplier)
        src, fc = (r2b if x2 else r2), self.fc     # the multiplier's stage: S2b or S2
        m.d.comb += [mul.a.eq(src["hi"][L:]), mul.b.eq(fc.f), mul.ce.eq(en)]

        x0 = r0["x"]
        slot0, hi0 = x0[:M], x0[M:]
        # S0: symbol lookup, part 1 (table: the slot RAM was read with the state entering
        # R0, see the ring closure; its output word goes straight into R1, the symbol being
        # selected from it in S1: the RAM's clock-to-out leaves no room for the select)
        if p.lookup == "compare":
            therm = (Cat(*[self.cum_mask[k] & (slot0 >= self.cum[k]) for k in range(1, S)]) if S > 1
                     else Const(0))
        else:
            s0 = self.slot_word                     # the table word; its symbol is selected in S1
        # S1: symbol index (fc_read="sync": the f/c read is issued with it)
        if p.lookup == "compare":
            s1 = encode_thermometer(r1["therm"], SB) if S > 1 else Const(0, SB)
        else:
            rb = p.fill_rate.bit_length() - 1
            s1 = r1["s"].word_select(r1["slot"][:rb], SB) if rb else r1["s"]
        # with the comparators the weights leave from R2 (the registered symbol), so S1 does not reach the
        # output buffer
        m.d.comb += [self.symbol.eq(r2s if p.late_weights else s1), self.fc_symbol.eq(s1 if p.fc_sync else r2s)]
        need4 = Signal(name="need4")
        with m.If(en):
            m.d.sync += [r1["hi"].eq(hi0), r1["slot"].eq(slot0)]
            if p.lookup == "compare":
                m.d.sync += r1["therm"].eq(therm)
            else:
                m.d.sync += r1["s"].eq(s0)
            m.d.sync += [r2["hi"].eq(r1["hi"]), r2["slot"].eq(r1["slot"])]
            if r2s is not None:
                m.d.sync += r2s.eq(s1)
            if x2:
                m.d.sync += [r2b["hi"].eq(r2["hi"]), r2b["slot"].eq(r2["slot"])]
            # S2 (S2b): f and x >> M into the multiplier's input registers; slot - c (L = 0: slot, c)
            if not f3:
                m.d.sync += r3["f"].eq(fc.f)
            if late_sub:
                m.d.sync += [r3["slot"].eq(src["slot"]), r3["c"].eq(fc.c)]
            else:
                m.d.sync += r3["r"].eq(src["slot"] - fc.c)
            if f3:
                for k, w in groups:             # the multiple of f for hl[k:k + w]
                    sel, f_ = src["hi"][k:k + w], fc.f
                    mult = Mux(sel[0], f_, 0) if w == 1 else Array([Const(0, M + 2), f_, f_ << 1, fc.f3])[sel]
                    m.d.sync += r3[f"m{k}"].eq(mult)
            elif L:
                m.d.sync += r3["hl"].eq(src["hi"][:L])
            # S3: the DSP multiplies; the fabric adds the low partial products and slot - c
            acc = r3["slot"] - r3["c"] if late_sub else r3["r"]
            if f3:
                for k, _ in groups:
                    acc = acc + (r3[f"m{k}"] << k)
            else:
                for k in range(L):
                    acc = acc + Mux(r3["hl"][k], r3["f"] << k, 0)
            m.d.sync += r4["q"].eq(acc)
            # S4: add; renormalise when x1 < 2**16, decided from the low 16-bit carry and
            # zero tests of the high bits instead of the full 32-bit sum
            pl, q4 = mul.p << L, r4["q"]
            x1 = (pl + q4)[:32]
            low_carry = (pl[:16] + q4[:16])[16]
            rn = (pl[16:32] == 0) & (q4[16:] == 0 if len(q4) > 16 else Const(1)) & ~low_carry
            # the new state and its flag through S4b (and S4c) into R5
            x_, need_ = x1, need4
            for st in [r for r in (r4b, r4c) if r is not None]:
                m.d.sync += [st["x"].eq(x_), st["need"].eq(need_)]
                x_, need_ = st["x"], st["need"]
            m.d.sync += [r5["x"].eq(x_), r5["need"].eq(need_)]
            if early_at_l:                      # from the stage before R5's register
                m.d.sync += [r5["x_one"].eq(x_[:16] == 1), r5["x_l"].eq(x_ == RANS_L)]
        m.d.comb += [need4.eq(self.s4_active & rn), self.counts_word.eq(r4b["need"] if xs else need4)]

        # S5: renormalise: the lane takes the window's word at its position
        need, word = r5["need"], self.word
        xn = Signal(32, name="xn")
        m.d.comb += [xn.eq(Mux(need, Cat(word[:16], r5["x"][:16]), r5["x"])), self.needs_word.eq(need)]
        # the new state is L = 2**16 exactly: tested on the sources of the mux above
        word_zero = word[17] if p.ring_window else word[:16] == 0    # the ring stores the zero test
        if early_at_l:
            m.d.comb += self.final_ok.eq(Mux(need, r5["x_one"] & word_zero, r5["x_l"]))
        else:
            m.d.comb += self.final_ok.eq(Mux(need, (r5["x"][:16] == 1) & word_zero, r5["x"] == RANS_L))

        # ring closure, with extra delay when the stream has more ways than the pipeline
        back = xn                                   # the state going round again
        for d in range(D - p.ring_stages):
            reg = Signal(32, name=f"delay{d}")
            with m.If(en):
                m.d.sync += reg.eq(back)
            back = reg
        x_in = Mux(self.init, state_r.data, back)
        with m.If(en):
            m.d.sync += r0["x"].eq(x_in)
        if p.lookup == "table":                     # slot RAM read in step with R0 (data in S0)
            m.d.comb += self.slot_index.eq(x_in[rb:M])
        return m
