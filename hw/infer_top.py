"""Inference top: the weight-stream decoder feeding the MAC engine directly, and its Verilog."""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Module, Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .decoder import Decoder, status_layout as decoder_status_layout
from .frontend import input_layout
from .mac import MacEngine, MacParams, acc_layout, act_layout, cfg_layout, status_layout as mac_status_layout
from .params import DecoderParams, rejected

__all__ = ["TOP", "InferTop", "mac_params_for", "generate"]

TOP = "subbit_infer"
QUEUE_DEPTH = 4      #: decoded beats queued between the decoder and the engine


def mac_params_for(decoder: DecoderParams, *, act_depth: int = 1 << 14, max_positions: int = 64) -> MacParams:
    """The MAC engine that takes ``decoder``'s output beats."""
    return MacParams(lanes=decoder.lanes, code_bits=decoder.code_bits, act_depth=act_depth,
                     max_positions=max_positions)


class InferTop(wiring.Component):
    """`subbit.hw.decoder.Decoder` → `subbit.hw.mac.MacEngine`: weights are decoded on the fly,
    beat by beat, and never stored.

    Members
    -------
    i : In(stream.Signature(input_layout(word_width)))
        The weight stream's words (the decoder's ``i``); one stream per inference.
    o : Out(stream.Signature(acc_layout))
        int32 accumulators of the current layer (the engine's ``o``).
    act, cfg, start : the engine's activation writes, layer dimensions and start.
    status : Out(StructLayout({"decoder": ..., "mac": ...}))
        Both blocks' status (`subbit.hw.decoder.Decoder`, `subbit.hw.mac.MacEngine`).

    Throughput: the decoder makes ``lanes`` weights per clock; the engine takes
    ``lanes / positions`` per clock, so it never waits for weights once the decoder runs
    (``status.mac.waiting`` measures it); a :data:`QUEUE_DEPTH`-beat FIFO between them hides
    the decoder's restart after the engine paused. Latency: the decoder's (5 clocks after the header to the
    first weight) plus two clocks (FIFO, output register). Backpressure: ``o.ready`` low stalls the engine, which stalls
    the decoder, which stops taking ``i``. Errors: each block's, on ``status``.
    """

    def __init__(self, decoder: DecoderParams, mac: MacParams | None = None):
        mac = mac_params_for(decoder) if mac is None else mac
        if (mac.lanes, mac.code_bits) != (decoder.lanes, decoder.code_bits):
            raise rejected(self, f"the MAC engine takes {mac.lanes} codes of {mac.code_bits} bits per beat, the "
                              f"decoder makes {decoder.lanes} of {decoder.code_bits}")
        self.decoder_params, self.mac_params = decoder, mac
        super().__init__({
            "i": In(stream.Signature(input_layout(decoder.word_width))),
            "o": Out(stream.Signature(acc_layout)),
            "act": In(stream.Signature(act_layout(mac))),
            "cfg": In(cfg_layout),
            "start": In(1),
            "status": Out(data.StructLayout({"decoder": decoder_status_layout, "mac": mac_status_layout})),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = Decoder(self.decoder_params)
        m.submodules.mac = mac = MacEngine(self.mac_params)
        wiring.connect(m, wiring.flipped(self.i), dec.i)
        # A short FIFO between the blocks: beats decoded while the engine waits for the host
        # (activation loads) are queued, so the decoder's restart never starves the engine.
        m.submodules.queue = q = SyncFIFOBuffered(width=Shape.cast(dec.o.payload.shape()).width, depth=QUEUE_DEPTH)
        m.d.comb += [q.w_data.eq(dec.o.payload), q.w_en.eq(dec.o.valid), dec.o.ready.eq(q.w_rdy),
                     mac.i.payload.eq(q.r_data), mac.i.valid.eq(q.r_rdy), q.r_en.eq(mac.i.ready)]
        wiring.connect(m, mac.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.act), mac.act)
        m.d.comb += [mac.cfg.eq(self.cfg), mac.start.eq(self.start),
                     self.status.decoder.eq(dec.status), self.status.mac.eq(mac.status)]
        return m


def generate(decoder: DecoderParams, mac: MacParams | None = None, name: str = TOP) -> str:
    """Synthesizable Verilog of an :class:`InferTop`."""
    return verilog.convert(InferTop(decoder, mac), name=name, emit_src=False)
