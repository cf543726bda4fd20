"""cocotb bench of the inference top (`subbit.hw.infer_top.InferTop`, run through `subbit.sim.infer_runner`).

The job (pickle named by ``$SUBBIT_TB_IN``) holds an `subbit.model.integer_net.IntegerNet`, int8
images and the weight stream's input beats. Per image the bench feeds the whole stream into
the decoder and runs the integer forward pass with the RTL supplying every layer's
accumulators: activations are written into the engine's memory, the layer started, its int32
outputs collected. Each layer's accumulators must equal `subbit.model.integer_net.matmul` and each
image's logits the numpy reference's. Measurements go to ``$SUBBIT_TB_OUT``.
"""

from __future__ import annotations

import os
import pickle

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from ..model.integer_net import matmul
from .ports import Fields
from .tb import PATTERNS, save_result


def load_job():
    with open(os.environ["SUBBIT_TB_IN"], "rb") as fh:
        return pickle.load(fh)


class InferTB:
    """Clock, reset, stream source and layer driver of one inference top."""

    def __init__(self, dut, job):
        self.dut = dut
        self.ports = {k: Fields.from_json(v) for k, v in job["ports"].items()}   # subbit.sim.ports
        self.cycle = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        d = self.dut
        d.rst.value = 1
        for s in (d.i__valid, d.i__payload, d.o__ready, d.act__valid, d.act__payload, d.cfg, d.start):
            s.value = 0
        await ClockCycles(d.clk, 2)
        d.rst.value = 0

    async def source(self, beats):
        """Feed the stream's beats (``last`` included) whenever the decoder takes them."""
        d = self.dut
        for b in beats:
            d.i__valid.value = 1
            d.i__payload.value = int(b)
            while True:
                await RisingEdge(d.clk)
                if d.i__ready.value:
                    break
        d.i__valid.value = 0

    async def layer(self, x, rows, backpressure):
        """Load ``x`` (positions, cols), run the layer; returns (acc (rows, positions), stats)."""
        d = self.dut
        positions, cols = x.shape
        for k, v in enumerate(np.asarray(x, dtype=np.int8).ravel()):
            d.act__valid.value = 1
            d.act__payload.value = self.ports["act"].pack(addr=k, data=int(v))
            await RisingEdge(d.clk)
        d.act__valid.value = 0
        d.cfg.value = self.ports["cfg"].pack(cols=cols, positions=positions)
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        out, cycles, waits, done = [], 0, 0, False
        limit = 64 * rows * positions * cols + 10000
        while cycles < limit:
            ready = 0 if next(backpressure) else 1
            d.o__ready.value = ready
            await Timer(1, unit="ns")                    # sample settled values before the edge
            st, valid = int(d.status.value), bool(d.o__valid.value)
            status = self.ports["status"]
            assert status.get(st, "decoder.error") == 0, f"decoder error {status.get(st, 'decoder.error')}"
            assert status.get(st, "mac.error") == 0, f"MAC engine error {status.get(st, 'mac.error')}"
            done |= bool(status.get(st, "mac.done"))     # a one-clock pulse, with the last output
            if done and not valid:
                break
            waits += status.get(st, "mac.waiting")
            payload = int(d.o__payload.value) if ready and valid else None
            await RisingEdge(d.clk)
            cycles += 1
            if payload is not None:
                out.append(payload & 0xFFFFFFFF)
        assert done, f"layer {rows}x{cols} ({positions} positions) did not finish in {limit} clocks"
        acc = np.array(out, dtype=np.uint32).view(np.int32)
        assert acc.size == rows * positions, f"{acc.size} accumulators, expected {rows * positions}"
        return acc.reshape(rows, positions), {"cycles": cycles, "wait_cycles": waits}


@cocotb.test()
@cocotb.parametrize(backpressure=["none", "random"])
async def infer(dut, backpressure):
    """Every job image through the network, layers in RTL: accumulators and logits bit-exact."""
    job = load_job()
    net, beats = job["net"], job["beats"]
    tb = InferTB(dut, job)
    await tb.reset()
    layers = {q.index: q for q in net.ordered()}
    classes, cycles, waits = [], [], []
    for n, xq in enumerate(job["images"]):
        src = cocotb.start_soon(tb.source(beats))
        gen = net.forward(np.asarray(xq, dtype=np.int8))
        c = w = 0
        try:
            k, xm = next(gen)
            while True:
                q = layers[k]
                acc, st = await tb.layer(xm, q.rows, PATTERNS[backpressure]())
                ref = matmul(q.codes, xm)
                bad = np.argwhere(acc != ref)
                assert not len(bad), f"image {n} layer {q.name}: acc{tuple(bad[0])} RTL " \
                    f"{acc[tuple(bad[0])]}, reference {ref[tuple(bad[0])]}"
                c, w = c + st["cycles"], w + st["wait_cycles"]
                k, xm = gen.send(acc)
        except StopIteration as e:
            logits = e.value
        assert np.array_equal(logits, job["logits"][n]), f"image {n}: logits differ from the reference"
        await src
        classes.append(int(np.argmax(logits)))
        cycles.append(c)
        waits.append(w)
    save_result(backpressure, {"classes": classes, "cycles": cycles, "wait_cycles": waits})
