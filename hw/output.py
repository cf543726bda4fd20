"""The decoder's output: a beat's symbols plus their layer's base, into the output buffer."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .outbuf import OutputBuffer
from .params import DecoderParams

__all__ = ["OutputStage", "output_layout", "base_write_layout"]


def output_layout(params: DecoderParams) -> data.StructLayout:
    """Output beat: ``count`` valid codes (lanes ``0..count-1``); ``last`` ends a layer."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(params.code_bits), params.lanes),
                              "count": range(params.lanes + 1), "last": 1})


#: A layer's base written into its bank (the parser's registered field write).
base_write_layout = data.StructLayout({"we": 1, "bank": 1, "base": signed(16)})


class OutputStage(wiring.Component):
    """Turns the lanes' symbols of a beat into weight codes and queues them on ``o``.

    A weight code is the lane's symbol index plus its layer's ``base`` (the lowest code of
    the layer's trimmed alphabet). The bases of both banks are kept here; the beat's base is
    selected by its bank while the beat is in R0 (``r0_bank``; R1 with ``lookup="compare"``)
    and registered, so the symbol (R2's registered symbol with ``lookup="compare"``, S1's with
    ``table``) is only added to a
    register on its way into the buffer.

    Members
    -------
    base_write : In(base_write_layout)
        A layer's base, for its bank (the parser's field write).
    en : In(1)
        The datapath advances (the beat in R1 moves on; writes one beat when it is valid).
    r0_bank : In(1)
        Bank of the beat in R0 (R1 when the weights leave from R2, ``lookup="compare"``).
    r1 : In(StructLayout({"valid": 1, "count": range(K + 1), "last": 1}))
        The beat in R1 (R2 with ``compare``): is it one, how many of its lanes hold weights, does it
        end its layer.
    symbols : In(ArrayLayout(sym_bits, K))
        The lanes' symbols of that beat (made in S1; registered in R2 with ``compare``).
    o : Out(stream.Signature(output_layout(params)))
    room : Out(1)
        The output buffer holds at most one beat (:class:`~subbit.hw.outbuf.OutputBuffer`):
        a beat may be written on the next clock even if one is written now.

    Latency: a beat is on ``o`` the clock after it leaves R1 (R2 with ``compare``; its symbols,
    registered into the buffer's entry). Throughput: a beat per clock. Backpressure: ``o.ready`` low fills the
    3-entry buffer; the writer (the datapath enable) stops on ``room``.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        super().__init__({
            "base_write": In(base_write_layout),
            "en": In(1),
            "r0_bank": In(1),
            "r1": In(data.StructLayout({"valid": 1, "count": range(p.lanes + 1), "last": 1})),
            "symbols": In(data.ArrayLayout(p.sym_bits, p.lanes)),
            "o": Out(stream.Signature(output_layout(p))),
            "room": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        base = Array(Signal(signed(16), name=f"base{b}") for b in range(2))
        with m.If(self.base_write.we):
            m.d.sync += base[self.base_write.bank].eq(self.base_write.base)

        m.submodules.buffer = buffer = OutputBuffer(output_layout(p))
        beat = Signal(output_layout(p))
        base_r1 = Signal(signed(p.code_bits))        # the base of the beat entering R1
        with m.If(self.en):
            m.d.sync += base_r1.eq(base[self.r0_bank])
        for j in range(p.lanes):
            m.d.comb += beat.codes[j].eq(self.symbols[j] + base_r1)
        m.d.comb += [beat.count.eq(self.r1.count), beat.last.eq(self.r1.last),
                     buffer.w_data.eq(beat), buffer.w_en.eq(self.en & self.r1.valid), self.room.eq(buffer.room)]
        wiring.connect(m, buffer.o, wiring.flipped(self.o))
        return m
