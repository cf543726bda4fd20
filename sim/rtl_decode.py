"""Decode weight streams with the generated RTL in a simulator, measured and checked against the golden model."""

from __future__ import annotations

import bisect

import numpy as np

from ..hw.params import DecoderParams
from ..model import stream
from ..model.sbw import SbwFile
from .ports import pack_beats
from .runner import build, run

__all__ = ["pack_beats", "header_last_beats", "params_for", "switch_metrics", "decode_words", "decode_file", "measure", "measure_stream"]

COMPARE_MAX_SYMBOLS = 32      # default lookup: comparators up to this alphabet, slot table above


def header_last_beats(layers: list[stream.HwLayer], word_width: int) -> list[int]:
    """Per layer, the index of the bus beat that holds its header's last word (``offset``, set by
    :func:`subbit.model.stream.build` and ``parse``, places the header in the stream)."""
    return [(lay.offset + len(lay.header_words()) - 1) // (word_width // 16) for lay in layers]


def params_for(layers: list[stream.HwLayer], config: stream.StreamConfig, *, lookup=None, word_width=16,
               max_symbols=None) -> DecoderParams:
    """Smallest decoder that accepts every layer: alphabet and code range, and for row-classed
    layers (word stream v3) the tables and the class index memory (the slot-table lookup).

    Raises
    ------
    SubbitError
        A row-classed layer the hardware does not decode (`subbit.model.stream.hardware_needs`)."""
    needs = stream.hardware_needs(layers, config)
    if needs["tables"] == 1:
        needs = {}
    if max_symbols is None:
        nsym = max([h.nsym for h in layers] or [1])
        lo = min([h.base for h in layers] or [0])
        hi = max([h.base + h.nsym - 1 for h in layers] or [0])
        cb = max(2, max(-lo, hi + 1).bit_length() + 1)       # signed bits for lo..hi
        max_symbols = min(255, max(nsym, 1 << (cb - 1)))
    if lookup is None:
        lookup = "compare" if max_symbols <= COMPARE_MAX_SYMBOLS else "table"
    return DecoderParams.for_stream(config, max_symbols=max_symbols, word_width=word_width, lookup=lookup, **needs)


#: The first-weight allowance: a layer's first weight may come this many clocks after the clock
#: that could have brought its header's last beat (issue 5's target: header words + 4 after the
#: first word, i.e. 5 clocks after the last header word of a stream read at one beat per clock).
FIRST_WEIGHT_ALLOWANCE = 5


def switch_metrics(r, header_last_beats):
    """Idle output clocks at each layer switch, and the part of them the input bus does not explain.

    ``header_last_beats[n]``: index of the beat holding layer n's last header word. Layer n's
    first weight cannot come before the clock after layer n-1's last weight, nor (with input at
    one beat per clock from the first) before ``first_in + header_last_beats[n] +
    FIRST_WEIGHT_ALLOWANCE``; clocks past the later of the two are the decoder's bubbles.
    Returns (idle clocks per switch, bubbles per switch), lists of len(layers) - 1.
    """
    oc, lc, first_in = r["out_cycles"], r["last_cycles"], r["first_in_cycle"]
    idle, bubbles = [], []
    for n in range(1, min(len(lc), len(header_last_beats))):
        k = bisect.bisect_right(oc, lc[n - 1])        # the next layer's first output beat
        if k >= len(oc):
            break
        first = oc[k]
        bound = max(lc[n - 1] + 1, first_in + int(header_last_beats[n]) + FIRST_WEIGHT_ALLOWANCE)
        idle.append(first - lc[n - 1] - 1)
        bubbles.append(max(0, first - bound))
    return idle, bubbles


def decode_words(words, layers: list[stream.HwLayer], config: stream.StreamConfig, params: DecoderParams,
                 simulator: str = "verilator", expected=None, *, engine: str | None = None,
                 progress=None) -> dict:
    """Run the RTL on a word stream; returns measurements, ``codes`` and ``bit_exact``.

    ``engine``: ``"harness"`` (Verilator only, the default there) runs the Verilated decoder in a
    C clock loop (`subbit.sim.fast`, about a million weights per second; ``progress(weights)`` is
    called as it goes); ``"cocotb"`` (the default for Icarus) runs the cocotb bench. Both feed the
    input at one beat per clock from the first and keep the output ready, and give the same
    figures (a test compares them).
    """
    engine = engine or ("harness" if simulator == "verilator" else "cocotb")
    if engine not in ("harness", "cocotb") or (engine == "harness" and simulator != "verilator"):
        raise ValueError(f"engine {engine!r} with simulator {simulator!r}: the C harness runs on Verilator only")
    if expected is None:
        expected = [stream.decode_codes(h, config) for h in layers]
    exp = np.concatenate([np.asarray(e).ravel() for e in expected] or [np.zeros(0, np.int64)])
    hlb = header_last_beats(layers, params.word_width)
    if engine == "harness":
        from .fast import decode_words as harness_decode
        h = harness_decode(words, params, total=len(exp), layers=max(1, len(layers)), progress=progress)
        r = _harness_metrics(h, hlb)
    else:
        b = build(params, simulator)
        r = run(b, "decode", {"beats": pack_beats(words, params.word_width), "header_last_beats": hlb})["decode"]
    codes = np.asarray(r["codes"], dtype=np.int64)
    ends = np.cumsum([h.count for h in layers]).tolist()
    bit_exact = (not r["timed_out"] and r["error"] == 0 and codes.shape == exp.shape
                 and bool(np.array_equal(codes, exp)) and r["layer_ends"] == ends)
    switches = max(len(layers) - 1, 1)
    return {
        "simulator": simulator, "engine": engine,
        "decoder": {"lanes": params.lanes, "prob_bits": params.prob_bits, "ways": params.ways,
                    "max_symbols": params.max_symbols, "word_width": params.word_width, "lookup": params.lookup,
                    **({"tables": params.tables, "class_words": params.class_words} if params.classed else {})},
        "cycles": r["cycles"], "weights": r["weights"], "weights_per_cycle": r["weights_per_cycle"],
        "first_weight_latency_cycles": r.get("first_weight_latency_cycles"),
        "header_words_before_first_weight": 6 + (len(layers[0].header_words()) if layers else 0),
        "layer_switch_bubbles": r.get("output_bubbles"),
        "layer_switch_bubbles_per_switch": (r.get("output_bubbles") or 0) / switches,
        # only the clocks between layers (no wait for input inside a layer), and the part of
        # them not explained by the input bus (switch_metrics)
        "switch_idle": r.get("switch_idle"), "switch_bubbles": r.get("switch_bubbles"),
        "switch_idle_per_switch": sum(r.get("switch_idle") or []) / switches,
        "switch_bubbles_per_switch": sum(r.get("switch_bubbles") or []) / switches,
        "error": r["error"], "bit_exact": bit_exact, "codes": codes,
    }


def _harness_metrics(h: dict, hlb: list[int]) -> dict:
    """The cocotb bench's figures (`subbit.sim.tb.metrics`) from the C harness's per-layer clocks."""
    r = {"codes": h["codes"], "layer_ends": h["layer_ends"], "error": h["error"], "timed_out": h["timed_out"],
         "weights": len(h["codes"])}
    if not h["output_beats"]:
        return {**r, "cycles": 0, "weights_per_cycle": 0.0}
    cycles = h["last_out_cycle"] - h["first_in_cycle"] + 1
    span = h["last_out_cycle"] - h["first_out_cycle"] + 1
    # switch_metrics looks up the first output beat after each layer's last one: the layers' first beats
    beats = {"out_cycles": sorted(h["layer_first_cycles"] + h["layer_last_cycles"]),
             "last_cycles": h["layer_last_cycles"], "first_in_cycle": h["first_in_cycle"]}
    idle, bubbles = switch_metrics(beats, hlb)
    return {**r, "cycles": cycles, "weights_per_cycle": len(h["codes"]) / cycles,
            "first_weight_latency_cycles": h["first_out_cycle"] - h["first_in_cycle"],
            "output_beats": h["output_beats"], "output_bubbles": span - h["output_beats"],
            "switch_idle": idle, "switch_bubbles": bubbles}


def decode_file(f: SbwFile, simulator: str = "verilator", *, lookup=None, word_width=16, max_symbols=None,
                engine: str | None = None, progress=None) -> dict:
    """`subbit decode --rtl`: decode a file's word stream with the RTL; ``codes`` per layer name
    (``engine`` and ``progress``: :func:`decode_words`)."""
    params = params_for(f.hw, f.config, lookup=lookup, word_width=word_width, max_symbols=max_symbols)
    golden = f.decode_codes()
    res = decode_words(f.words(), f.hw, f.config, params, simulator, [golden[m.name] for m in f.layers],
                       engine=engine, progress=progress)
    flat, codes, pos = res.pop("codes"), {}, 0
    for m in f.layers:
        part = flat[pos:pos + m.size]
        codes[m.name] = part.reshape(m.shape) if part.size == m.size else part
        pos += m.size
    res["codes"] = codes
    return res


#: Weights of the ccexam CNN's large fully-connected layer kept by :func:`measure` (the whole
#: layer, 401408 weights, would only lengthen the simulation: the figures settle long before).
MEASURE_FC_WEIGHTS = 32768


def measure_stream(config: stream.StreamConfig, bits: int = 3, tables: int = 1):
    """The stream :func:`measure` decodes: the ccexam MNIST CNN (docs/data.md), every coded
    layer quantized round-to-nearest at ``bits`` (2**bits - 1 levels), the 401k-weight ``fc1``
    cut to its first ``MEASURE_FC_WEIGHTS`` weights. With ``tables > 1`` every layer may have up to
    that many row-classed tables (`subbit.model.stream.encode_codes`) and ``fc1`` is cut to whole
    rows (the first 10: 31,360 weights). Returns (hw layers, words)."""
    from ..model.compress import ccexam_codes
    if tables == 1:
        codes = [c.ravel()[:MEASURE_FC_WEIGHTS] for c in ccexam_codes(bits)]
    else:
        codes = [c.reshape(c.shape[0], -1)[:max(1, MEASURE_FC_WEIGHTS // max(1, c[0].size))]
                 for c in ccexam_codes(bits)]
    hw = [stream.encode_codes(c, config, tables=tables) for c in codes]
    return hw, stream.build(hw, config)


def measure(simulator: str = "verilator", **params) -> dict:
    """Cycle-accurate throughput and latency of one decoder configuration (``subbit bench rtl``).

    ``params``: :class:`DecoderParams` fields. Decodes :func:`measure_stream` (a real network,
    several layers) with an always-ready sink and checks it bit-exactly against the golden model.
    Returns ``weights_per_cycle``, ``first_weight_latency_cycles`` (clocks from the first input
    word to the first weight), ``header_words`` (the words before the first payload word: stream
    and first layer header), ``layer_switch_bubbles`` (idle output clocks after the first weight, per layer switch),
    ``switch_idle`` (idle output clocks between layers, per switch), ``switch_bubbles`` (the part of
    those the input bus does not explain, per switch: :func:`subbit.sim.tb.switch_metrics`),
    ``weights``, ``cycles``.
    """
    p = DecoderParams(**params)
    hw, words = measure_stream(p.stream_config, tables=p.tables)
    r = decode_words(words, hw, p.stream_config, p, simulator)
    if not r["bit_exact"]:
        raise RuntimeError(f"RTL decode of the measurement stream is not bit-exact (error code {r['error']})")
    return {"weights_per_cycle": r["weights_per_cycle"], "first_weight_latency_cycles": r["first_weight_latency_cycles"],
            "header_words": r["header_words_before_first_weight"],
            "layer_switch_bubbles": r["layer_switch_bubbles_per_switch"],
            "switch_idle": r["switch_idle_per_switch"], "switch_bubbles": r["switch_bubbles_per_switch"],
            "weights": r["weights"],
            "cycles": r["cycles"]}
