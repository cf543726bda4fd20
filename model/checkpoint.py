"""Read and write PyTorch checkpoints (``.pt``/``.pth`` state_dicts, ``.safetensors``) as numpy arrays.

A checkpoint is read into a :class:`Checkpoint`: the tensors as numpy arrays in their own dtype
(``bfloat16``, which numpy lacks, as the float32 array of the same values), the original torch
dtype of each, the container (``torch`` or ``safetensors``) and the safetensors metadata, so that
:func:`save_checkpoint` can give the user back a file of the same names, order, dtypes and shapes.
``.safetensors`` files are read and written with numpy alone (the same arrays and bytes as through
torch, whose import costs most of a command's start-up); ``.pt``/``.pth`` files need torch.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import SubbitError
from .filekind import describe, sniff

__all__ = ["CHECKPOINT_EXTS", "Checkpoint", "load_checkpoint", "load_state_dict", "save_checkpoint",
           "output_format", "check_checkpoint_file"]

_WRAPPERS = ("state_dict", "model_state_dict", "model")
TORCH_EXTS = (".pt", ".pth", ".bin", ".ckpt")
CHECKPOINT_EXTS = TORCH_EXTS + (".safetensors",)
# torch dtypes a checkpoint may hold, by name; numpy holds each as itself, bfloat16 as float32
DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
# safetensors' dtype names -> torch's (those subbit does not handle too, for the error message)
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "U16": "uint16",
              "U32": "uint32", "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


@dataclass
class Checkpoint:
    """A state_dict as numpy arrays, with what it takes to write it back as it came."""
    tensors: dict[str, np.ndarray]              # in the file's order; bfloat16 values as float32
    dtypes: dict[str, str] = field(default_factory=dict)   # torch dtype name of each tensor
    format: str = "torch"                       # "torch" (torch.save) or "safetensors"
    metadata: dict[str, str] | None = None      # safetensors __metadata__ (e.g. {"format": "pt"})

    def container(self) -> dict:
        """The container record kept in a ``.sbw`` file's metadata (``"checkpoint"``)."""
        rec = {"format": self.format}
        if self.metadata:
            rec["metadata"] = dict(self.metadata)
        return rec


def _torch_load_reason(e: Exception) -> str:
    """The gist of a ``torch.load`` error: torch's weights-only message is a page of advice around
    one line (the unpickler's reason)."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = m.group(1).strip() if m else lines[0] if lines else type(e).__name__
    reason = re.split(r"(?<=\.)\s", reason)[0]        # its first sentence
    if reason.startswith("Unsupported operand"):      # the unpickler met a byte no pickle has
        reason = f"not a torch.save file ({reason})"
    return reason


def _to_numpy(name, t):
    import torch
    if not isinstance(t, torch.Tensor):
        raise SubbitError(f"entry {name!r} is a {type(t).__name__}, not a tensor")
    dt = str(t.dtype).removeprefix("torch.")
    if dt not in DTYPES:
        raise SubbitError(f"tensor {name!r} {tuple(t.shape)} has dtype {dt}, which subbit does not handle "
                          f"(one of {', '.join(DTYPES)})")
    t = t.detach().cpu()
    if dt == "bfloat16":
        t = t.to(torch.float32)                       # exact: every bfloat16 is a float32
    return t.numpy(), dt


def check_checkpoint_file(path) -> str:
    """Check that ``path`` can be a checkpoint before any work; returns its extension.

    Raises
    ------
    SubbitError
        ``path`` is missing, a directory, of an unknown extension, or its content is of
        another kind than the extension says (a text file named ``.pth``, a ``.sbw`` stream, ...).
    """
    path = os.fspath(path)
    kind = sniff(path)
    if kind in ("missing", "directory", "empty", "unreadable"):
        raise SubbitError(f"checkpoint {path} {describe(path)}"
                          + (" (give a .pt, .pth or .safetensors file)" if kind == "directory" else ""))
    ext = os.path.splitext(path)[1].lower()
    if ext not in CHECKPOINT_EXTS:
        raise SubbitError(f"unknown checkpoint extension {ext!r} of {path} "
                          f"(expected .pt, .pth or .safetensors; the file {describe(path)})")
    fits = ("safetensors",) if ext == ".safetensors" else ("torch-zip", "pickle")
    if kind not in fits:
        what = "a safetensors file" if ext == ".safetensors" else "a PyTorch state_dict"
        hint = " (decode it with `subbit decode`)" if kind == "sbw" else ""
        raise SubbitError(f"cannot read {path} as {what}: the file {describe(path)}{hint}")
    return ext


def load_checkpoint(path) -> Checkpoint:
    """Read a state_dict from ``.pt``/``.pth`` (loaded with ``weights_only=True``) or ``.safetensors``.

    A dict that wraps the state_dict under ``state_dict``, ``model_state_dict`` or ``model``
    is unwrapped (the wrapper and anything else in it are not kept).

    Raises
    ------
    SubbitError
        Missing file, a directory, unknown extension, content of another kind than the
        extension says, unreadable file, a dtype subbit does not handle, or content that is
        not a mapping of names to tensors.
    """
    path = os.fspath(path)
    ext = check_checkpoint_file(path)
    if ext == ".safetensors":
        return _load_safetensors(path)
    import torch
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors
        raise SubbitError(f"cannot read {path} as a PyTorch state_dict: {_torch_load_reason(e)} "
                          "(subbit loads tensors only, never code: save `model.state_dict()`)") from None
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise SubbitError(f"{path} does not hold a state_dict (a non-empty mapping of names to tensors)")
    ck = Checkpoint(tensors={}, format="torch")
    for k, v in obj.items():
        ck.tensors[str(k)], ck.dtypes[str(k)] = _to_numpy(k, v)
    return ck


def _load_safetensors(path: str) -> Checkpoint:
    """A ``.safetensors`` file read with numpy, without torch: the same tensors, dtype names and
    metadata as through torch (bfloat16 widened to float32 exactly, its 16 bits shifted up)."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework="numpy") as fh:
            meta = fh.metadata()
            kinds = {k: fh.get_slice(k) for k in fh.keys()}
            specs = {k: (_ST_DTYPES.get(sl.get_dtype(), sl.get_dtype().lower()), tuple(sl.get_shape()))
                     for k, sl in kinds.items()}
            for k, (dt, shape) in specs.items():
                if dt not in DTYPES:
                    raise SubbitError(f"tensor {k!r} {shape} has dtype {dt}, which subbit does not handle "
                                      f"(one of {', '.join(DTYPES)})")
            tensors = {k: fh.get_tensor(k) if dt != "bfloat16" else None for k, (dt, _) in specs.items()}
    except SubbitError:
        raise
    except Exception as e:  # safetensors raises its own error types
        raise SubbitError(f"cannot read {path} as safetensors: {e}") from None
    if not tensors:
        raise SubbitError(f"{path} does not hold a state_dict (a non-empty mapping of names to tensors)")
    if any(dt == "bfloat16" for dt, _ in specs.values()):
        with open(path, "rb") as fh:               # safe_open checked the header and the offsets
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, (dt, shape) in specs.items():
            if dt == "bfloat16":
                start, end = header[k]["data_offsets"]
                raw = np.fromfile(path, dtype="<u2", count=(end - start) // 2, offset=8 + n + start)
                tensors[k] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return Checkpoint(tensors=tensors, dtypes={k: dt for k, (dt, _) in specs.items()}, format="safetensors",
                      metadata=dict(meta) if meta else None)


def load_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of :func:`load_checkpoint`, floating ones as float32 arrays."""
    return {k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in load_checkpoint(path).tensors.items()}


def output_format(path) -> str:
    """``"safetensors"`` or ``"torch"`` by the extension of an output path."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext == ".safetensors":
        return "safetensors"
    if ext in TORCH_EXTS:
        return "torch"
    raise SubbitError(f"cannot tell the checkpoint format of {path} from its extension {ext!r} "
                      "(use .safetensors, .pt or .pth)")


# numpy dtype names that torch names otherwise
_NP_DTYPE_NAMES = {"bool_": "bool"}


def _torch_tensors(tensors: dict[str, np.ndarray], dtypes: dict[str, str]):
    import torch
    out = {}
    for k, v in tensors.items():
        t = torch.from_numpy(np.array(v, copy=True))             # own memory, writable, 0-d kept
        want = dtypes.get(k)
        if want is not None and str(t.dtype).removeprefix("torch.") != want:
            t = t.to(getattr(torch, want))
        out[k] = t
    return out


def save_checkpoint(path, tensors: dict[str, np.ndarray], dtypes: dict[str, str] | None = None,
                    metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (in their order) as a checkpoint, atomically: ``.safetensors`` (with
    ``metadata`` as its ``__metadata__``) or ``.pt``/``.pth`` (``torch.save`` of a plain dict).
    Each tensor is cast to ``dtypes[name]`` (a torch dtype name) where given, rounding to nearest even
    (a NaN cast to bfloat16 becomes 0x7FC0 with its sign in a ``.safetensors`` file)."""
    from .sbw import atomic_write
    if output_format(path) == "safetensors":
        data = _safetensors_bytes(tensors, dtypes or {}, metadata)
    else:
        import torch
        buf = io.BytesIO()
        torch.save(_torch_tensors(tensors, dtypes or {}), buf)
        data = buf.getvalue()
    atomic_write(path, data)


def bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 nearest to each float32 of ``x`` (ties to even, as torch rounds), as its 16 bits
    (uint16); NaN becomes the quiet NaN 0x7FC0 with its sign."""
    x = np.asarray(x, dtype=np.float32)
    u = x.reshape(-1).view(np.uint32)
    out = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(x.reshape(-1))
    if nan.any():
        out[nan] = (u[nan] >> 16).astype(np.uint16) & 0x8000 | 0x7FC0
    return out.reshape(x.shape)


def _safetensors_bytes(tensors: dict[str, np.ndarray], dtypes: dict[str, str], metadata) -> bytes:
    """The ``.safetensors`` image of ``tensors`` cast to ``dtypes``, without torch: the bytes
    ``safetensors.torch.save`` writes for the same tensors (the same serializer, by torch's dtype names)."""
    from safetensors import TensorSpec, serialize
    keep, specs = [], {}
    for k, v in tensors.items():
        want = dtypes.get(k) or _NP_DTYPE_NAMES.get(np.asarray(v).dtype.name, np.asarray(v).dtype.name)
        if want == "bfloat16":
            a = bfloat16_bits(np.asarray(v))
        else:
            a = np.asarray(v).astype(np.dtype(want).newbyteorder("<"), copy=False)
        if not a.flags.c_contiguous:
            a = a.copy()                                    # (a 0-d array keeps its shape)
        keep.append(a)
        specs[k] = TensorSpec(dtype=want, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
    return bytes(serialize(specs, metadata=dict(metadata) if metadata else None))

