"""Integer MAC engine: weight codes streamed from the decoder times int8 activations, int32 sums."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.errors import SubbitError
from .params import rejected

__all__ = ["MacParams", "MacError", "MacEngine", "weight_layout", "act_layout", "acc_layout", "cfg_layout"]

ACT_BITS = 8            #: activations are int8 (docs/inference.md)
ACC_BITS = 32           #: accumulators are int32, wrapping (the reference wraps the same way)
DIM_BITS = 16           #: ``cfg.cols`` and ``cfg.positions`` are 16-bit fields


class MacError(enum.Enum, shape=2):
    """Value of ``status.error``; sticky until reset."""
    NONE = 0
    BAD_CONFIG = 1      #: ``cols < lanes``, ``positions == 0`` or beyond the memories at ``start``
    PARTIAL_ROW = 2     #: a layer's ``last`` beat ended in the middle of a row (count % cols != 0)


@dataclass(frozen=True)
class MacParams:
    """Configuration of a :class:`MacEngine`.

    Parameters
    ----------
    lanes : 1, 2, 4 or 8
        Weight codes per input beat (the decoder's K) and multipliers.
    code_bits : 2..9
        Signed width of a weight code (the decoder's ``code_bits``).
    act_depth : power of two in 16..65536
        Activation memory words (int8): a layer needs ``positions * cols`` of them.
    max_positions : power of two in 1..4096
        Accumulator memory words: output positions per row (1 for a fully-connected layer).
    """
    lanes: int = 1
    code_bits: int = 4
    act_depth: int = 1 << 14
    max_positions: int = 64

    def __post_init__(self):
        if self.lanes not in (1, 2, 4, 8):
            raise SubbitError(f"lanes must be one of (1, 2, 4, 8), not {self.lanes!r}")
        if not (isinstance(self.code_bits, int) and 2 <= self.code_bits <= 9):
            raise SubbitError(f"code_bits must be an integer in 2..9, not {self.code_bits!r}")
        if not (isinstance(self.act_depth, int) and 16 <= self.act_depth <= 1 << DIM_BITS
                and self.act_depth & (self.act_depth - 1) == 0):
            raise SubbitError(f"act_depth must be a power of two in 16..65536, not {self.act_depth!r}")
        if not (isinstance(self.max_positions, int) and 1 <= self.max_positions <= 4096
                and self.max_positions & (self.max_positions - 1) == 0):
            raise SubbitError(f"max_positions must be a power of two in 1..4096, not {self.max_positions!r}")


def weight_layout(p: MacParams) -> data.StructLayout:
    """The decoder's output beat (`subbit.hw.decoder.output_layout`)."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(p.code_bits), p.lanes),
                              "count": range(p.lanes + 1), "last": 1})


def act_layout(p: MacParams) -> data.StructLayout:
    return data.StructLayout({"addr": range(p.act_depth), "data": signed(ACT_BITS)})


acc_layout = data.StructLayout({"acc": signed(ACC_BITS), "last": 1})
cfg_layout = data.StructLayout({"cols": unsigned(DIM_BITS), "positions": unsigned(DIM_BITS)})
status_layout = data.StructLayout({"busy": 1, "done": 1, "waiting": 1, "error": MacError})


class MacEngine(wiring.Component):
    """Matrix times activations, one weight beat per output position per clock.

    A layer is a matrix ``W[rows, cols]`` arriving in C order on ``i`` (weights straight from
    the decoder, ``lanes`` per beat, rows may straddle beats) and an activation matrix
    ``X[positions, cols]`` in the activation memory at ``p * cols + c``. The engine computes
    ``acc[r, p] = sum_c W[r, c] * X[p, c]`` (int32, wrapping): a fully-connected layer has
    ``positions = 1``; a convolution lowered with im2col has one position per output pixel.

    Each beat is applied to every position in turn (``positions`` clocks per beat); position
    ``p``'s running sum lives in the accumulator memory at ``p``. A row ending inside a beat
    emits ``acc + (products of the lanes before the boundary)`` and starts the next row with
    the products of the remaining lanes, so the stream needs no alignment (``cols >= lanes``).

    Members
    -------
    i : In(stream.Signature(weight_layout(params)))
        Decoder output beats: ``codes[0..count-1]``; ``last`` ends the layer.
    o : Out(stream.Signature(acc_layout))
        ``acc[r, p]`` in order ``r`` major, ``p`` minor; ``last`` on the layer's final one.
    act : In(stream.Signature(act_layout(params)))
        Activation memory writes (``addr``, int8 ``data``); ``ready`` is always 1 (one write per
        clock). Write while idle.
    cfg : In(cfg_layout)
        ``cols`` and ``positions`` of the next layer, sampled at ``start``.
    start : In(1)
        Begins a layer (ignored while busy).
    status : Out(StructLayout({"busy", "done", "waiting", "error": MacError}))
        ``busy`` from ``start`` to the clock after the layer's last beat; ``done`` for one
        clock after that; ``waiting`` while busy with no weight beat offered (the engine
        starves: what ``subbit infer`` measures); ``error`` sticky until reset.

    Throughput: ``lanes / positions`` weights per clock (``lanes`` for a fully-connected layer)
    while ``i`` is valid and ``o`` ready. Latency: an output is valid the clock after the beat
    that completes it. Backpressure: ``i.ready`` rises on the clock a beat's last position is
    processed; the engine stalls while ``o`` holds an unaccepted output and the next step would
    write another. Datapath: activation read, ``lanes`` multiplies, adder tree and accumulate
    in one clock (combinational, not timing-optimised). Errors: a bad ``cfg`` at ``start``
    sets ``BAD_CONFIG`` and the layer is not started; a ``last`` beat that leaves a row
    unfinished sets ``PARTIAL_ROW`` (the partial sums are dropped).
    """

    def __init__(self, params: MacParams = MacParams()):
        if not isinstance(params, MacParams):
            raise rejected(self, f"params must be a MacParams, not {params!r}")
        self.p = params
        super().__init__({
            "i": In(stream.Signature(weight_layout(params))),
            "o": Out(stream.Signature(acc_layout)),
            "act": In(stream.Signature(act_layout(params))),
            "cfg": In(cfg_layout),
            "start": In(1),
            "status": Out(status_layout),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K = p.lanes
        AB = (p.act_depth - 1).bit_length()

        m.submodules.act_mem = act_mem = Memory(shape=signed(ACT_BITS), depth=p.act_depth, init=[])
        aw = act_mem.write_port()
        m.d.comb += [aw.addr.eq(self.act.payload.addr), aw.data.eq(self.act.payload.data),
                     aw.en.eq(self.act.valid), self.act.ready.eq(1)]
        act_r = [act_mem.read_port(domain="comb") for _ in range(K)]
        m.submodules.acc_mem = acc_mem = Memory(shape=signed(ACC_BITS), depth=p.max_positions, init=[])
        acc_w = acc_mem.write_port()
        acc_r = acc_mem.read_port(domain="comb")

        busy = Signal()
        error = Signal(MacError)
        cols = Signal(DIM_BITS)
        positions = Signal(DIM_BITS)
        col = Signal(DIM_BITS)              # column of lane 0 of the current beat within its row
        pos = Signal(DIM_BITS)              # position being processed
        pbase = Signal(AB + 1)              # pos * cols
        done = Signal()
        m.d.sync += done.eq(0)
        m.d.comb += [self.status.busy.eq(busy), self.status.done.eq(done), self.status.error.eq(error),
                     self.status.waiting.eq(busy & ~self.i.valid)]

        # ---- start: validate and load the layer's dimensions ---------------------------
        with m.If(self.start & ~busy & (error == MacError.NONE)):
            c, n = self.cfg.cols, self.cfg.positions
            bad = (c < K) | (n == 0) | (n > p.max_positions) | (c * n > p.act_depth)
            with m.If(bad):
                m.d.sync += error.eq(MacError.BAD_CONFIG)
            with m.Else():
                m.d.sync += [busy.eq(1), cols.eq(c), positions.eq(n), col.eq(0), pos.eq(0), pbase.eq(0)]

        # ---- one step: the current beat at position `pos` -----------------------------
        beat = self.i.payload
        boundary = Signal()                 # a row ends within this beat
        m.d.comb += boundary.eq(col + beat.count >= cols)
        sum_lo = Signal(signed(ACC_BITS))
        sum_hi = Signal(signed(ACC_BITS))
        lo_terms, hi_terms = [], []
        for j in range(K):
            cj = Signal(DIM_BITS + 1, name=f"col{j}")
            in_lo = Signal(name=f"lo{j}")
            m.d.comb += [cj.eq(col + j), in_lo.eq(cj < cols)]
            col_j = Mux(in_lo, cj, cj - cols)
            m.d.comb += act_r[j].addr.eq(pbase + col_j)
            prod = Signal(signed(p.code_bits + ACT_BITS), name=f"prod{j}")
            m.d.comb += prod.eq(Mux(j < beat.count, beat.codes[j] * act_r[j].data, 0))
            lo_terms.append(Mux(in_lo, prod, 0))
            hi_terms.append(Mux(in_lo, 0, prod))
        m.d.comb += [sum_lo.eq(sum(lo_terms)), sum_hi.eq(sum(hi_terms))]

        m.d.comb += acc_r.addr.eq(pos)
        prev = Mux(col == 0, 0, acc_r.data)           # a beat starting a row starts from zero
        total = Signal(signed(ACC_BITS))
        m.d.comb += total.eq(prev + sum_lo)
        last_pos = pos + 1 == positions

        out_free = ~self.o.valid | self.o.ready
        step = Signal()
        m.d.comb += step.eq(busy & self.i.valid & (out_free | ~boundary))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(step):
            m.d.comb += [acc_w.addr.eq(pos), acc_w.en.eq(1),
                         acc_w.data.eq(Mux(boundary, sum_hi, total))]
            with m.If(boundary):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.acc.eq(total),
                             self.o.payload.last.eq(beat.last & last_pos)]
            with m.If(last_pos):
                m.d.comb += self.i.ready.eq(1)
                new_col = col + beat.count
                m.d.sync += [pos.eq(0), pbase.eq(0), col.eq(Mux(boundary, new_col - cols, new_col))]
                with m.If(beat.last):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    with m.If(Mux(boundary, new_col - cols, new_col) != 0):
                        m.d.sync += error.eq(MacError.PARTIAL_ROW)
            with m.Else():
                m.d.sync += [pos.eq(pos + 1), pbase.eq(pbase + cols)]
        return m
