"""What kind of file is this? A few bytes of it tell, so that a mistake gets a message that says
what the user handed in ("a text file", "a subbit .sbw stream") instead of a parser's complaint."""

from __future__ import annotations

import json
import os
import struct

__all__ = ["sniff", "describe"]

_SBW_MAGIC = b"\x89SBW\r\n\x1a\n"


def sniff(path) -> str:
    """The kind of ``path`` by its content: ``"missing"``, ``"directory"``, ``"empty"``, ``"sbw"``,
    ``"torch-zip"`` (torch.save), ``"zip"``, ``"pickle"`` (legacy torch.save), ``"safetensors"``,
    ``"gzip"``, ``"numpy"``, ``"text"`` or ``"binary"``; ``"unreadable"`` when it cannot be opened."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "directory"
    if not os.path.exists(path):
        return "missing"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return "unreadable"
    if not head:
        return "empty"
    if head.startswith(_SBW_MAGIC):
        return "sbw"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip" if b"data.pkl" in head else "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if len(head) >= 9:
        (n,) = struct.unpack_from("<Q", head)
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3 and len(head) == 4096:    # a character cut at the end of the block
            return "text"
        return "binary"


_WORDS = {
    "missing": "does not exist", "directory": "is a directory", "empty": "is empty",
    "sbw": "is a subbit .sbw weight stream", "torch-zip": "is a PyTorch checkpoint (torch.save)",
    "zip": "is a zip archive (not a torch.save file)", "pickle": "is a pickle file (a legacy torch.save?)",
    "safetensors": "is a safetensors file", "gzip": "is a gzip file", "numpy": "is a numpy .npy file",
    "text": "is a text file", "binary": "is a binary file of unknown kind",
    "unreadable": "cannot be read",
}


def describe(path) -> str:
    """``sniff`` in words, e.g. ``"is a text file"``; a text file quotes its first line."""
    kind = sniff(path)
    words = _WORDS[kind]
    if kind == "text":
        with open(path, "rb") as fh:
            line = fh.read(200).decode("utf-8", "replace").strip().splitlines()
        first = line[0][:40] if line else ""
        if first.startswith(("{", "[")):
            try:
                with open(path, encoding="utf-8") as fh:
                    json.load(fh)
                return "is a JSON text file"
            except (ValueError, OSError):
                pass
        if first:
            return f"is a text file (starting {first!r})"
    return words
