"""subbit.hw: Amaranth components of the streaming rANS weight decoder.

`subbit.hw.params` (the parameters) imports without Amaranth; the components load it.
"""

from .params import PIPELINE_DEPTH, DecoderParams

__all__ = ["PIPELINE_DEPTH", "DecoderParams", "ErrorCode", "Decoder"]


def __getattr__(name):
    # the components import Amaranth: loaded on first use, so that the parameters (and the command
    # line built from them) start without it
    if name == "Decoder":
        from .decoder import Decoder
        return Decoder
    if name == "ErrorCode":
        from .error_code import ErrorCode
        return ErrorCode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
