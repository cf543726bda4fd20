"""Error classes of subbit. Every error a user can cause derives from :class:`SubbitError`."""

__all__ = ["SubbitError", "FormatError", "DecodeError"]


class SubbitError(Exception):
    """Base class: bad parameters, bad input files, failed checks."""


class FormatError(SubbitError):
    """A weight-stream file is malformed. The message names the byte offset and layer."""

    def __init__(self, message: str, *, offset: int | None = None, layer: str | None = None):
        self.message, self.offset, self.layer = message, offset, layer
        where = []
        if layer is not None:
            where.append(f"layer {layer}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class DecodeError(FormatError):
    """The payload does not decode: overrun, unread words, or a final-state mismatch.

    ``word`` is the index of the payload word at which the error was found (the
    word that was missing, the first unread one, or the end of the payload);
    `subbit.model.stream.decode_codes` turns it into the stream's byte ``offset``.
    """

    def __init__(self, message: str, *, offset: int | None = None, layer: str | None = None,
                 word: int | None = None):
        super().__init__(message, offset=offset, layer=layer)
        self.word = word
