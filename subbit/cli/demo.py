"""``subbit demo``: the main job on the embedded default, end to end, with a short summary.

digits → train a ResNet-8 (fp32) → entropy-aware quantization-aware training toward the
budget → ``.sbw`` stream → golden decode of the file → accuracy of the rebuilt network →
RTL decode (cycle-accurate simulation of the generated Verilog).
"""

from __future__ import annotations

import os
import tempfile
import time

from .training import summary


def register(sub):
    p = sub.add_parser("demo", help="run the whole flow on the embedded default and print a summary",
                       description="Train a ResNet-8 on scikit-learn's digits, compress it below --target-bits "
                       "bits per weight with entropy-aware quantization-aware training, write the .sbw stream, "
                       "decode the file with the golden model, check the accuracy of the network rebuilt from it, "
                       "decode it with the RTL in a simulator and print a summary.")
    p.add_argument("--out", default=None, help="directory for the outputs (default: a temporary one)")
    p.add_argument("--target-bits", type=float, default=1.0, help="rate budget in bits per weight (default 1.0)")
    p.add_argument("--rtl", choices=["verilator", "icarus", "none"], default="verilator",
                   help="simulator of the RTL decode step (default verilator; none skips it)")
    p.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    from subbit.model import sbw
    from subbit.model.errors import SubbitError
    from subbit.model.train import TrainConfig, run
    from subbit.model.train.data import load_dataset
    from subbit.model.train.loop import evaluate, runtime
    from subbit.model.train.models import build_model
    from subbit.model.train.qnet import rebuild

    t0 = time.perf_counter()
    out = args.out or tempfile.mkdtemp(prefix="subbit-demo-")
    quick = dict(epochs=2, qat_epochs=2, subset=300) if args.quick else {}
    print(f"[1/4] digits → ResNet-8 fp32 → entropy-aware QAT toward {args.target_bits:g} bits/weight", flush=True)
    rep = run(TrainConfig(dataset="digits", target_bits=args.target_bits, out=out, ternary_epochs=0,
                          command="subbit demo", **quick))

    print("[2/4] golden decode of the file", flush=True)
    path = os.path.join(out, "model.sbw")
    f = sbw.read_sbw(path)
    codes = f.decode_codes()

    print("[3/4] accuracy of the network rebuilt from the decoded stream", flush=True)
    data = load_dataset("digits", subset=rep["config"]["subset"])
    net = build_model(rep["model"], in_channels=data.in_channels, image_size=data.image_size,
                      width=rep["config"]["width"])
    with runtime(rep["config"]["seed"], rep["config"]["threads"]) as rt:
        acc = evaluate(rebuild(net, f, codes), data.test, rt)
    if acc != rep["accuracy"]:
        raise SubbitError(f"accuracy from {path} is {acc}, the report says {rep['accuracy']}")

    print(f"[4/4] RTL decode ({args.rtl})", flush=True)
    rtl = rtl_check(f, codes, args.rtl)
    print()
    print(summary(rep))
    print(f"golden decode of {path}: accuracy {100 * acc:.2f}% (equal to training)")
    print(f"RTL decode: {rtl}")
    print(f"outputs in {out} ({time.perf_counter() - t0:.0f} s)")


def rtl_check(f, codes: dict, simulator: str) -> str:
    """Decode ``f`` with the RTL (`subbit.sim.rtl_decode`) and compare with the
    golden ``codes``; returns a one-line result.

    Raises
    ------
    SubbitError
        If the RTL output differs from the golden decode.
    """
    import numpy as np

    from subbit.model.errors import SubbitError
    if simulator == "none":
        return "skipped (--rtl none)"
    from subbit.sim import rtl_decode
    res = rtl_decode.decode_file(f, simulator=simulator)
    exact = bool(res["bit_exact"]) and all(np.array_equal(res["codes"][k], v) for k, v in codes.items())
    if not exact:
        raise SubbitError("the RTL decode differs from the golden decode")
    return (f"{res['weights']} weights in {res['cycles']} cycles ({res['weights_per_cycle']:.3f} weights/cycle "
            f"on {simulator}), bit-exact with the golden model")
