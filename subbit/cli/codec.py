"""``subbit compress``, ``inspect`` and ``decode``: checkpoints to weight streams and back."""

from __future__ import annotations

import contextlib
import json
import os
import sys

from subbit.model.errors import SubbitError

from .common import progress
from .options import decoder_option

__all__ = ["register", "cmd_compress", "cmd_inspect", "cmd_decode"]


def _stream_config(args):
    """The coder parameters of compress, checked before any work (a stream the hardware cannot
    decode is refused here, not by `decode --rtl` later)."""
    from subbit.model.stream import HW_MIN_WAYS, StreamConfig
    if not isinstance(args.ways, int) or args.ways < HW_MIN_WAYS:
        raise SubbitError(f"--ways {args.ways}: the hardware decoder needs at least {HW_MIN_WAYS} interleaved "
                          f"states per lane (its datapath loop is {HW_MIN_WAYS} clocks deep); "
                          f"the default is {HW_MIN_WAYS}")
    return StreamConfig(prob_bits=args.prob_bits, lanes=args.lanes, ways=args.ways)


def _add_coder_args(p):
    """The stream's coder parameters: the decoder's M, lanes and ways (`DecoderParams` declares them)."""
    for name in ("prob_bits", "lanes", "ways"):
        decoder_option(name).add_to(p)


# -- compress / inspect / decode --------------------------------------------------------

def cmd_compress(args):
    from subbit.model import checkpoint, compress, ptq, quant, report, sbw
    if args.target_bits is not None and args.bits is not None:
        raise SubbitError("give --bits (a fixed quantizer) or --target-bits (a budget), not both")
    if args.target_bits is not None:
        tb = args.target_bits
        if not (tb > 0 and tb < float("inf")):
            raise SubbitError(f"--target-bits must be a positive number of bits per weight, not {tb:g}")
        if args.per_channel:
            raise SubbitError("--per-channel goes with --bits; --target-bits chooses a step per layer part "
                              "(classes of rows and columns get their own, see docs/compression.md)")
        if args.step != "mse":
            raise SubbitError("--step goes with --bits; --target-bits always chooses the steps itself")
    elif args.calib:
        raise SubbitError("--calib goes with --target-bits (the budget search weights the tensors by it)")
    bits = 4 if args.bits is None else args.bits
    if args.target_bits is None and bits not in quant.BITS_RANGE:
        raise SubbitError(f"--bits must be in 2..8 (a b-bit quantizer has 2**b-1 levels), not {bits}")
    config = _stream_config(args)
    tables = "auto" if args.row_classes == "auto" else int(args.row_classes)
    checkpoint.check_checkpoint_file(args.checkpoint)
    sbw.check_output(args.output, inputs=[args.checkpoint], exts=(".sbw",))
    if args.json:
        sbw.check_output(args.json, inputs=[args.checkpoint, args.output], exts=(".json",), what="--json file")
    ck = checkpoint.load_checkpoint(args.checkpoint)
    info = {"source": os.path.basename(args.checkpoint)}
    if args.target_bits is not None:
        info["quantizer"] = f"ptq-{args.target_bits:g}b/w-{args.weighting}" + ("" if args.split else "-nosplit")
        say = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else None
        sens = _calibrate(args, ck) if args.calib else None
        if sens is not None:
            info["quantizer"] = f"ptq-{args.target_bits:g}b/w-calib" + ("" if args.split else "-nosplit")
        f, _ = compress.compress_to_budget(ck, args.target_bits, config, split=args.split,
                                           weighting=args.weighting, sensitivity=sens, info=info,
                                           progress=progress(), log=say, tables=tables,
                                           class_index=args.class_index)
    else:
        info["quantizer"] = f"rtn-{bits}bit-{args.step}"
        quantizer = quant.quantize_rtn if args.step == "maxabs" else ptq.quantize_mse
        f = compress.compress_state_dict(ck, bits, config, per_channel=args.per_channel, info=info,
                                         progress=progress(), quantizer=quantizer, tables=tables,
                                         class_index=args.class_index)
    rep = report.tensor_report(f, reference=ck.tensors)
    size = sbw.write_sbw(args.output, f)
    if args.json:
        sbw.atomic_write(args.json, (json.dumps(dict(rep, file_bytes=size, quantizer=info["quantizer"]),
                                                indent=2) + "\n").encode())
    print(report.format_tensor_table(rep))
    for w in report.collapse_warnings(rep):
        print(w, file=sys.stderr)
    print(f"{args.output}: {len(rep['tensors'])} coded tensors ({len(f.layers)} stream layers), {rep['weights']} "
          f"weights, {rep['all_in_bits_per_weight']:.4f} bits/weight all-in (word stream "
          f"{rep['stream_bits_per_weight']:.4f}), SQNR {rep['sqnr_db']:.2f} dB; file {size} bytes "
          f"(incl. {sum(a.nbytes for a in f.side.values())} bytes of side data)")


def _device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SubbitError("--device cuda: torch sees no CUDA device here (use --device cpu or auto)")
    return torch.device(name)


def _calibrate(args, ck) -> dict:
    """``--calib MODULE:FUNCTION``: the user's model with the checkpoint's weights, run on the
    user's batches: each coded tensor's sensitivity (subbit.model.calib)."""
    import numpy as np
    import torch

    from subbit.model import calib
    model, batches = calib.load_calib(args.calib)
    if not isinstance(model, torch.nn.Module):
        raise SubbitError(f"--calib {args.calib}: the first value returned is a {type(model).__name__}, "
                          "not a torch.nn.Module")
    own = model.state_dict()
    missing = [k for k in own if k not in ck.tensors]
    extra = [k for k in ck.tensors if k not in own]
    if missing or extra:
        raise SubbitError(f"--calib {args.calib}: the model's state_dict does not match the checkpoint "
                          f"(missing {missing[:3]}, unexpected {extra[:3]})")
    model.load_state_dict({k: torch.from_numpy(np.array(ck.tensors[k])).to(own[k].dtype) for k in own})
    model.to(_device(args.device))
    return calib.sensitivity(model, batches)


def cmd_inspect(args):
    from subbit.model import checkpoint, report, sbw
    f = sbw.read_sbw(args.file)
    ref = None
    if args.reference:
        checkpoint.check_checkpoint_file(args.reference)
        ref = checkpoint.load_checkpoint(args.reference).tensors
    codes = f.decode_codes()
    rep = report.stream_report(f, codes=codes, file_bytes=os.path.getsize(args.file))
    trep = report.tensor_report(f, reference=ref, codes=codes)
    if args.json:
        print(json.dumps(dict(rep, tensors=trep["tensors"], all_in_bits_per_weight=trep["all_in_bits_per_weight"],
                              **({"sqnr_db": trep["sqnr_db"]} if ref is not None else {})), indent=2))
    else:
        print(report.format_table(rep))
        print()
        print(report.format_tensor_table(trep))
        for w in report.collapse_warnings(trep):
            print(w, file=sys.stderr)


def _check_decode_outputs(args):
    from subbit.model import checkpoint, sbw
    if args.output:
        sbw.check_output(args.output, inputs=[args.file], exts=checkpoint.CHECKPOINT_EXTS)
    if args.codes:
        sbw.check_output(args.codes, inputs=[args.file, args.output], exts=(".safetensors",), what="--codes file")


@contextlib.contextmanager
def _weights_bar(total: int, desc: str):
    """A progress bar of decoded weights (weights/s) on a terminal, nothing otherwise; yields
    ``advance(weights_so_far)``."""
    from tqdm import tqdm
    with tqdm(total=total, desc=desc, unit="w", unit_scale=True, leave=False,
              disable=not sys.stderr.isatty()) as bar:
        yield lambda n: bar.update(max(0, min(n, total) - bar.n))


def cmd_decode(args):
    from subbit.model import checkpoint, sbw
    f = sbw.read_sbw(args.file)             # validates the headers: cheap, before the outputs' checks
    if args.rtl:
        from subbit.model.stream import hardware_needs
        hardware_needs(f.hw, f.config)
    _check_decode_outputs(args)
    if args.rtl:
        from subbit.sim import rtl_decode
        with _weights_bar(sum(m.size for m in f.layers), f"RTL decode ({args.rtl})") as advance:
            res = rtl_decode.decode_file(f, simulator=args.rtl, lookup=args.lookup, word_width=args.word_width,
                                         max_symbols=args.max_symbols, progress=advance)
        from subbit.hw.params import ErrorCode
        codes = res.pop("codes")
        res["error_name"] = ErrorCode(res["error"]).name
        print(json.dumps(res, indent=2))
        if not res["bit_exact"]:
            why = (f"raised {res['error_name']} (status.error = {res['error']}, docs/decoder.md)" if res["error"]
                   else "did not match the golden model")
            hint = ""
            if res["error_name"] == "UNSUPPORTED":
                need = rtl_decode.params_for(f.hw, f.config).max_symbols
                hint = f"; the smallest decoder for this file (the default) has --max-symbols {need}"
            raise SubbitError(f"the RTL decoder ({args.rtl}) {why}{hint}"
                              + ("; nothing written" if args.output or args.codes else ""))
    else:
        codes = f.decode_codes()
    if args.output:
        meta = (f.checkpoint or {}).get("metadata")
        if checkpoint.output_format(args.output) == "safetensors" and (f.checkpoint or {}).get("format") != "safetensors":
            meta = {"format": "pt"}              # what torch users' safetensors files carry
        sd = f.state_dict(codes)
        checkpoint.save_checkpoint(args.output, sd, f.dtypes(), metadata=meta)
        print(f"{args.output}: {len(sd) - len(f.side)} decoded tensors + {len(f.side)} side tensors", file=sys.stderr)
    if args.codes:
        tc = f.tensor_codes(codes)
        checkpoint.save_checkpoint(args.codes, {k: v.astype("int8") for k, v in tc.items()})
        print(f"{args.codes}: integer codes of {len(tc)} tensors (int8)", file=sys.stderr)


# -- registration -----------------------------------------------------------------------

def register(sub):

    p = sub.add_parser("compress", help="quantize and entropy-code a checkpoint (to a bit budget, or at --bits)",
                       description="Quantize every weight tensor of a PyTorch state_dict with a zero-point "
                       "quantizer and entropy-code it into a .sbw weight stream, either to a budget in bits per "
                       "weight (--target-bits) or at a fixed bit-width (--bits). Data-free. Biases and other "
                       "tensors travel as side data. Prints per tensor: levels, step, bits/weight, SQNR.")
    p.add_argument("checkpoint", help="state_dict file: .pt, .pth or .safetensors")
    p.add_argument("-o", "--output", required=True, help="output .sbw file")
    g = p.add_argument_group("rate: a budget, or a fixed quantizer")
    g.add_argument("--target-bits", type=float, default=None, metavar="B",
                   help="bits per weight of the whole word stream (headers, scales and class maps included): "
                   "rate-distortion optimised steps, levels per layer and rounding (docs/compression.md)")
    g.add_argument("--weighting", choices=["layer", "mse"], default="layer",
                   help="with --target-bits: 'layer' (default) counts each tensor's relative error alike, which "
                   "keeps small first/last layers precise (accuracy); 'mse' minimises the squared error of all "
                   "weights together (the best overall SQNR)")
    g.add_argument("--calib", metavar="MODULE:FUNCTION",
                   help="with --target-bits: calibration data. FUNCTION() returns (model, batches): your "
                   "torch.nn.Module (subbit loads the checkpoint into it) and an iterable of input batches; "
                   "each tensor's error is weighted by its Fisher sensitivity (docs/compression.md)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where --calib runs the model (default auto: CUDA when present)")
    g.add_argument("--no-split", dest="split", action="store_false",
                   help="with --target-bits: one stream layer per tensor (no row/column classes)")
    g.add_argument("--bits", type=int, default=None,
                   help="fixed quantizer bit-width 2..8 (2**b-1 levels), round-to-nearest (default 4 without "
                   "--target-bits)")
    g.add_argument("--step", choices=["mse", "maxabs"], default="mse",
                   help="with --bits: the step minimising the squared error (default), or max|w|/levels")
    g.add_argument("--per-channel", action="store_true", help="with --bits: one step per output channel")
    p.add_argument("--row-classes", choices=["1", "2", "4", "8", "auto"], default="1", metavar="T",
                   help="up to T frequency tables per layer, each row (output channel) coded with the table of "
                   "its class: 1 (default), 2, 4, 8 or auto (the best of 2..8); a layer keeps one table unless "
                   "classes save words. Gives a word stream v3 (docs/stream-format.md), which the hardware "
                   "decoder reads when built with --tables (subbit verilog --tables 8)")
    p.add_argument("--class-index", choices=["fixed", "auto"], default="fixed",
                   help="with --row-classes: code each row's class in fixed bits (default; what the hardware "
                   "decoder reads) or auto (also a small rANS stream, when smaller: software decoding only)")
    p.add_argument("--json", metavar="FILE", help="write the per-tensor report (levels, steps, bits/weight, "
                   "SQNR) to this .json file")
    p.add_argument("-v", "--verbose", action="store_true", help="say what the budget search does")
    _add_coder_args(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("inspect", help="per-layer rates of a .sbw file",
                       description="Print per-layer name, shape, levels, empirical entropy, coded and header "
                       "bits per weight (decodes with the golden model to measure entropy).")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--reference", metavar="CKPT", help="the original checkpoint: SQNR per tensor and overall")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("decode", help="decode a .sbw file (golden model or RTL simulation)",
                       description="Decode a .sbw file. Without --rtl: the golden model. With --rtl: the "
                       "generated Verilog in a cycle-accurate simulator; prints cycles, throughput, "
                       "latency and bit-exactness as JSON.")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="write the checkpoint back: every tensor under its name, dtype and "
                   "shape, weights dequantized (.safetensors, .pt or .pth; loads with load_state_dict(strict=True))")
    p.add_argument("--codes", metavar="FILE", help="write the integer codes of each coded layer (int8) to this "
                   ".safetensors file")
    p.add_argument("--rtl", choices=["verilator", "icarus"], help="decode with the RTL in this simulator")
    g = p.add_argument_group("the decoder of --rtl")
    decoder_option("lookup", default=None, default_text="compare for <= 16 symbols, else table").add_to(g)
    decoder_option("word_width").add_to(g)
    decoder_option("max_symbols", default=None, default_text="the largest alphabet in the file").add_to(g)
    p.set_defaults(func=cmd_decode)

