"""``subbit demo``: the main job on an embedded default, end to end, with a short summary."""

from __future__ import annotations

import os
import tempfile


def register(sub):
    p = sub.add_parser("demo", help="run the whole flow on the embedded default and print a summary",
                       description="Compress the pretrained ccexam MNIST CNN (round-to-nearest, 3 bits), "
                       "write the .sbw stream, decode it with the golden model and report the rates.")
    p.add_argument("--out", default=None, help="directory for the outputs (default: a temporary one)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    import numpy as np

    from subbit.model import checkpoint, compress, report, sbw, stream
    from subbit.model.data import ccexam_weights
    out = args.out or tempfile.mkdtemp(prefix="subbit-demo-")
    os.makedirs(out, exist_ok=True)
    sd = checkpoint.load_state_dict(ccexam_weights())
    f = compress.compress_state_dict(sd, 3, stream.StreamConfig(), info={"source": "ccexam"})
    path = os.path.join(out, "model.sbw")
    sbw.write_sbw(path, f)
    g = sbw.read_sbw(path)
    codes = g.decode_codes()
    for m in f.layers:
        assert np.array_equal(codes[m.name], compress.quantize_rtn(sd[m.name], 3)[0])
    print(report.format_table(report.stream_report(g, codes=codes, file_bytes=os.path.getsize(path))))
    print(f"\nstream: {path} (golden decode bit-exact)")
