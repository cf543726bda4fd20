"""The training API under a short name: ``import subbit.train as sbt``.

The names of `subbit.model.train.api` (``quantize``, ``RateTerm``, ``fit``, ``FitResult``,
``save_sbw``, ``load_sbw``, ``sbw_state_dict``, ``check_target``, ``select_layers``,
``QuantNet``, ``LambdaController``, ``QUANTIZED_TYPES``) are importable from here::

    import subbit.train as sbt
    qnet = sbt.quantize(model)

``subbit train`` on the command line is `subbit.cli.training`.
"""

from __future__ import annotations

_API = ("QUANTIZED_TYPES", "quantize", "select_layers", "RateTerm", "check_target", "fit", "FitResult", "save_sbw",
        "load_sbw", "sbw_state_dict", "QuantNet", "LambdaController")


def __getattr__(name):
    # the API imports torch: loaded on first use
    if name in _API:
        from subbit.model.train import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
