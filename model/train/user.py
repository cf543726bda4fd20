"""User code for ``subbit train --model MODULE:FUNCTION --data MODULE:FUNCTION``.

``MODULE`` is an importable module (``pkg.models``) or a Python file (``path/to/models.py``,
imported once under its stem's name); ``FUNCTION`` is a callable in it:

* the **model factory** returns a ``torch.nn.Module``. With a built-in ``--dataset`` it is
  called with those of ``in_channels``, ``image_size`` and ``num_classes`` it accepts as
  keyword arguments; with ``--data`` without arguments.
* the **data function** returns the loaders: ``(train, val)``, ``(train, val, test)`` or a
  dict with keys ``train``, ``val`` and optionally ``test``. Each is an iterable of
  ``(inputs, targets)`` batches with a ``len()`` (a ``DataLoader``); targets are class
  indices and the model's outputs ``(N, classes)`` scores (cross-entropy, top-1 accuracy).
  Without a test loader the report's accuracies are measured on the validation loader.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys

from .errors import ConfigError, DataError

__all__ = ["is_spec", "load_object", "build_user_model", "user_loaders", "UserData"]

_FILES: dict[str, object] = {}


def is_spec(text) -> bool:
    """Whether a ``--model`` value names user code (``MODULE:FUNCTION``) rather than a built-in model."""
    return isinstance(text, str) and ":" in text


def _import(mod: str, flag: str, spec: str):
    if mod.endswith(".py") or os.sep in mod:
        path = os.path.abspath(mod)
        if path in _FILES:
            return _FILES[path]
        if not os.path.isfile(path):
            raise ConfigError(f"{flag} {spec!r}: no file {mod}")
        name = os.path.splitext(os.path.basename(path))[0]
        s = importlib.util.spec_from_file_location(name, path)
        m = importlib.util.module_from_spec(s)
        sys.modules.setdefault(name, m)
        try:
            s.loader.exec_module(m)
        except Exception as e:
            if sys.modules.get(name) is m:
                del sys.modules[name]
            raise ConfigError(f"{flag} {spec!r}: cannot import {mod}: {type(e).__name__}: {e}") from None
        _FILES[path] = m
        return m
    try:
        return importlib.import_module(mod)
    except Exception as e:
        raise ConfigError(f"{flag} {spec!r}: cannot import {mod}: {type(e).__name__}: {e}") from None


def load_object(spec: str, flag: str):
    """The callable ``FUNCTION`` of ``MODULE:FUNCTION`` (``MODULE`` a module or a ``.py`` file)."""
    mod, _, fn = spec.rpartition(":")
    if not mod or not fn:
        raise ConfigError(f"{flag} {spec!r}: expected MODULE:FUNCTION (e.g. mypkg.models:make or models.py:make)")
    m = _import(mod, flag, spec)
    obj = getattr(m, fn, None)
    if not callable(obj):
        raise ConfigError(f"{flag} {spec!r}: {mod} has no function {fn}")
    return obj


def build_user_model(spec: str, geometry: dict | None = None):
    """Call the model factory (with the ``geometry`` keywords it accepts); check it built a Module."""
    from torch import nn
    fn = load_object(spec, "--model")
    kwargs = {}
    if geometry:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        var = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in geometry.items() if var or k in params}
    try:
        model = fn(**kwargs)
    except Exception as e:
        raise ConfigError(f"--model {spec!r}: the factory failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


class UserData:
    """The loaders of ``--data``: ``train``, ``val``, ``test`` (``test`` is ``val`` when none
    was given), ``source`` (the spec), ``sizes`` and ``info`` (for the report)."""

    def __init__(self, spec: str):
        fn = load_object(spec, "--data")
        try:
            res = fn()
        except Exception as e:
            raise DataError(f"--data {spec!r}: the function failed: {type(e).__name__}: {e}") from None
        if isinstance(res, dict):
            unknown = set(res) - {"train", "val", "test"}
            if unknown or not {"train", "val"} <= set(res):
                raise DataError(f"--data {spec!r}: the dict must have keys train, val and optionally test, "
                                f"not {', '.join(sorted(map(str, res)))}")
            train, val, test = res["train"], res["val"], res.get("test")
        elif isinstance(res, (tuple, list)) and len(res) in (2, 3):
            train, val, test = (list(res) + [None])[:3]
        else:
            raise DataError(f"--data {spec!r}: the function must return (train, val), (train, val, test) or a "
                            f"dict of loaders, not {type(res).__name__}")
        for what, ld in (("train", train), ("val", val), ("test", test)):
            if ld is None and what != "test":
                raise DataError(f"--data {spec!r}: the {what} loader is None")
            if ld is not None and not hasattr(ld, "__iter__"):
                raise DataError(f"--data {spec!r}: the {what} loader is a {type(ld).__name__}, not an iterable "
                                "of (inputs, targets) batches")
        self.train, self.val = train, val
        self.test = test if test is not None else val
        self.source = spec
        self.test_is_val = test is None
        self.sizes = {k: _size(v) for k, v in (("train", train), ("val", val), ("test", test)) if v is not None}
        self.info = {"test": "the validation loader (no test loader given)" if test is None else "the test loader"}


def _size(loader):
    ds = getattr(loader, "dataset", None)
    try:
        return len(ds) if ds is not None else None
    except TypeError:
        return None
