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
            "tables": h.tables,
        })
        if h.tables > 1:
            layers[-1].update(class_index_bits=16 * len(h.class_index),
                              class_coding="rans" if h.class_code else "fixed",
                              classes=class_rates(h, c, f.config.prob_bits))
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


def class_rates(h, codes, prob_bits: int) -> list[dict]:
    """Per class of a row-classed layer: its rows, weights, zero fraction and the code length of
    its weights under its table (``Σ log2(2**M / f[s])`` per weight: the payload share of the
    class; the coder's interleaved states do not split the payload words by class)."""
    sym = np.asarray(codes).reshape(len(h.classes), -1).astype(np.int64) - h.base
    out = []
    for t, f in enumerate(np.asarray(h.freqs)):
        rows = sym[h.classes == t]
        cnt = np.bincount(rows.ravel(), minlength=h.nsym)
        used = cnt > 0
        bits = float(np.sum(cnt[used] * (prob_bits - np.log2(f[used])))) if rows.size else 0.0
        out.append({"rows": int(len(rows)), "weights": int(rows.size),
                    "zero_fraction": float(np.mean(rows == -h.base)) if rows.size else 0.0,
                    "bits_per_weight": bits / max(rows.size, 1)})
    return out


LEGEND = ("bits per weight (b/w) of each layer: entropy = order-0 entropy of its codes; payload = its rANS "
          "payload words; header = its table, initial states and fields (in bits); total = payload + header")


def format_table(rep: dict) -> str:
    """Human-readable table of :func:`stream_report`."""
    rows = [("layer", "shape", "levels", "T", "zero%", "entropy", "payload", "header bits", "total")]
    for L in rep["layers"]:
        rows.append((L["name"], "x".join(map(str, L["shape"])), str(L["levels"]), str(L.get("tables", 1)),
                     f"{100 * L['zero_fraction']:.1f}", f"{L['entropy_bits_per_weight']:.4f}",
                     f"{L['payload_bits_per_weight']:.4f}", str(L["header_bits"]),
                     f"{L['total_bits_per_weight']:.4f}"))
        for t, k in enumerate(L.get("classes", [])):
            rows.append((f"  class {t}", f"{k['rows']} rows, {k['weights']} w", "", "", f"{100 * k['zero_fraction']:.1f}", "",
                         f"{k['bits_per_weight']:.4f}", "", ""))
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
    lines.append(f"({LEGEND}; all-in = every stream bit, stream header included"
                 + ("; T = frequency tables of a row-classed layer (word stream v3), its classes below it with "
                    "their rows, weights (w) and the code length of their weights under their table (payload "
                    "column); header bits include the class index)"
                    if any(L.get("tables", 1) > 1 for L in rep["layers"]) else "") + ")")
    return "\n".join(lines)


COLLAPSE_ZERO_FRACTION = 0.99      # a tensor this much zero ...
COLLAPSE_SQNR_DB = 3.0             # ... and below this SQNR has collapsed: the user is warned


def tensor_report(f: SbwFile, *, reference: dict | None = None, codes: dict | None = None) -> dict:
    """Per checkpoint tensor (its parts together): levels, steps, zeros, all-in bits/weight and,
    against ``reference`` (the original float tensors), the SQNR in dB; totals over all coded
    weights. Decodes with the golden model unless ``codes`` (or the encoder's ``f.codes``) is given.

    Raises
    ------
    SubbitError
        A coded tensor missing from ``reference``, or of another shape.
    """
    import math

    from .errors import SubbitError
    from .ptq import sqnr_db
    codes = codes if codes is not None else f.codes if f.codes is not None else f.decode_codes()
    tcodes, sd = f.tensor_codes(codes), f.state_dict(codes)
    f.words()                                                       # sets each layer's offset
    rows, by = [], {}
    for m, h in zip(f.layers, f.hw):
        by.setdefault(m.tensor, []).append((m, h))
    energy_all = noise_all = 0.0
    for t, parts in by.items():
        c = tcodes[t]
        bits = sum(16 * (len(h.header_words()) + len(h.payload) + len(h.payload_tail())) + 32 * len(m.scale)
                   for m, h in parts)
        if t in f.partitions:
            p = f.partitions[t]
            bits += 8 * len(p.pack())
        row = {"name": t, "shape": list(c.shape), "parts": len(parts), "levels": max(m.levels for m, _ in parts),
               "steps": [s for m, _ in parts for s in m.scale], "weights": int(c.size),
               "zero_fraction": float(np.mean(c == 0)) if c.size else 1.0,
               "bits": int(bits), "bits_per_weight": bits / max(c.size, 1)}
        if reference is not None:
            if t not in reference:
                raise SubbitError(f"the reference has no tensor {t!r} (it has {len(reference)} tensors, "
                                  f"e.g. {', '.join(list(reference)[:3])})")
            ref = np.asarray(reference[t])
            if tuple(ref.shape) != tuple(c.shape):
                raise SubbitError(f"tensor {t!r}: the reference has shape {list(ref.shape)}, the stream "
                                  f"{list(c.shape)}")
            e, n = _energy_and_noise(ref, np.asarray(sd[t]))
            energy_all, noise_all = energy_all + e, noise_all + n
            row["sqnr_db"] = sqnr_db(e, n)
            row["collapsed"] = bool(row["zero_fraction"] > COLLAPSE_ZERO_FRACTION
                                    and row["sqnr_db"] < COLLAPSE_SQNR_DB and e > 0)
        rows.append(row)
    nw = sum(r["weights"] for r in rows)
    words = 16 * len(f.words())
    total = words + sum(r["bits"] for r in rows) - sum(
        16 * (len(h.header_words()) + len(h.payload) + len(h.payload_tail())) for h in f.hw)
    rep = {"tensors": rows, "weights": nw, "stream_bits": words, "stream_bits_per_weight": words / max(nw, 1),
           "all_in_bits": int(total), "all_in_bits_per_weight": total / max(nw, 1)}
    if reference is not None:
        s = sqnr_db(energy_all, noise_all)
        rep["sqnr_db"] = s if math.isfinite(s) else None
        for r in rows:
            if not math.isfinite(r["sqnr_db"]):
                r["sqnr_db"] = None
    return rep


def _energy_and_noise(ref: np.ndarray, got: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float]:
    """``Σ ref²`` and ``Σ (ref − got)²`` in float64, by chunks of float32 (BLAS dot products: a
    20M-weight tensor in a few tens of milliseconds instead of float64 copies of it)."""
    r, g = ref.reshape(-1), got.reshape(-1)
    dt = np.float64 if ref.dtype == np.float64 or got.dtype == np.float64 else np.float32
    e = n = 0.0
    for lo in range(0, r.size, chunk):
        a = r[lo:lo + chunk].astype(dt, copy=False)
        d = a - g[lo:lo + chunk].astype(dt, copy=False)
        e += float(np.dot(a.astype(np.float64), a)) if dt == np.float64 else float(np.dot(a, a))
        n += float(np.dot(d, d))
    return e, n


def format_tensor_table(rep: dict) -> str:
    """Human-readable :func:`tensor_report`."""
    has_ref = "sqnr_db" in rep
    head = ("tensor", "shape", "parts", "levels", "step", "zero%", "b/w") + (("SQNR dB",) if has_ref else ())
    rows = [head]
    for r in rep["tensors"]:
        st = r["steps"]
        step = f"{st[0]:.4g}" if len(set(st)) == 1 else f"{min(st):.3g}..{max(st):.3g}"
        sq = r.get("sqnr_db")
        rows.append((r["name"], "x".join(map(str, r["shape"])), str(r["parts"]), str(r["levels"]), step,
                     f"{100 * r['zero_fraction']:.1f}", f"{r['bits_per_weight']:.4f}")
                    + ((("inf" if sq is None else f"{sq:.2f}") + (" !" if r.get("collapsed") else ""),) if has_ref else ()))
    widths = [max(len(x[i]) for x in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths))) for x in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    tail = (f"{rep['weights']} coded weights: {rep['all_in_bits_per_weight']:.4f} bits/weight all-in "
            f"(word stream {rep['stream_bits_per_weight']:.4f}, + scales and class maps)")
    if has_ref:
        tail += f"; SQNR {rep['sqnr_db']:.2f} dB" if rep["sqnr_db"] is not None else "; exact"
    lines.append(tail)
    lines.append("(b/w per tensor: its layers' stream bits + scales + class maps / its weights; parts: layers "
                 "it is coded as; SQNR = 10·log10(Σw² / Σ(w − ŵ)²) against the original" +
                 ("; ! = collapsed: over 99 % zeros below 3 dB" if has_ref else "") + ")")
    return "\n".join(lines)


def collapse_warnings(rep: dict) -> list[str]:
    """One line per collapsed tensor of a :func:`tensor_report` made against a reference."""
    return [f"warning: tensor {r['name']!r} collapsed: {100 * r['zero_fraction']:.1f} % of its codes are 0, "
            f"SQNR {r['sqnr_db']:.2f} dB: the budget (or --bits) is too small for it"
            for r in rep["tensors"] if r.get("collapsed")]
