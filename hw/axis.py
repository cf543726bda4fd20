"""The decoder behind AXI4-Stream ports, for integrators (``subbit verilog --axis``).

Ports (all synchronous to ``clk``; ``rst`` synchronous, active high; AXI4-Stream handshakes:
a beat moves on a clock edge where ``tvalid`` and ``tready`` are both high)::

    s_axis_tdata   in   word_width   stream words (at 32 bits, the earlier word in bits 0..15)
    s_axis_tlast   in   1            the stream's final beat
    s_axis_tvalid  in   1
    s_axis_tready  out  1
    m_axis_tdata   out  8·K          weight code j (signed, sign-extended to 8 bits) in byte j
    m_axis_tkeep   out  K            byte j holds a weight (j < the beat's count); others are null
    m_axis_tlast   out  1            the beat ends a layer
    m_axis_tuser   out  layer_bits   the index of the layer the beat belongs to (0 = the stream's first)
    m_axis_tvalid  out  1
    m_axis_tready  in   1
    status_busy, status_done  out 1  as the decoder's ``status`` (docs/decoder.md)
    status_error   out  4            the decoder's error code (sticky until reset)

Latency, throughput and backpressure are the decoder's (:class:`~subbit.hw.decoder.Decoder`): the
wrapper is wiring and one layer counter, no register on the data path. ``m_axis_tvalid`` never
waits for ``m_axis_tready``; the beat is held while ``tvalid`` is high and ``tready`` low. An empty
layer is one beat with ``tkeep = 0`` and ``tlast = 1``. The layer index restarts at 0 with the first
beat of each stream (a beat accepted while the decoder is not busy) and after reset; it counts
modulo ``2**layer_bits``. A stream's first word is accepted only once the previous stream's last
beat has left ``m_axis`` (``s_axis_tready`` stays low while it is held), so the index of a held
beat never changes (a formal check, ``subbit bench formal``, found it could).
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal, signed
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from subbit.model.errors import SubbitError

from .decoder import Decoder
from .params import DecoderParams

__all__ = ["TOP", "AxisDecoder", "generate"]

TOP = "subbit_axis_decoder"


class AxisDecoder(wiring.Component):
    """:class:`Decoder` with AXI4-Stream slave (words) and master (weights) ports; see the module
    docstring for the ports.

    Parameters
    ----------
    params : DecoderParams
    layer_bits : int, 1..32
        Width of ``m_axis_tuser`` (the layer index; default 16, the stream's layer count field).
    """

    def __init__(self, params: DecoderParams, layer_bits: int = 16):
        if not isinstance(layer_bits, int) or not 1 <= layer_bits <= 32:
            raise SubbitError(f"layer_bits must be an integer in 1..32, not {layer_bits!r}")
        self.params, self.layer_bits = params, layer_bits
        k = params.lanes
        super().__init__({
            "s_axis_tdata": In(params.word_width), "s_axis_tlast": In(1), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "m_axis_tdata": Out(8 * k), "m_axis_tkeep": Out(k), "m_axis_tlast": Out(1),
            "m_axis_tuser": Out(layer_bits), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "status_busy": Out(1), "status_done": Out(1), "status_error": Out(4),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = Decoder(self.params)
        k = self.params.lanes
        # A stream's first word waits while a beat of the previous stream is still held on m_axis:
        # taking it would restart the layer index (tuser) under that beat.
        hold = dec.o.valid & ~dec.status.busy
        m.d.comb += [
            dec.i.payload.data.eq(self.s_axis_tdata), dec.i.payload.last.eq(self.s_axis_tlast),
            dec.i.valid.eq(self.s_axis_tvalid & ~hold), self.s_axis_tready.eq(dec.i.ready & ~hold),
            self.m_axis_tkeep.eq(Cat(*(dec.o.payload.count > j for j in range(k)))),
            self.m_axis_tlast.eq(dec.o.payload.last), self.m_axis_tvalid.eq(dec.o.valid),
            dec.o.ready.eq(self.m_axis_tready),
            self.status_busy.eq(dec.status.busy), self.status_done.eq(dec.status.done),
            self.status_error.eq(dec.status.error),
        ]
        lanes = [Signal(signed(8), name=f"code{j}") for j in range(k)]   # sign-extended to a byte
        m.d.comb += [b.eq(dec.o.payload.codes[j]) for j, b in enumerate(lanes)]
        m.d.comb += self.m_axis_tdata.eq(Cat(*lanes))
        layer = Signal(self.layer_bits)
        starts = dec.i.valid & dec.i.ready & ~dec.status.busy
        ends = dec.o.valid & self.m_axis_tready & dec.o.payload.last
        m.d.comb += self.m_axis_tuser.eq(layer)
        with m.If(starts):
            m.d.sync += layer.eq(0)
        with m.Elif(ends):
            m.d.sync += layer.eq(layer + 1)
        return m


def generate(params: DecoderParams, layer_bits: int = 16, name: str = TOP) -> str:
    """Synthesizable Verilog of an :class:`AxisDecoder` (top ``subbit_axis_decoder``)."""
    return verilog.convert(AxisDecoder(params, layer_bits), name=name, emit_src=False)
