"""Amaranth-simulator unit tests of the decoder's building blocks (fast; no Verilog toolchain).

Each block is checked against a small Python model, and the parser against the golden
model's own view of a stream (`subbit.model.stream`).
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from subbit.hw.frontend import Frontend
from subbit.hw.logic import le_const, select
from subbit.hw.mul import Multiplier
from subbit.hw.outbuf import OutputBuffer
from subbit.hw.params import DecoderParams, ErrorCode, default_window
from subbit.hw.prefetch import PrefetchFIFO
from subbit.hw.window import RingWindow, WordWindow
from subbit.model import stream
from subbit.model.errors import SubbitError


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# -- logic helpers -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_opts,index_bits", [(1, 1), (3, 2), (5, 3), (9, 4)])
def test_select_is_options_at_index(n_opts, index_bits):
    """Every index within the options picks that option (past the end: a don't-care)."""
    opts = [Signal(8, name=f"o{k}") for k in range(n_opts)]
    index, out = Signal(index_bits), Signal(8)
    m = Module()
    m.d.comb += out.eq(select(opts, index))

    async def bench(ctx):
        values = [random.Random(n_opts).randrange(256) for _ in range(n_opts)]
        for o, v in zip(opts, values):
            ctx.set(o, v)
        for k in range(n_opts):
            ctx.set(index, k)
            assert ctx.get(out) == values[k], k
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("width,c", [(6, 0), (6, 1), (6, 5), (6, 7), (6, 12), (4, 15), (3, 9), (1, 1)])
def test_le_const_equals_the_comparison(width, c):
    value, out = Signal(width), Signal()
    m = Module()
    m.d.comb += out.eq(le_const(value, c))

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(value, v)
            assert ctx.get(out) == (v <= c), v
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    with pytest.raises(ValueError, match="-1"):
        le_const(value, -1)


def test_le_const_builds_no_compare_that_always_holds():
    # Verilator's CMPCONST: `value[:3] <= 7` is always true, so only the high bits are tested
    assert "<=" not in repr(le_const(Signal(6), 7)) and "<=" not in repr(le_const(Signal(6), 1))
    assert repr(le_const(Signal(4), 15)) == "(const 1'd1)"
    assert "<=" in repr(le_const(Signal(6), 5))


# -- word window -----------------------------------------------------------------------------

def window_level(ctx, dut, model):
    """The window's level, checked (with its thermometer code ``occ``) against the deque ``model``."""
    level = ctx.get(dut.level)
    assert level == len(model)
    assert ctx.get(dut.occ) == (1 << level) - 1       # thermometer code of level
    return level


async def window_clock(ctx, dut, model, rng, counter, level, with_take=lambda ctx, take: None):
    """One clock of random traffic: take up to ``lanes`` words (``with_take(ctx, take)`` sets what else
    goes with it), offer up to ``words_per_beat`` new ones; ``ready`` is checked and ``model``
    follows what the window accepted and gave."""
    take = rng.randint(0, min(level, dut.lanes))
    n = rng.randint(0, dut.wpb)
    words = [next(counter) & 0xFFFF for _ in range(n)]
    ctx.set(dut.take, take)
    with_take(ctx, take)
    ctx.set(dut.push.valid, rng.random() < 0.8)
    ctx.set(dut.push.payload.n, n)
    for k, w in enumerate(words):
        ctx.set(dut.push.payload.data[k], w)
    accepted = ctx.get(dut.push.valid) and ctx.get(dut.push.ready)
    assert ctx.get(dut.push.ready) == (level <= dut.depth - dut.wpb)
    await ctx.tick()
    for _ in range(take):
        model.popleft()
    if accepted:
        model.extend(words)
    assert len(model) <= dut.depth


@pytest.mark.parametrize("depth,lanes,wpb,copies", [(4, 1, 1, 1), (13, 4, 1, 3), (14, 4, 2, 1), (26, 8, 2, 5)])
def test_word_window_matches_fifo_model(depth, lanes, wpb, copies):
    """Random pushes and takes: head, level and occ always equal a deque's (with ``copies``
    copies of ``take``, each driving its own group of words)."""
    dut = WordWindow(depth, lanes, wpb, width=16, take_copies=copies)
    rng = random.Random(depth * 100 + lanes)
    model = deque()
    counter = iter(range(1, 1 << 20))

    def take_copies(ctx, take):                      # every copy of `take` equal
        for c in range(copies - 1):
            ctx.set(dut.take_dup[c], take)

    async def bench(ctx):
        for _ in range(600):
            level = window_level(ctx, dut, model)
            head = ctx.get(dut.head)
            for j in range(min(level, lanes + 1)):
                assert head[j] == model[j], f"head[{j}]"
            await window_clock(ctx, dut, model, rng, counter, level, take_copies)

    simulate(dut, bench)


@pytest.mark.parametrize("depth,lanes,wpb", [(1, 1, 1), (4, 4, 1), (5, 4, 2)])
def test_word_window_rejects_too_small_depth(depth, lanes, wpb):
    with pytest.raises(SubbitError, match=f"not {depth}"):
        WordWindow(depth, lanes, wpb)


@pytest.mark.parametrize("copies", [0, 14, 2.0])
def test_word_window_rejects_bad_take_copies(copies):
    with pytest.raises(SubbitError, match=f"not {copies!r}"):
        WordWindow(13, 4, 1, take_copies=copies)


@pytest.mark.parametrize("depth,lanes,wpb", [(4, 1, 1), (13, 4, 1), (14, 4, 2), (25, 8, 1), (26, 8, 2)])
def test_ring_window_matches_fifo_model(depth, lanes, wpb):
    """Random pushes, takes and read offsets: level, occ and every reader's word (named a clock
    earlier, relative to the words held after that clock's take) equal a deque's."""
    readers = lanes + 1
    dut = RingWindow(depth, lanes, readers, wpb, width=16)
    rng = random.Random(depth * 100 + lanes + 7)
    model = deque()
    counter = iter(range(1, 1 << 20))
    asked = [None] * readers
    checked = 0

    def ask(ctx, take):                              # each reader names a word for the next clock
        for r in range(readers):
            asked[r] = rng.randint(0, lanes)
            ctx.set(dut.offset[r], asked[r])

    async def bench(ctx):
        nonlocal checked
        for _ in range(800):
            level = window_level(ctx, dut, model)
            got = ctx.get(dut.word)
            for r, off in enumerate(asked):
                if off is not None and off < level:
                    assert got[r] == model[off], f"reader {r}, offset {off}"
                    checked += 1
            await window_clock(ctx, dut, model, rng, counter, level, ask)

    simulate(dut, bench)
    assert checked > 400                # most clocks compared words


@pytest.mark.parametrize("kw,bad", [(dict(depth=4, lanes=4, readers=5), "not 4"),
                                    (dict(depth=13, lanes=4, readers=0), "not 0"),
                                    (dict(depth=13, lanes=4, readers=5, words_per_beat=3), "not 3")])
def test_ring_window_rejects_bad_parameters(kw, bad):
    with pytest.raises(SubbitError, match=bad):
        RingWindow(**kw)


async def drain(ctx, o, got, clocks):
    """Hold ``o.ready`` high for ``clocks`` clocks, appending every payload that leaves to ``got``."""
    ctx.set(o.ready, 1)
    for _ in range(clocks):
        if ctx.get(o.valid):
            got.append(ctx.get(o.payload))
        await ctx.tick()


# -- output buffer ------------------------------------------------------------------------------

def test_output_buffer_order_and_registered_room():
    """A writer that only writes when `room` was high a clock earlier never overflows the
    buffer, and entries leave in order under random backpressure."""
    dut = OutputBuffer(16)
    rng = random.Random(7)
    sent, got = [], []

    async def bench(ctx):
        room_prev = 1
        value = 0
        for _ in range(800):
            w = room_prev and rng.random() < 0.9
            ctx.set(dut.w_en, w)
            ctx.set(dut.w_data, value)
            ctx.set(dut.o.ready, rng.random() < 0.6)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload))
            room_prev = ctx.get(dut.room)
            await ctx.tick()
            if w:
                sent.append(value)
                value += 1
        ctx.set(dut.w_en, 0)
        await drain(ctx, dut.o, got, 4)

    simulate(dut, bench)
    assert len(sent) > 300
    assert got == sent


# -- prefetch FIFO -------------------------------------------------------------------------------

@pytest.mark.parametrize("depth,lookahead", [(4, False), (32, False), (64, False), (4, True), (64, True)])
def test_prefetch_fifo_order_latency_and_fill(depth, lookahead):
    """Under random valid/ready, entries leave in order, no sooner than three clocks after they
    were accepted; ready is low only near full (its register lags a clock), and the memory
    fills. 64 entries: with the extra register after a (maybe block-RAM) memory. With
    ``lookahead`` (the read side's pointer and count from precomputed values) the same."""
    dut = PrefetchFIFO(16, depth, lookahead=lookahead)
    rng = random.Random(depth)
    sent, got = [], []
    accepted_at = {}

    async def bench(ctx):
        value, peak = 0, 0
        for clock in range(1500):
            burst = (clock // 200) % 2            # phases of a blocked and a draining output
            ctx.set(dut.i.valid, rng.random() < 0.8)
            ctx.set(dut.i.payload, value)
            ctx.set(dut.o.ready, rng.random() < (0.2 if burst else 0.9))
            held = len(sent) - len(got)
            peak = max(peak, held)
            if not ctx.get(dut.i.ready):
                assert held >= depth - 3, f"ready low with {held} entries held"
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                v = ctx.get(dut.o.payload)
                assert clock - accepted_at[v] >= 3
                got.append(v)
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                sent.append(value)
                accepted_at[value] = clock
                value = (value + 1) & 0xFFFF
            await ctx.tick()
        assert depth - 2 <= peak <= depth + 1 + (depth > PrefetchFIFO.LUTRAM_DEPTH)
        ctx.set(dut.i.valid, 0)
        await drain(ctx, dut.o, got, depth + 4)

    simulate(dut, bench)
    assert len(sent) > 700
    assert got == sent


@pytest.mark.parametrize("depth", [2, 24, "32"])
def test_prefetch_fifo_rejects_bad_depth(depth):
    with pytest.raises(SubbitError, match=f"not {depth!r}"):
        PrefetchFIFO(16, depth)


# -- multiplier ------------------------------------------------------------------------------------

def test_generic_multiplier_two_clock_latency_with_enable():
    dut = Multiplier(17, 13, "generic")
    rng = random.Random(3)

    async def bench(ctx):
        issued = []           # operands issued on enabled clocks
        for _ in range(300):
            a, b, ce = rng.getrandbits(17), rng.getrandbits(13), rng.random() < 0.7
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.ce, ce)
            await ctx.tick()
            if ce:
                issued.append((a, b))
                if len(issued) >= 2:
                    x, y = issued[-2]
                    assert ctx.get(dut.p) == x * y

    simulate(dut, bench)


def test_multiplier_validates_kind_and_width():
    with pytest.raises(SubbitError, match="'dsp48'"):
        Multiplier(8, 8, "dsp48")
    with pytest.raises(SubbitError, match="19x13"):
        Multiplier(19, 13, "ecp5")


def test_fc_read_choices():
    """f/c are read synchronously when asked, and always with the slot table; anything else is
    rejected with the bad value quoted."""
    assert not DecoderParams().fc_sync
    assert DecoderParams(fc_read="sync").fc_sync
    assert DecoderParams(lookup="table").fc_sync
    with pytest.raises(SubbitError, match="not 'bram'"):
        DecoderParams(fc_read="bram")
    with pytest.raises(SubbitError, match="fc_read='async' needs lookup='compare'"):
        DecoderParams(lookup="table", fc_read="async")



def test_window_choices():
    """The payload window is what was asked for, else the default for the lane count; a bad
    choice is rejected with the value quoted."""
    for k in (1, 2, 4, 8):
        assert DecoderParams(lanes=k).ring_window == (default_window(k) == "ring")
        assert DecoderParams(lanes=k, window="ring").ring_window
        assert not DecoderParams(lanes=k, window="shift").ring_window
    with pytest.raises(SubbitError, match="not 'fifo'"):
        DecoderParams(window="fifo")

# -- parser ------------------------------------------------------------------------------------------

PARSER_CONFIGS = {
    "K1-M12-w16": DecoderParams(lanes=1, prob_bits=12, max_symbols=15, word_width=16),
    "K4-M10-w32": DecoderParams(lanes=4, prob_bits=10, max_symbols=15, word_width=32),
    "K2-M14-table": DecoderParams(lanes=2, prob_bits=14, max_symbols=255, word_width=16, lookup="table"),
}


def parse(p: DecoderParams, words, max_clocks=20000):
    """Run the parser over a word stream with an always-ready consumer; collect its writes."""
    from subbit.sim.rtl_decode import pack_beats
    dut = Frontend(p)
    beats = pack_beats(words, p.word_width).tolist()
    out = {"fields": [], "freq": [], "state": [], "ready": [], "push": [], "error": 0,
           "error_clock": None, "consumed_at": []}

    async def bench(ctx):
        ctx.set(dut.push.ready, 1)
        ctx.set(dut.drained, 1)
        k = 0
        for clock in range(max_clocks):
            if k < len(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.data, beats[k])
                ctx.set(dut.i.payload.last, k == len(beats) - 1)
            else:
                ctx.set(dut.i.valid, 0)
            f, q, s = ctx.get(dut.fields), ctx.get(dut.freq), ctx.get(dut.state)
            if f.we:
                out["fields"].append((f.bank, f.count, f.base))
            if q.we:
                out["freq"].append((q.bank, q.index, q.f, q.c))
            if s.we:
                out["state"].append((s.bank, s.lane if p.lanes > 1 else 0, s.way, s.x))
            if ctx.get(dut.ready.we):
                out["ready"].append(ctx.get(dut.ready.bank))
            if ctx.get(dut.push.valid):
                pl = ctx.get(dut.push.payload)
                out["push"].append(([int(pl.data[j]) for j in range(pl.n)], pl.end, pl.tag))
            err = ctx.get(dut.error)
            if err != ErrorCode.NONE and not out["error"]:
                out["error"], out["error_clock"] = err, clock
            took = k < len(beats) and ctx.get(dut.i.ready)
            stream_end = ctx.get(dut.stream_end)
            await ctx.tick()
            if took:
                out["consumed_at"].append(clock)
                k += 1
            if stream_end or out["error"]:
                break
        out["beats_taken"] = k

    simulate(dut, bench)
    return out


def layers_for(p, seed=0):
    rng = np.random.default_rng(seed)
    half = min(p.max_symbols // 2, 7)
    lv = np.arange(-half, half + 1)
    pr = np.exp(-np.abs(lv))
    return [rng.choice(lv, 300, p=pr / pr.sum()), np.zeros(0, np.int64), np.full(3, 1),
            rng.choice(lv, 2 * p.lanes * p.ways + 5, p=pr / pr.sum())]


@pytest.mark.parametrize("name", list(PARSER_CONFIGS))
def test_parser_writes_what_the_golden_model_reads(name):
    """Tables (f and cumulative c), initial states, counts, bases and payload words written by the
    parser equal the golden model's layers; banks alternate; payload ends are marked."""
    p = PARSER_CONFIGS[name]
    cfg = p.stream_config
    hw = [stream.encode_codes(c, cfg) for c in layers_for(p)]
    words = stream.build(hw, cfg)
    out = parse(p, words)
    assert out["error"] == 0
    assert out["beats_taken"] == len(words) // p.words_per_beat
    assert [f[0] for f in out["fields"]] == [i % 2 for i in range(len(hw))]
    assert [(c, b) for _, c, b in out["fields"]] == [(h.count, h.base) for h in hw]
    assert out["ready"] == [i % 2 for i in range(len(hw))]
    for i, h in enumerate(hw):
        freqs = [(idx, f, c) for bank, idx, f, c in out["freq"] if bank == i % 2]
        start = sum(hw[j].nsym for j in range(i) if j % 2 == i % 2)
        mine = freqs[start:start + h.nsym]
        cum = np.concatenate([[0], np.cumsum(h.freqs)[:-1]])
        assert [(idx, f, c) for idx, f, c in mine] == \
            [(s, int(h.freqs[s]), int(cum[s])) for s in range(h.nsym)]
        st = [(lane, way, x) for bank, lane, way, x in out["state"] if bank == i % 2]
        sstart = sum(len(hw[j].states) for j in range(i) if j % 2 == i % 2)
        mine = st[sstart:sstart + len(h.states)]
        assert [x for _, _, x in mine] == [int(v) for v in h.states]
        assert [(lane, way) for lane, way, _ in mine] == \
            [(k % p.lanes, k // p.lanes) for k in range(len(h.states))]
    # payload: every word in order, tagged with its layer's bank, one `end` per layer
    pushed = [w for ws, _, _ in out["push"] for w in ws]
    assert pushed == [int(w) for h in hw for w in h.payload]
    assert sum(e for _, e, _ in out["push"]) == len(hw)
    tags = [t for ws, _, t in out["push"] for _ in ws]
    assert tags == [i % 2 for i, h in enumerate(hw) for _ in h.payload]


@pytest.mark.parametrize("config", ["K1-M12-w16", "K4-M10-w32"])
@pytest.mark.parametrize("kind,code", [("magic", ErrorCode.BAD_MAGIC), ("version", ErrorCode.BAD_VERSION),
                                       ("reserved", ErrorCode.BAD_VERSION), ("check", ErrorCode.HEADER_CHECK),
                                       ("table", ErrorCode.BAD_TABLE), ("payload odd", ErrorCode.PAYLOAD_CHECK),
                                       ("payload even", ErrorCode.PAYLOAD_CHECK),
                                       ("payload pad", ErrorCode.PAYLOAD_CHECK)])
def test_parser_flags_errors_within_three_clocks(config, kind, code):
    """The golden model rejects the same stream; the parser flags the documented code at most
    three clocks after taking the offending word (payload: its check word)."""
    p = PARSER_CONFIGS[config]
    cfg = p.stream_config
    layers = layers_for(p)[:2]
    hw = [stream.encode_codes(c, cfg) for c in layers]
    if kind.startswith("payload"):            # a layer with an odd / even payload length
        want_odd = kind == "payload odd"
        n = 300
        while (len(hw[0].payload) % 2 == 1) != want_odd:
            n += 7
            hw[0] = stream.encode_codes(np.resize(layers[0], n), cfg)
    words = stream.build(hw, cfg).copy()
    pay = hw[0].offset + len(hw[0].header_words())
    npay = len(hw[0].payload)
    if kind == "magic":
        bad = 0
        words[0] ^= 0x10
    elif kind == "version":
        bad = 1
        words[1] = 7
    elif kind == "check":
        bad = hw[0].offset + len(hw[0].header_words()) - 1
        words[bad] ^= 1
    elif kind == "reserved":                # reserved stream header word set, check word fixed up
        words[4] = 1
        words[5] = stream.check_word(words[:5])
        bad = 4
    elif kind in ("payload odd", "payload even"):   # one payload bit: only the check word sees it
        words[pay + npay // 2] ^= 0x0040
        bad = pay + npay + (npay % 2 == 0)
    elif kind == "payload pad":
        assert npay % 2 == 0
        words[pay + npay] = 1
        bad = pay + npay + 1
    else:                                   # frequencies sum to 2**M + 1, check word fixed up
        h = hw[0]
        words[h.offset + 6] += 1
        n = len(h.header_words())
        words[h.offset + n - 1] = stream.check_word(words[h.offset:h.offset + n - 1])
        bad = h.offset + 6 + h.nsym - 1
    with pytest.raises(SubbitError):
        stream.parse(words)
    out = parse(p, words)
    assert out["error"] == code
    assert out["error_clock"] - out["consumed_at"][bad // p.words_per_beat] <= 3


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["K1-M12-w16", "K4-M10-w32"])
def test_parser_accepts_random_valid_streams(name, seed):
    """Odd and even payload lengths, check words that wrap around 2**16: no false error."""
    p = PARSER_CONFIGS[name]
    rng = np.random.default_rng(seed)
    hw = []
    while len(hw) < 4 or {len(h.payload) % 2 for h in hw} != {0, 1}:   # both payload parities
        k = int(rng.integers(1, 8))
        q = rng.dirichlet(np.full(2 * k + 1, 0.5))
        hw.append(stream.encode_codes(rng.choice(np.arange(-k, k + 1), int(rng.integers(0, 3000)), p=q),
                                      p.stream_config))
    words = stream.build(hw, p.stream_config)
    out = parse(p, words)
    assert out["error"] == 0
    assert out["beats_taken"] == len(words) // p.words_per_beat


def test_stream_with_too_few_ways_names_the_fix():
    """The golden model codes any number of ways; a decoder needs one per datapath stage. A stream
    coded with fewer says so, with its value and how to re-encode (not the decoder's bare range)."""
    assert DecoderParams.for_stream(stream.StreamConfig(12, 2, 7)).ways == 7
    with pytest.raises(SubbitError, match=r"the stream was coded with ways=5; the decoder needs at least 6 .*"
                                          r"`subbit compress --ways 6`"):
        DecoderParams.for_stream(stream.StreamConfig(12, 1, 5))
