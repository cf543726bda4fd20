"""Helpers shared by the tests of the training flow (tests/test_train_*.py)."""

import gzip
import struct

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread per test process (pytest-xdist runs one process per core)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def write_idx(path, arr, *, dtype_code=0x08, gz=False):
    """Write ``arr`` as an IDX file (big-endian, optionally gzip-compressed)."""
    arr = np.asarray(arr)
    head = bytes([0, 0, dtype_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_mnist_dir(d, n_train=120, n_test=40, size=28, seed=0, gz=True):
    """MNIST-style IDX files with random images and labels (no real data needed)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(d / f"{prefix}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, size, size), dtype=np.uint8), gz=gz)
        write_idx(d / f"{prefix}-labels-idx1-ubyte{sfx}", rng.integers(0, 10, n, dtype=np.uint8), gz=gz)
    return d
