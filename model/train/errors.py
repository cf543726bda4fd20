"""Errors of the training flow. All derive from :class:`subbit.model.SubbitError`, so the CLI
reports them as ``subbit train: error: ...`` with exit code 2."""

from ..errors import SubbitError

__all__ = ["ConfigError", "DataError", "CheckpointError"]


class ConfigError(SubbitError):
    """Bad flow parameters: unknown dataset or model name, a non-positive rate budget, ..."""


class DataError(SubbitError):
    """A dataset is missing, unreadable or malformed. The message names the file."""


class CheckpointError(SubbitError):
    """A checkpoint does not fit the model (missing, unexpected or mis-shaped tensors)."""
