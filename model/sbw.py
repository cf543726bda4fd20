"""The ``.sbw`` weight-stream file: software metadata + side tensors + hardware word stream.

File layout (v1, all integers little-endian; spec in ``docs/stream-format.md``)::

    offset  size  field
    0       8     magic b"\\x89SBW\\r\\n\\x1a\\n"
    8       2     file version (1)
    10      2     flags (0)
    12      4     metadata length in bytes (UTF-8 JSON)
    16      8     side-data length in bytes
    24      8     hardware word-stream length in bytes (even)
    32      4     reserved (0)
    36      4     CRC-32 of bytes 0..35 and the metadata
    40      4     CRC-32 of the side data
    44      4     CRC-32 of the word stream's header words (stream and layer
                  headers, payloads excluded: those are checked by rANS)
    48      .     metadata, side data, word stream, in that order

The *word stream* (`subbit.model.stream`) is everything the hardware needs.
The *metadata* holds what only software needs: layer names, shapes, quantizer
(bits, levels, zero point, float scales) and the side tensors' directory.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import stream
from .errors import FormatError, SubbitError

__all__ = ["MAGIC", "FILE_VERSION", "LayerMeta", "SbwFile", "read_sbw", "write_sbw", "atomic_write", "check_output"]

MAGIC = b"\x89SBW\r\n\x1a\n"
FILE_VERSION = 2
READ_VERSIONS = (1, 2)             # v1: scales as JSON numbers, no partitions
_HEAD = struct.Struct("<8sHHIQQIIII")
HEADER_BYTES = _HEAD.size          # 48
MAX_DIMS = 8
_SIDE_DTYPES = {"float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"}
_TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64")     # of coded layers; bfloat16 side tensors


@dataclass
class LayerMeta:
    """Software metadata of one coded layer: ``weights = codes * scale``."""
    name: str
    shape: tuple[int, ...]
    bits: int                          # quantizer bit-width b (levels = 2**b - 1)
    scale: list[float]                 # one per layer, or one per slice along scale_axis
    scale_axis: int | None = None
    dtype: str = "float32"             # dtype of the original tensor
    part: dict | None = None           # {"tensor", "row_class", "col_class"}: one part of a Partition

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1

    @property
    def zero_point(self) -> int:
        return (self.levels - 1) // 2

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def tensor(self) -> str:
        """The checkpoint tensor this layer codes (all of it, or one part)."""
        return self.part["tensor"] if self.part else self.name

    def to_json(self, scale_ref=None) -> dict:
        rec = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "bits": self.bits,
               "levels": self.levels, "zero_point": self.zero_point,
               "scale": self.scale if scale_ref is None else scale_ref, "scale_axis": self.scale_axis}
        if self.part:
            rec["part"] = dict(self.part)
        return rec

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """``codes × scale``: in float64 for a float64 layer (exact), else in float32 (one rounding,
        to nearest even); the caller casts to :attr:`dtype` (float16 and bfloat16 round to nearest
        even once more, so a code of 0 stays exactly 0)."""
        ft = np.float64 if self.dtype == "float64" else np.float32
        q = np.asarray(codes, dtype=ft).reshape(self.shape)
        s = np.asarray(self.scale, dtype=np.float32).astype(ft)
        if self.scale_axis is not None:
            s = s.reshape([-1 if d == self.scale_axis else 1 for d in range(len(self.shape))])
        return q * s


def _bits_for(classes: int) -> int:
    return (classes - 1).bit_length()


@dataclass
class Partition:
    """A tensor coded as several stream layers: its rows (axis 0) fall in ``row_classes`` classes and
    its columns (the other axes, flattened) in ``col_classes``; the weights of row class ``a`` and
    column class ``b``, in row-major order, form the layer whose ``part`` is ``(a, b)``. Empty
    combinations have no layer. Class maps travel bit-packed (``⌈log2 classes⌉`` bits an entry)."""
    shape: tuple[int, ...]
    row_class: np.ndarray
    col_class: np.ndarray
    row_classes: int = 1
    col_classes: int = 1

    def parts(self) -> list[tuple[int, int]]:
        """The (row class, column class) pairs that hold weights, in stream order."""
        rs = [a for a in range(self.row_classes) if np.any(self.row_class == a)]
        cs = [b for b in range(self.col_classes) if np.any(self.col_class == b)]
        return [(a, b) for a in rs for b in cs]

    def part_shape(self, a: int, b: int) -> tuple[int, int]:
        return int(np.sum(self.row_class == a)), int(np.sum(self.col_class == b))

    def split(self, w: np.ndarray) -> dict:
        m = np.asarray(w).reshape(self.shape[0], -1)
        return {(a, b): m[self.row_class == a][:, self.col_class == b] for a, b in self.parts()}

    def assemble(self, parts: dict, dtype) -> np.ndarray:
        out = np.zeros((self.shape[0], int(np.prod(self.shape[1:], dtype=np.int64))), dtype=dtype)
        for (a, b), v in parts.items():
            out[np.ix_(self.row_class == a, self.col_class == b)] = v
        return out.reshape(self.shape)

    def pack(self) -> bytes:
        out = b""
        for cls, n in ((self.row_class, self.row_classes), (self.col_class, self.col_classes)):
            k = _bits_for(n)
            if k:
                bits = (np.asarray(cls, dtype=np.uint8)[:, None] >> np.arange(k, dtype=np.uint8)) & 1
                out += np.packbits(bits.ravel(), bitorder="little").tobytes()
        return out

    @classmethod
    def unpack(cls, raw: bytes, shape, row_classes: int, col_classes: int) -> "Partition":
        rows, cols = int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))
        maps, pos = [], 0
        for n, g in ((rows, row_classes), (cols, col_classes)):
            k = _bits_for(g)
            nbytes = (n * k + 7) // 8
            if pos + nbytes > len(raw):
                raise ValueError(f"class maps need {pos + nbytes} bytes, the record has {len(raw)}")
            bits = np.unpackbits(np.frombuffer(raw, np.uint8, nbytes, pos), bitorder="little")[:n * k]
            vals = (bits.reshape(n, k).astype(np.uint16) << np.arange(k, dtype=np.uint16)).sum(1) if k \
                else np.zeros(n, np.uint16)
            if n and vals.max() >= g:
                raise ValueError(f"class {int(vals.max())} of {g}")
            maps.append(vals.astype(np.uint8))
            pos += nbytes
        if pos != len(raw):
            raise ValueError(f"class maps take {pos} bytes, the record has {len(raw)}")
        return cls(tuple(shape), maps[0], maps[1], row_classes, col_classes)


@dataclass
class SbwFile:
    """A weight stream in memory."""
    config: stream.StreamConfig
    layers: list[LayerMeta]
    hw: list[stream.HwLayer]
    side: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)      # free-form provenance (producer, source, ...)
    checkpoint: dict | None = None                # the source checkpoint's container: format, metadata
    order: list[str] | None = None                # all tensor names in the checkpoint's order
    side_dtypes: dict[str, str] = field(default_factory=dict)   # torch dtype of side tensors numpy lacks
    partitions: dict[str, Partition] = field(default_factory=dict)   # tensors coded in parts
    stream_offset: int = field(default=0, compare=False)   # byte offset of the word stream in its file
    codes: dict | None = field(default=None, compare=False, repr=False)   # the encoder's codes, when it made this

    def words(self) -> np.ndarray:
        """The hardware word stream."""
        return stream.build(self.hw, self.config)

    def decode_codes(self) -> dict[str, np.ndarray]:
        """Golden-decode every layer (with the final-state check) to shaped int codes."""
        out = {}
        for meta, hw in zip(self.layers, self.hw):
            out[meta.name] = stream.decode_codes(hw, self.config, name=f"'{meta.name}'",
                                                 byte_offset=self.stream_offset).reshape(meta.shape)
        return out

    def names(self) -> list[str]:
        """Every tensor name (coded tensors and side tensors) in the source checkpoint's order."""
        if self.order:
            return list(self.order)
        return list(dict.fromkeys(m.tensor for m in self.layers)) + list(self.side)

    def dtypes(self) -> dict[str, str]:
        """The torch dtype name of every tensor of the source checkpoint."""
        out = {m.tensor: m.dtype for m in self.layers}
        out.update({k: self.side_dtypes.get(k, np.asarray(a).dtype.name) for k, a in self.side.items()})
        return out

    def tensor_codes(self, codes: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Integer codes per checkpoint tensor (parts put back in place)."""
        codes = self.decode_codes() if codes is None else codes
        out, parts = {}, {}
        for m in self.layers:
            if m.part:
                parts.setdefault(m.tensor, {})[(m.part["row_class"], m.part["col_class"])] = codes[m.name]
            else:
                out[m.name] = codes[m.name]
        for t, p in parts.items():
            out[t] = self.partitions[t].assemble(p, np.int64)
        return out

    def state_dict(self, codes: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Dequantized weights (float32; float64 layers in float64) plus side tensors, in the
        source checkpoint's order of names; :meth:`dtypes` gives each tensor's original dtype."""
        codes = self.decode_codes() if codes is None else codes
        sd, parts = {}, {}
        for m in self.layers:
            w = m.dequantize(codes[m.name])
            if m.part:
                parts.setdefault(m.tensor, {})[(m.part["row_class"], m.part["col_class"])] = w
            else:
                sd[m.name] = w
        for t, p in parts.items():
            sd[t] = self.partitions[t].assemble(p, next(iter(p.values())).dtype)
        sd.update(self.side)
        return {k: sd[k] for k in self.names()}


def _metadata(sbw: SbwFile) -> tuple[bytes, bytes]:
    side_dir, blobs, off = [], [], 0
    for name, arr in sbw.side.items():
        a = np.ascontiguousarray(arr).reshape(np.shape(arr))   # keeps 0-d tensors 0-d
        if a.dtype.name not in _SIDE_DTYPES:
            raise SubbitError(f"side tensor {name!r} has unsupported dtype {a.dtype}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        rec = {"name": name, "shape": list(a.shape), "dtype": a.dtype.name, "offset": off, "nbytes": len(raw)}
        if name in sbw.side_dtypes:
            rec["torch_dtype"] = sbw.side_dtypes[name]
        side_dir.append(rec)
        blobs.append(raw)
        off += len(raw)
    # v2: scales (float32) and class maps in binary after the side tensors, in the same section
    layer_recs = []
    for m in sbw.layers:
        raw = np.asarray(m.scale, dtype="<f4").tobytes()
        layer_recs.append(m.to_json({"offset": off, "count": len(m.scale)}))
        blobs.append(raw)
        off += len(raw)
    part_recs = []
    for name, p in sbw.partitions.items():
        raw = p.pack()
        part_recs.append({"tensor": name, "shape": list(p.shape), "row_classes": p.row_classes,
                          "col_classes": p.col_classes, "offset": off, "nbytes": len(raw)})
        blobs.append(raw)
        off += len(raw)
    meta = {"format": "subbit-sbw", "version": FILE_VERSION,
            "layers": layer_recs, "side": side_dir, "info": sbw.info}
    if part_recs:
        meta["partitions"] = part_recs
    if sbw.checkpoint is not None or sbw.order is not None:
        meta["checkpoint"] = dict(sbw.checkpoint or {}, order=sbw.names())
    return json.dumps(meta, separators=(",", ":")).encode(), b"".join(blobs)


def _header_words(words: np.ndarray, hw: list[stream.HwLayer]) -> bytes:
    parts = [words[:stream.STREAM_HEADER_WORDS]]
    for lay in hw:
        parts.append(words[lay.offset:lay.offset + len(lay.header_words())])
    return np.concatenate(parts).astype("<u2").tobytes()


def to_bytes(sbw: SbwFile) -> bytes:
    """Serialise to the v1 file layout."""
    if len(sbw.layers) != len(sbw.hw):
        raise SubbitError(f"{len(sbw.layers)} layer records but {len(sbw.hw)} coded layers")
    meta, side = _metadata(sbw)
    words = sbw.words()
    hw_bytes = words.astype("<u2").tobytes()
    head = _HEAD.pack(MAGIC, FILE_VERSION, 0, len(meta), len(side), len(hw_bytes), 0, 0, 0, 0)
    hcrc = zlib.crc32(meta, zlib.crc32(head[:36]))
    head = _HEAD.pack(MAGIC, FILE_VERSION, 0, len(meta), len(side), len(hw_bytes), 0,
                      hcrc, zlib.crc32(side), zlib.crc32(_header_words(words, sbw.hw)))
    return head + meta + side + hw_bytes


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file: no partial file is ever left behind.

    Raises
    ------
    SubbitError
        The file cannot be written (missing directory, a directory at ``path``, no permission,
        disk full); the message names the path and the system's reason.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".subbit-", suffix=".tmp")
    except OSError as e:
        raise SubbitError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())       # mkstemp's 0600 would outlive the rename
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise SubbitError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def check_output(path, *, inputs=(), exts=None, what="output") -> str:
    """Check, before any work, that ``path`` can be written as ``what``; returns it.

    Raises
    ------
    SubbitError
        ``path`` is a directory, is one of ``inputs`` (the same file, by any name: subbit never
        overwrites what it reads), has none of the extensions ``exts``, or its directory is
        missing or not writable.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise SubbitError(f"{what} {path} is a directory: give a file name")
    for src in inputs:
        if src is None:
            continue
        same = (os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src)) or \
            os.path.realpath(path) == os.path.realpath(src)
        if same:
            raise SubbitError(f"{what} {path} is the input file {os.fspath(src)}: refusing to overwrite it "
                              "(choose another name)")
    ext = os.path.splitext(path)[1].lower()
    if exts is not None and ext not in exts:
        raise SubbitError(f"{what} {path}: the name should end in {', '.join(exts[:-1])}{' or ' if len(exts) > 1 else ''}"
                          f"{exts[-1]}, not {ext or 'no extension'!r}")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise SubbitError(f"cannot write {what} {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK | os.X_OK):
        raise SubbitError(f"cannot write {what} {path}: no permission to write in {d}")
    return path


def write_sbw(path, sbw: SbwFile) -> int:
    """Write ``sbw`` to ``path`` atomically; returns the file size in bytes."""
    data = to_bytes(sbw)
    atomic_write(path, data)
    return len(data)


def _meta_error(msg, layer=None):
    return FormatError(msg, offset=HEADER_BYTES, layer=layer)


def _scale_values(ref, aux: bytes, version: int) -> list[float]:
    """v1: the scales as JSON numbers; v2: ``{"offset", "count"}`` of float32 values in ``aux``."""
    if version == 1:
        return [float(v) for v in ref]
    off, count = int(ref["offset"]), int(ref["count"])
    if off < 0 or count < 0 or off + 4 * count > len(aux):
        raise ValueError(f"scale record {ref} lies outside the {len(aux)}-byte side section")
    return [float(v) for v in np.frombuffer(aux, "<f4", count, off)]


def _parse_layer_meta(d, k, version: int = FILE_VERSION, aux: bytes = b"") -> LayerMeta:
    name = d.get("name") if isinstance(d, dict) else None
    label = f"{k} '{name}'" if isinstance(name, str) else str(k)
    try:
        shape = tuple(int(v) for v in d["shape"])
        bits = int(d["bits"])
        scale = _scale_values(d["scale"], aux, version)
        axis = d.get("scale_axis")
        part = d.get("part")
        if part is not None:
            part = {"tensor": str(part["tensor"]), "row_class": int(part["row_class"]),
                    "col_class": int(part["col_class"])}
        meta = LayerMeta(name=str(name), shape=shape, bits=bits, scale=scale,
                         scale_axis=None if axis is None else int(axis), dtype=str(d.get("dtype", "float32")),
                         part=part)
    except (KeyError, TypeError, ValueError) as e:
        raise _meta_error(f"malformed layer record ({type(e).__name__}: {e})", label) from None
    if not isinstance(name, str) or not name:
        raise _meta_error("layer record without a name", label)
    if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 0 or meta.size >= 1 << 32:
        raise _meta_error(f"shape {list(shape)} out of range (1..{MAX_DIMS} dims, "
                          "non-negative, fewer than 2**32 weights)", label)
    if not 2 <= bits <= 8:
        raise _meta_error(f"quantizer bits {bits} outside 2..8", label)
    if meta.dtype not in _TORCH_DTYPES:
        raise _meta_error(f"dtype {meta.dtype!r} is not one of {list(_TORCH_DTYPES)}", label)
    want = 1 if meta.scale_axis is None else (shape[meta.scale_axis] if 0 <= meta.scale_axis < len(shape) else -1)
    if want < 0 or len(scale) != want or not all(np.isfinite(scale)):
        raise _meta_error(f"scale has {len(scale)} entries for axis {meta.scale_axis} of shape "
                          f"{list(shape)} (or is not finite)", label)
    return meta


def _parse_checkpoint_record(rec, names: list[str], source: str):
    """The optional ``checkpoint`` record: the source container and the order of all names."""
    if rec is None:
        return None, None
    ok = (isinstance(rec, dict) and rec.get("format") in ("torch", "safetensors")
          and isinstance(rec.get("metadata", {}), dict)
          and all(isinstance(k, str) and isinstance(v, str) for k, v in rec.get("metadata", {}).items()))
    if not ok:
        raise _meta_error(f"{source}: bad checkpoint record {str(rec)[:80]!r} (format torch or safetensors, "
                          "metadata a mapping of strings)")
    order = rec.get("order")
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(names) or len(set(names)) != len(names):
        raise _meta_error(f"{source}: the checkpoint record's order does not list each of the "
                          f"{len(names)} tensors once")
    return {k: v for k, v in rec.items() if k != "order"}, [str(n) for n in order]


def _parse_partitions(recs, layers: list[LayerMeta], aux: bytes, source: str) -> dict[str, Partition]:
    """The ``partitions`` records (v2): class maps, and every part layer matching one of them."""
    out = {}
    if not isinstance(recs, list):
        raise _meta_error(f"{source}: metadata 'partitions' is not a list")
    for rec in recs:
        try:
            name, shape = str(rec["tensor"]), tuple(int(v) for v in rec["shape"])
            g_r, g_c, off, nb = (int(rec[k]) for k in ("row_classes", "col_classes", "offset", "nbytes"))
            if not (1 <= g_r <= 256 and 1 <= g_c <= 256 and 2 <= len(shape) <= MAX_DIMS and min(shape) > 0):
                raise ValueError("classes must be 1..256 and the shape 2..8 positive dimensions")
            if off < 0 or nb < 0 or off + nb > len(aux):
                raise ValueError(f"class maps at {off}+{nb} lie outside the {len(aux)}-byte side section")
            out[name] = Partition.unpack(aux[off:off + nb], shape, g_r, g_c)
        except (KeyError, TypeError, ValueError) as e:
            raise _meta_error(f"{source}: bad partition record {str(rec)[:80]!r}: {e}") from None
    seen = {}
    for k, m in enumerate(layers):
        if not m.part:
            continue
        label = f"{k} '{m.name}'"
        p = out.get(m.tensor)
        key = (m.part["row_class"], m.part["col_class"])
        if p is None or key not in p.parts():
            raise _meta_error(f"part {key} of tensor {m.tensor!r} has no partition record that holds it", label)
        if tuple(m.shape) != p.part_shape(*key):
            raise _meta_error(f"part {key} of {m.tensor!r} has shape {list(m.shape)}, its class maps give "
                              f"{list(p.part_shape(*key))}", label)
        if key in seen.setdefault(m.tensor, set()):
            raise _meta_error(f"part {key} of {m.tensor!r} is coded twice", label)
        seen[m.tensor].add(key)
    for name, p in out.items():
        if seen.get(name, set()) != set(p.parts()):
            missing = sorted(set(p.parts()) - seen.get(name, set()))
            raise _meta_error(f"{source}: tensor {name!r} misses the layers of its parts {missing}")
    return out


def from_bytes(data: bytes, *, source: str = "<bytes>", kind: str = "") -> SbwFile:
    """Parse and validate a file image (payloads are checked when decoded).

    Raises
    ------
    FormatError
        With byte offset (and layer): short file, bad magic, unknown version,
        length fields that do not match the file size, CRC mismatches, bad
        metadata (names, shapes, quantizer), or any word-stream error.
    """
    if data[:len(MAGIC)] != MAGIC[:len(data)] or (not data and kind):
        raise FormatError(f"{source}: not a .sbw file: it {kind}" if kind else
                          f"{source}: bad magic {bytes(data[:len(MAGIC)])!r}, not a subbit weight stream", offset=0)
    if len(data) < HEADER_BYTES:
        raise FormatError(f"{source}: file truncated: {len(data)} bytes, the header alone has "
                          f"{HEADER_BYTES}", offset=len(data))
    (magic, version, flags, mlen, slen, hlen, _res, hcrc, scrc, wcrc) = _HEAD.unpack_from(data)
    if version not in READ_VERSIONS:
        raise FormatError(f"{source}: unknown file version {version} (this reader knows "
                          f"{', '.join(map(str, READ_VERSIONS))})", offset=8)
    end = HEADER_BYTES + mlen + slen + hlen
    if end != len(data):
        what = "truncated" if end > len(data) else "has trailing bytes"
        raise FormatError(f"{source}: file {what}: header declares {end} bytes, file has "
                          f"{len(data)}", offset=min(end, len(data)))
    meta_raw = data[HEADER_BYTES:HEADER_BYTES + mlen]
    if zlib.crc32(meta_raw, zlib.crc32(data[:36])) != hcrc or flags:
        raise FormatError(f"{source}: header checksum mismatch (header or metadata corrupted)",
                          offset=36)
    try:
        meta = json.loads(meta_raw)
        layer_recs, side_recs, info = meta["layers"], meta["side"], meta.get("info", {})
    except (ValueError, KeyError, TypeError) as e:
        raise _meta_error(f"{source}: metadata is not valid ({e})") from None
    sbase = HEADER_BYTES + mlen
    side_raw = data[sbase:sbase + slen]
    if zlib.crc32(side_raw) != scrc:
        raise FormatError(f"{source}: side-data checksum mismatch", offset=sbase)
    if not isinstance(layer_recs, list):
        raise _meta_error(f"{source}: metadata 'layers' is not a list")
    layers = [_parse_layer_meta(d, k, version, side_raw) for k, d in enumerate(layer_recs)]
    partitions = _parse_partitions(meta.get("partitions", []), layers, side_raw, source)
    side, side_dtypes = {}, {}
    for rec in side_recs:
        try:
            if rec["dtype"] not in _SIDE_DTYPES:
                raise ValueError(f"dtype {rec['dtype']!r} is not one of {sorted(_SIDE_DTYPES)}")
            dt = np.dtype(rec["dtype"]).newbyteorder("<")
            a = np.frombuffer(side_raw, dtype=dt, count=int(rec["nbytes"]) // dt.itemsize,
                              offset=int(rec["offset"]))
            side[str(rec["name"])] = a.reshape(rec["shape"]).astype(dt.newbyteorder("="))
            if "torch_dtype" in rec:
                if rec["torch_dtype"] not in _TORCH_DTYPES:
                    raise ValueError(f"torch_dtype {rec['torch_dtype']!r} is not one of {list(_TORCH_DTYPES)}")
                side_dtypes[str(rec["name"])] = str(rec["torch_dtype"])
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{source}: bad side tensor record {rec!r}: {e}", offset=sbase) from None
    ck, order = _parse_checkpoint_record(meta.get("checkpoint"), list(dict.fromkeys(m.tensor for m in layers))
                                         + list(side), source)
    wbase = sbase + slen
    if hlen % 2:
        raise FormatError(f"{source}: word stream has an odd byte length {hlen}", offset=24)
    words = np.frombuffer(data, dtype="<u2", count=hlen // 2, offset=wbase).astype(np.uint16)
    names = [m.name for m in layers]
    config, hw = stream.parse(words, byte_offset=wbase, names=names)
    if zlib.crc32(_header_words(words, hw)) != wcrc:
        raise FormatError(f"{source}: word-stream header checksum mismatch", offset=44)
    for k, (m, h) in enumerate(zip(layers, hw)):
        label = f"{k} '{m.name}'"
        if h.count != m.size:
            raise FormatError(f"shape {list(m.shape)} holds {m.size} weights, the stream codes "
                              f"{h.count}", offset=wbase + 2 * h.offset + 4, layer=label)
        qmax = m.zero_point
        if h.base < -qmax or h.base + h.nsym - 1 > qmax:
            raise FormatError(f"codes {h.base}..{h.base + h.nsym - 1} exceed the {m.levels}-level "
                              f"quantizer", offset=wbase + 2 * h.offset, layer=label)
    return SbwFile(config=config, layers=layers, hw=hw, side=side, info=info, stream_offset=wbase,
                   checkpoint=ck, order=order, side_dtypes=side_dtypes, partitions=partitions)


def read_sbw(path) -> SbwFile:
    """Read and validate a ``.sbw`` file."""
    from .filekind import describe
    if os.path.isdir(path):
        raise SubbitError(f"cannot read {path}: it is a directory, not a .sbw file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise SubbitError(f"cannot read {path}: {e.strerror}") from None
    kind = describe(path) if not data.startswith(MAGIC) else ""
    return from_bytes(data, source=os.fspath(path), kind=kind)
