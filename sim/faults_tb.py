"""cocotb bench: many corrupted streams through one decoder, each followed by a reset and a good stream.

Run through `subbit.sim.rtl_faults.run_batch`. The job (``$SUBBIT_TB_IN``) holds every
case's beats back to back (``starts`` delimits them) with their ``lasts``, a
clock budget per case (the watchdog) and a good stream. Case ``i`` runs under
input-idle pattern ``i mod 3`` and output-backpressure pattern ``(i // 3) mod 3``.
Per case the bench records the error code and clock, the decoded codes with
the clock of every layer's ``last`` beat, and the accept clock of the ``mark``
beats; it fails (the watchdog) if a case or its recovery exceeds its budget,
if an input beat is refused forever, or if the good stream after reset is not
bit-exact.
"""

from __future__ import annotations

import cocotb
import numpy as np

from .tb import PATTERNS, TB, check, load_job, save_result


class LoggingTB(TB):
    """`TB` that also logs, per output beat, whether it ended a layer."""

    def unpack(self, v):
        codes, last = super().unpack(v)
        self.beat_log.append(int(last))
        return codes, last


@cocotb.test(timeout_time=3600, timeout_unit="sec")
async def faults(dut):
    job = load_job()
    tb = LoggingTB(dut, job)
    starts = np.asarray(job["starts"]).tolist()
    beats, lasts = np.asarray(job["beats"]), np.asarray(job["lasts"]).astype(bool)
    budgets, marks = np.asarray(job["budgets"]).tolist(), np.asarray(job["marks"]).tolist()
    pats = list(PATTERNS)
    good = {"expected": job["good_expected"], "layer_ends": job["good_layer_ends"]}
    out = []
    for i in range(len(starts) - 1):
        b, e = starts[i], starts[i + 1]
        await tb.reset()
        tb.beat_log = []
        r = await tb.run(beats[b:e].tolist(), lasts=lasts[b:e].tolist(), idle=PATTERNS[pats[i % 3]](),
                         backpressure=PATTERNS[pats[i // 3 % 3]](), timeout_cycles=budgets[i], stop_on_error=False)
        assert not r["timed_out"], f"case {i}: watchdog, no end after {budgets[i]} clocks (error {r['error']})"
        assert r["beats_accepted"] == e - b, f"case {i}: input blocked after {r['beats_accepted']} of {e - b} beats"
        ends = [c for c, last in zip(r["out_cycles"], tb.beat_log) if last]
        acc = r["accepted_cycles"]
        out.append({"error": r["error"], "error_cycle": r["error_cycle"], "codes": r["codes"],
                    "layer_ends": r["layer_ends"], "layer_end_cycles": ends, "end_cycle": r["end_cycle"],
                    "mark_cycles": [acc[m] if 0 <= m < len(acc) else None for m in marks[i]]})
        await tb.reset()
        r2 = await tb.run(job["good_beats"], timeout_cycles=int(job["good_budget"]))
        check(r2, good)
    save_result("faults", out)
