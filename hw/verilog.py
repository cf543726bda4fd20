"""Verilog generation of the decoder with a stable top-level name and port list."""

from __future__ import annotations

from amaranth.back import verilog

from .decoder import Decoder
from .params import PIPELINE_DEPTH, DecoderParams

__all__ = ["TOP", "generate", "generate_params"]

TOP = "subbit_decoder"


def generate_params(params: DecoderParams, name: str = TOP) -> str:
    """Synthesizable Verilog of a :class:`Decoder` (ports: ``docs/decoder.md``)."""
    return verilog.convert(Decoder(params), name=name, emit_src=False)


def generate(lanes: int = 1, prob_bits: int = 12, max_symbols: int = 15, word_width: int = 16,
             lookup: str = "compare", ways: int = PIPELINE_DEPTH, multiplier: str = "generic",
             prefetch: int = DecoderParams.prefetch, fc_read: str | None = None, window: str | None = None,
             name: str = TOP) -> str:
    """Keyword form of :func:`generate_params` (parameters validated with clear errors)."""
    return generate_params(DecoderParams(lanes=lanes, prob_bits=prob_bits, max_symbols=max_symbols,
                                         word_width=word_width, lookup=lookup, ways=ways,
                                         multiplier=multiplier, prefetch=prefetch, fc_read=fc_read,
                                         window=window), name)
