"""The sequencer: which layer, bank and way each beat of the lanes decodes, and the banks' occupancy."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .logic import le_const
from .params import DecoderParams

__all__ = ["Sequencer", "beat_layout", "fields_write_layout", "bank_strobe_layout"]


def beat_layout(params: DecoderParams) -> data.StructLayout:
    """What the datapath knows about a beat (K symbol positions, one per lane) as it goes round
    the ring: is it a beat, its layer's bank, does it start its states from the bank (``init``,
    the first ``ways`` beats of a layer) and from which way, is it the layer's first or last
    beat, how many lanes hold weights (``count``; ``act``: which), and which lanes' states
    are used for the last time (``lastuse``: their final state is checked)."""
    K = params.lanes
    way_bits = max(1, (params.ways - 1).bit_length())
    return data.StructLayout({"valid": 1, "bank": 1, "init": 1, "way": unsigned(way_bits), "first": 1,
                              "last": 1, "count": range(K + 1), "act": K, "lastuse": K})


#: The parser's (registered) write of a layer's fields into a bank.
fields_write_layout = data.StructLayout({"we": 1, "bank": 1, "count": 32})
#: A strobe naming a bank (the parser's `ready`).
bank_strobe_layout = data.StructLayout({"we": 1, "bank": 1})


class Sequencer(wiring.Component):
    """Issues one beat a clock to the lanes, and carries its description along the ring.

    Two banks hold two layers. When the parser has loaded a layer (``ready``), the layer's
    beats are issued one per enabled clock, in order: the first ``ways`` beats take the
    layer's initial states from the bank (way 0, 1, ...), the later ones continue the states
    going round the ring. A layer ends with its last beat (``count`` = the lanes it fills);
    the next layer's first beat may follow on the next clock. A layer is retired (its bank
    free again, ``bank_busy``) when its last beat leaves S5.

    When a layer's fields arrive (``fields``), its beat plan is precomputed for its bank:
    the number of beats, the lanes of its last beat, and the flags of its first two beats
    (last? within the first ``ways``?), so issuing a beat needs no arithmetic on the
    32-bit count.

    Members
    -------
    en : In(1)
        The datapath advances (a register, :class:`~subbit.hw.flow.FlowControl`).
    fields : In(fields_write_layout)
        A layer's count of weights, for its bank (the parser's registered field write).
    ready : In(bank_strobe_layout)
        The bank's layer is loaded (the parser's registered strobe).
    ready_soon : In(bank_strobe_layout)
        The same strobe a clock earlier (the parser's own): lets the sequencer start a layer
        the clock its ``ready`` arrives, from a register made a clock ahead.
    issue : Out(beat_layout)
        The beat issued this clock (when ``en``); ``way`` and ``bank`` address the initial
        states, read on this clock.
    entering : Out(beat_layout)
        The beat whose states enter R0 (the issued beat, registered).
    r0, r1, r2, r4, r5 : Out(beat_layout)
        The beat whose states are in R0, R1, R2, R4, R5.
    r5_next : Out(beat_layout)
        The beat that enters R5 when the datapath advances (the one in R4, or in R4b / R4c
        with the S4b / S4c stages).
    bank_busy : Out(2)
        A bank holds a layer that is loaded and not yet retired.
    drained : Out(1)
        No layer is held, none on its way.

    Latency: a layer's first beat is issued the clock its ``ready`` arrives (if the other
    layer has issued its last beat), its states enter R0 a clock later. Throughput: a beat per
    enabled clock, across layers. Backpressure: ``en`` low holds everything.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        beat = beat_layout(p)
        super().__init__({
            "en": In(1),
            "fields": In(fields_write_layout),
            "ready": In(bank_strobe_layout),
            "ready_soon": In(bank_strobe_layout),
            "issue": Out(beat),
            "entering": Out(beat),
            "r0": Out(beat),
            "r1": Out(beat),
            "r2": Out(beat),
            "r4": Out(beat),
            "r5_next": Out(beat),
            "r5": Out(beat),
            "bank_busy": Out(2),
            "drained": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K, D = p.lanes, p.ways
        en, fields, ready = self.en, self.fields, self.ready

        # ---- the banks: loaded (`valid`) and begun (`started`) -----------------------------
        valid = Signal(2)                           # loaded, not yet retired
        started = Signal(2)                         # the sequencer has begun it
        # Per bank, the beat plan, precomputed when the header arrives: the layer's beats
        # T = max(1, ceil(count / K)) (with one lane the count itself: no adder), the lanes used
        # by its last beat, and the flags of its first beat (T == 1, T <= D, T == D + 1) and of
        # its second.
        TB = 33 - (K.bit_length() - 1)
        beats = Array(Signal(TB, name=f"beats{b}") for b in range(2))
        tail = Array(Signal(range(K + 1), name=f"tail{b}") for b in range(2))
        first_flags = Array(Signal(3, name=f"first_flags{b}") for b in range(2))
        second_flags = Array(Signal(3, name=f"second_flags{b}") for b in range(2))
        n = fields.count
        kb = K.bit_length() - 1
        # n <= c for the small constants below: one zero test of the high bits (for the largest
        # constant) and a narrow compare each, not a 32-bit carry chain
        nb = ((D + 2) * K).bit_length()
        n_hi_zero = n[nb:] == 0

        def le(c):
            return n_hi_zero & le_const(n[:nb], c)
        with m.If(fields.we):
            b = fields.bank
            m.d.sync += [beats[b].eq(Mux(n == 0, 1, (n >> kb) + (n[:kb] != 0)) if kb else Cat(n[0] | (n == 0), n[1:])),
                         tail[b].eq(Mux(n == 0, 0, Mux(n[:kb] == 0, K, n[:kb]) if kb else 1)),
                         first_flags[b].eq(Cat(le(K), le(D * K), ~le(D * K) & le((D + 1) * K))),
                         second_flags[b].eq(Cat(~le(K) & le(2 * K), le((D + 1) * K),
                                                ~le((D + 1) * K) & le((D + 2) * K)))]
        # a layer whose (registered) `ready` is still on its way is not drained yet
        m.d.comb += [self.bank_busy.eq(valid), self.drained.eq((valid == 0) & ~ready.we)]
        with m.If(ready.we):
            m.d.sync += valid.bit_select(ready.bank, 1).eq(1)

        # ---- issue: one beat (K symbol positions) per clock -----------------------------------
        cur_active = Signal()
        cur_bank = Signal()
        nxt_bank = Signal()
        beats_left = Signal(TB, name="beats_left")  # in the current layer, the issued one included
        flags = Signal(3)                           # the next beat's (R == 1, R <= D, R == D + 1), R its
                                                    # layer's beats from it on
        cur_tail = Signal(range(K + 1))
        beat_no = Signal(range(D + 1))              # beat index, saturating at D
        # nxt_rdy: bank nxt_bank holds a loaded layer not yet started (kept as a register)
        nxt_rdy = Signal()
        start_new = Signal()
        # a layer whose `ready` arrives now may start now (one clock earlier than via nxt_rdy);
        # `hit` (ready.we and ready.bank == nxt_bank) is made a clock ahead from the parser's
        # strobe, so start_new (which drives the initial-state read address) is one LUT
        hit = Signal()
        m.d.comb += start_new.eq(~cur_active & (nxt_rdy | hit))
        s_flags = Mux(start_new, first_flags[nxt_bank], flags)
        s_tail = Mux(start_new, tail[nxt_bank], cur_tail)
        s_t = Mux(start_new, 0, beat_no)
        last, le_d, eq_d1 = s_flags[0], s_flags[1], s_flags[2]
        issue = self.issue
        act = [~last | (s_tail > j) for j in range(K)]
        m.d.comb += [
            issue.valid.eq(cur_active | start_new),
            issue.bank.eq(Mux(start_new, nxt_bank, cur_bank)),
            issue.init.eq(s_t < D),
            issue.way.eq(s_t),
            # a beat is a layer's first exactly when it starts one (beat_no >= 1 while a layer
            # runs): start_new itself, a LUT less on the path into the beat's users
            issue.first.eq(start_new),
            issue.last.eq(last),
            issue.count.eq(Mux(last, s_tail, K)),
            issue.act.eq(Cat(*act)),
            # a lane's state is used again D beats later unless the layer ends first
            issue.lastuse.eq(Cat(*[act[j] & (le_d | (eq_d1 & (s_tail <= j))) for j in range(K)])),
        ]
        q = self.entering
        with m.If(en):
            m.d.sync += q.eq(issue)
            with m.If(issue.valid):
                # the next beat's flags, compared before the start/continue mux
                # (the decrement is made before the start/continue mux, off start_new's path)
                m.d.sync += [beats_left.eq(Mux(start_new, beats[nxt_bank], beats_left - 1)),
                             flags.eq(Mux(start_new, second_flags[nxt_bank],
                                          Cat(beats_left == 3, le_const(beats_left, D + 2), beats_left == D + 3))),
                             cur_tail.eq(s_tail), beat_no.eq(Mux(s_t == D, D, s_t + 1)),
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
        m.d.sync += hit.eq(self.ready_soon.we & (self.ready_soon.bank == (nxt_bank ^ (en & start_new))))

        # ---- the beat's description along the ring: R0 .. R5 ------------------------------
        # With more ways than the ring's 6 stages, the first extra way is a stage S4b between S4
        # and S5 (and with the ring window the second a stage S4c); with row classes, a stage
        # S2b between S2 and S3 comes first: the description passes through them too. Further
        # ways are a delay of the lanes' states only.
        beat = beat_layout(p)
        r0m, r1m, r2m, r3m, r4m, r5m = (Signal(beat, name=f"r{n}_meta") for n in range(6))
        r2bm = Signal(beat, name="r2b_meta") if p.s2b else r2m
        r4bm = Signal(beat, name="r4b_meta") if p.s4b else r4m
        r4cm = Signal(beat, name="r4c_meta") if p.s4c else r4bm
        with m.If(en):
            m.d.sync += [r0m.eq(q), r1m.eq(r0m), r2m.eq(r1m), r3m.eq(r2bm), r4m.eq(r3m), r5m.eq(r4cm)]
            if p.s2b:
                m.d.sync += r2bm.eq(r2m)
            if p.s4b:
                m.d.sync += r4bm.eq(r4m)
            if p.s4c:
                m.d.sync += r4cm.eq(r4bm)
        m.d.comb += [self.r0.eq(r0m), self.r1.eq(r1m), self.r2.eq(r2m), self.r4.eq(r4m), self.r5_next.eq(r4cm),
                     self.r5.eq(r5m)]

        # a layer's last beat leaving S5 retires it: its bank is free
        with m.If(en & r5m.valid):
            with m.If(r5m.last):
                m.d.sync += [valid.bit_select(r5m.bank, 1).eq(0), started.bit_select(r5m.bank, 1).eq(0)]
        return m
