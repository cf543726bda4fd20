"""Baselines for the report, and the accuracy-vs-rate plot.

* ``fp32`` — the unquantized network, 32 bits per weight.
* ``uniform-b`` (b = 8, 4, 2) — round-to-nearest zero-point quantization, one max-abs scale
  per output channel (`subbit.model.quant.quantize_rtn`), no retraining, fixed-length codes:
  ``b`` bits per weight.
* ``ternary-qat`` — quantization-aware training at 3 levels (same quantizer and schedule as
  ours, no rate term), fixed-length base-3 packing (5 trits per byte): 1.6 bits per weight.
* ``huffman`` — Deep Compression's entropy coder (Han et al. 2016) on *our* codes: one
  Huffman code per layer. Every symbol costs at least one bit, so it cannot go below
  1 bit/weight; the table costs 8 bits per alphabet entry plus a 32-bit count per layer.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..quant import quantize_rtn

__all__ = ["TERNARY_PACKED_BITS", "huffman_lengths", "huffman_bits", "rtn_state_dict", "pareto_plot"]

TERNARY_PACKED_BITS = 8 / 5     # 3**5 = 243 <= 256: five trits per byte


def huffman_lengths(counts) -> dict[int, int]:
    """Huffman code length of every symbol with a non-zero count (a lone symbol gets 1 bit)."""
    items = [(int(c), k) for k, c in enumerate(counts) if c > 0]
    if len(items) == 1:
        return {items[0][1]: 1}
    # heap of (weight, tie-breaker, symbols in the subtree)
    heap = [(c, k, [k]) for c, k in items]
    heapq.heapify(heap)
    length = {k: 0 for _, k in items}
    tie = len(counts)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for k in s1 + s2:
            length[k] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return length


def huffman_bits(layers: list[np.ndarray]) -> dict:
    """Huffman-coded size of integer code tensors (one code per layer), tables included."""
    total, n = 0, 0
    for codes in layers:
        c = np.asarray(codes).ravel()
        if c.size == 0:
            continue
        counts = np.bincount(c - c.min())
        lens = huffman_lengths(counts)
        total += sum(int(counts[k]) * L for k, L in lens.items()) + 8 * len(counts) + 32
        n += c.size
    return {"bits": total, "weights": n, "bits_per_weight": total / max(n, 1)}


def rtn_state_dict(sd: dict, names: list[str], bits: int) -> dict:
    """Copy of a numpy state_dict with ``names`` RTN-quantized per output channel at ``bits``."""
    out = dict(sd)
    for k in names:
        codes, scale = quantize_rtn(sd[k], bits, per_channel=True)
        s = np.asarray(scale, dtype=np.float32).reshape([-1] + [1] * (codes.ndim - 1))
        out[k] = codes.astype(np.float32) * s
    return out


def pareto_plot(path: str, points: list[dict], title: str) -> None:
    """Accuracy (%) vs bits per weight (log axis). ``points``: dicts with ``name``,
    ``bits_per_weight``, ``accuracy`` and ``kind`` (``fp32``, ``uniform``, ``ternary``,
    ``huffman``, ``ours``). The ``ours`` points are joined by a line and labelled with their
    budget; every other point has its own legend entry. Points far below the others (e.g. a
    2-bit round-to-nearest network at chance level) are listed under the axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    color = {"fp32": "k", "uniform": "tab:gray", "ternary": "tab:blue", "huffman": "tab:orange", "ours": "tab:red"}
    markers = iter("*sv^DPXh<>pd" * 3)
    fig, ax = plt.subplots(figsize=(7.6, 4.2), dpi=120)
    accs = [100 * p["accuracy"] for p in points if p["accuracy"] > 0.5 or p["kind"] == "ours"]
    lo = min(accs) - 0.15 * max(1e-9, max(accs) - min(accs)) - 0.5 if accs else 0.0
    ours = sorted((p for p in points if p["kind"] == "ours"), key=lambda p: p["bits_per_weight"])
    if ours:
        ax.plot([p["bits_per_weight"] for p in ours], [100 * p["accuracy"] for p in ours], "-o",
                color=color["ours"], ms=6, label="ours (entropy-aware QAT + rANS)")
        for p in ours:
            ax.annotate(p["name"].replace("ours ", ""), (p["bits_per_weight"], 100 * p["accuracy"]), fontsize=7,
                        xytext=(0, -12), textcoords="offset points", ha="center", color=color["ours"])
    off_scale = []
    for p in points:
        y = 100 * p["accuracy"]
        if p["kind"] == "ours":
            continue
        if y < lo:
            off_scale.append(f"{p['name']} ({p['bits_per_weight']:.3g} b/w): {y:.1f} %")
            continue
        ax.plot(p["bits_per_weight"], y, next(markers), color=color[p["kind"]], ms=7, ls="",
                label=f"{p['name']} ({p['bits_per_weight']:.3g} b/w)")
    fp = [p for p in points if p["kind"] == "fp32"]
    if fp:
        ax.axhline(100 * fp[0]["accuracy"] - 1, color="k", lw=0.6, ls=":", label="fp32 − 1 point")
    ax.axvline(1.0, color="tab:gray", lw=0.6, ls="--")
    ax.set_xscale("log", base=2)
    if accs:
        ax.set_ylim(max(0.0, lo), 100 * max(p["accuracy"] for p in points) + 0.3)
    if off_scale:
        ax.text(0.99, 0.02, "below the axis: " + "; ".join(off_scale), transform=ax.transAxes, fontsize=7,
                ha="right", va="bottom", color="tab:gray")
    ax.set_xlabel("bits per weight (all coded bits / weights)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
