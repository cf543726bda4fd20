"""``python -m subbit.cli.fault_suite``: the fault-injection suite and the random single-bit-flip
detection rate of the golden reader (`subbit.model.faults`; figures in docs/reliability.md), as JSON."""

from __future__ import annotations

import argparse
import json

from .options import decoder_option

__all__ = ["main"]


def main(argv=None):
    from subbit.model import faults, stream
    ap = argparse.ArgumentParser(prog="python -m subbit.cli.fault_suite",
                                 description="Fault-injection suite and random single-bit-flip detection rate "
                                             "of the golden reader (docs/reliability.md).")
    ap.add_argument("--stream", choices=["reference", "ccexam"], default="reference",
                    help="reference: the suite's edge-case layers; ccexam: the MNIST CNN at 3-bit RTN")
    for name in ("prob_bits", "lanes", "ways"):
        decoder_option(name).add_to(ap)
    ap.add_argument("--flips", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--final-state", action="store_true",
                    help="also decode every payload flip with its payload check word recomputed: what "
                         "the rANS final-state check alone detects (slow on large streams)")
    a = ap.parse_args(argv)
    config = stream.StreamConfig(a.prob_bits, a.lanes, a.ways)
    if a.stream == "ccexam":
        from subbit.model.compress import ccexam_codes
        codes = ccexam_codes(3)
    else:
        codes = faults.reference_codes(config, a.seed)
    hw = [stream.encode_codes(c, config) for c in codes]
    suite = {}
    if a.stream == "reference":
        for f in faults.cases(config, a.seed):
            verdict, err = faults.outcome(f.words, codes)
            key = f"{f.kind}: {verdict}" + ("" if f.stream_detectable else " (consistent stream)")
            suite[key] = suite.get(key, 0) + 1
            if verdict == "detected" and err.offset is None:
                raise AssertionError(f"{f.name}: error without an offset: {err}")
    res = faults.flip_detection(hw, config, a.flips, a.seed, final_state=a.final_state)
    print(json.dumps({"stream": a.stream, "config": [config.prob_bits, config.lanes, config.ways],
                      "suite": suite, **res}, indent=1))


if __name__ == "__main__":
    main()
