"""Decode weight streams with the generated RTL in a simulator, measured and checked against the golden model."""

from __future__ import annotations

import numpy as np

from ..hw.params import DecoderParams
from ..model import stream
from ..model.sbw import SbwFile
from .runner import build, run

__all__ = ["pack_beats", "header_last_beats", "params_for", "decode_words", "decode_file", "measure", "measure_stream"]

COMPARE_MAX_SYMBOLS = 32      # default lookup: comparators up to this alphabet, slot table above


def pack_beats(words, word_width: int) -> np.ndarray:
    """16-bit stream words as bus beats (two per beat at 32 bits, first word in bits 0..15)."""
    w = np.asarray(words, dtype=np.uint64)
    if word_width == 16:
        return w
    if len(w) % 2:
        raise ValueError("a word stream has an even number of words")
    return w[0::2] | w[1::2] << np.uint64(16)


def header_last_beats(layers: list[stream.HwLayer], word_width: int) -> list[int]:
    """Per layer, the index of the bus beat that holds its header's last word (``offset``, set by
    :func:`subbit.model.stream.build` and ``parse``, places the header in the stream)."""
    return [(lay.offset + len(lay.header_words()) - 1) // (word_width // 16) for lay in layers]


def params_for(layers: list[stream.HwLayer], config: stream.StreamConfig, *, lookup=None, word_width=16,
               max_symbols=None) -> DecoderParams:
    """Smallest decoder that accepts every layer: alphabet and code range."""
    if max_symbols is None:
        nsym = max([h.nsym for h in layers] or [1])
        lo = min([h.base for h in layers] or [0])
        hi = max([h.base + h.nsym - 1 for h in layers] or [0])
        cb = max(2, max(-lo, hi + 1).bit_length() + 1)       # signed bits for lo..hi
        max_symbols = min(255, max(nsym, 1 << (cb - 1)))
    if lookup is None:
        lookup = "compare" if max_symbols <= COMPARE_MAX_SYMBOLS else "table"
    return DecoderParams.for_stream(config, max_symbols=max_symbols, word_width=word_width, lookup=lookup)


def decode_words(words, layers: list[stream.HwLayer], config: stream.StreamConfig, params: DecoderParams,
                 simulator: str = "verilator", expected=None) -> dict:
    """Run the RTL on a word stream; returns measurements, ``codes`` and ``bit_exact``."""
    if expected is None:
        expected = [stream.decode_codes(h, config) for h in layers]
    exp = np.concatenate([np.asarray(e).ravel() for e in expected] or [np.zeros(0, np.int64)])
    b = build(params, simulator)
    r = run(b, "decode", {"beats": pack_beats(words, params.word_width),
                          "header_last_beats": header_last_beats(layers, params.word_width)})["decode"]
    codes = np.asarray(r["codes"], dtype=np.int64)
    ends = np.cumsum([h.count for h in layers]).tolist()
    bit_exact = (not r["timed_out"] and r["error"] == 0 and codes.shape == exp.shape
                 and bool(np.array_equal(codes, exp)) and r["layer_ends"] == ends)
    switches = max(len(layers) - 1, 1)
    return {
        "simulator": simulator,
        "decoder": {"lanes": params.lanes, "prob_bits": params.prob_bits, "ways": params.ways,
                    "max_symbols": params.max_symbols, "word_width": params.word_width, "lookup": params.lookup},
        "cycles": r["cycles"], "weights": r["weights"], "weights_per_cycle": r["weights_per_cycle"],
        "first_weight_latency_cycles": r.get("first_weight_latency_cycles"),
        "header_words_before_first_weight": 6 + (len(layers[0].header_words()) if layers else 0),
        "layer_switch_bubbles": r.get("output_bubbles"),
        "layer_switch_bubbles_per_switch": (r.get("output_bubbles") or 0) / switches,
        # only the clocks between layers (no wait for input inside a layer), and the part of
        # them not explained by the input bus (tb.switch_metrics)
        "switch_idle": r.get("switch_idle"), "switch_bubbles": r.get("switch_bubbles"),
        "switch_idle_per_switch": sum(r.get("switch_idle") or []) / switches,
        "switch_bubbles_per_switch": sum(r.get("switch_bubbles") or []) / switches,
        "error": r["error"], "bit_exact": bit_exact, "codes": codes,
    }


def decode_file(f: SbwFile, simulator: str = "verilator", *, lookup=None, word_width=16, max_symbols=None) -> dict:
    """`subbit decode --rtl`: decode a file's word stream with the RTL; ``codes`` per layer name."""
    params = params_for(f.hw, f.config, lookup=lookup, word_width=word_width, max_symbols=max_symbols)
    golden = f.decode_codes()
    res = decode_words(f.words(), f.hw, f.config, params, simulator, [golden[m.name] for m in f.layers])
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


def measure_stream(config: stream.StreamConfig, bits: int = 3):
    """The stream :func:`measure` decodes: the ccexam MNIST CNN (docs/data.md), every coded
    layer quantized round-to-nearest at ``bits`` (2**bits - 1 levels), the 401k-weight ``fc1``
    cut to its first ``MEASURE_FC_WEIGHTS`` weights. Returns (hw layers, words)."""
    from ..model.compress import ccexam_codes
    codes = [c.ravel()[:MEASURE_FC_WEIGHTS] for c in ccexam_codes(bits)]
    hw = [stream.encode_codes(c, config) for c in codes]
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
    hw, words = measure_stream(p.stream_config)
    r = decode_words(words, hw, p.stream_config, p, simulator)
    if not r["bit_exact"]:
        raise RuntimeError(f"RTL decode of the measurement stream is not bit-exact (error code {r['error']})")
    return {"weights_per_cycle": r["weights_per_cycle"], "first_weight_latency_cycles": r["first_weight_latency_cycles"],
            "header_words": r["header_words_before_first_weight"],
            "layer_switch_bubbles": r["layer_switch_bubbles_per_switch"],
            "switch_idle": r["switch_idle_per_switch"], "switch_bubbles": r["switch_bubbles_per_switch"],
            "weights": r["weights"],
            "cycles": r["cycles"]}
