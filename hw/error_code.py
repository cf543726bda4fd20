"""The value of the decoder's ``status.error`` (docs/decoder.md): an Amaranth enum, kept apart from
`subbit.hw.params` so that the parameters import without Amaranth (`subbit.hw.params.ErrorCode` loads
it on first use)."""

from __future__ import annotations

from amaranth.lib import enum

__all__ = ["ErrorCode"]


class ErrorCode(enum.Enum, shape=4):
    """Value of ``status.error``; sticky until reset. See docs/decoder.md."""
    NONE = 0
    BAD_MAGIC = 1          #: stream header word 0 is not 0x5342
    BAD_VERSION = 2        #: stream version is not 2, or the reserved header word is not 0
    CONFIG_MISMATCH = 3    #: stream M / lanes / ways differ from this decoder's
    HEADER_CHECK = 4       #: a header check word does not match
    BAD_TABLE = 5          #: alphabet size 0 or > 255, or frequencies not summing to 2**M
    UNSUPPORTED = 6        #: alphabet larger than max_symbols, or codes wider than the output
    TRUNCATED = 7          #: input `last` before the end of the stream
    TRAILING = 8           #: the stream's final word came without `last`
    FINAL_STATE = 9        #: a rANS state did not end at L = 2**16 (corrupted payload)
    PAYLOAD_LENGTH = 10    #: a layer read more, or fewer, payload words than it declares
    PAYLOAD_CHECK = 11     #: a payload check word does not match its payload
    BAD_CLASS = 12         #: row classes (stream v3): row length or class index words do not fit the layer,
    #:                        a class >= T, non-zero unused class bits, an unknown class index coding
