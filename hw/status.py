"""The decoder's status: errors collected into one sticky code, the halt they cause, busy and done."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import ErrorCode

__all__ = ["Status", "status_layout", "layer_flags_layout"]

status_layout = data.StructLayout({"busy": 1, "done": 1, "error": ErrorCode})

#: The datapath's end-of-layer check flags (:class:`~subbit.hw.checks.LayerChecks`).
layer_flags_layout = data.StructLayout({"payload_length": 1, "final_state": 1})


class Status(wiring.Component):
    """Collects the parser's and the datapath's errors into the sticky ``status.error``.

    The first error wins and stays until reset; with it ``halt`` rises, which stops the
    parser (it then drops all input) and the datapath. ``busy`` runs from a stream's first
    word to its end, ``done`` from then until the next stream starts (or from an error).

    Members
    -------
    parse_error : In(ErrorCode)
        The parser's error code (:class:`~subbit.hw.frontend.Frontend`), for a clock.
    layer_flags : In(layer_flags_layout)
        The end-of-layer checks' flags (payload length, final state). They are registered
        here before they reach the error register, which keeps them off the paths into
        ``halt`` and the datapath enable.
    class_error : In(1)
        ``BAD_CLASS`` from the row-class selection (:class:`~subbit.hw.classes.ClassSelect`),
        registered as the layer check flags (after them in priority).
    stream_start, stream_end : In(1)
        Strobes from the parser.
    halt : Out(1)
        An error is held (``status.error != NONE``; from a register).
    halt_next : Out(1)
        ``halt`` on the next clock: held or being raised (the datapath enable, a register,
        is made from it).
    status : Out(status_layout)

    Latency: a parse error is on ``status.error`` (and ``halt``) the clock after it is
    raised; a layer check flag two clocks after. The parser's error wins over the datapath's
    when both come on one clock; ``PAYLOAD_LENGTH`` over ``FINAL_STATE``.
    Throughput and backpressure: none (a register, every clock).
    """

    def __init__(self):
        super().__init__({
            "parse_error": In(ErrorCode),
            "layer_flags": In(layer_flags_layout),
            "class_error": In(1),
            "stream_start": In(1),
            "stream_end": In(1),
            "halt": Out(1),
            "halt_next": Out(1),
            "status": Out(status_layout),
        })

    def elaborate(self, platform):
        m = Module()
        error = Signal(ErrorCode)
        halt = self.halt
        m.d.comb += halt.eq(error != ErrorCode.NONE)
        flags_r = Signal(3, name="layer_flags_r")
        m.d.sync += flags_r.eq(Cat(self.layer_flags, self.class_error))
        flag_error = Mux(flags_r[0], ErrorCode.PAYLOAD_LENGTH, Mux(flags_r[1], ErrorCode.FINAL_STATE,
                                                                   Mux(flags_r[2], ErrorCode.BAD_CLASS, ErrorCode.NONE)))
        with m.If(~halt):
            with m.If(self.parse_error != ErrorCode.NONE):
                m.d.sync += error.eq(self.parse_error)
            with m.Elif(flag_error != ErrorCode.NONE):
                m.d.sync += error.eq(flag_error)
        m.d.comb += self.halt_next.eq(halt | (self.parse_error != ErrorCode.NONE) | flags_r.any())

        busy = Signal()
        done = Signal()
        with m.If(self.stream_start):
            m.d.sync += [busy.eq(1), done.eq(0)]
        with m.If(self.stream_end):
            m.d.sync += [busy.eq(0), done.eq(1)]
        m.d.comb += [self.status.busy.eq(busy & ~halt), self.status.done.eq(done | halt),
                     self.status.error.eq(error)]
        return m
