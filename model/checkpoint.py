"""Load PyTorch checkpoints (``.pt``/``.pth`` state_dicts, ``.safetensors``) as numpy arrays."""

from __future__ import annotations

import os
import re

import numpy as np

from .errors import SubbitError

__all__ = ["load_state_dict", "save_safetensors"]

_WRAPPERS = ("state_dict", "model_state_dict", "model")


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
    if t.is_floating_point():
        return t.detach().to(torch.float32).cpu().numpy()
    return t.detach().cpu().numpy()


def load_state_dict(path) -> dict[str, np.ndarray]:
    """Read a state_dict from ``.pt``/``.pth`` (loaded with ``weights_only=True``) or ``.safetensors``.

    A dict that wraps the state_dict under ``state_dict``, ``model_state_dict``
    or ``model`` is unwrapped. Floating tensors become float32 arrays.

    Raises
    ------
    SubbitError
        Missing file, unknown extension, unreadable file, or content that is
        not a mapping of names to tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SubbitError(f"checkpoint {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    import torch
    if ext == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj = load_file(path)
        except Exception as e:  # safetensors raises its own error types
            raise SubbitError(f"cannot read {path} as safetensors: {e}") from None
    elif ext in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and torch errors
            raise SubbitError(f"cannot read {path} as a PyTorch state_dict: {_torch_load_reason(e)} "
                              "(subbit loads tensors only, never code: save `model.state_dict()`)") from None
    else:
        raise SubbitError(f"unknown checkpoint extension {ext!r} of {path} "
                          "(expected .pt, .pth or .safetensors)")
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise SubbitError(f"{path} does not hold a state_dict (a non-empty mapping of names to tensors)")
    return {str(k): _to_numpy(k, v) for k, v in obj.items()}


def save_safetensors(path, tensors: dict[str, np.ndarray]) -> None:
    """Write numpy arrays to a ``.safetensors`` file atomically."""
    from safetensors.numpy import save

    from .sbw import atomic_write
    atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))
