"""Corrupted streams through the generated RTL: expected error codes, bounds, and the batch runner.

The faults are `subbit.model.faults.cases`; the bench is `subbit.sim.faults_tb`
(many cases per simulator start). :func:`verdict` checks one case against the
golden model and the documented contract (``docs/decoder.md``,
``docs/reliability.md``):

* the decoder flags an error iff the golden reader rejects the stream, with
  the code of :func:`expected_codes` where the class is determinable (a flipped
  payload, payload pad or payload check word bit: ``PAYLOAD_CHECK``);
* parse-class errors (``PAYLOAD_CHECK`` included) come ``<= PARSE_BOUND`` clocks
  after the beat that shows them (for ``PAYLOAD_CHECK``: the beat carrying the
  payload check word); payload-class errors (``FINAL_STATE`` /
  ``PAYLOAD_LENGTH``: a payload edited with its check word recomputed)
  ``<= LAYER_CHECK_CLOCKS`` clocks after the corrupted layer's ``last`` beat
  leaves the decoder (if it does);
* no layer whose ``last`` beat left more than ``LAYER_CHECK_CLOCKS`` clocks before
  the error differs from the golden model (never wrong weights without an error);
* after a reset the next stream decodes bit-exactly (checked in the bench).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..hw.params import LAYER_CHECK_CLOCKS, DecoderParams, ErrorCode
from ..model import faults, stream
from ..model.errors import SubbitError
from .rtl_decode import pack_beats
from .runner import Build, run_bench

__all__ = ["PARSE_BOUND", "expected_codes", "rtl_cases", "make_job", "run_batch", "verdict"]

TB_MODULE = "subbit.sim.faults_tb"
PARSE_BOUND = 3                  #: clocks from accepting the offending beat to status.error (docs/decoder.md)
PAYLOAD = {ErrorCode.FINAL_STATE, ErrorCode.PAYLOAD_LENGTH}
PAYLOAD_TAIL = ("payload", "payload pad", "payload check")      # regions the payload check word covers
ANY = set(ErrorCode) - {ErrorCode.NONE}
_STREAM_HEADER = {0: {ErrorCode.BAD_MAGIC}, 1: {ErrorCode.BAD_VERSION}, 2: {ErrorCode.CONFIG_MISMATCH}}


def expected_codes(f: faults.Fault) -> set[ErrorCode]:
    """Error codes the decoder may raise for fault ``f`` (``{NONE}`` for a consistent stream)."""
    if not f.stream_detectable:
        return {ErrorCode.NONE}
    if f.kind == "truncate":
        return {ErrorCode.TRUNCATED}
    if f.kind == "trailing":
        return {ErrorCode.TRAILING}
    if f.kind == "flip":
        if f.region == "stream header":
            return _STREAM_HEADER.get(f.at, {ErrorCode.HEADER_CHECK})
        if f.region == "table":              # a frequency can overflow 2**M before the check word
            return {ErrorCode.HEADER_CHECK, ErrorCode.BAD_TABLE}
        if f.region in ("states", "pad", "check"):
            return {ErrorCode.HEADER_CHECK}
        if f.region in PAYLOAD_TAIL:         # the parser reaches the check word before the lanes finish
            return {ErrorCode.PAYLOAD_CHECK}
    if f.kind == "edit":
        if f.region == "stream header" and f.at in (1, 4):
            return {ErrorCode.BAD_VERSION}
        if f.region == "stream header" and f.at == 2:
            return {ErrorCode.CONFIG_MISMATCH}
        if f.region == "payload":            # payload check word recomputed: only the final state sees it
            return PAYLOAD
    return ANY


def _case_marks(f: faults.Fault, ref_words, n_words, wpb) -> list[int]:
    """Beats: the first corrupted one, the one whose acceptance must raise the error within
    `PARSE_BOUND` clocks (-1 if not determinable), the fault layer's last payload beat (-1: none)."""
    offending = -1
    if f.kind in ("truncate", "trailing"):
        offending = (n_words - 1 if f.kind == "truncate" else f.at - 1)
    elif f.kind == "flip" and f.region == "stream header":
        offending = f.at if f.at <= 2 else 5
    elif f.kind == "edit" and f.region == "stream header" and f.at in (1, 2, 4):
        offending = f.at
    last_pay = -1
    if f.layer is not None and f.kind != "swap":
        spans = [s for s in faults.regions(ref_words) if s[3] == f.layer]
        check = next(e - 1 for s, e, r, k in spans if r == "check")
        payload_check = next(e - 1 for s, e, r, k in spans if r == "payload check")
        last_pay = next((e - 1 for s, e, r, k in spans if r == "payload"), -1) // wpb
        if f.kind == "flip" and f.region in ("table", "states", "pad", "check"):
            offending = check
        if f.kind == "flip" and f.region in PAYLOAD_TAIL:
            offending = payload_check
    return [f.at // wpb if f.at < n_words else -1, offending // wpb if offending >= 0 else -1, last_pay]


def rtl_cases(params: DecoderParams, seed: int = 0) -> list[faults.Fault]:
    """`subbit.model.faults.cases` for this decoder (a decoder of row-classed layers: the v3 stream
    with the hardware variant of the classed layers), less the streams a bus cannot carry: the
    empty one, and on a 32-bit bus truncations at an odd word (the beat would carry a pad word)."""
    wpb = params.words_per_beat
    return [f for f in faults.cases(params.stream_config, seed, classed=params.classed, hardware=params.classed)
            if len(f.words) and not (f.kind == "truncate" and len(f.words) % wpb)]


def make_job(params: DecoderParams, cases: list[faults.Fault], ref_words, good_codes) -> dict:
    """The bench job for ``cases`` (beats back to back) and a good stream of ``good_codes``."""
    wpb = params.words_per_beat
    beats, lasts, starts, budgets, marks = [], [], [0], [], []
    for f in cases:
        w = np.asarray(f.words, dtype=np.uint16)
        if len(w) % wpb:
            w = np.append(w, np.uint16(0))
        b = pack_beats(w, params.word_width)
        beats.append(b)
        lasts.append(np.arange(len(b)) == len(b) - 1)
        starts.append(starts[-1] + len(b))
        # watchdog: generous against the worst traffic pattern (half the clocks idle, half stalled)
        budgets.append(8 * (len(b) + 4096 // params.lanes + 64) + 4000)
        marks.append(_case_marks(f, ref_words, len(w), wpb))
    cfg = params.stream_config
    hw = [stream.encode_codes(c, cfg) for c in good_codes]
    gw = stream.build(hw, cfg)
    gb = pack_beats(gw, params.word_width)
    return {"beats": np.concatenate(beats), "lasts": np.concatenate(lasts), "starts": np.array(starts),
            "budgets": np.array(budgets), "marks": np.array(marks), "good_beats": gb,
            "good_expected": np.concatenate([np.asarray(c) for c in good_codes]),
            "good_layer_ends": np.cumsum([len(c) for c in good_codes]),
            "good_budget": 8 * (len(gb) + sum(len(c) for c in good_codes)) + 4000}


def run_batch(b: Build, job: dict) -> list[dict]:
    """Run the `faults_tb` bench on build ``b``; one result per case (raises `SimError` on a failure)."""
    from ..hw.verilog import TOP
    from .ports import decoder_ports
    scalars = {"lanes": b.params.lanes, "word_width": b.params.word_width, "code_bits": b.params.code_bits,
               "good_budget": int(job["good_budget"]),
               "ports": {k: f.to_json() for k, f in decoder_ports(b.params).items()}}

    def write_input(work):
        path = os.path.join(work, "job.npz")
        np.savez(path, __json__=json.dumps(scalars), **{k: v for k, v in job.items() if k != "good_budget"})
        return path
    return run_bench(b.simulator, b.directory, TB_MODULE, TOP, r"\.faults$", "faults", write_input)["faults"]


def verdict(f: faults.Fault, r: dict, ref_codes: list[np.ndarray],
            check_clocks: int = LAYER_CHECK_CLOCKS) -> dict:
    """Check one case's RTL result; returns ``{"class", "error", "latency", "ref"}`` or raises AssertionError.

    ``class``: ``consistent`` (no error, golden model agrees), ``payload check``
    (``PAYLOAD_CHECK``), ``payload`` (``FINAL_STATE`` / ``PAYLOAD_LENGTH``) or ``parse``
    (any other code). ``latency``: clocks to the error from accepting the reference beat
    ``ref``: ``"offending"`` (parse class and payload check, when the fault determines the
    beat that shows it, e.g. the one carrying the payload check word: bounded by
    `PARSE_BOUND`), ``"first"`` (otherwise: the first corrupted beat) or ``"last payload"``
    (payload class: the layer's last payload beat).
    """
    try:
        sw = faults.golden(f.words)
    except SubbitError:
        sw = None
    err = ErrorCode(r["error"])
    codes = np.asarray(r["codes"], dtype=np.int64)
    ends = [0] + list(r["layer_ends"])
    if sw is not None:                       # the golden model accepts it: RTL must decode it exactly
        assert err == ErrorCode.NONE, f"{f.name}: RTL error {err.name}, golden model decodes the stream"
        want = np.concatenate(sw) if sw else np.zeros(0, np.int64)
        assert np.array_equal(codes, want), f"{f.name}: RTL codes differ from the golden model"
        return {"class": "consistent", "error": err.name, "latency": None, "ref": None}
    assert err != ErrorCode.NONE, f"{f.name}: golden model rejects the stream, RTL raised no error"
    allowed = expected_codes(f)
    assert err in allowed, f"{f.name}: RTL error {err.name}, expected one of {sorted(e.name for e in allowed)}"
    # never wrong weights without an error: a layer completed before the error is intact
    for k, t in enumerate(r["layer_end_cycles"]):
        if t + check_clocks < r["error_cycle"]:
            assert k < len(ref_codes) and np.array_equal(codes[ends[k]:ends[k + 1]], ref_codes[k]), \
                f"{f.name}: layer {k} ended (clock {t}) with wrong weights before the error (clock {r['error_cycle']})"
    first, offending, last_pay = r["mark_cycles"]
    cls = "payload" if err in PAYLOAD else "payload check" if err == ErrorCode.PAYLOAD_CHECK else "parse"
    kind = "last payload" if cls == "payload" else "offending" if offending is not None else "first"
    ref = {"last payload": last_pay, "offending": offending, "first": first}[kind]
    latency = None if ref is None else r["error_cycle"] - ref
    if kind == "offending":
        assert latency <= PARSE_BOUND, f"{f.name}: {err.name} {latency} clocks after the offending beat"
    return {"class": cls, "error": err.name, "latency": latency, "ref": kind}
