"""Quantization and training flow (PyTorch): networks → weight streams below 1 bit/weight.

Modules, in the order the flow uses them:

* `data` — offline datasets (digits, MNIST, Fashion-MNIST; IDX reader) and their splits
* `models` — ccexam MNIST CNN, ResNet-8/20; strict checkpoint loading
* `user` — the user's model factory and loaders (``--model/--data MODULE:FUNCTION``)
* `quantizer` — zero-point quantizer, learned step size and range (learned bit-width)
* `rate` — differentiable coded-rate estimate and the λ controller
* `qnet` — fake-quantized network; export to a stream and rebuild from a decoded one
* `loop` — fp32 and entropy-aware QAT training loops (single process or DDP), resumable
* `checkpoint` — checkpoints of a training phase, clean stop on SIGINT / SIGTERM
* `api` — the public training API for any PyTorch model (also ``subbit.train``)
* `baselines` — RTN, ternary, Huffman baselines and the Pareto plot
* `flow` — :func:`run`, the whole flow behind ``subbit train`` (a user of `api`)
"""

from .errors import CheckpointError, ConfigError, DataError

_API = ("QUANTIZED_TYPES", "quantize", "select_layers", "RateTerm", "check_target", "fit", "FitResult", "save_sbw",
        "load_sbw", "sbw_state_dict", "QuantNet", "LambdaController")

__all__ = ["TrainConfig", "run", "ConfigError", "DataError", "CheckpointError", *_API]


def __getattr__(name):
    # `flow` and `api` import torch: loaded on first use, so that the CLI starts fast.
    if name in ("TrainConfig", "run"):
        from . import flow
        return getattr(flow, name)
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
