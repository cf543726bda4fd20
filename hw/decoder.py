"""Streaming rANS weight decoder: K lanes, one weight per lane per clock."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.rans import RANS_L
from .frontend import Frontend, input_layout
from .logic import le_const, select
from .mul import Multiplier
from .outbuf import OutputBuffer
from .prefetch import PrefetchFIFO
from .params import PIPELINE_DEPTH, DecoderParams, ErrorCode
from .window import RingWindow, WordWindow

__all__ = ["Decoder", "output_layout", "status_layout"]

status_layout = data.StructLayout({"busy": 1, "done": 1, "error": ErrorCode})


def output_layout(params: DecoderParams) -> data.StructLayout:
    """Output beat: ``count`` valid codes (lanes ``0..count-1``); ``last`` ends a layer."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(params.code_bits), params.lanes),
                              "count": range(params.lanes + 1), "last": 1})


def _encode_thermometer(therm, width):
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


class Decoder(wiring.Component):
    """Decodes a v2 weight stream into signed weight codes, ``lanes`` per clock.

    Architecture (``docs/architecture.md``): a parser writes each layer's
    table and initial states into one of two banks while the previous layer
    decodes from the other; payload words go to a small in-order window. Each
    lane is a 6-stage ring (state -> symbol lookup -> f/c read -> multiply ->
    add -> renormalise -> state) carrying ``ways`` interleaved rANS states, so
    a lane finishes one symbol per clock although one state takes 6 clocks.

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": word_width, "last": 1})))
        Stream words (two per beat at 32 bits, first in bits 0..15); ``last``
        on the stream's final beat.
    o : Out(stream.Signature(output_layout(params)))
        ``codes[0..count-1]`` are the next weights of the current layer, in
        order; ``last`` marks a layer's final beat (an empty layer is one beat
        with ``count = 0``).
    status : Out(StructLayout({"busy": 1, "done": 1, "error": ErrorCode}))
        ``busy`` from the first word of a stream until it is decoded;
        ``done`` after that (until the next stream starts) or after an error.
        ``error`` is sticky until reset; after an error the decoder stops
        producing output and accepts and drops all input (it never blocks
        its source).

    Throughput: ``lanes`` weights per clock while input words are available and
    ``o`` is ready, across layer boundaries (the next layer's header loads
    into the other bank while the current layer decodes). Input needed:
    about ``lanes * bits_per_weight / 16`` words per clock.
    Latency: the first weights leave ``FIRST_WEIGHT_CLOCKS`` = 3 clocks after
    the first layer's header with ``lookup="compare"`` (the bank is ready
    before the header's check word; the weights leave from S1, before the ring
    finishes the beat; ``table``: the same after the slot fill); measured
    figures in ``docs/results.md``.
    Backpressure: any ``i.valid`` / ``o.ready`` pattern; ``o`` holds its
    payload while not ready; the whole datapath stalls together.
    Errors: parse errors (header words, tables, check words, ``last``) are
    flagged on ``status.error`` at most 3 clocks after the offending word is
    accepted; the per-layer final-state and payload-length checks at most
    ``LAYER_CHECK_CLOCKS`` = 5 (7 with ``ways > 6``, 8 with the ring window and ``ways > 7``) clocks
    after the layer's ``last`` beat leaves ``o`` (``DecoderParams.layer_check_clocks``, ``docs/decoder.md``).
    """

    def __init__(self, params: DecoderParams = DecoderParams()):
        self.p = params
        super().__init__({
            "i": In(stream.Signature(input_layout(params.word_width))),
            "o": Out(stream.Signature(output_layout(params))),
            "status": Out(status_layout),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K, D, M, S = p.lanes, p.ways, p.prob_bits, p.max_symbols
        SB = p.sym_bits
        WB = max(1, (D - 1).bit_length())          # way index bits

        xs = p.s4b                                  # the S4b stage (see the lane datapath)
        # with S4b the window's take is a register: in copies of it, each for about 6 words
        ring = p.ring_window
        # with the ring window, a second extra way is a stage S4c: S4b's count of the lanes'
        # word flags is registered before it makes the window's read addresses
        xc = p.s4c
        take_copies = -(-p.window_depth // 6) if xs and not ring else 1
        if ring:     # lane j's word (and the one after the lanes' words) read at its own address;
            # each word is stored with its layer's tag and a "word is 0" flag (the final-state test)
            win = RingWindow(p.window_depth, K, K + 1, p.words_per_beat, width=18)
        else:
            win = WordWindow(p.window_depth, K, p.words_per_beat, width=17, take_copies=take_copies)
        m.submodules.window = win
        m.submodules.frontend = fe = Frontend(p)
        wiring.connect(m, wiring.flipped(self.i), fe.i)

        # Payload path: parser -> prefetch FIFO (optional) -> word window. Words are tagged
        # with their layer's bank; `pay_done[b]` says the end of bank b's payload (its last
        # beat, or an empty marker beat) has reached the window.
        beat_layout = fe.push.payload.shape()
        if p.prefetch:
            m.submodules.prefetch = pf = PrefetchFIFO(beat_layout, p.prefetch // p.words_per_beat)
            wiring.connect(m, fe.push, pf.i)
            src_valid, src, src_ready = pf.o.valid, pf.o.payload, pf.o.ready
        else:
            src_valid, src, src_ready = fe.push.valid, fe.push.payload, fe.push.ready
        # an empty marker beat is always taken, so a full window never blocks the end of a layer
        marker = src.n == 0
        m.d.comb += [win.push.valid.eq(src_valid & ~marker), win.push.payload.n.eq(src.n),
                     src_ready.eq(win.push.ready | marker)]
        for k in range(p.words_per_beat):
            zero = [src.data[k] == 0] if ring else []      # the ring stores a "word is 0" flag too
            m.d.comb += win.push.payload.data[k].eq(Cat(src.data[k], src.tag, *zero))
        pay_done = Signal(2)
        with m.If(fe.loading.we):
            m.d.sync += pay_done.bit_select(fe.loading.bank, 1).eq(0)
        with m.If(src_valid & src_ready & src.end):
            m.d.sync += pay_done.bit_select(src.tag, 1).eq(1)

        en = Signal(attrs={"keep": 1})              # the whole datapath advances (a register)
        # copies of `en` (registers made from the same next value): one per lane for its ring
        # registers, multiplier and state read, so the control logic's `en` drives few loads
        en_lane = [Signal(name=f"en_lane{j}", attrs={"keep": 1}) for j in range(K)]
        error = Signal(ErrorCode)
        dp_flags = Signal(2)                        # (payload length, final state) checks
        halt = Signal()
        m.d.comb += [halt.eq(error != ErrorCode.NONE), fe.halt.eq(halt)]
        # The datapath's check flags are registered before the sticky error register (the
        # parser's already are): keeps them off the paths into `halt` and `en`.
        dp_flags_r = Signal(2)
        m.d.sync += dp_flags_r.eq(dp_flags)
        dp_error_r = Mux(dp_flags_r[0], ErrorCode.PAYLOAD_LENGTH,
                         Mux(dp_flags_r[1], ErrorCode.FINAL_STATE, ErrorCode.NONE))
        with m.If(~halt):
            with m.If(fe.error != ErrorCode.NONE):
                m.d.sync += error.eq(fe.error)
            with m.Elif(dp_error_r != ErrorCode.NONE):
                m.d.sync += error.eq(dp_error_r)

        # ---- layer banks ------------------------------------------------------------
        valid = Signal(2)                           # loaded, not yet retired
        started = Signal(2)                         # the sequencer has begun it
        # Per bank, what the sequencer needs, precomputed when the header arrives: the
        # layer's beats T = max(1, ceil(count / K)) less one, the lanes used by its last beat, and
        # the flags of its first beat (T == 1, T <= D, T == D + 1).
        TB = 33 - (K.bit_length() - 1)
        beats1 = Array(Signal(TB, name=f"beats1_{b}") for b in range(2))
        tail = Array(Signal(range(K + 1), name=f"tail{b}") for b in range(2))
        first_flags = Array(Signal(3, name=f"first_flags{b}") for b in range(2))
        second_flags = Array(Signal(3, name=f"second_flags{b}") for b in range(2))
        base = Array(Signal(signed(16), name=f"base{b}") for b in range(2))
        # Every write from the parser into the banks is registered (all by one clock, so
        # `ready` still follows the last table/state write): keeps the parser's FSM off the
        # paths into the tables.
        fields, freq, slot, state, ready = (Signal.like(getattr(fe, n), name=f"{n}_w")
                                            for n in ("fields", "freq", "slot", "state", "ready"))
        m.d.sync += [fields.eq(fe.fields), freq.eq(fe.freq), slot.eq(fe.slot), state.eq(fe.state),
                     ready.eq(fe.ready)]
        n = fields.count
        kb = K.bit_length() - 1
        # n <= c for the small constants below: a zero test of the high bits and a narrow
        # compare each, not a 32-bit carry chain

        def le(c):
            return le_const(n, c)
        with m.If(fields.we):
            b = fields.bank
            m.d.sync += [base[b].eq(fields.base),
                         # ceil(n / K) - 1 = floor((n - 1) / K) for n >= 1
                         beats1[b].eq(Mux(n == 0, 0, (n - 1) >> kb)),
                         tail[b].eq(Mux(n == 0, 0, Mux(n[:kb] == 0, K, n[:kb]) if kb else 1)),
                         first_flags[b].eq(Cat(le(K), le(D * K), ~le(D * K) & le((D + 1) * K))),
                         second_flags[b].eq(Cat(~le(K) & le(2 * K), le((D + 1) * K),
                                                ~le((D + 1) * K) & le((D + 2) * K)))]
        # a layer whose (registered) `ready` is still on its way is not drained yet
        m.d.comb += [fe.bank_busy.eq(valid), fe.drained.eq((valid == 0) & ~ready.we)]

        # with three or more low bits of x >> M multiplied in the fabric (M <= 11 on a MULT18),
        # 3·f is stored next to f, so S2 selects radix-4 multiples of f (0, f, 2f, 3f) per two
        # bits and S3 adds half as many terms (measured: architecture.md, "What is left")
        f3 = p.mul_split >= 3
        fc_layout = data.StructLayout({"f": unsigned(M + 1), "c": unsigned(M),
                                       **({"f3": unsigned(M + 2)} if f3 else {})})
        # f and c: `fc_read="async"` (compare): one LUT-RAM for both banks, read in S2 from the
        # symbol registered in R2. "sync" (and lookup="table"): one memory per bank, both read
        # with the symbol of S1 (block RAM where there is no LUT-RAM, as on iCE40) and the bank
        # chosen in S2 from the read registers.
        if p.fc_sync:
            fc_r = []
            for b in range(2):
                m.submodules[f"fc_mem{b}"] = mem = Memory(shape=fc_layout, depth=1 << SB, init=[])
                fc_w = mem.write_port()
                m.d.comb += [fc_w.addr.eq(freq.index), fc_w.data.f.eq(freq.f), fc_w.data.c.eq(freq.c),
                             fc_w.en.eq(freq.we & (freq.bank == b))]
                if f3:
                    m.d.comb += fc_w.data.f3.eq(freq.f + (freq.f << 1))
                fc_r.append([mem.read_port(domain="sync") for _ in range(K)])
        else:
            m.submodules.fc_mem = fc_mem = Memory(shape=fc_layout, depth=2 << SB, init=[])
            fc_w = fc_mem.write_port()
            m.d.comb += [fc_w.addr.eq(Cat(freq.index, freq.bank)), fc_w.data.f.eq(freq.f),
                         fc_w.data.c.eq(freq.c), fc_w.en.eq(freq.we)]
            if f3:
                m.d.comb += fc_w.data.f3.eq(freq.f + (freq.f << 1))
            fc_r = [fc_mem.read_port(domain="comb") for _ in range(K)]

        state_r = []
        for j in range(K):
            mem = Memory(shape=32, depth=2 << WB, init=[])
            m.submodules[f"state_mem{j}"] = mem
            w = mem.write_port()
            m.d.comb += [w.addr.eq(Cat(state.way, state.bank)), w.data.eq(state.x),
                         w.en.eq(state.we & (state.lane == j))]
            state_r.append(mem.read_port())

        if p.lookup == "table":
            R, rb = p.fill_rate, p.fill_rate.bit_length() - 1
            m.submodules.slot_mem = slot_mem = Memory(shape=unsigned(R * SB), depth=2 << (M - rb), init=[])
            sw = slot_mem.write_port(granularity=SB)
            m.d.comb += [sw.addr.eq(Cat(slot.index, slot.bank)), sw.data.eq(Cat(*[slot.sym] * R)),
                         sw.en.eq(Mux(slot.we, slot.mask, 0))]
            slot_r = [slot_mem.read_port() for _ in range(K)]
        else:
            # Cumulative table for the comparators: the parser fills the shadow copy, which
            # becomes active when the layer's first beat enters the datapath.
            shadow = [Signal(M, name=f"shadow_cum{k}") for k in range(S)]
            shadow_mask = Signal(S)
            active = [Signal(M, name=f"cum{k}") for k in range(S)]
            active_mask = Signal(S)
            shadow_busy = Signal()
            m.d.comb += fe.shadow_busy.eq(shadow_busy)
            with m.If(fields.we):
                m.d.sync += shadow_mask.eq(0)
            with m.If(freq.we):
                m.d.sync += [Array(shadow)[freq.index].eq(freq.c),
                             shadow_mask.bit_select(freq.index, 1).eq(~freq.full)]
            with m.If(ready.we):
                m.d.sync += shadow_busy.eq(1)

        with m.If(ready.we):
            m.d.sync += valid.bit_select(ready.bank, 1).eq(1)

        # ---- sequencer: one beat (K symbol positions) per clock -----------------------
        meta_layout = data.StructLayout({
            "valid": 1, "bank": 1, "init": 1, "way": unsigned(WB), "first": 1, "last": 1,
            "count": range(K + 1), "act": K, "lastuse": K})
        cur_active = Signal()
        cur_bank = Signal()
        nxt_bank = Signal()
        bl = Signal(TB)                              # beats left in the current layer
        flags = Signal(3)                            # (bl == 1, bl <= D, bl == D + 1) for the next beat
        ctail = Signal(range(K + 1))
        t = Signal(range(D + 1))                     # beat index, saturating at D
        # nxt_rdy: bank nxt_bank holds a loaded layer not yet started (kept as a register)
        nxt_rdy = Signal()
        start_new = Signal()
        # a layer whose `ready` arrives now may start now (one clock earlier than via nxt_rdy);
        # `hit` (ready.we and ready.bank == nxt_bank) is made a clock ahead from the parser's
        # strobe, so start_new (which drives the initial-state read address) is one LUT
        hit = Signal()
        m.d.comb += start_new.eq(~cur_active & (nxt_rdy | hit))
        s_flags = Mux(start_new, first_flags[nxt_bank], flags)
        s_tail = Mux(start_new, tail[nxt_bank], ctail)
        s_t = Mux(start_new, 0, t)
        last, le_d, eq_d1 = s_flags[0], s_flags[1], s_flags[2]
        issue = Signal(meta_layout)
        act = [~last | (s_tail > j) for j in range(K)]
        m.d.comb += [
            issue.valid.eq(cur_active | start_new),
            issue.bank.eq(Mux(start_new, nxt_bank, cur_bank)),
            issue.init.eq(s_t < D),
            issue.way.eq(s_t),
            issue.first.eq(s_t == 0),
            issue.last.eq(last),
            issue.count.eq(Mux(last, s_tail, K)),
            issue.act.eq(Cat(*act)),
            # a lane's state is used again D beats later unless the layer ends first
            issue.lastuse.eq(Cat(*[act[j] & (le_d | (eq_d1 & (s_tail <= j))) for j in range(K)])),
        ]
        q = Signal(meta_layout)
        with m.If(en):
            m.d.sync += q.eq(issue)
            with m.If(issue.valid):
                # the next beat's flags, compared before the start/continue mux
                # (the decrement is made before the start/continue mux, off start_new's path)
                m.d.sync += [bl.eq(Mux(start_new, beats1[nxt_bank], bl - 1)),
                             flags.eq(Mux(start_new, second_flags[nxt_bank], Cat(bl == 2, bl <= D + 1, bl == D + 2))),
                             ctail.eq(s_tail), t.eq(Mux(s_t == D, D, s_t + 1)),
                             cur_bank.eq(issue.bank), cur_active.eq(~last)]
            with m.If(start_new):
                m.d.sync += [started.bit_select(nxt_bank, 1).eq(1), nxt_bank.eq(~nxt_bank)]
        # the other bank is either in flight (started), free, or loaded now or earlier
        other_rdy = ((valid.bit_select(~nxt_bank, 1) | (ready.we & (ready.bank != nxt_bank)))
                     & ~started.bit_select(~nxt_bank, 1))
        with m.If(en & start_new):
            m.d.sync += nxt_rdy.eq(other_rdy)
        with m.Elif(hit):
            m.d.sync += nxt_rdy.eq(1)
        m.d.sync += hit.eq(fe.ready.we & (fe.ready.bank == (nxt_bank ^ (en & start_new))))
        for j in range(K):
            # read a clock ahead (a synchronous read: block RAM where there is no LUT-RAM, as on
            # iCE40): the initial state joins the ring as the beat enters R0. The parser makes
            # a layer ready only after its last state write has landed (Frontend: `few`).
            m.d.comb += [state_r[j].addr.eq(Cat(issue.way, issue.bank)), state_r[j].en.eq(en_lane[j])]
        if p.lookup == "compare":
            with m.If(en & q.valid & q.first):
                m.d.sync += [Cat(*active).eq(Cat(*shadow)), active_mask.eq(shadow_mask), shadow_busy.eq(0)]

        # ---- the lane datapath: R0 .. R5, a ring of 6 registers per state -----------------
        def stage(name, **fields):
            return {k: [Signal(shape, name=f"{name}_{k}{j}") for j in range(K)] for k, shape in fields.items()}

        # With more ways than the ring's 6 stages, the first extra way is a stage S4b between S4
        # and S5: each lane's "needs a word" flag is registered before the lanes' word positions
        # are counted across lanes (the path that limits K >= 4 otherwise: multiplier -> flag ->
        # count, across lanes placed far apart). Further ways are a delay at the ring's closure.
        r0m, r1m, r2m, r3m, r4m, r5m = (Signal(meta_layout, name=f"r{n}_meta") for n in range(6))
        r4bm = Signal(meta_layout, name="r4b_meta") if xs else r4m
        r4cm = Signal(meta_layout, name="r4c_meta") if xc else r4bm
        with m.If(en):
            m.d.sync += [r0m.eq(q), r1m.eq(r0m), r2m.eq(r1m), r3m.eq(r2m), r4m.eq(r3m), r5m.eq(r4cm)]
            if xs:
                m.d.sync += r4bm.eq(r4m)
            if xc:
                m.d.sync += r4cm.eq(r4bm)
        r0 = stage("r0", x=32)
        # R1 holds the lookup's result: compare the thermometer code (`therm`), table the slot-RAM
        # word of `fill_rate` symbols (`s`), from which S1 selects the symbol
        r1 = stage("r1", hi=32 - M, slot=M, **({"therm": max(S - 1, 1)} if p.lookup == "compare"
                                                 else {"s": SB * p.fill_rate}))
        r2 = stage("r2", hi=32 - M, slot=M)
        L = p.mul_split                             # x >> M = hh * 2**L + hl; DSP: f * hh
        # R3: slot - c, and f with the low bits hl (L <= 2), or (L >= 3, `f3`) the multiples of f
        # for hl, two bits each (the last group of an odd L one bit)
        groups = [(k, min(2, L - k)) for k in range(0, L, 2)]
        r3 = stage("r3", **({f"m{k}": M + 2 for k, _ in groups} if f3 else {"hl": max(L, 1), "f": M + 1}), r=M)
        r4 = stage("r4", q=M + 2 + L)
        # ring window with S4b: the final-state test's comparisons of x are made in S4b, so in S5
        # only the word's "is 0" flag, read from the ring's RAM, is on the path to the check
        early_at_l = ring and xs
        r5 = stage("r5", x=32, need=1, pre=range(K + 1), **({"x_one": 1, "x_l": 1} if early_at_l else {}))
        r4b = stage("r4b", x=32, need=1) if xs else None
        r4c = stage("r4c", x=32, need=1, pre=range(K + 1)) if xc else None
        r2s = None if p.fc_sync else stage("r2", s=SB)["s"]
        # S2's f and c, per lane
        fc = ([fc_layout(Mux(r2m.bank, fc_r[1][j].data, fc_r[0][j].data)) for j in range(K)] if p.fc_sync
              else [fc_r[j].data for j in range(K)])

        mul = []
        for j in range(K):
            mul.append(Multiplier(32 - M - L, M + 1, p.multiplier))
            m.submodules[f"mul{j}"] = mul[j]
            m.d.comb += [mul[j].a.eq(r2["hi"][j][L:]), mul[j].b.eq(fc[j].f), mul[j].ce.eq(en_lane[j])]
        need = r5["need"]                           # lane j renormalises in S5 (valid, active)
        need4 = [Signal(name=f"need4_{j}") for j in range(K)]
        sym = []                                    # the lanes' output symbols (see "output")
        xn = [Signal(32, name=f"xn{j}") for j in range(K)]
        for j in range(K):
            x0 = r0["x"][j]
            slot0, hi0 = x0[:M], x0[M:]
            # S0: symbol lookup, part 1 (table: the slot RAM was read with the state entering
            # R0, see the ring closure; its output word goes straight into R1, the symbol being
            # selected from it in S1: the RAM's clock-to-out leaves no room for the select)
            if p.lookup == "compare":
                therm = Cat(*[active_mask[k] & (slot0 >= active[k]) for k in range(1, S)]) if S > 1 else Const(0)
            else:
                s0 = slot_r[j].data             # the table word; its symbol is selected in S1
            # S1: symbol index (fc_read="sync": the f/c read is issued with it)
            if p.lookup == "compare":
                s1 = _encode_thermometer(r1["therm"][j], SB) if S > 1 else Const(0, SB)
            else:
                s1 = r1["s"][j].word_select(r1["slot"][j][:rb], SB) if rb else r1["s"][j]
            sym.append(s1)
            if p.fc_sync:
                for b in range(2):
                    m.d.comb += [fc_r[b][j].addr.eq(s1), fc_r[b][j].en.eq(en_lane[j])]
            else:
                m.d.comb += fc_r[j].addr.eq(Cat(r2s[j], r2m.bank))
            with m.If(en_lane[j]):
                m.d.sync += [r1["hi"][j].eq(hi0), r1["slot"][j].eq(slot0)]
                if p.lookup == "compare":
                    m.d.sync += r1["therm"][j].eq(therm)
                else:
                    m.d.sync += r1["s"][j].eq(s0)
                m.d.sync += [r2["hi"][j].eq(r1["hi"][j]), r2["slot"][j].eq(r1["slot"][j])]
                if not p.fc_sync:                   # sync: f/c were read with R1's symbol
                    m.d.sync += r2s[j].eq(s1)
                # S2: f and x >> M into the multiplier's input registers; slot - c
                if not f3:
                    m.d.sync += r3["f"][j].eq(fc[j].f)
                m.d.sync += r3["r"][j].eq(r2["slot"][j] - fc[j].c)
                if f3:
                    for k, w in groups:             # the multiple of f for hl[k:k + w]
                        sel, f_ = r2["hi"][j][k:k + w], fc[j].f
                        mult = Mux(sel[0], f_, 0) if w == 1 else \
                            Array([Const(0, M + 2), f_, f_ << 1, fc[j].f3])[sel]
                        m.d.sync += r3[f"m{k}"][j].eq(mult)
                elif L:
                    m.d.sync += r3["hl"][j].eq(r2["hi"][j][:L])
                # S3: the DSP multiplies; the fabric adds the low partial products and slot - c
                acc = r3["r"][j]
                if f3:
                    for k, _ in groups:
                        acc = acc + (r3[f"m{k}"][j] << k)
                else:
                    for k in range(L):
                        acc = acc + Mux(r3["hl"][j][k], r3["f"][j] << k, 0)
                m.d.sync += r4["q"][j].eq(acc)
                # S4: add; renormalise when x1 < 2**16, decided from the low 16-bit carry and
                # zero tests of the high bits instead of the full 32-bit sum
                pl, q4 = mul[j].p << L, r4["q"][j]
                x1 = (pl + q4)[:32]
                low_carry = (pl[:16] + q4[:16])[16]
                rn = (pl[16:32] == 0) & (q4[16:] == 0 if len(q4) > 16 else Const(1)) & ~low_carry
                # the new state and its flag through S4b (and S4c) into R5
                x_, need_ = x1, need4[j]
                for st in [r for r in (r4b, r4c) if r is not None]:
                    m.d.sync += [st["x"][j].eq(x_), st["need"][j].eq(need_)]
                    x_, need_ = st["x"][j], st["need"][j]
                m.d.sync += [r5["x"][j].eq(x_), r5["need"][j].eq(need_)]
                if early_at_l:                      # from the stage before R5's register
                    m.d.sync += [r5["x_one"][j].eq(x_[:16] == 1), r5["x_l"][j].eq(x_ == RANS_L)]
            m.d.comb += need4[j].eq(r4m.valid & r4m.act[j] & rn)
        # S4 (S4b) also counts the words the lanes < j will take (lane j's word position in the
        # window head), so S5's word select and the window's take start from registers
        # (with S4c registered once more: `pre_in` is what enters S5)
        pre4 = Const(0, range(K + 1))
        total = Signal(range(K + 1))                # words the lanes take in S5
        total4c = Signal(range(K + 1)) if xc else None
        for j in range(K + 1):
            r5_pre = r5["pre"][j] if j < K else total
            pre_in = pre4
            if xc:
                pre_in = r4c["pre"][j] if j < K else total4c
                with m.If(en):
                    m.d.sync += pre_in.eq(pre4)
            with m.If(en):
                m.d.sync += r5_pre.eq(pre_in)
            if ring:                                # the ring reads S5's words from registers
                m.d.comb += win.offset[j].eq(Mux(en, pre_in, r5_pre))
            if j < K:
                pre4 = pre4 + (r4b["need"][j] if xs else need4[j])
        total_in = pre_in                           # the count of the beat entering S5

        # S5: renormalise from the word window; lane j takes the word after those of lanes < j.
        # Each word carries its layer's bank as a tag: a lane reaching a word of the next
        # layer, or needing one after its layer's payload was all delivered, is an overrun.
        overrun = Signal()
        ovr = []
        at_l = []
        for j in range(K):
            prefix = r5["pre"][j]
            if ring:
                word = win.word[j]
            else:
                word = select([win.head[k] for k in range(j + 1)], prefix) if j else win.head[0]
            m.d.comb += xn[j].eq(Mux(need[j], Cat(word[:16], r5["x"][j][:16]), r5["x"][j]))
            # the new state is L = 2**16 exactly: tested on the sources of the mux above
            word_zero = word[17] if ring else word[:16] == 0    # the ring stores the zero test
            if early_at_l:
                at_l.append(Mux(need[j], r5["x_one"][j] & word_zero, r5["x_l"][j]))
            else:
                at_l.append(Mux(need[j], (r5["x"][j][:16] == 1) & word_zero, r5["x"][j] == RANS_L))
            here = win.occ.bit_select(prefix, 1)             # prefix < level
            ovr.append(need[j] & Mux(here, word[16] != r5m.bank, pay_done.bit_select(r5m.bank, 1)))
        m.d.comb += overrun.eq(Cat(*ovr).any())
        # after the layer's last beat no word of it may remain (its last beat only proceeds
        # once the end of its payload has reached the window, see `en` below)
        nxt_word = win.word[K] if ring else select([win.head[k] for k in range(K + 1)], total)
        underrun = win.occ.bit_select(total, 1) & (nxt_word[16] == r5m.bank)   # total < level

        m.submodules.out_buf = obuf = OutputBuffer(output_layout(p))
        # `en` is a register (it drives every stage's clock enable), so whether the next
        # clock may advance is decided now, from registers only:
        # - the output buffer holds at most one beat (room for one more after this clock);
        # - the beat that will sit in S5 has its words: the window holds 2K words now (at
        #   least K after this clock's take) if we advance, K if we stall; or the end of its
        #   layer's payload is in the window (a shortfall is then an overrun, flagged
        #   below). A layer's last beat always waits for that end, so a layer never retires
        #   before its payload is complete. `pay_done` is a clock old here: can only delay.
        def ok(r, words):
            done = pay_done.bit_select(r.bank, 1)
            return ~r.valid | done | (words & ~r.last)
        ok_go = ok(r4cm, win.occ[2 * K - 1])         # level >= 2K
        ok_stall = ok(r5m, win.occ[K - 1])          # level >= K
        halt_next = halt | (fe.error != ErrorCode.NONE) | dp_flags_r.any()
        if xs:
            go = Signal()
            m.d.comb += go.eq(obuf.room & Mux(en, ok_go, ok_stall))
            en_next = ~halt_next & go
            # the window's take, Mux(en, total, 0), as a register of its own (made from next
            # clock's `en` and `total`): keeps `en`'s fan-out off the window's shifter. Only with
            # S4b, where the count comes from registers: else it would join the multiplier's path.
            # The error flags stay off it: after an error (sticky until reset) the window's
            # contents no longer matter.
            takes = [Signal.like(total, name=f"take{c}", attrs={"keep": 1}) for c in range(take_copies)]
            take_next = Mux(go, Mux(en, total_in, total), 0)
            m.d.sync += [t.eq(take_next) for t in takes]
            m.d.comb += win.take.eq(takes[0])
            m.d.comb += [win.take_dup[c - 1].eq(takes[c]) for c in range(1, take_copies)]
        else:
            en_next = ~halt_next & obuf.room & Mux(en, ok_go, ok_stall)
            m.d.comb += win.take.eq(Mux(en, total, 0))

        m.d.sync += [e.eq(en_next) for e in [en, *en_lane]]

        # ring closure, with extra delay when the stream has more ways than the pipeline
        for j in range(K):
            back = xn[j]                            # the state going round again
            for d in range(D - PIPELINE_DEPTH - xs - xc):
                reg = Signal(32, name=f"delay{j}_{d}")
                with m.If(en_lane[j]):
                    m.d.sync += reg.eq(back)
                back = reg
            x_in = Mux(q.init, state_r[j].data, back)
            with m.If(en_lane[j]):
                m.d.sync += r0["x"][j].eq(x_in)
            if p.lookup == "table":                 # slot RAM read in step with R0 (data in S0)
                m.d.comb += [slot_r[j].addr.eq(Cat(x_in[rb:M], q.bank)), slot_r[j].en.eq(en)]

        # checks: final states, payload length (registered, dp_flags_r, before the error register;
        # with S4b also per lane before they are combined across lanes: the next K >= 4 path)
        if xs:
            bad_l, ovr_l = Signal(K), Signal(K + 1)
            m.d.sync += [bad_l.eq(Cat(*[en & r5m.valid & r5m.lastuse[j] & ~at_l[j] for j in range(K)])),
                         ovr_l.eq(Cat(*[r5m.valid & o for o in ovr], r5m.valid & r5m.last & underrun))]
            m.d.comb += dp_flags.eq(Cat(ovr_l.any(), bad_l.any()))
        else:
            bad_final = Cat(*[r5m.lastuse[j] & ~at_l[j] for j in range(K)]).any()
            m.d.comb += dp_flags.eq(Cat(r5m.valid & (overrun | (r5m.last & underrun)),
                                        en & r5m.valid & bad_final))
        with m.If(en & r5m.valid):
            with m.If(r5m.last):                    # layer retired: its bank is free
                m.d.sync += [valid.bit_select(r5m.bank, 1).eq(0), started.bit_select(r5m.bank, 1).eq(0)]

        # output: a beat's symbols are known in S1 (compare: decoded from the registered
        # thermometer codes; table: selected from the registered slot-RAM word), so they leave from there,
        # 4 clocks before the ring has finished the beat (its checks follow in S5)
        # (the layer's base is selected by bank a stage early, into R1 next to the symbol)
        beat = Signal(output_layout(p))
        base1 = Signal(signed(p.code_bits))
        with m.If(en):
            m.d.sync += base1.eq(base[r0m.bank])
        for j in range(K):
            m.d.comb += beat.codes[j].eq(sym[j] + base1)
        m.d.comb += [beat.count.eq(r1m.count), beat.last.eq(r1m.last),
                     obuf.w_data.eq(beat), obuf.w_en.eq(en & r1m.valid)]
        wiring.connect(m, obuf.o, wiring.flipped(self.o))

        # status
        busy = Signal()
        done = Signal()
        with m.If(fe.stream_start):
            m.d.sync += [busy.eq(1), done.eq(0)]
        with m.If(fe.stream_end):
            m.d.sync += [busy.eq(0), done.eq(1)]
        m.d.comb += [self.status.busy.eq(busy & ~halt), self.status.done.eq(done | halt),
                     self.status.error.eq(error)]
        return m
