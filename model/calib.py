"""Calibration: how much each coded tensor's error matters to the network's output, measured on a
few batches of data (``subbit compress --calib``).

To second order, an error ``Δw`` on the weights changes the expected loss by about
``½ Σ_i F_i Δw_i²``, ``F`` the diagonal of the Fisher information, ``E[(∂L/∂w_i)²]``. The
*sensitivity* of a tensor is the mean of ``F`` over its weights: weighting each tensor's squared
error by it makes the rate–distortion allocation minimise that loss change instead of the
weights' squared error. ``L`` is the cross-entropy against the network's own (fp32) prediction,
so no labels are needed; ``F`` is estimated from the gradients of small batches. Runs on the
device of the model.
"""

from __future__ import annotations

import importlib

from .errors import SubbitError

__all__ = ["sensitivity", "load_calib"]


def sensitivity(model, batches, *, max_batches: int | None = None, chunk: int = 8) -> dict[str, float]:
    """``{parameter name: mean Fisher diagonal}`` of every parameter of rank >= 2 of ``model``,
    from ``batches`` (inputs, or ``(inputs, ...)`` tuples; each cut into chunks of ``chunk``
    samples, one gradient a chunk), in eval mode, on the model's device. The model must return
    logits ``(N, classes)``.

    Raises
    ------
    SubbitError
        No batch, a batch the model cannot take (the model's error is quoted), or no
        parameter of rank >= 2.
    """
    import torch
    import torch.nn.functional as F
    params = {n: p for n, p in model.named_parameters() if p.ndim >= 2}
    if not params:
        raise SubbitError("the calibration model has no parameter of rank >= 2 (no weight to measure)")
    sums = {n: 0.0 for n in params}
    device = next(iter(params.values())).device
    was, seen = model.training, 0
    model.eval()
    try:
        for k, b in enumerate(batches):
            if max_batches is not None and k >= max_batches:
                break
            x = b[0] if isinstance(b, (tuple, list)) else b
            if not isinstance(x, torch.Tensor):
                raise SubbitError(f"calibration batch {k} is a {type(x).__name__}, not a tensor")
            for c in range(0, len(x), chunk):
                xc = x[c:c + chunk].to(device)
                try:
                    out = model(xc)
                except Exception as e:  # the user's model: say which batch and what it said
                    raise SubbitError(f"calibration batch {k} of shape {list(x.shape)}: the model failed: "
                                      f"{type(e).__name__}: {e}") from None
                if not (isinstance(out, torch.Tensor) and out.ndim == 2):
                    raise SubbitError(f"calibration: the model returned {type(out).__name__} "
                                      f"{list(getattr(out, 'shape', []))}, not logits (N, classes)")
                loss = F.cross_entropy(out, out.argmax(1).detach(), reduction="sum")
                model.zero_grad(set_to_none=True)
                loss.backward()
                for n, p in params.items():
                    if p.grad is not None:
                        sums[n] += float((p.grad.detach().double() ** 2).mean())
                seen += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    if not seen:
        raise SubbitError("no calibration batch: the calibration data is empty")
    return {n: v / seen for n, v in sums.items()}


def load_calib(spec: str):
    """``"pkg.module:function"`` → what ``function()`` returns: ``(model, batches)``.

    Raises
    ------
    SubbitError
        A spec without ``:``, a module that does not import, a missing function, or a result
        that is not a (model, batches) pair.
    """
    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise SubbitError(f"--calib {spec!r}: expected MODULE:FUNCTION, e.g. mypkg.calib:make")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise SubbitError(f"--calib {spec!r}: cannot import {mod_name}: {type(e).__name__}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise SubbitError(f"--calib {spec!r}: {mod_name} has no function {fn_name}")
    res = fn()
    if not (isinstance(res, tuple) and len(res) == 2):
        raise SubbitError(f"--calib {spec!r}: {fn_name}() must return (model, batches), not {type(res).__name__}")
    return res
