"""``subbit verilog`` (the decoder's Verilog), ``subbit infer`` (integer inference with weights decoded
on the fly in RTL) and ``subbit decode-speed`` (a whole network's stream through the Verilated decoder)."""

from __future__ import annotations

import sys

from .common import progress
from .options import decoder_option, decoder_options, params_from_args

__all__ = ["register_verilog", "register_rtl_runs", "cmd_verilog", "cmd_infer", "cmd_decode_speed"]


def register_verilog(sub):
    p = sub.add_parser("verilog", help="write the decoder as synthesizable Verilog",
                       description="Generate the streaming rANS decoder as Verilog (top module "
                       "`subbit_decoder`, ports in docs/decoder.md).")
    decoder_options(p)
    p.add_argument("--axis", action="store_true",
                   help="the decoder behind AXI4-Stream ports (top `subbit_axis_decoder`: s_axis_* words, "
                   "m_axis_* weights with tkeep, tlast per layer and the layer index on tuser; hw/axis.py)")
    p.add_argument("-o", "--output", required=True, help="output .v file ('-' for stdout)")
    p.set_defaults(func=cmd_verilog)


def cmd_verilog(args):
    from subbit.hw.decoder import output_layout
    from subbit.hw.verilog import TOP, generate_params
    from subbit.model.sbw import atomic_write
    params = params_from_args(args)
    if args.axis:
        from subbit.hw import axis
        src = axis.generate(params)
    else:
        src = generate_params(params)
    if args.output == "-":
        sys.stdout.write(src)
        return
    atomic_write(args.output, src.encode())
    if args.axis:
        print(f"{args.output}: module {axis.TOP} (AXI4-Stream: s_axis_tdata {params.word_width} bits, m_axis_tdata "
              f"{8 * params.lanes} bits + tkeep {params.lanes}, tuser 16 bits = layer index; hw/axis.py), "
              f"lanes={params.lanes} M={params.prob_bits} ways={params.ways} max_symbols={params.max_symbols}",
              file=sys.stderr)
        return
    from amaranth.hdl import Shape
    from subbit.hw.params import recommended_ways
    extra = [n for n, on in (("S2b", params.s2b), ("S4b", params.s4b), ("S4c", params.s4c)) if on]
    stages = f" (ring stages S0..S5{''.join('+' + n for n in extra)})"
    tables = f" tables={params.tables}" if params.classed else ""
    print(f"{args.output}: module {TOP}, lanes={params.lanes} M={params.prob_bits} ways={params.ways}{stages}{tables} "
          f"max_symbols={params.max_symbols} ({params.code_bits}-bit codes) word_width={params.word_width} "
          f"lookup={params.lookup} multiplier={params.multiplier} prefetch={params.prefetch} "
          f"fc_read={'sync' if params.fc_sync else 'async'} "
          f"window={'ring' if params.ring_window else 'shift'}; i__payload {params.word_width + 1} bits, "
          f"o__payload {Shape.cast(output_layout(params)).width} bits, status 6 bits", file=sys.stderr)
    best = recommended_ways(params.lanes, params.tables, params.lookup, params.fc_read)
    if params.classed and params.ways < best:
        print(f"note: with {params.tables} tables this decoder runs faster with --ways {best} (the S2b stage; "
              f"docs/architecture.md); its streams need `subbit compress --ways {best}`", file=sys.stderr)


def register_rtl_runs(sub):
    p = sub.add_parser("infer", help="integer inference of a trained stream, decoded on the fly in RTL",
                       description="Run the network of MODEL.sbw on test images with int8 activations and "
                       "int32 accumulators: the numpy integer reference, and with --rtl verilator the "
                       "Verilated decoder + MAC engine supplying every layer's products (checked bit-exact "
                       "against the reference). Reports accuracies (float, integer, RTL), clocks per image "
                       "and the fraction of clocks the MAC engine waited for weights.")
    p.add_argument("model", help="weight stream (.sbw) of a ResNet trained by `subbit train`")
    p.add_argument("--dataset", default=None,
                   help="dataset of the test images (default: the one the stream was trained on, from its "
                   "metadata; digits if it names none)")
    p.add_argument("--n", type=int, default=100, help="test images (default 100)")
    p.add_argument("--rtl", choices=["verilator", "none"], default="verilator",
                   help="simulator for the RTL run (default verilator; none: integer reference only)")
    p.add_argument("--results", action="store_true", help="write the numbers into docs/results.md")
    p.set_defaults(func=cmd_infer)
    q = sub.add_parser("decode-speed", help="decode a whole network's stream with the Verilated decoder",
                       description="Quantize the pretrained ccexam MNIST CNN (421k weights) at --bits, entropy-"
                       "code it, decode the stream with the Verilated decoder (C clock loop) and check it "
                       "bit-exact against the golden model; reports decoded weights per wall-clock second.")
    q.add_argument("--bits", type=int, default=3, help="quantizer bits (default 3)")
    decoder_option("lanes").add_to(q)
    q.add_argument("--results", action="store_true", help="write the numbers into docs/results.md")
    q.set_defaults(func=cmd_decode_speed)


def cmd_infer(args):
    from subbit.rtl_inference import infer, infer_markdown
    r = infer(args.model, args.dataset, args.n, args.rtl, progress=progress())
    if args.results and args.rtl != "none":
        from subbit.results import update_section
        cmd = f"subbit infer --rtl {args.rtl} {args.model} --dataset {r['dataset']} --n {args.n}"
        print(f"wrote {update_section('infer', infer_markdown(r, cmd))}")


def cmd_decode_speed(args):
    from subbit.rtl_inference import decode_speed, decode_speed_markdown
    r = decode_speed(args.bits, args.lanes)
    if args.results:
        from subbit.results import update_section
        cmd = f"subbit decode-speed --bits {args.bits} --lanes {args.lanes}"
        print(f"wrote {update_section('decode-speed', decode_speed_markdown(r, cmd))}")
