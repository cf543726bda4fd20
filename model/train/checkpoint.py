"""Resumable runs: checkpoints of a training phase, and a clean stop on SIGINT / SIGTERM.

A run's checkpoint directory holds one file per phase (``fp32.pt``, ``qat.pt``,
``qat@0.6.pt``, ``ternary.pt``, ...), each rewritten atomically (temporary file, then
``os.replace``) at every evaluation point of its phase, so the directory always holds the last
complete state. A file records *what* it belongs to (:class:`PhaseCheckpoint`'s identity: the
checkpoint format, the subbit and stream-format versions, the phase, the name, shape and dtype of
every tensor of the model, and the phase's settings) and is only resumed into the same thing:
anything else is a :class:`~subbit.model.train.errors.CheckpointError` naming the difference.
Files are read with ``torch.load(weights_only=True)`` (tensors and plain values only).

:func:`stop_on_signals` turns SIGTERM, like SIGINT, into :class:`Interrupted` (a
``KeyboardInterrupt``) and holds both while a checkpoint or the run's outputs are being written
(:func:`critical`), so a stopped run keeps its last checkpoint whole.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading

from .errors import CheckpointError

__all__ = ["FORMAT", "VERSION", "Interrupted", "stop_on_signals", "critical", "fingerprint", "PhaseCheckpoint"]

FORMAT = "subbit-train-checkpoint"
VERSION = 1


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT or SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


_held = {"depth": 0, "pending": None}


def _handler(signum, frame):
    if _held["depth"]:
        _held["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (held inside
    :func:`critical`); the previous handlers are restored on exit. Does nothing outside the
    main thread (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def critical():
    """A section that a signal does not interrupt (under :func:`stop_on_signals`): the signal is
    held and raised as :class:`Interrupted` when the section ends."""
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if not _held["depth"] and _held["pending"] is not None:
            signum, _held["pending"] = _held["pending"], None
            raise Interrupted(signum)


def fingerprint(module) -> list:
    """``[name, shape, dtype]`` of every tensor of ``module.state_dict()``, in order."""
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in module.state_dict().items()]


def _versions() -> dict:
    from subbit import __version__

    from ..sbw import FILE_VERSION
    return {"format": FORMAT, "version": VERSION, "subbit": __version__, "stream_file_version": FILE_VERSION}


def _model_difference(have: list, want: list) -> str:
    h = {k: (s, d) for k, s, d in have}
    w = {k: (s, d) for k, s, d in want}
    missing = [k for k in w if k not in h]
    extra = [k for k in h if k not in w]
    changed = [f"{k} is {h[k][0]} {h[k][1]} there, {w[k][0]} {w[k][1]} here" for k in w if k in h and h[k] != w[k]]
    out = []
    if missing:
        out.append(f"it lacks {', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else ""))
    if extra:
        out.append(f"it has {', '.join(extra[:4])}" + (" ..." if len(extra) > 4 else "") + " that this model has not")
    if changed:
        out.append("; ".join(changed[:4]) + (" ..." if len(changed) > 4 else ""))
    return "; ".join(out) or "the tensors are in another order"


class PhaseCheckpoint:
    """The checkpoint file of one training phase.

    Parameters
    ----------
    path : the file (its directory is created on the first :meth:`save`)
    phase : the phase's name (``"qat"``, ``"fp32"``, ...)
    model : the module whose state the phase trains (:func:`fingerprint`)
    settings : the phase's parameters (plain values); a resume must use the same
    main : whether this process writes (DDP: rank 0 only; every rank reads)
    """

    def __init__(self, path, *, phase: str, model, settings: dict, main: bool = True):
        self.path = os.fspath(path)
        self.main = main
        self.identity = dict(_versions(), phase=phase, model=fingerprint(model), settings=dict(settings))

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def load(self) -> dict | None:
        """The saved state, or ``None`` if there is no file yet.

        Raises
        ------
        CheckpointError
            The file is unreadable, or was written by another checkpoint format or subbit
            version, for another phase, model or settings (the message says which).
        """
        if not self.exists():
            return None
        import torch
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:       # torch raises many kinds (pickle, zip, weights-only errors)
            raise CheckpointError(f"cannot read checkpoint {self.path}: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}") from None
        if not isinstance(blob, dict) or "identity" not in blob or "state" not in blob:
            raise CheckpointError(f"{self.path} is not a subbit training checkpoint")
        have, want = blob["identity"], self.identity
        if have.get("format") != FORMAT:
            raise CheckpointError(f"{self.path} is not a subbit training checkpoint")
        for key, what in (("version", "checkpoint format"), ("subbit", "subbit version"),
                          ("stream_file_version", "stream file version")):
            if have.get(key) != want[key]:
                raise CheckpointError(f"checkpoint {self.path} was written with {what} {have.get(key)}, this is "
                                      f"{want[key]}: it cannot be resumed (start the run again)")
        if have.get("phase") != want["phase"]:
            raise CheckpointError(f"checkpoint {self.path} is of phase {have.get('phase')!r}, not {want['phase']!r}")
        if have.get("model") != want["model"]:
            raise CheckpointError(f"checkpoint {self.path} was made for another model: "
                                  f"{_model_difference(have.get('model') or [], want['model'])}")
        hs, ws = have.get("settings") or {}, want["settings"]
        diff = [f"{k}={hs.get(k)!r} there, {ws.get(k)!r} here" for k in sorted(set(hs) | set(ws))
                if hs.get(k) != ws.get(k)]
        if diff:
            raise CheckpointError(f"checkpoint {self.path} was made with other settings: {'; '.join(diff)}")
        return blob["state"]

    def save(self, state: dict) -> None:
        """Write ``{identity, state}`` atomically (rank 0 only); signals wait until it is done."""
        if not self.main:
            return
        import torch

        from ..sbw import atomic_write
        buf = io.BytesIO()
        torch.save({"identity": self.identity, "state": state}, buf)
        with critical():
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            atomic_write(self.path, buf.getvalue())
