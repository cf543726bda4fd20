"""Golden model (the spec) and compression flow of subbit. Never imports amaranth."""

from .errors import SubbitError, FormatError, DecodeError

__all__ = ["SubbitError", "FormatError", "DecodeError"]
