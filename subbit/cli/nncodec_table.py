"""``python -m subbit.cli.nncodec_table``: NNCodec's numbers on the ccexam CNN (`subbit.peers`, in its own
venv, built once): lossless bits/weight of the 3-bit round-to-nearest codes, and bits/weight vs SQNR
over qp with dependent quantization off and on."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    from subbit.peers import NNCODEC_VERSION, ccexam_table, nncodec_step
    ap = argparse.ArgumentParser(prog="python -m subbit.cli.nncodec_table", description=__doc__.split("\n\n")[0])
    ap.add_argument("--qp-min", type=int, default=-14)
    ap.add_argument("--qp-max", type=int, default=0)
    ap.add_argument("--lambda-scale", type=float, default=0.0, help="NNCodec's RDOQ weight (default 0: off)")
    ap.add_argument("--json", help="also write the numbers to this file")
    a = ap.parse_args(argv)
    t = ccexam_table(range(a.qp_min, a.qp_max + 1), a.lambda_scale,
                     progress=lambda s: print(s, file=sys.stderr))
    ll = t["lossless_3bit"]
    print(f"NNCodec {NNCODEC_VERSION} on the ccexam CNN ({t['weights']:,} coded weights)")
    print(f"lossless, 3-bit RTN codes: {ll['bits_per_weight']:.4f} bits/weight ({ll['bytes']:,} bytes; "
          f"encode {ll['encode_s'] * 1e3:.0f} ms, decode {ll['decode_s'] * 1e3:.0f} ms)")
    print(f"lossy, NNCodec's quantizer (lambda_scale {a.lambda_scale:g}):")
    print(f"{'qp':>4} {'step':>9} | {'uniform b/w':>11} {'SQNR dB':>8} | {'dq b/w':>7} {'SQNR dB':>8}")
    by = {(r["qp"], r["dq"]): r for r in t["lossy"]}
    for qp in sorted({r["qp"] for r in t["lossy"]}):
        u, d = by[qp, False], by[qp, True]
        print(f"{qp:>4} {nncodec_step(qp):>9.6g} | {u['bits_per_weight']:>11.4f} {u['sqnr_db']:>8.2f} | "
              f"{d['bits_per_weight']:>7.4f} {d['sqnr_db']:>8.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(t, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
