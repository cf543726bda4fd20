"""The fault-injection suite through the Verilated decoder (`subbit.sim.rtl_faults`): an error iff the
golden model rejects the stream, the expected code, within the documented bound, no hang under any
traffic pattern, never wrong weights without an error, and bit-exact decoding after reset."""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest

from subbit.hw.params import DecoderParams
from subbit.model import faults, stream
from subbit.sim import rtl_faults as sim_faults
from subbit.sim import runner

CONFIGS = {
    "K1-M12-compare": DecoderParams(lanes=1, prob_bits=12, max_symbols=15, word_width=16),
    "K4-M10-w32-compare": DecoderParams(lanes=4, prob_bits=10, max_symbols=15, word_width=32),
    # the S4b stage (ways > 6): the configuration `subbit bench rtl` builds for K >= 2
    "K4-M10-w32-compare-D7": DecoderParams(lanes=4, prob_bits=10, max_symbols=15, word_width=32, ways=7),
}

# Contract violations of the current RTL found by this suite (docs/reliability.md, "Known RTL
# issues"). Fixing the RTL must empty this list.
KNOWN_RTL_ISSUES: list[re.Pattern] = []


def known_issue(msg: str) -> bool:
    return any(rx.search(msg) for rx in KNOWN_RTL_ISSUES)


def run_suite(p: DecoderParams, step: int):
    cfg = p.stream_config
    ref = faults.reference_codes(cfg, classed=p.classed, hardware=p.classed)
    words = stream.build(faults.reference_layers(cfg, classed=p.classed, hardware=p.classed), cfg)
    cases = [f for k, f in enumerate(sim_faults.rtl_cases(p)) if k % step == 0 or f.kind in ("swap", "trailing", "edit")]
    good = [c[:60] for c in ref[:5]]
    res = sim_faults.run_batch(runner.build(p), sim_faults.make_job(p, cases, words, good))
    assert len(res) == len(cases)
    stats, failures = collections.defaultdict(list), []
    errors, latencies, excused = collections.Counter(), collections.defaultdict(list), []
    for f, r in zip(cases, res):
        try:
            v = sim_faults.verdict(f, r, ref, p.layer_check_clocks)
        except AssertionError as e:
            if not known_issue(str(e)):
                failures.append(str(e))
            elif "pad word" in f.name and not np.array_equal(r["codes"], np.concatenate(ref)):
                failures.append(f"{f.name}: RTL accepts the pad word and decodes wrong weights")
            else:
                excused.append(str(e))
            continue
        stats[v["class"]].append(v["latency"])
        if v["latency"] is not None:
            latencies[(v["class"], v["error"], v["ref"])].append(v["latency"])
        errors[(f.kind, f.region, v["error"])] += 1
    assert not failures, "\n".join(failures[:30])
    # run with -s to see them (docs/reliability.md)
    print(f"\n{p.lanes=} {p.word_width=}: {len(cases)} streams")
    print("  " + ", ".join(f"{cls}: {len(v)}" for cls, v in sorted(stats.items())))
    for (cls, err, kind), lat in sorted(latencies.items()):
        print(f"  {cls} {err}: {len(lat)} streams, {min(lat)}..{max(lat)} clocks after the {kind} beat")
    for msg in excused:
        print(f"  known RTL issue: {msg}")
    for key, n in sorted(errors.items()):
        print(f"  {key}: {n}")
    return cases, stats


@pytest.mark.parametrize("name", ["K1-M12-compare"])
def test_fault_suite_subset(name):
    """Every 8th flip, burst and truncation plus every edit, swap and trailing case (~210 streams)
    under rotating traffic patterns."""
    cases, stats = run_suite(CONFIGS[name], 8)
    assert {f.kind for f in cases} == {"truncate", "flip", "burst", "trailing", "swap", "edit"}
    # bounds: in verdict(); payload check: flips, payload: edits with the payload check word fixed
    assert stats["parse"] and stats["payload check"] and stats["payload"] and stats["consistent"]


# a decoder of row-classed layers (stream v3): the classed layers' fields, tables and class index
# are truncated, flipped and edited too
CLASSED = {"K2-M12-table-T4-D7": DecoderParams(lanes=2, prob_bits=12, max_symbols=15, lookup="table", tables=4,
                                               ways=7),
           # the comparators with the S2b stage (the symbol's f/c select registered; weights leave from R2)
           "K1-M12-compare-T8-D7": DecoderParams(lanes=1, prob_bits=12, max_symbols=15, tables=8, ways=7)}


@pytest.mark.parametrize("name", list(CLASSED))
def test_fault_suite_classed_subset(name):
    """Every 8th flip, burst and truncation plus every edit, swap and trailing case of the v3 stream."""
    cases, stats = run_suite(CLASSED[name], 8)
    assert any(f.region in ("class fields", "classes") for f in cases)
    assert stats["parse"] and stats["payload check"] and stats["consistent"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*CONFIGS, *CLASSED])
def test_fault_suite_full(name):
    run_suite({**CONFIGS, **CLASSED}[name], 1)


def test_expected_codes_cover_every_kind():
    p = CONFIGS["K1-M12-compare"]
    for f in sim_faults.rtl_cases(p):
        assert sim_faults.expected_codes(f), f.name
        assert len(f.words) > 0
    assert np.all([len(f.words) for f in sim_faults.rtl_cases(p)])
