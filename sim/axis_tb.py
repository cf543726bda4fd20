"""cocotb bench of the AXI4-Stream decoder (`subbit.hw.axis`) with cocotbext-axi's source and sink,
random pauses on both sides. Inputs come from the job named by ``$SUBBIT_TB_IN`` (the golden
model's words and codes); the bench compares every layer's frame with them and writes what it saw
to ``$SUBBIT_TB_OUT``."""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource


def _pauses(p, seed):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def decode_axis(dut):
    with open(os.environ["SUBBIT_TB_IN"]) as fh:
        job = json.load(fh)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst, byte_size=job["word_width"])
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    src.set_pause_generator(_pauses(job["pause_in"], 1))
    sink.set_pause_generator(_pauses(job["pause_out"], 2))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    seen = []
    for words in job["streams"]:           # back to back: the layer index restarts at each stream
        await src.send(AxiStreamFrame(words))
        frames = []
        for _ in range(job["layers"]):
            f = await sink.recv()
            codes = [b - 256 if b >= 128 else b for b in f.tdata]
            frames.append({"codes": codes, "tuser": f.tuser})
        seen.append(frames)
        for _ in range(200):
            if int(dut.status_done.value):
                break
            await RisingEdge(dut.clk)
    with open(os.environ["SUBBIT_TB_OUT"], "w") as fh:
        json.dump({"frames": seen, "error": int(dut.status_error.value), "done": int(dut.status_done.value)}, fh)
