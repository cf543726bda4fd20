"""Rate report of a weight stream: per layer and total, measured by decoding."""

from __future__ import annotations

import numpy as np

from .sbw import SbwFile

__all__ = ["entropy_bits", "stream_report", "format_table"]


def entropy_bits(codes) -> float:
    """Empirical (order-0) entropy of ``codes`` in bits, summed over all symbols."""
    c = np.asarray(codes).ravel()
    if c.size == 0:
        return 0.0
    _, counts = np.unique(c, return_counts=True)
    p = counts / c.size
    return max(0.0, float(-(counts * np.log2(p)).sum()))     # a one-symbol layer: 0, not -0


def stream_report(f: SbwFile, *, codes: dict | None = None, file_bytes: int | None = None) -> dict:
    """Per-layer and total rates. Decodes with the golden model unless ``codes`` is given."""
    codes = f.decode_codes() if codes is None else codes
    words = f.words()
    layers = []
    for m, h in zip(f.layers, f.hw):
        n = max(h.count, 1)
        hdr = 16 * len(h.header_words())
        pay = 16 * (len(h.payload) + len(h.payload) % 2)
        c = codes[m.name]
        layers.append({
            "name": m.name, "shape": list(m.shape), "weights": h.count, "bits": m.bits, "levels": m.levels,
            "alphabet": h.nsym, "zero_fraction": float(np.mean(c == 0)) if c.size else 0.0,
            "entropy_bits_per_weight": entropy_bits(c) / n,
            "payload_bits_per_weight": pay / n,
            "header_bits": hdr,
            "total_bits_per_weight": (pay + hdr) / n,
        })
    nw = sum(m.size for m in f.layers)
    stream_bits = 16 * len(words)
    rep = {
        "config": {"prob_bits": f.config.prob_bits, "lanes": f.config.lanes, "ways": f.config.ways},
        "layers": layers,
        "weights": nw,
        "stream_bits": stream_bits,
        "bits_per_weight": stream_bits / max(nw, 1),
        "entropy_bits_per_weight": sum(entropy_bits(codes[m.name]) for m in f.layers) / max(nw, 1),
        "side_bytes": int(sum(a.nbytes for a in f.side.values())),
    }
    if file_bytes is not None:
        rep["file_bytes"] = file_bytes
    return rep


LEGEND = ("bits per weight (b/w) of each layer: entropy = order-0 entropy of its codes; payload = its rANS "
          "payload words; header = its table, initial states and fields (in bits); total = payload + header")


def format_table(rep: dict) -> str:
    """Human-readable table of :func:`stream_report`."""
    rows = [("layer", "shape", "levels", "zero%", "entropy", "payload", "header bits", "total")]
    for L in rep["layers"]:
        rows.append((L["name"], "x".join(map(str, L["shape"])), str(L["levels"]),
                     f"{100 * L['zero_fraction']:.1f}", f"{L['entropy_bits_per_weight']:.4f}",
                     f"{L['payload_bits_per_weight']:.4f}", str(L["header_bits"]),
                     f"{L['total_bits_per_weight']:.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    c = rep["config"]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(f"{rep['weights']} weights, stream {rep['stream_bits']} bits: "
                 f"{rep['bits_per_weight']:.4f} bits/weight all-in (entropy {rep['entropy_bits_per_weight']:.4f}); "
                 f"M={c['prob_bits']} lanes={c['lanes']} ways={c['ways']}; side data {rep['side_bytes']} bytes"
                 + (f"; file {rep['file_bytes']} bytes" if "file_bytes" in rep else ""))
    lines.append(f"({LEGEND}; all-in = every stream bit, stream header included)")
    return "\n".join(lines)
