"""Verilog generation of the decoder with a stable top-level name and port list."""

from __future__ import annotations

from amaranth.back import verilog

from .decoder import Decoder
from .params import DecoderParams

__all__ = ["TOP", "generate", "generate_params"]

TOP = "subbit_decoder"


def generate_params(params: DecoderParams, name: str = TOP) -> str:
    """Synthesizable Verilog of a :class:`Decoder` (ports: ``docs/decoder.md``)."""
    return verilog.convert(Decoder(params), name=name, emit_src=False)


def generate(name: str = TOP, **params) -> str:
    """Keyword form of :func:`generate_params`: ``DecoderParams(**params)`` (its fields, defaults and
    checks with clear errors)."""
    return generate_params(DecoderParams(**params), name)
