"""Streaming rANS weight decoder: K lanes, one weight per lane per clock."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.rans import RANS_L
from .frontend import Frontend, input_layout
from .params import PIPELINE_DEPTH, DecoderParams, ErrorCode
from .window import WordWindow

__all__ = ["Decoder", "output_layout", "status_layout"]

status_layout = data.StructLayout({"busy": 1, "done": 1, "error": ErrorCode})

OUTPUT_FIFO_DEPTH = 4


def output_layout(params: DecoderParams) -> data.StructLayout:
    """Output beat: ``count`` valid codes (lanes ``0..count-1``); ``last`` ends a layer."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(params.code_bits), params.lanes),
                              "count": range(params.lanes + 1), "last": 1})


def _encode_thermometer(therm, width):
    """Index of the highest set bit + 1 of a thermometer code ``therm[0..n-1]`` (0 if none)."""
    n = len(therm)
    onehot = [therm[k] & ~(therm[k + 1] if k + 1 < n else Const(0)) for k in range(n)]
    bits = []
    for b in range(width):
        terms = [onehot[k] for k in range(n) if (k + 1) >> b & 1]
        bit = Const(0)
        for t in terms:
            bit = bit | t
        bits.append(bit)
    return Cat(*bits)


class Decoder(wiring.Component):
    """Decodes a v1 weight stream into signed weight codes, ``lanes`` per clock.

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
    Latency: the first weights leave ~10 clocks after the first layer's header
    is complete (see ``docs/decoder.md`` for measured figures).
    Backpressure: any ``i.valid`` / ``o.ready`` pattern; ``o`` holds its
    payload while not ready; the whole datapath stalls together.
    Errors: each per-layer check (tables, header check word, final states,
    payload length) is flagged on ``status.error`` no later than the clock
    the layer's ``last`` beat appears on ``o``; parse errors within one clock
    of the offending word.
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

        m.submodules.window = win = WordWindow(p.window_depth, K, p.words_per_beat)
        m.submodules.frontend = fe = Frontend(p, win.push_layout)
        wiring.connect(m, wiring.flipped(self.i), fe.i)
        wiring.connect(m, fe.push, win.push)

        en = Signal()                               # the whole datapath advances
        error = Signal(ErrorCode)
        dp_error = Signal(ErrorCode)
        halt = Signal()
        m.d.comb += [halt.eq(error != ErrorCode.NONE), fe.halt.eq(halt)]
        with m.If(~halt):
            with m.If(fe.error != ErrorCode.NONE):
                m.d.sync += error.eq(fe.error)
            with m.Elif(dp_error != ErrorCode.NONE):
                m.d.sync += error.eq(dp_error)

        # ---- layer banks ------------------------------------------------------------
        valid = Signal(2)                           # loaded, not yet retired
        started = Signal(2)                         # the sequencer has begun it
        count = Array(Signal(32, name=f"count{b}") for b in range(2))
        npay = Array(Signal(32, name=f"npay{b}") for b in range(2))
        base = Array(Signal(signed(16), name=f"base{b}") for b in range(2))
        with m.If(fe.fields.we):
            m.d.sync += [count[fe.fields.bank].eq(fe.fields.count), npay[fe.fields.bank].eq(fe.fields.npay),
                         base[fe.fields.bank].eq(fe.fields.base)]
        m.d.comb += [fe.bank_busy.eq(valid), fe.drained.eq(valid == 0)]

        fc_layout = data.StructLayout({"f": unsigned(M + 1), "c": unsigned(M)})
        m.submodules.fc_mem = fc_mem = Memory(shape=fc_layout, depth=2 << SB, init=[])
        fc_w = fc_mem.write_port()
        m.d.comb += [fc_w.addr.eq(Cat(fe.freq.index, fe.freq.bank)), fc_w.data.f.eq(fe.freq.f),
                     fc_w.data.c.eq(fe.freq.c), fc_w.en.eq(fe.freq.we)]
        fc_r = [fc_mem.read_port() for _ in range(K)]

        state_r = []
        for j in range(K):
            mem = Memory(shape=32, depth=2 << WB, init=[])
            m.submodules[f"state_mem{j}"] = mem
            w = mem.write_port()
            m.d.comb += [w.addr.eq(Cat(fe.state.way, fe.state.bank)), w.data.eq(fe.state.x),
                         w.en.eq(fe.state.we & (fe.state.lane == j))]
            state_r.append(mem.read_port())

        if p.lookup == "table":
            R, rb = p.fill_rate, p.fill_rate.bit_length() - 1
            m.submodules.slot_mem = slot_mem = Memory(shape=unsigned(R * SB), depth=2 << (M - rb), init=[])
            sw = slot_mem.write_port(granularity=SB)
            m.d.comb += [sw.addr.eq(Cat(fe.slot.index, fe.slot.bank)), sw.data.eq(Cat(*[fe.slot.sym] * R)),
                         sw.en.eq(Mux(fe.slot.we, fe.slot.mask, 0))]
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
            with m.If(fe.fields.we):
                m.d.sync += shadow_mask.eq(0)
            with m.If(fe.freq.we):
                m.d.sync += [Array(shadow)[fe.freq.index].eq(fe.freq.c),
                             shadow_mask.bit_select(fe.freq.index, 1).eq(1)]
            with m.If(fe.ready.we):
                m.d.sync += shadow_busy.eq(1)

        with m.If(fe.ready.we):
            m.d.sync += valid.bit_select(fe.ready.bank, 1).eq(1)

        # ---- sequencer: one beat (K symbol positions) per clock -----------------------
        meta_layout = data.StructLayout({
            "valid": 1, "bank": 1, "init": 1, "way": unsigned(WB), "first": 1, "last": 1,
            "count": range(K + 1), "act": K, "lastuse": K})
        cur_active = Signal()
        cur_bank = Signal()
        nxt_bank = Signal()
        rem = Signal(32)
        t = Signal(range(D + 1))
        start_new = Signal()
        m.d.comb += start_new.eq(~cur_active & valid.bit_select(nxt_bank, 1) & ~started.bit_select(nxt_bank, 1))
        b_rem = Signal(32)
        b_t = Signal(range(D + 1))
        issue = Signal(meta_layout)
        m.d.comb += [
            b_rem.eq(Mux(start_new, count[nxt_bank], rem)),
            b_t.eq(Mux(start_new, 0, t)),
            issue.valid.eq(cur_active | start_new),
            issue.bank.eq(Mux(start_new, nxt_bank, cur_bank)),
            issue.init.eq(b_t < D),
            issue.way.eq(b_t),
            issue.first.eq(b_t == 0),
            issue.last.eq(b_rem <= K),
            issue.count.eq(Mux(b_rem <= K, b_rem, K)),
            issue.act.eq(Cat(*[b_rem > j for j in range(K)])),
            issue.lastuse.eq(Cat(*[(b_rem > j) & (b_rem <= D * K + j) for j in range(K)])),
        ]
        q = Signal(meta_layout)
        with m.If(en):
            m.d.sync += q.eq(issue)
            with m.If(issue.valid):
                m.d.sync += [rem.eq(b_rem - K), t.eq(Mux(b_t == D, D, b_t + 1)),
                             cur_bank.eq(issue.bank), cur_active.eq(~issue.last)]
            with m.If(start_new):
                m.d.sync += [started.bit_select(nxt_bank, 1).eq(1), nxt_bank.eq(~nxt_bank)]
        for j in range(K):
            m.d.comb += [state_r[j].addr.eq(Cat(q.way, q.bank)), state_r[j].en.eq(en)]
        if p.lookup == "compare":
            with m.If(en & q.valid & q.first):
                m.d.sync += [Cat(*active).eq(Cat(*shadow)), active_mask.eq(shadow_mask), shadow_busy.eq(0)]

        # ---- the lane datapath: R0 .. R5, a ring of 6 registers per state -----------------
        def stage(name, **fields):
            return {k: [Signal(shape, name=f"{name}_{k}{j}") for j in range(K)] for k, shape in fields.items()}

        r0m, r1m, r2m, r3m, r4m, r5m = (Signal(meta_layout, name=f"r{n}_meta") for n in range(6))
        with m.If(en):
            m.d.sync += [r0m.eq(q), r1m.eq(r0m), r2m.eq(r1m), r3m.eq(r2m), r4m.eq(r3m), r5m.eq(r4m)]
        r0 = stage("r0", x=32)
        r1 = stage("r1", hi=32 - M, slot=M, therm=max(S - 1, 1))
        r2 = stage("r2", hi=32 - M, slot=M)
        r3 = stage("r3", hi=32 - M, f=M + 1, r=M, s=SB)
        r4 = stage("r4", p=32, r=M, s=SB)
        r5 = stage("r5", x=32, rn=1, s=SB)
        r2s = stage("r2", s=SB)["s"]

        need = [Signal(name=f"need{j}") for j in range(K)]
        xn = [Signal(32, name=f"xn{j}") for j in range(K)]
        for j in range(K):
            x0 = Mux(r0m.init, state_r[j].data, r0["x"][j])
            slot0, hi0 = x0[:M], x0[M:]
            # S0: symbol lookup, part 1
            if p.lookup == "compare":
                therm = Cat(*[active_mask[k] & (slot0 >= active[k]) for k in range(1, S)]) if S > 1 else Const(0)
            else:
                m.d.comb += [slot_r[j].addr.eq(Cat(slot0[rb:], r0m.bank)), slot_r[j].en.eq(en)]
            # S1: symbol index, f/c read issued
            if p.lookup == "compare":
                s1 = _encode_thermometer([r1["therm"][j][k] for k in range(S - 1)], SB) if S > 1 else Const(0, SB)
            else:
                s1 = slot_r[j].data.word_select(r1["slot"][j][:rb], SB) if rb else slot_r[j].data
            m.d.comb += [fc_r[j].addr.eq(Cat(s1, r1m.bank)), fc_r[j].en.eq(en)]
            fc = fc_r[j].data
            with m.If(en):
                m.d.sync += [r1["hi"][j].eq(hi0), r1["slot"][j].eq(slot0)]
                if p.lookup == "compare" and S > 1:
                    m.d.sync += r1["therm"][j].eq(therm)
                m.d.sync += [r2["hi"][j].eq(r1["hi"][j]), r2["slot"][j].eq(r1["slot"][j]), r2s[j].eq(s1)]
                # S2: f and slot - c into registers that feed the multiplier
                m.d.sync += [r3["hi"][j].eq(r2["hi"][j]), r3["f"][j].eq(fc.f),
                             r3["r"][j].eq(r2["slot"][j] - fc.c), r3["s"][j].eq(r2s[j])]
                # S3: multiply
                m.d.sync += [r4["p"][j].eq(r3["hi"][j] * r3["f"][j]), r4["r"][j].eq(r3["r"][j]),
                             r4["s"][j].eq(r3["s"][j])]
                # S4: add, renormalisation decision
                x1 = (r4["p"][j] + r4["r"][j])[:32]
                m.d.sync += [r5["x"][j].eq(x1), r5["rn"][j].eq(x1[16:] == 0), r5["s"][j].eq(r4["s"][j])]
            m.d.comb += need[j].eq(r5m.valid & r5m.act[j] & r5["rn"][j])

        # S5: renormalise from the word window; lane j takes the word after those of lanes < j
        total = Signal(range(K + 1))
        prefix = Const(0, range(K + 1))
        for j in range(K):
            word = Array([win.head[k] for k in range(j + 1)])[prefix] if j else win.head[0]
            m.d.comb += xn[j].eq(Mux(need[j], Cat(word, r5["x"][j][:16]), r5["x"][j]))
            prefix = prefix + need[j]
        m.d.comb += total.eq(prefix)

        m.submodules.out_fifo = ofifo = SyncFIFOBuffered(width=Shape.cast(output_layout(p)).width,
                                                         depth=OUTPUT_FIFO_DEPTH)
        m.d.comb += en.eq(~halt & ofifo.w_rdy & (total <= win.level))
        m.d.comb += win.take.eq(Mux(en, total, 0))

        # ring closure, with extra delay when the stream has more ways than the pipeline
        for j in range(K):
            ring = xn[j]
            for d in range(D - PIPELINE_DEPTH):
                reg = Signal(32, name=f"delay{j}_{d}")
                with m.If(en):
                    m.d.sync += reg.eq(ring)
                ring = reg
            with m.If(en):
                m.d.sync += r0["x"][j].eq(ring)

        # checks: final states, payload length
        wl = Signal(32)
        wl_cur = Signal(32)
        m.d.comb += wl_cur.eq(Mux(r5m.first, npay[r5m.bank], wl))
        bad_final = Cat(*[r5m.lastuse[j] & (xn[j] != RANS_L) for j in range(K)]).any()
        with m.If(r5m.valid & ((total > wl_cur) | (r5m.last & (wl_cur != total)))):
            m.d.comb += dp_error.eq(ErrorCode.PAYLOAD_LENGTH)
        with m.Elif(en & r5m.valid & bad_final):
            m.d.comb += dp_error.eq(ErrorCode.FINAL_STATE)
        with m.If(en & r5m.valid):
            m.d.sync += wl.eq(wl_cur - total)
            with m.If(r5m.last):                    # layer retired: its bank is free
                m.d.sync += [valid.bit_select(r5m.bank, 1).eq(0), started.bit_select(r5m.bank, 1).eq(0)]

        # output
        beat = Signal(output_layout(p))
        for j in range(K):
            m.d.comb += beat.codes[j].eq(r5["s"][j] + base[r5m.bank])
        m.d.comb += [beat.count.eq(r5m.count), beat.last.eq(r5m.last),
                     ofifo.w_data.eq(beat), ofifo.w_en.eq(en & r5m.valid),
                     self.o.valid.eq(ofifo.r_rdy), self.o.payload.eq(ofifo.r_data), ofifo.r_en.eq(self.o.ready)]

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
