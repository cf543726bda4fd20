"""subbit.hw: Amaranth components of the streaming rANS weight decoder."""

from .params import PIPELINE_DEPTH, DecoderParams, ErrorCode
from .decoder import Decoder

__all__ = ["PIPELINE_DEPTH", "DecoderParams", "ErrorCode", "Decoder"]
