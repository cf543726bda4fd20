"""Amaranth-simulator block tests of the decoder's components (hw/*.py, composed by `Decoder`).

Each component is driven on its own ports, against a small Python model of what its docstring
promises (latency, throughput, backpressure); the lane against the golden rANS model. The
whole decoder's behaviour is tests/test_sim.py's (Verilator, Icarus).
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from subbit.hw.checks import LayerChecks
from subbit.hw.flow import FlowControl, take_copies
from subbit.hw.lane import Lane, window_word_width
from subbit.hw.output import OutputStage
from subbit.hw.params import PIPELINE_DEPTH, DecoderParams, ErrorCode
from subbit.hw.payload import PayloadFeed
from subbit.hw.sequencer import Sequencer
from subbit.hw.status import Status
from subbit.hw.tables import SymbolTables
from subbit.hw.words import WordPositions
from subbit.model import stream
from subbit.model.errors import SubbitError


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)          # (a combinational block has no clock)
    sim.add_testbench(bench)
    sim.run()


# -- status --------------------------------------------------------------------------------------

def test_status_first_error_sticks_parse_error_a_clock_layer_flags_two():
    """A parse error is on `status.error` the next clock, a layer check flag two clocks later
    (registered first); the first error stays; `halt`, `halt_next`, busy and done as documented."""
    rng = random.Random(1)
    codes = [c.value for c in ErrorCode if c not in (ErrorCode.NONE, ErrorCode.FINAL_STATE, ErrorCode.PAYLOAD_LENGTH)]
    seen = set()
    for run in range(12):                           # a fresh Status each run: the error is sticky
        dut = Status()

        async def bench(ctx):
            error = flags_r = busy = done = 0
            for clock in range(300):
                parse = rng.choice(codes) if rng.random() < 0.01 else 0
                flags = rng.randrange(1, 4) if rng.random() < 0.01 else 0
                start, end = rng.random() < 0.05, rng.random() < 0.05
                ctx.set(dut.parse_error, parse)
                ctx.set(dut.layer_flags.as_value(), flags)
                ctx.set(dut.stream_start, start)
                ctx.set(dut.stream_end, end)
                st = ctx.get(dut.status)
                assert st.error.value == error
                assert ctx.get(dut.halt) == (error != 0)
                assert ctx.get(dut.halt_next) == (error != 0 or parse != 0 or flags_r != 0)
                assert st.busy == (busy and not error) and st.done == (done or error != 0)
                await ctx.tick()
                if not error:
                    error = parse or ((ErrorCode.PAYLOAD_LENGTH.value if flags_r & 1 else ErrorCode.FINAL_STATE.value)
                                      if flags_r else 0)
                flags_r = flags
                busy, done = (0, 1) if end else (1, 0) if start else (busy, done)
            seen.add(error)

        simulate(dut, bench)
    assert {ErrorCode.FINAL_STATE.value, ErrorCode.PAYLOAD_LENGTH.value} & seen and len(seen) > 3


# -- output stage ----------------------------------------------------------------------------------

def test_output_stage_adds_the_beats_layer_base_and_keeps_order():
    """Codes = symbol + the base of the beat's bank (selected while the beat is in R0); beats leave
    in order under random backpressure when the writer follows `room` a clock late."""
    p = DecoderParams(lanes=4, max_symbols=15)
    dut = OutputStage(p)
    rng = random.Random(2)
    cb = p.code_bits

    def signed(v):
        v &= (1 << cb) - 1
        return v - (1 << cb) if v >> (cb - 1) else v

    async def bench(ctx):
        bases = [0, 0]
        base_r1 = 0
        sent, got = [], []
        room_prev = 1
        for clock in range(1500):
            if rng.random() < 0.05:
                b, v = rng.randrange(2), rng.randrange(-7, 1)
                ctx.set(dut.base_write, {"we": 1, "bank": b, "base": v})
            else:
                ctx.set(dut.base_write.we, 0)
                b = None
            en = room_prev and rng.random() < 0.8
            r0_bank = rng.randrange(2)
            valid, count, last = rng.random() < 0.9, rng.randrange(5), rng.random() < 0.2
            syms = [rng.randrange(15) for _ in range(4)]
            ctx.set(dut.en, en)
            ctx.set(dut.r0_bank, r0_bank)
            ctx.set(dut.r1, {"valid": valid, "count": count, "last": last})
            for j, s in enumerate(syms):
                ctx.set(dut.symbols[j], s)
            ctx.set(dut.o.ready, rng.random() < 0.6)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                o = ctx.get(dut.o.payload)
                got.append(([int(c) for c in o.codes], int(o.count), int(o.last)))
            room_prev = ctx.get(dut.room)
            await ctx.tick()
            if en and valid:
                sent.append(([signed(s + base_r1) for s in syms], count, int(last)))
            if en:
                base_r1 = signed(bases[r0_bank])
            if b is not None:
                bases[b] = v
        ctx.set(dut.en, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(5):
            if ctx.get(dut.o.valid):
                o = ctx.get(dut.o.payload)
                got.append(([int(c) for c in o.codes], int(o.count), int(o.last)))
            await ctx.tick()
        assert len(sent) > 500 and got == sent

    simulate(dut, bench)


# -- payload feed ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(lanes=1), dict(lanes=4, word_width=32), dict(lanes=8, word_width=32, prefetch=64),
                                dict(lanes=2, prefetch=0)])
def test_payload_feed_tags_words_and_drops_markers(kw):
    """Under random valid/ready, words reach the window in order, each with its layer's bank (and
    with the ring window its "is 0" flag); marker beats never do; both banks' ends have passed
    at the end."""
    p = DecoderParams(**kw)
    dut = PayloadFeed(p)
    rng = random.Random(len(kw) + p.lanes)
    wpb, ring = p.words_per_beat, p.ring_window
    beats = []                                    # (words, end, tag) as the parser pushes them
    for layer in range(40):
        tag, n = layer % 2, rng.choice([0, 0, 1, 3, 9, 20])
        words = [rng.choice([0, rng.randrange(1, 1 << 16)]) for _ in range(n)]
        if not words:
            beats.append(([], 1, tag))
        for k in range(0, n, wpb):
            beats.append((words[k:k + wpb], int(k + wpb >= n), tag))

    async def bench(ctx):
        got, k = [], 0
        for clock in range(4000):
            if k < len(beats):
                words, end, tag = beats[k]
                ctx.set(dut.i.valid, rng.random() < 0.8)
                ctx.set(dut.i.payload, {"data": words + [0] * (wpb - len(words)), "n": len(words), "end": end,
                                        "tag": tag})
            else:
                ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, rng.random() < 0.7)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                pl = ctx.get(dut.o.payload)
                assert pl.n > 0                       # a marker never reaches the window
                got += [int(pl.data[w]) for w in range(pl.n)]
            took = k < len(beats) and ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            await ctx.tick()
            k += took
        assert k == len(beats)
        assert got == [w | tag << 16 | ((w == 0) << 17 if ring else 0) for words, _, tag in beats for w in words]
        assert ctx.get(dut.payload_done) == 0b11

    simulate(dut, bench)


def test_payload_feed_marks_a_layers_end_and_clears_on_loading():
    """Without the FIFO (prefetch=0): `payload_done[bank]` rises the clock after the bank's end beat
    is taken; a marker beat (a layer without payload) is taken even with the window full; the
    parser's `loading` of the bank clears it."""
    p = DecoderParams(lanes=2, prefetch=0)
    dut = PayloadFeed(p)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"data": [7], "n": 1, "end": 0, "tag": 0})
        await ctx.tick()
        assert ctx.get(dut.payload_done) == 0
        ctx.set(dut.i.payload, {"data": [9], "n": 1, "end": 1, "tag": 0})
        await ctx.tick()
        assert ctx.get(dut.payload_done) == 0b01
        ctx.set(dut.o.ready, 0)                            # a full window: the marker is taken still
        ctx.set(dut.i.payload, {"data": [0], "n": 0, "end": 1, "tag": 1})
        assert ctx.get(dut.i.ready) and not ctx.get(dut.o.valid)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.payload_done) == 0b11
        ctx.set(dut.loading, {"we": 1, "bank": 0})
        await ctx.tick()
        ctx.set(dut.loading.we, 0)
        assert ctx.get(dut.payload_done) == 0b10

    simulate(dut, bench)


# -- sequencer -----------------------------------------------------------------------------------

def expected_beats(n, K, D):
    """The beats of a layer of n weights: (init, way, first, last, count, act, lastuse) each."""
    T = max(1, -(-n // K))
    out = []
    for i in range(T):
        last = i == T - 1
        count = n - K * (T - 1) if last else K
        act = [j < count for j in range(K)] if last else [True] * K

        def act_at(b, j):
            return b < T and (j < (n - K * (T - 1)) if b == T - 1 else True)
        lastuse = [act[j] and not act_at(i + D, j) for j in range(K)]
        out.append((i < D, i if i < D else None, i == 0, last, count, act, lastuse))
    return out


@pytest.mark.parametrize("kw", [dict(lanes=1), dict(lanes=2, ways=7), dict(lanes=4, ways=8),
                                dict(lanes=8, ways=9, window="shift"), dict(lanes=1, tables=4, ways=8)])
def test_sequencer_issues_every_layers_beats_in_order_and_frees_its_bank(kw):
    """Layers of 0..3·K·D weights loaded into alternating banks (each when `bank_busy` says it is
    free) under a random enable: every layer's beats come out in order with the documented
    descriptor (init and way for the first `ways` beats, the last beat's lanes, each lane's last
    use of its state), and reach R5 unchanged."""
    p = DecoderParams(**kw)
    K, D = p.lanes, p.ways
    stages = p.ring_stages
    dut = Sequencer(p)
    rng = random.Random(K * 10 + D)
    counts = [rng.choice([0, 1, K, K + 1, D * K, D * K + 1, (D + 1) * K, (D + 1) * K + 1, 3 * K * D,
                          rng.randrange(3 * K * D)]) for _ in range(60)]

    def beat(v):
        return (bool(v.init), int(v.way) if v.init else None, bool(v.first), bool(v.last), int(v.count),
                [bool(v.act >> j & 1) for j in range(K)], [bool(v.lastuse >> j & 1) for j in range(K)])

    async def bench(ctx):
        issued, at_r5 = [], []
        t_issued, t_r5 = [], []            # the enabled clock of each (the ring's depth between)
        E = 0
        loading = deque()                  # (clock of `ready_soon`, bank) of the layers being loaded
        layer = 0
        pending = [False, False]           # a bank's `ready` is on its way
        for clock in range(6000):
            ctx.set(dut.fields.we, 0)
            ctx.set(dut.ready_soon.we, 0)
            ctx.set(dut.ready.we, 0)
            en = rng.random() < 0.8
            ctx.set(dut.en, en)
            # the parser loads the layers in order, each into its bank once that is free (and no
            # `ready` of its own is on its way there)
            b = layer % 2
            if layer < len(counts) and not loading and not pending[b] and not ctx.get(dut.bank_busy) >> b & 1 \
                    and rng.random() < 0.3:
                ctx.set(dut.fields, {"we": 1, "bank": b, "count": counts[layer]})
                loading.append((clock + rng.randrange(1, 8), b))
                pending[b] = True
                layer += 1
            for t, bank in list(loading):
                if t == clock:
                    ctx.set(dut.ready_soon, {"we": 1, "bank": bank})
                if t + 1 == clock:
                    ctx.set(dut.ready, {"we": 1, "bank": bank})
                    loading.popleft()
                    pending[bank] = False
            issue, r5 = ctx.get(dut.issue), ctx.get(dut.r5)
            if en and issue.valid:
                issued.append((int(issue.bank), beat(issue)))
                t_issued.append(E)
            if en and r5.valid:
                at_r5.append((int(r5.bank), beat(r5)))
                t_r5.append(E)
            E += en
            await ctx.tick()
        # every layer's beats, in order, banks alternating; their descriptors reach R5 unchanged
        want = [(i % 2, b) for i, n in enumerate(counts) for b in expected_beats(n, K, D)]
        assert layer == len(counts) and issued == want
        assert at_r5 == issued
        # each beat reaches R5 through the entering register and every ring stage (S2b, S4b, S4c too)
        assert {b - a for a, b in zip(t_issued, t_r5)} == {stages + 1}

    simulate(dut, bench)


def test_sequencer_starts_a_layer_the_clock_its_ready_arrives():
    """Idle, with `ready_soon` a clock before `ready` (as the frontend makes them): the layer's
    first beat is issued on the clock `ready` arrives; its descriptor reaches R5 7 enabled clocks
    later (issue, R0 .. R5) and the bank is free again the clock after its last beat leaves R5."""
    p = DecoderParams(lanes=2, ways=6)
    dut = Sequencer(p)

    async def bench(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.fields, {"we": 1, "bank": 0, "count": 5})         # 3 beats
        await ctx.tick()
        ctx.set(dut.fields.we, 0)
        assert not ctx.get(dut.issue.valid)
        ctx.set(dut.ready_soon, {"we": 1, "bank": 0})
        await ctx.tick()
        ctx.set(dut.ready_soon.we, 0)
        ctx.set(dut.ready, {"we": 1, "bank": 0})
        assert ctx.get(dut.issue.valid) and ctx.get(dut.issue.first) and ctx.get(dut.issue.init)
        await ctx.tick()
        ctx.set(dut.ready.we, 0)
        assert ctx.get(dut.bank_busy) == 0b01
        for clock in range(1, 12):
            r5 = ctx.get(dut.r5)
            if clock in (7, 8, 9):
                assert r5.valid and r5.last == (clock == 9)
            else:
                assert not r5.valid
            await ctx.tick()
            if clock == 9:
                assert ctx.get(dut.bank_busy) == 0 and ctx.get(dut.drained)

    simulate(dut, bench)


# -- symbol tables -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(lanes=2), dict(lanes=2, prob_bits=10), dict(lanes=4, fc_read="sync"),
                                dict(lanes=2, lookup="table", prob_bits=10), dict(lanes=8)])
def test_symbol_tables_read_back_both_banks(kw):
    """f and c (and 3f at M <= 11) read back per lane for the bank asked (async: the same clock;
    sync: a read issued with the symbol, the bank chosen a clock later); compare: the shadow table
    becomes `cum` with the layer's first beat (eight lanes: on the enabled clock after a first
    beat waited with `en` low), `shadow_busy` from `ready` until then; table: the
    slot RAM word of the slot asked, a clock later."""
    p = DecoderParams(**kw)
    dut = SymbolTables(p)
    K, M, S = p.lanes, p.prob_bits, p.max_symbols
    rng = random.Random(M + K)
    tables = {}
    for b in range(2):
        f = [rng.randrange(1, 60) for _ in range(S)]
        c = [sum(f[:s]) for s in range(S)]
        tables[b] = (f, c)

    async def bench(ctx):
        for b in range(2):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            for s in range(S):
                f, c = tables[b][0][s], tables[b][1][s]
                ctx.set(dut.freq, {"we": 1, "bank": b, "index": s, "f": f, "c": c, "full": 0})
                await ctx.tick()
            ctx.set(dut.freq.we, 0)
            if p.lookup == "table":
                R = p.fill_rate
                for w in range((1 << M) // R):
                    for s in range(S):
                        mask = sum(1 << k for k in range(R) if tables[b][1][s] <= w * R + k < tables[b][1][s] + tables[b][0][s])
                        if mask:
                            ctx.set(dut.slot, {"we": 1, "bank": b, "index": w, "mask": mask, "sym": s})
                            await ctx.tick()
                ctx.set(dut.slot.we, 0)
        if p.lookup == "compare":                    # bank 1's table loaded last: it becomes active
            ctx.set(dut.ready, 1)
            await ctx.tick()
            ctx.set(dut.ready, 0)
            assert ctx.get(dut.shadow_busy)
            ctx.set(dut.entering, {"valid": 1, "first": 1, "bank": 1})
            if p.early_activation:
                # the layer's first beat waits to enter R0 (en low): no activation until `en`
                # will be high (`en_next`); the table is active from the clock on which it is
                await ctx.tick()
                assert ctx.get(dut.shadow_busy)
                ctx.set(dut.en_next, 1)
                await ctx.tick()
                assert ctx.get(dut.shadow_busy)
            ctx.set(dut.en, 1)
            await ctx.tick()
            ctx.set(dut.entering.valid, 0)
            assert not ctx.get(dut.shadow_busy)
            assert [int(v) for v in ctx.get(dut.cum)][1:] == tables[1][1][1:]
            assert ctx.get(dut.cum_mask) == (1 << S) - 1
        ctx.set(dut.en, 1)
        ctx.set(dut.lane_en, (1 << K) - 1)
        for _ in range(40):
            bank = rng.randrange(2)
            syms = [rng.randrange(S) for _ in range(K)]
            for j, s in enumerate(syms):
                ctx.set(dut.fc_symbol[j], s)
            if p.fc_sync:
                await ctx.tick()
            ctx.set(dut.r2_bank, bank)
            for j, s in enumerate(syms):
                fc = ctx.get(dut.fc[j])
                assert (fc.f, fc.c) == (tables[bank][0][s], tables[bank][1][s])
                if p.mul_split >= 3:
                    assert fc.f3 == 3 * tables[bank][0][s]
            if p.lookup == "table":
                rb = p.fill_rate.bit_length() - 1
                slots = [rng.randrange(1 << M) for _ in range(K)]
                for j, slot in enumerate(slots):
                    ctx.set(dut.slot_index[j], slot >> rb)
                ctx.set(dut.entering.bank, bank)
                await ctx.tick()
                for j, slot in enumerate(slots):
                    word = int(ctx.get(dut.slot_word[j]))
                    base = slot >> rb << rb
                    for k in range(p.fill_rate):
                        sym = word >> (k * p.sym_bits) & ((1 << p.sym_bits) - 1)
                        f, c = tables[bank]
                        want = next((s for s in range(S) if c[s] <= base + k < c[s] + f[s]), None)
                        if want is not None:
                            assert sym == want
            await ctx.tick()

    simulate(dut, bench)


# -- lane ---------------------------------------------------------------------------------------------

class LaneHarness(wiring.Component):
    """A lane with the symbol tables it reads (bank 0), its other ports the bench's."""

    def __init__(self, p):
        self.p = p
        self.lane = Lane(p, 0)
        self.tables = SymbolTables(p)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lane = lane = self.lane
        m.submodules.tables = tables = self.tables
        m.d.comb += [tables.en.eq(lane.en), tables.lane_en.eq(lane.en), lane.fc.eq(tables.fc[0]),
                     tables.fc_symbol[0].eq(lane.fc_symbol)]
        if self.p.lookup == "compare" and self.p.classed:    # table 0 (entering_tab, r1_tab: 0)
            m.d.comb += [lane.cum.eq(tables.cum[0]), lane.cum_mask.eq(tables.cum_mask[0])]
        elif self.p.lookup == "compare":
            m.d.comb += [lane.cum.eq(tables.cum), lane.cum_mask.eq(tables.cum_mask)]
        else:
            m.d.comb += [tables.slot_index[0].eq(lane.slot_index), lane.slot_word.eq(tables.slot_word[0])]
        return m


@pytest.mark.parametrize("kw", [dict(), dict(prob_bits=10), dict(prob_bits=14), dict(prob_bits=11, ways=7),
                                dict(lookup="table", prob_bits=10), dict(fc_read="sync", max_symbols=7),
                                dict(window="ring", ways=8), dict(ways=9), dict(tables=2, ways=7),
                                dict(tables=2, ways=9, window="ring"),
                                # S2b with the multiples of f (M <= 11), one group of four and a
                                # one-symbol group, a group of three only
                                dict(tables=2, ways=7, prob_bits=10), dict(tables=4, ways=7, max_symbols=5),
                                dict(tables=2, ways=7, max_symbols=3)])
def test_lane_decodes_a_layer_as_the_golden_model(kw):
    """One lane (K=1) fed a layer coded by the golden model: its initial states, the layer's
    tables, a beat a clock under a random enable, and the payload words as S5 asks for them.
    Every symbol (S1) is the golden model's, every state ends at L after its last use, and the
    lane asks for exactly the layer's payload words."""
    p = DecoderParams(**kw)
    D = p.ways
    stages = p.ring_stages
    rng = np.random.default_rng(D + p.prob_bits)
    half = min(p.max_symbols // 2, 7)
    lv = np.arange(-half, half + 1)
    pr = np.exp(-np.abs(lv))
    codes = rng.choice(lv, 6 * D + 50, p=pr / pr.sum())
    cfg = stream.StreamConfig(p.prob_bits, 1, D)
    h = stream.encode_codes(codes, cfg)
    np.testing.assert_array_equal(stream.decode_codes(h, cfg), codes)
    N = len(codes)
    freqs = [int(f) for f in h.freqs]
    cum = [sum(freqs[:s]) for s in range(h.nsym)]
    dut = LaneHarness(p)
    lane, tables = dut.lane, dut.tables
    ww = window_word_width(p)
    r = random.Random(D)

    async def bench(ctx):
        ctx.set(tables.clear, 1)
        await ctx.tick()
        ctx.set(tables.clear, 0)
        for s in range(h.nsym):
            ctx.set(tables.freq, {"we": 1, "bank": 0, "index": s, "f": freqs[s], "c": cum[s],
                                  "full": cum[s] == 1 << p.prob_bits})
            await ctx.tick()
        ctx.set(tables.freq.we, 0)
        if p.lookup == "table":
            R = p.fill_rate
            for w in range((1 << p.prob_bits) // R):
                for s in range(h.nsym):
                    mask = sum(1 << k for k in range(R) if cum[s] <= w * R + k < cum[s] + freqs[s])
                    if mask:
                        ctx.set(tables.slot, {"we": 1, "bank": 0, "index": w, "mask": mask, "sym": s})
                        await ctx.tick()
            ctx.set(tables.slot.we, 0)
        for d in range(D):
            ctx.set(lane.state_write, {"we": 1, "bank": 0, "way": d, "x": int(h.states[d])})
            await ctx.tick()
        ctx.set(lane.state_write.we, 0)
        if p.lookup == "compare":                    # the layer's table becomes active (one enabled
            ctx.set(tables.ready, 1)                 # clock before the layer's first beat is issued)
            ctx.set(tables.entering, {"valid": 1, "first": 1, "bank": 0})
            ctx.set(lane.en, 1)
            await ctx.tick()
            ctx.set(tables.ready, 0)
            ctx.set(tables.entering.valid, 0)
        ptr = 0                                      # next payload word
        E = 0                                        # enabled clocks so far (beat b issued at E = b)
        symbols, final = {}, {}
        while E < N + stages + 4:
            en = r.random() < 0.75
            ctx.set(lane.en, en)
            b = E                                    # the beat issued now (way min(b, D))
            ctx.set(lane.state_read, {"way": min(b, D) if b < D else 0, "bank": 0})
            ctx.set(lane.init, 0 <= E - 1 < D)       # the beat entering R0 (issued a clock ago)
            ctx.set(lane.s4_active, 0 <= E - 6 - p.s2b < N)  # the beat in R4
            word = int(h.payload[ptr]) if ptr < len(h.payload) else 0
            ctx.set(lane.word, word | ((word == 0) << 17 if ww == 18 else 0))
            if en:
                lw = p.late_weights                  # the beat in R1 (R2 with compare): its symbol
                if 0 <= E - 3 - lw < N:
                    symbols[E - 3 - lw] = ctx.get(lane.symbol)
                b5 = E - 1 - stages                  # the beat in R5
                if 0 <= b5 < N:
                    final[b5] = ctx.get(lane.final_ok)
                    if ctx.get(lane.needs_word):
                        ptr += 1
                else:
                    assert not ctx.get(lane.needs_word)
            await ctx.tick()
            E += en
        assert [symbols[b] for b in range(N)] == [int(c) - h.base for c in codes]
        assert all(final[b] for b in range(N - D, N))            # every state's last use ends at L
        assert ptr == len(h.payload)

    simulate(dut, bench)


def test_lane_rejects_a_bad_index():
    with pytest.raises(SubbitError, match="not 2"):
        Lane(DecoderParams(lanes=2), 2)


# -- word positions ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(lanes=1), dict(lanes=4, ways=7), dict(lanes=8, ways=8)])
def test_word_positions_are_the_lanes_prefix_counts(kw):
    """Lane j's position is the number of lanes < j taking a word, [K] the beat's total; registered
    on `en` (twice with S4c); `read_at` is what S5 holds next clock."""
    p = DecoderParams(**kw)
    K = p.lanes
    dut = WordPositions(p)
    rng = random.Random(K)

    def prefix(flags):
        return [sum(flags[:j]) for j in range(K + 1)]

    async def bench(ctx):
        pos = [0] * (K + 1)
        mid = [0] * (K + 1)                         # the S4c registers
        for _ in range(500):
            flags = [rng.random() < 0.5 for _ in range(K)]
            en = rng.random() < 0.7
            ctx.set(dut.counts_word, sum(f << j for j, f in enumerate(flags)))
            ctx.set(dut.en, en)
            nxt = mid if p.s4c else prefix(flags)
            assert [int(v) for v in ctx.get(dut.pos)] == pos
            assert [int(v) for v in ctx.get(dut.pos_next)] == nxt
            assert [int(v) for v in ctx.get(dut.read_at)] == (nxt if en else pos)
            assert ctx.get(dut.total_next) == nxt[K]
            await ctx.tick()
            if en:
                pos, mid = nxt, prefix(flags)

    simulate(dut, bench)


# -- flow control ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(lanes=1), dict(lanes=2, ways=7), dict(lanes=4, ways=8),
                                dict(lanes=8, ways=7, window="shift")])
def test_flow_control_enable_is_a_register_of_its_conditions(kw):
    """`en` (and every `lane_en`) is, a clock late: room in the output buffer, no error, and the
    beat that will be in S5 has its words (2K held if advancing, K if not) or its layer's payload
    end has arrived. The window's take is S5's count when advancing (a register with S4b)."""
    p = DecoderParams(**kw)
    K = p.lanes
    dut = FlowControl(p)
    rng = random.Random(K * 3 + p.ways)

    async def bench(ctx):
        en = 0
        take_r = 0
        for _ in range(800):
            room, halt = rng.random() < 0.8, rng.random() < 0.05
            level = rng.randrange(p.window_depth + 1)
            done = rng.randrange(4)
            r5n = {"valid": rng.random() < 0.8, "bank": rng.randrange(2), "last": rng.random() < 0.2}
            r5 = {"valid": rng.random() < 0.8, "bank": rng.randrange(2), "last": rng.random() < 0.2}
            total, total_next = rng.randrange(K + 1), rng.randrange(K + 1)
            ctx.set(dut.room, room)
            ctx.set(dut.halt_next, halt)
            ctx.set(dut.occ, (1 << level) - 1)
            ctx.set(dut.payload_done, done)
            ctx.set(dut.r5_next, r5n)
            ctx.set(dut.r5, r5)
            ctx.set(dut.total, total)
            ctx.set(dut.total_next, total_next)
            assert ctx.get(dut.en) == en and ctx.get(dut.lane_en) == (-en & ((1 << K) - 1))

            def ok(r, words):
                return not r["valid"] or done >> r["bank"] & 1 or (words and not r["last"])
            go = room and (ok(r5n, level >= 2 * K) if en else ok(r5, level >= K))
            if p.s4b:
                assert ctx.get(dut.take) == take_r
                for c in range(take_copies(p) - 1):
                    assert ctx.get(dut.take_dup[c]) == take_r
                take_r = (total_next if en else total) if go else 0
            else:
                assert ctx.get(dut.take) == (total if en else 0)
            await ctx.tick()
            en = int(go and not halt)

    simulate(dut, bench)


# -- layer checks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(lanes=1), dict(lanes=4, ways=7)])
def test_layer_checks_flag_overrun_underrun_and_bad_final_states(kw):
    """payload_length: a lane needs a word that is not its layer's (another bank's tag at its
    position, or none there after the layer's end arrived), or after a layer's last beat its own
    word is left; final_state: a lane's last state is not L. Combinational from S5, or (S4b)
    per lane through a register."""
    p = DecoderParams(**kw)
    K = p.lanes
    ww = window_word_width(p)
    dut = LayerChecks(p, ww)
    rng = random.Random(K)

    async def bench(ctx):
        prev = None
        for _ in range(800):
            en = rng.random() < 0.7
            r5 = {"valid": rng.random() < 0.8, "bank": rng.randrange(2), "last": rng.random() < 0.3,
                  "lastuse": rng.randrange(1 << K)}
            done, level = rng.randrange(4), rng.randrange(p.window_depth + 1)
            pos = sorted(rng.randrange(K + 1) for _ in range(K + 1))
            tags = [rng.random() < 0.2 for _ in range(K + 1)]
            need = [rng.random() < 0.5 for _ in range(K)]
            fin = [rng.random() < 0.9 for _ in range(K)]
            ctx.set(dut.en, en)
            ctx.set(dut.r5, r5)
            ctx.set(dut.payload_done, done)
            ctx.set(dut.occ, (1 << level) - 1)
            for j in range(K + 1):
                ctx.set(dut.pos[j], pos[j])
                ctx.set(dut.words[j], (tags[j] ^ r5["bank"]) << 16)
            ctx.set(dut.needs_word, sum(v << j for j, v in enumerate(need)))
            ctx.set(dut.final_ok, sum(v << j for j, v in enumerate(fin)))
            ovr = [need[j] and ((tags[j]) if pos[j] < level else done >> r5["bank"] & 1) for j in range(K)]
            under = pos[K] < level and not tags[K]
            bad = [r5["lastuse"] >> j & 1 and not fin[j] for j in range(K)]
            now = (r5["valid"] and (any(ovr) or (r5["last"] and under)), en and r5["valid"] and any(bad))
            flags = ctx.get(dut.flags)
            if p.s4b:
                if prev is not None:
                    assert (flags.payload_length, flags.final_state) == prev
            else:
                assert (flags.payload_length, flags.final_state) == now
            prev = tuple(int(v) for v in now)
            await (ctx.tick() if p.s4b else ctx.delay(1e-8))

    simulate(dut, bench)


def test_decoder_elaborates_at_every_lane_count():
    """The components compose at every K (with the ways bench rtl builds)."""
    from amaranth.back import rtlil
    from subbit.hw.decoder import Decoder
    for k in (1, 2, 4, 8):
        rtlil.convert(Decoder(DecoderParams(lanes=k, ways=6 + (k >= 2) + (k >= 8))))


# -- the frontend's parts --------------------------------------------------------------------------

def test_parse_errors_lowest_raised_code_a_clock_later_and_the_base_check():
    """Raised conditions come out a clock later, the lowest code first; nothing more is taken
    while `halt`; the base check flags UNSUPPORTED when the layer's codes do not fit code_bits."""
    from subbit.hw.frontend import ParseErrors
    p = DecoderParams(max_symbols=15)               # code_bits 4: codes -8 .. 7
    dut = ParseErrors(p)
    rng = random.Random(4)

    async def bench(ctx):
        prev = 0
        for _ in range(400):
            raised = [c for c in dut.CODES if rng.random() < 0.1]
            halt = rng.random() < 0.1
            for c in dut.CODES:
                ctx.set(getattr(dut, c.name.lower()), c in raised)
            ctx.set(dut.halt, halt)
            assert ctx.get(dut.error).value == prev
            await ctx.tick()
            if not halt:
                prev = min((c.value for c in raised), default=0)
        for base, nsym, bad in [(-7, 15, False), (-8, 15, False), (-6, 15, True), (0, 8, False), (0, 9, True),
                                (-9, 3, True), (300, 1, True), (-1, 1, False)]:
            for c in dut.CODES:
                ctx.set(getattr(dut, c.name.lower()), 0)
            ctx.set(dut.halt, 0)
            ctx.set(dut.base, base)
            ctx.set(dut.nsym, nsym)
            ctx.set(dut.check_base, 1)
            await ctx.tick()
            ctx.set(dut.check_base, 0)
            assert (ctx.get(dut.error) == ErrorCode.UNSUPPORTED) == bad, (base, nsym)
            await ctx.tick()

    simulate(dut, bench)


@pytest.mark.parametrize("prob_bits,max_symbols", [(10, 15), (12, 255), (14, 7)])
def test_slot_fill_mask_is_the_run_within_the_word(prob_bits, max_symbols):
    """For every position in a table word and run length: the mask is the run's slots in this
    word, `fits` when it ends here, `space` the slots left from the position."""
    from subbit.hw.frontend import SlotFill
    p = DecoderParams(prob_bits=prob_bits, max_symbols=max_symbols, lookup="table")
    dut = SlotFill(p)
    R = p.fill_rate

    async def bench(ctx):
        for flo in range(R):
            for todo in list(range(0, 3 * R)) + [1000, 65535]:
                ctx.set(dut.flo, flo)
                ctx.set(dut.todo, todo)
                await ctx.delay(1e-9)
                fits = todo <= R - flo
                end = flo + todo if fits else R
                assert ctx.get(dut.fits) == fits and ctx.get(dut.space) == R - flo
                assert ctx.get(dut.mask) == sum(1 << k for k in range(flo, end)), (flo, todo)

    simulate(dut, bench)


@pytest.mark.parametrize("lookup,prob_bits,max_symbols", [("compare", 12, 15), ("table", 10, 15), ("table", 12, 255)])
def test_table_loader_walks_a_table_and_fills_every_slot_once(lookup, prob_bits, max_symbols):
    """A frequency table fed a word at a time (taken when `fits`): index, c and room follow the
    words; with lookup="table" the masks written for symbol s cover exactly [c_s, c_s + f_s)."""
    from subbit.hw.frontend import TableLoader
    from subbit.model import rans
    p = DecoderParams(prob_bits=prob_bits, max_symbols=max_symbols, lookup=lookup)
    dut = TableLoader(p)
    rng = np.random.default_rng(prob_bits)
    freqs = rans.normalize_freqs(rng.integers(0, 50, 9) * (rng.random(9) < 0.7) + (np.arange(9) == 4),
                                 prob_bits).tolist()
    R = p.fill_rate

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        owner = {}
        c = 0
        for s, f in enumerate(freqs):
            ctx.set(dut.word, f)
            for _ in range(f // R + 2):
                assert (ctx.get(dut.index), ctx.get(dut.c), ctx.get(dut.room)) == \
                    (s, c % (1 << prob_bits), (1 << prob_bits) - c)       # c = 2**M shows as room = 0
                fits = ctx.get(dut.fits)
                if lookup == "table":
                    mask, word = ctx.get(dut.slot_mask), ctx.get(dut.slot_index)
                    for k in range(R):
                        if mask >> k & 1 and f:
                            assert (word * R + k) not in owner, (s, word, k)
                            owner[word * R + k] = s
                    ctx.set(dut.fill, 1)
                ctx.set(dut.take, fits)
                await ctx.tick()
                ctx.set(dut.fill, 0)
                ctx.set(dut.take, 0)
                if fits:
                    break
            else:
                raise AssertionError(f"symbol {s} (f = {f}) never fit")
            c += f
        if lookup == "table":
            expect = {slot: s for s, f in enumerate(freqs) for slot in range(sum(freqs[:s]), sum(freqs[:s + 1]))}
            assert owner == expect

    simulate(dut, bench)


@pytest.mark.parametrize("lanes,word_width", [(1, 16), (4, 16), (2, 32)])
def test_state_loader_assembles_and_addresses_every_state(lanes, word_width):
    """The states of a section fed as the parser feeds them (a word a clock; on a 32-bit bus pairs
    of words, the section starting in either half): each state is written once, whole, to lane
    j mod K and way j div K."""
    from subbit.hw.frontend import StateLoader
    p = DecoderParams(lanes=lanes, word_width=word_width, ways=7)
    dut = StateLoader(p)
    rng = random.Random(lanes + word_width)

    async def bench(ctx):
        for offset in ((0, 1) if word_width == 32 else (0,)):
            n = rng.randint(1, p.states)                 # a layer has at most lanes x ways states
            xs = [rng.randrange(1 << 16, 1 << 32) for _ in range(n)]
            words = [w for x in xs for w in (x & 0xFFFF, x >> 16)]
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            got, k = [], 0
            while k < len(words):
                left = len(words) - k
                pair = word_width == 32 and (k + offset) % 2 == 0 and left >= 2
                ctx.set(dut.odd, left % 2)
                if pair:
                    ctx.set(dut.beat, words[k] | words[k + 1] << 16)
                    ctx.set(dut.aligned, left % 2 == 0)
                    ctx.set(dut.word, words[k])
                    ctx.set(dut.take_pair, 1)
                    k += 2
                else:
                    ctx.set(dut.word, words[k])
                    if word_width == 32:
                        ctx.set(dut.aligned, 0)
                    ctx.set(dut.take, 1)
                    k += 1
                w = ctx.get(dut.write)
                if w.we:
                    got.append((int(w.lane) if lanes > 1 else 0, int(w.way), int(w.x)))
                await ctx.tick()
                ctx.set(dut.take, 0)
                if word_width == 32:
                    ctx.set(dut.take_pair, 0)
            assert got == [(j % lanes, j // lanes, x) for j, x in enumerate(xs)]

    simulate(dut, bench)


@pytest.mark.parametrize("word_width", [16, 32])
def test_payload_push_counts_the_payload_down_under_backpressure(word_width):
    """A layer's payload of n words goes out whole, in beats of words_per_beat words (the last with
    the rest and `end`), held while `push.ready` is low; an empty payload is one marker beat."""
    from subbit.hw.frontend import PayloadPush
    p = DecoderParams(word_width=word_width)
    wpb = p.words_per_beat
    dut = PayloadPush(p)
    rng = random.Random(word_width)

    async def bench(ctx):
        for npay in (1, 2, 3, 7, 8, 33):
            ctx.set(dut.npay, npay)
            ctx.set(dut.bank, npay & 1)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.active, 1)
            words, out, beats = list(range(100, 100 + npay)), [], 0
            while True:
                k = beats * wpb
                ctx.set(dut.beat, words[k:k + wpb] + [0] * (wpb - len(words[k:k + wpb])))
                ctx.set(dut.valid, rng.random() < 0.8)
                ctx.set(dut.push.ready, rng.random() < 0.7)
                await ctx.delay(1e-9)
                if ctx.get(dut.take):
                    pl = ctx.get(dut.push.payload)
                    assert ctx.get(dut.push.valid) and pl.tag == npay & 1
                    out += [int(pl.data[i]) for i in range(pl.n)]
                    beats += 1
                    if word_width == 32:
                        assert ctx.get(dut.second) == (pl.n == 2)
                    if pl.end:
                        assert ctx.get(dut.last)
                        await ctx.tick()
                        break
                await ctx.tick()
            ctx.set(dut.active, 0)
            assert out == words and beats == -(-npay // wpb)
        ctx.set(dut.mark, 1)
        await ctx.delay(1e-9)
        pl = ctx.get(dut.push.payload)
        assert ctx.get(dut.push.valid) and pl.end and pl.n == 0

    simulate(dut, bench)


@pytest.mark.parametrize("lanes,tables,row_length", [(1, 8, 3), (4, 4, 4), (4, 2, 9), (8, 8, 8), (2, 4, 37)])
def test_class_select_gives_every_lane_its_rows_table(lanes, tables, row_length):
    """Two layers (two banks) of random classes issued beat after beat with random stalls, the second
    starting right after the first: every weight's table is its row's class, with the beat entering
    R0 and two clocks later in R2; a layer with a class out of range and one whose rows do not end
    with it raise `error`."""
    from subbit.hw.classes import ClassSelect
    from subbit.model import rowclass
    p = DecoderParams(lanes=lanes, lookup="table", tables=tables, class_words=64)
    dut = ClassSelect(p)
    rng = np.random.default_rng(lanes * tables + row_length)
    T = tables if tables < 8 else 5                 # 5 tables in a T=8 decoder: classes 5..7 out of range

    def layer(rows, bad=False):
        cls = rng.integers(0, T, rows)
        idx = rowclass.encode_class_index(cls, T, 12, codings=(rowclass.FIXED,))[1]
        if bad:
            b = rowclass.class_bits(T)
            idx = idx.copy()
            idx[0] |= ((1 << b) - 1) << b          # row 1's class: all ones (>= T unless T = 2^b)
        return cls, [int(w) for w in idx]

    async def write_layer(ctx, bank, rows, idx, rl):
        ctx.set(dut.fields, {"we": 1, "bank": bank, "classed": 1, "top": T - 1,
                             "bits": rowclass.class_bits(T), "row_length": rl, "words": len(idx)})
        await ctx.tick()
        ctx.set(dut.fields.we, 0)
        for k, w in enumerate(idx):
            ctx.set(dut.word, {"we": 1, "bank": bank, "index": k, "data": w})
            await ctx.tick()
        ctx.set(dut.word.we, 0)
        await ctx.tick()

    async def issue(ctx, bank, count, rl, expect, errs):
        beats = max(1, -(-count // lanes))
        for b in range(beats):
            n = min(lanes, count - b * lanes)
            while rng.random() < 0.3:                # a stall: nothing taken
                ctx.set(dut.en, 0)
                await ctx.tick()
                if ctx.get(dut.error):
                    errs.append(("stall", b))
            ctx.set(dut.en, 1)
            ctx.set(dut.issue, {"valid": 1, "bank": bank, "first": b == 0, "last": b == beats - 1, "count": n})
            await ctx.tick()
            if ctx.get(dut.error):
                errs.append(("beat", b))
            got = [int(ctx.get(dut.entering_tab[j])) for j in range(n)]
            want = [expect[(b * lanes + j) // rl] for j in range(n)]
            assert got == want, (b, got, want)
        ctx.set(dut.issue.valid, 0)

    async def bench(ctx):
        rows = [7, 11]
        layers = [layer(r) for r in rows]
        for bank, (cls, idx) in enumerate(layers):
            await write_layer(ctx, bank, rows[bank], idx, row_length)
        errs = []
        for bank, (cls, idx) in enumerate(layers):
            await issue(ctx, bank, rows[bank] * row_length, row_length, cls.tolist(), errs)
        for _ in range(4):
            ctx.set(dut.en, 1)
            await ctx.tick()
            if ctx.get(dut.error):
                errs.append("late")
        assert errs == []
        bank = 0                                     # layers alternate between the banks
        if T < 1 << rowclass.class_bits(T):          # a class out of range in row 1
            cls, idx = layer(5, bad=True)
            await write_layer(ctx, bank, 5, idx, row_length)
            flagged = []
            expect = [int(c) for c in cls]
            expect[1] = (1 << rowclass.class_bits(T)) - 1
            await issue(ctx, bank, 5 * row_length, row_length, expect, flagged)
            for _ in range(3):
                await ctx.tick()
                flagged.append(ctx.get(dut.error))
            assert any(flagged)
            bank = 1
        # the rows do not end with the layer (count one weight short of 4 rows)
        cls, idx = layer(4)
        await write_layer(ctx, bank, 4, idx, row_length)
        flagged = []
        await issue(ctx, bank, 4 * row_length - 1, row_length, cls.tolist(), flagged)
        for _ in range(3):
            await ctx.tick()
            flagged.append(ctx.get(dut.error))
        assert any(flagged)

    simulate(dut, bench)
