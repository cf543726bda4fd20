"""``subbit verilog``: write the decoder's Verilog."""

from __future__ import annotations

import sys

from .mul import MULTIPLIERS
from .params import LOOKUPS, PIPELINE_DEPTH, WINDOWS, default_window


def add_decoder_args(p):
    """Decoder parameters shared by the hardware commands."""
    p.add_argument("--lanes", "-K", type=int, default=1, help="weights per clock: 1, 2, 4 or 8 (default 1)")
    p.add_argument("--prob-bits", "-M", type=int, default=12, help="rANS probability bits 8..15 (default 12)")
    p.add_argument("--max-symbols", "-S", type=int, default=15,
                   help="largest alphabet accepted, 1..255 (default 15: up to 4-bit layers)")
    p.add_argument("--word-width", type=int, choices=[16, 32], default=16, help="input bus width (default 16)")
    p.add_argument("--lookup", choices=LOOKUPS, default="compare",
                   help="symbol lookup: comparators (small alphabets) or slot table in BRAM (default compare)")
    p.add_argument("--ways", type=int, default=PIPELINE_DEPTH,
                   help=f"interleaved states per lane (default {PIPELINE_DEPTH}, the pipeline depth)")
    p.add_argument("--multiplier", choices=MULTIPLIERS, default="generic",
                   help="lane multiplier: portable Verilog, or an ECP5 MULT18X18D with its registers (default generic)")
    p.add_argument("--prefetch", type=int, default=32, metavar="WORDS",
                   help="payload words the parser may run ahead of the lanes: 0 or a power of two "
                   "16..4096 (default 32: LUT-RAM; deeper may use block RAM)")
    p.add_argument("--fc-read", choices=["async", "sync"], default=None,
                   help="how the lanes read f/c: async (LUT-RAM, the default for compare) or sync "
                   "(block RAM where there is no LUT-RAM; always with --lookup table)")
    p.add_argument("--window", choices=WINDOWS, default=None,
                   help="payload word window: shift (a register file) or ring (LUT-RAM, one copy per "
                   "lane); default: " + ", ".join(f"K={k}: {default_window(k)}" for k in (1, 2, 4, 8)))


def params_from_args(args):
    from .params import DecoderParams
    return DecoderParams(lanes=args.lanes, prob_bits=args.prob_bits, max_symbols=args.max_symbols,
                         word_width=args.word_width, lookup=args.lookup, ways=args.ways,
                         multiplier=args.multiplier, prefetch=args.prefetch,
                         fc_read=args.fc_read, window=args.window)


def register(sub):
    p = sub.add_parser("verilog", help="write the decoder as synthesizable Verilog",
                       description="Generate the streaming rANS decoder as Verilog (top module "
                       "`subbit_decoder`, ports in docs/decoder.md).")
    add_decoder_args(p)
    p.add_argument("--axis", action="store_true",
                   help="the decoder behind AXI4-Stream ports (top `subbit_axis_decoder`: s_axis_* words, "
                   "m_axis_* weights with tkeep, tlast per layer and the layer index on tuser; hw/axis.py)")
    p.add_argument("-o", "--output", required=True, help="output .v file ('-' for stdout)")
    p.set_defaults(func=cmd_verilog)


def cmd_verilog(args):
    from ..model.sbw import atomic_write
    from .decoder import output_layout
    from .verilog import TOP, generate_params
    params = params_from_args(args)
    if args.axis:
        from . import axis
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
    print(f"{args.output}: module {TOP}, lanes={params.lanes} M={params.prob_bits} ways={params.ways} "
          f"max_symbols={params.max_symbols} ({params.code_bits}-bit codes) word_width={params.word_width} "
          f"lookup={params.lookup} multiplier={params.multiplier} prefetch={params.prefetch} "
          f"fc_read={'sync' if params.fc_sync else 'async'} "
          f"window={'ring' if params.ring_window else 'shift'}; i__payload {params.word_width + 1} bits, "
          f"o__payload {Shape.cast(output_layout(params)).width} bits, status 6 bits", file=sys.stderr)
