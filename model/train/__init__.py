"""Quantization and training flow (PyTorch, CPU): networks → weight streams below 1 bit/weight.

Modules, in the order the flow uses them:

* `data` — offline datasets (digits, MNIST, Fashion-MNIST; IDX reader) and their splits
* `models` — ccexam MNIST CNN, ResNet-8/20; strict checkpoint loading
* `quantizer` — zero-point quantizer, learned step size and range (learned bit-width)
* `rate` — differentiable coded-rate estimate and the λ controller
* `qnet` — fake-quantized network; export to a stream and rebuild from a decoded one
* `loop` — fp32 and entropy-aware QAT training loops (single process or DDP)
* `baselines` — RTN, ternary, Huffman baselines and the Pareto plot
* `flow` — :func:`run`, the whole flow behind ``subbit train``
"""

from .errors import CheckpointError, ConfigError, DataError

__all__ = ["TrainConfig", "run", "ConfigError", "DataError", "CheckpointError"]


def __getattr__(name):
    # `flow` imports torch: loaded on first use, so that the CLI starts fast.
    if name in ("TrainConfig", "run"):
        from . import flow
        return getattr(flow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
