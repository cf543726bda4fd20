"""Prefetch FIFO whose write side starts from registers."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import rejected

__all__ = ["PrefetchFIFO"]


class PrefetchFIFO(wiring.Component):
    """A FIFO of ``depth`` entries for the parser's payload beats.

    An accepted entry is registered before it is written into the memory, so
    the memory's write enable, address and data come from registers: the
    writer's logic (the parser's FSM, which decides ``i.valid``) does not
    reach the RAM's write port, and ``i.ready`` is a register (set while at
    most ``depth - 3`` entries were in the memory a clock ago: then there is
    room for the registered entry and one more). The read is synchronous (LUT-RAM or block RAM on
    ECP5, block RAM on iCE40) and its data register is ``o.payload``; deeper than
    ``LUTRAM_DEPTH`` entries, which yosys may put in block RAM (5.6 ns clock-to-out on ECP5
    without its output register), the data passes one more register, so it only ever
    reaches a flip-flop.

    With ``lookahead`` the read side's pointer and count are updated by a select among values
    made from registers (the pointer one step ahead, the count plus and minus one) instead of an
    adder behind the read strobe, which follows the consumer's ``o.ready``: the same cycles, a
    few more flip-flops; built at eight lanes, where that path limited Fmax
    (:attr:`~subbit.hw.params.DecoderParams.prefetch_lookahead`).

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))

    Latency: an entry accepted on ``i`` is on ``o`` three clocks later (four deeper than
    ``LUTRAM_DEPTH``).
    Throughput: one entry per clock. Backpressure: ``o`` holds its payload
    while not ready; ``i.ready`` is low only when ``depth - 3`` or more entries
    are held (up to ``depth + 1`` in all: memory, registered entry, ``o``; one more
    with the extra register).
    """

    #: Deepest FIFO whose memory is taken to be LUT-RAM (128 beats of 16 bits are block RAM).
    LUTRAM_DEPTH = 32

    def __init__(self, shape, depth: int, lookahead: bool = False):
        if not (isinstance(depth, int) and depth >= 4 and depth & (depth - 1) == 0):
            raise rejected(self, f"PrefetchFIFO depth must be a power of two >= 4, not {depth!r}")
        self.depth, self.lookahead = depth, bool(lookahead)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        N = self.depth
        m.submodules.storage = mem = Memory(shape=self.i.payload.shape(), depth=N, init=[])
        w, r = mem.write_port(), mem.read_port(domain="sync")
        wv = Signal()                              # the registered entry, written this clock
        wd = Signal.like(self.i.payload, reset_less=True)
        wp, rp = Signal(range(N)), Signal(range(N))
        cnt = Signal(range(N + 1))                 # entries in the memory
        rd = Signal()
        rdy = Signal(init=1)                       # i.ready
        m.d.sync += rdy.eq(cnt <= N - 3)
        m.d.comb += [self.i.ready.eq(rdy), w.addr.eq(wp), w.data.eq(wd), w.en.eq(wv),
                     r.addr.eq(rp), r.en.eq(rd)]
        m.d.sync += [wv.eq(self.i.valid & self.i.ready), wd.eq(self.i.payload), wp.eq(wp + wv)]
        if self.lookahead:
            # the read pointer's and the count's next values are made from registers (the pointer
            # a step ahead in `rp1`, the count's +1 and -1), so `rd`, which follows the
            # consumer's `ready`, only selects among them: no carry chain behind it
            rp1 = Signal(range(N), init=1)
            with m.If(rd):
                m.d.sync += [rp.eq(rp1), rp1.eq(rp1 + 1)]
            m.d.sync += cnt.eq(Mux(wv, Mux(rd, cnt, cnt + 1), Mux(rd, cnt - 1, cnt)))
        else:
            m.d.sync += [rp.eq(rp + rd), cnt.eq(cnt + wv - rd)]
        if N > self.LUTRAM_DEPTH:                  # maybe block RAM: one more register
            r_valid, r_ready = Signal(), Signal()
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(r_valid & r_ready):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(r.data)]
            m.d.comb += r_ready.eq(~self.o.valid | self.o.ready)
        else:                                      # the read port's data register is o.payload
            r_valid, r_ready = self.o.valid, self.o.ready
            m.d.comb += self.o.payload.eq(r.data)
        m.d.comb += rd.eq((cnt != 0) & (~r_valid | r_ready))
        with m.If(rd):
            m.d.sync += r_valid.eq(1)
        with m.Elif(r_ready):
            m.d.sync += r_valid.eq(0)
        return m
