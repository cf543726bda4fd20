"""cocotb bench of the decoder's generated Verilog (run through `subbit.sim.runner`).

Inputs come from the job file named by ``$SUBBIT_TB_IN`` (built by the pytest
side or `subbit decode --rtl` from the golden model); measurements go to
``$SUBBIT_TB_OUT``. Every comparison is against codes produced by
``subbit.model``.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .ports import Fields
from .rtl_decode import FIRST_WEIGHT_ALLOWANCE, switch_metrics  # noqa: F401 (re-exported)


def load_job():
    with np.load(os.environ["SUBBIT_TB_IN"]) as z:
        job = json.loads(str(z["__json__"]))
        job.update({k: z[k] for k in z.files if k != "__json__"})
    return job


def save_result(key, value):
    path = os.environ["SUBBIT_TB_OUT"]
    res = {}
    if os.path.exists(path):
        with open(path) as fh:
            res = json.load(fh)
    res[key] = value
    with open(path, "w") as fh:
        json.dump(res, fh)


# -- traffic patterns ---------------------------------------------------------------------

def never():
    return itertools.repeat(False)


def random_pause(seed=1, p=0.3):
    rng = random.Random(seed)
    return (rng.random() < p for _ in itertools.count())


def bursts(on=7, off=5):
    return itertools.cycle([False] * on + [True] * off)


PATTERNS = {"none": never, "random": random_pause, "bursts": bursts}


class TB:
    """Clock, reset, input source, output sink and status monitor of one decoder."""

    def __init__(self, dut, job):
        self.dut = dut
        self.K = int(job["lanes"])
        self.ports = {k: Fields.from_json(v) for k, v in job["ports"].items()}   # subbit.sim.ports
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        d = self.dut
        d.rst.value = 1
        d.i__valid.value = 0
        d.i__payload.value = 0          # a defined bus: 4-state simulators would carry X otherwise
        d.o__ready.value = 0
        await ClockCycles(d.clk, 2)
        d.rst.value = 0

    def status(self):
        v, s = int(self.dut.status.value), self.ports["status"]
        return {"busy": s.get(v, "busy"), "done": s.get(v, "done"), "error": s.get(v, "error")}

    def unpack(self, v):
        o = self.ports["o"]
        count = o.get(v, "count")
        return [o.get(v, f"codes[{j}]") for j in range(count)], o.get(v, "last")

    async def source(self, beats, lasts, idle):
        """Drive ``beats``; ``idle`` yields True for clocks without valid. Records accept clocks."""
        d = self.dut
        self.accepted = []
        for k, (b, last) in enumerate(zip(beats, lasts)):
            while next(idle):
                d.i__valid.value = 0
                await RisingEdge(d.clk)
            d.i__valid.value = 1
            d.i__payload.value = self.ports["i"].pack(data=int(b), last=int(last))
            while True:
                await RisingEdge(d.clk)
                if d.i__ready.value:
                    self.accepted.append(self.cycle)
                    break
        d.i__valid.value = 0

    async def run(self, beats, lasts=None, idle=None, backpressure=None, timeout_cycles=None,
                  stop_on_error=True):
        """Feed one stream and collect its output until ``status.done`` (or an error / timeout)."""
        d = self.dut
        lasts = lasts if lasts is not None else [k == len(beats) - 1 for k in range(len(beats))]
        idle = idle or never()
        backpressure = backpressure or never()
        self.cycle = 0
        codes, layer_ends, out_cycles, last_cycles = [], [], [], []
        err_cycle, err = None, 0
        src = cocotb.start_soon(self.source(beats, lasts, idle))
        limit = timeout_cycles or 50 * len(beats) + 20000
        ready = 0
        while self.cycle < limit:
            ready = 0 if next(backpressure) else 1
            d.o__ready.value = ready
            await RisingEdge(d.clk)
            self.cycle += 1
            if ready and d.o__valid.value:
                c, last = self.unpack(int(d.o__payload.value))
                codes.extend(c)
                out_cycles.append(self.cycle)
                if last:
                    layer_ends.append(len(codes))
                    last_cycles.append(self.cycle)
            st = self.status()
            if st["error"] and err_cycle is None:
                err_cycle, err = self.cycle, st["error"]
                if stop_on_error:
                    break
            if st["done"] and src.done() and not d.o__valid.value:
                break
        timed_out = self.cycle >= limit
        if not src.done():
            src.cancel()
        first_in = self.accepted[0] if self.accepted else None
        return {
            "codes": codes, "layer_ends": layer_ends, "error": err, "error_cycle": err_cycle,
            "timed_out": timed_out, "beats_accepted": len(self.accepted),
            "accepted_cycles": self.accepted, "out_cycles": out_cycles, "first_in_cycle": first_in,
            "last_cycles": last_cycles,
            "end_cycle": self.cycle,
        }


def metrics(r, lanes, header_last_beats=None):
    """Throughput and latency from a run with an always-ready sink."""
    oc = r["out_cycles"]
    n = len(r["codes"])
    if not oc or r["first_in_cycle"] is None:
        return {"cycles": 0, "weights": n, "weights_per_cycle": 0.0}
    cycles = oc[-1] - r["first_in_cycle"] + 1
    span = oc[-1] - oc[0] + 1
    d = np.diff(oc)
    gaps = [(int(k + 1), int(g - 1)) for k in np.flatnonzero(d > 1)[:32] for g in [d[k]]]
    res = {"cycles": cycles, "weights": n, "weights_per_cycle": n / cycles,
           "first_weight_latency_cycles": oc[0] - r["first_in_cycle"],
           "output_beats": len(oc), "output_bubbles": span - len(oc),
           "output_gaps": gaps}     # (output beats before the gap, idle clocks), the first 32
    if header_last_beats is not None:
        res["switch_idle"], res["switch_bubbles"] = switch_metrics(r, header_last_beats)
    return res


def check(r, job):
    exp = np.asarray(job["expected"]).tolist()
    assert not r["timed_out"], f"timed out after {r['end_cycle']} clocks"
    assert r["error"] == 0, f"decoder flagged error {r['error']} at clock {r['error_cycle']}"
    assert len(r["codes"]) == len(exp), f"{len(r['codes'])} weights decoded, golden model has {len(exp)}"
    bad = next((k for k, (a, b) in enumerate(zip(r["codes"], exp)) if a != b), None)
    assert bad is None, f"weight {bad}: RTL {r['codes'][bad]}, golden model {exp[bad]}"
    assert r["layer_ends"] == np.asarray(job["layer_ends"]).tolist(), \
        f"layer ends {r['layer_ends']} != golden {np.asarray(job['layer_ends']).tolist()}"


@cocotb.test()
async def decode(dut):
    """One stream, always-ready sink: codes and cycle measurements."""
    job = load_job()
    tb = TB(dut, job)
    await tb.reset()
    r = await tb.run(job["beats"], timeout_cycles=job.get("timeout_cycles"))
    r.update(metrics(r, tb.K, job.get("header_last_beats")))
    for k in ("accepted_cycles", "out_cycles", "last_cycles"):
        r.pop(k)
    save_result("decode", r)


@cocotb.test()
@cocotb.parametrize(idle=list(PATTERNS), backpressure=list(PATTERNS))
async def run_test(dut, idle, backpressure):
    """The job's stream under every input-idle x output-backpressure pattern, against the golden model."""
    job = load_job()
    tb = TB(dut, job)
    await tb.reset()
    r = await tb.run(job["beats"], idle=PATTERNS[idle](), backpressure=PATTERNS[backpressure]())
    check(r, job)
    save_result(f"{idle}/{backpressure}", {"weights": len(r["codes"]), "clocks": r["end_cycle"]})


@cocotb.test()
async def error(dut):
    """A corrupted stream: the expected error code, in bounded time, input never blocked; after a
    reset a good stream decodes bit-exactly."""
    job = load_job()
    tb = TB(dut, job)
    await tb.reset()
    lasts = job["lasts"].tolist() if "lasts" in job else None
    r = await tb.run(job["beats"], lasts=lasts, stop_on_error=False,
                     timeout_cycles=len(job["beats"]) * 4 + 4000)
    allowed = [int(c) for c in np.atleast_1d(job["expect_error"])]      # one code, or the codes allowed
    assert r["error"] in allowed, f"error code {r['error']} (clock {r['error_cycle']}), expected one of {allowed}"
    assert r["beats_accepted"] == len(job["beats"]), \
        f"input blocked: {r['beats_accepted']} of {len(job['beats'])} beats accepted"
    bad = int(job["bad_beat"])
    latency = r["error_cycle"] - r["accepted_cycles"][bad] if bad >= 0 else None
    # clocks from the first layer's `last` beat leaving `o` to the error (negative: before it)
    after_last = r["error_cycle"] - r["last_cycles"][0] if r["last_cycles"] else None
    save_result("error", {"error": r["error"], "latency": latency, "after_first_last": after_last,
                          "outputs_after_error": sum(c > r["error_cycle"] for c in r["out_cycles"])})
    await tb.reset()
    good = {"expected": job["good_expected"], "layer_ends": job["good_layer_ends"]}
    r2 = await tb.run(job["good_beats"])
    check(r2, good)
    save_result("recovered", len(r2["codes"]))
