"""IDX reading (MNIST): real files, generated gzipped/raw files, and corrupt ones."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fn3.data import load_dataset, parse_idx, read_idx
from fn3.data.idx import find_idx_file
from fn3.errors import DataError

MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` (uint8) as IDX: magic 00 00 08 ndim, big-endian dims, payload."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory: Path, split: str, n: int, *, gz: bool, style: str = "-") -> None:
    """Write a tiny MNIST-like split (n images 5x4) named ``<prefix>-images{style}idx3-ubyte``."""
    directory.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, 5, 4), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for kind, array, ndim in (("images", images, 3), ("labels", labels, 1)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}{style}idx{ndim}-ubyte"
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


@pytest.fixture
def mnist_dir(real_data: Path) -> Path:
    path = real_data / "mnist"
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {path} (set FN3_TEST_DATA to the shared data dir)")
    return path


def test_real_mnist_shapes_labels(mnist_dir: Path) -> None:
    train = load_dataset("mnist", "train", mnist_dir)
    test = load_dataset("mnist", "test", mnist_dir.parent)  # parent dir with a mnist/ subfolder
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.labels.dtype == torch.int64
    for ds in (train, test):
        assert int(ds.labels.min()) == 0 and int(ds.labels.max()) == 9
        assert torch.bincount(ds.labels).min() > 800  # every digit is well represented
    assert train.classes == tuple("0123456789")
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_real_mnist_md5(mnist_dir: Path) -> None:
    for name, md5 in MNIST_MD5.items():
        raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
        assert hashlib.md5(raw).hexdigest() == md5, name


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("style", ["-", "."])
def test_generated_idx_roundtrip(tmp_path: Path, gz: bool, style: str) -> None:
    write_mnist(tmp_path, "train", 12, gz=gz, style=style)
    write_mnist(tmp_path, "test", 7, gz=gz, style=style)
    train = load_dataset("mnist", "train", tmp_path)
    test = load_dataset("mnist", "test", tmp_path)
    assert train.images.shape == (12, 1, 5, 4) and test.images.shape == (7, 1, 5, 4)
    expected = np.random.default_rng(12).integers(0, 256, size=(12, 5, 4), dtype=np.uint8)
    assert torch.equal(train.images[:, 0], torch.from_numpy(expected))
    assert train.labels.tolist() == [i % 10 for i in range(12)]


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    misnamed = tmp_path / "plain-idx2-ubyte.gz"  # raw content behind a .gz name
    misnamed.write_bytes(idx_bytes(array))
    hidden = tmp_path / "packed-idx2-ubyte"  # gzip content without .gz
    hidden.write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(misnamed), array)
    assert np.array_equal(read_idx(hidden), array)


def test_find_idx_file_prefers_gz_and_accepts_dot_style(tmp_path: Path) -> None:
    (tmp_path / "train-images.idx3-ubyte").write_bytes(b"")
    assert find_idx_file(tmp_path, "train-images", 3) == tmp_path / "train-images.idx3-ubyte"
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert find_idx_file(tmp_path, "train-images", 3) == tmp_path / "train-images-idx3-ubyte.gz"
    assert find_idx_file(tmp_path, "t10k-images", 3) is None


def test_non_ubyte_dtypes_are_big_endian() -> None:
    data = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 3) + struct.pack(">3h", -2, 300, 7)
    array = parse_idx(data, "shorts")
    assert array.dtype == np.int16 and array.tolist() == [-2, 300, 7]
    assert array.dtype.byteorder in ("=", "<", "|")  # native
    data = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2) + struct.pack(">2f", 1.5, -0.25)
    assert parse_idx(data).tolist() == [1.5, -0.25]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.randoms())
def test_parse_idx_roundtrip_property(shape: list[int], rnd) -> None:
    array = np.array([rnd.randrange(256) for _ in range(int(np.prod(shape)))], np.uint8)
    array = array.reshape(shape)
    decoded = parse_idx(idx_bytes(array))
    assert decoded.shape == tuple(shape) and np.array_equal(decoded, array)
    assert decoded.flags.writeable


def _expect_error(path: Path, content: bytes, *fragments: str) -> None:
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_truncated_payload(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    _expect_error(tmp_path / "a-idx3-ubyte", good[:-5], "truncated", "43 bytes", "expected 48")
    _expect_error(tmp_path / "b-idx3-ubyte", good + b"\0", "too long")
    # Truncated inside the gzip stream.
    _expect_error(tmp_path / "c-idx3-ubyte.gz", gzip.compress(good)[:-10], "gzip")


def test_wrong_magic_and_dtype(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 2), np.uint8))
    _expect_error(tmp_path / "magic", b"\x12\x34" + good[2:], "magic")
    _expect_error(tmp_path / "dtype", good[:2] + b"\x07" + good[3:], "dtype code 0x07")
    _expect_error(tmp_path / "short", b"\0\0", "header")
    _expect_error(tmp_path / "header", good[:6], "truncated inside its header")


def test_wrong_dims(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 2), np.uint8))
    _expect_error(tmp_path / "zero", good[:3] + b"\x00", "0 dimensions")
    # The header says 2x3 but the payload holds 2x2.
    _expect_error(tmp_path / "dims", good[:8] + struct.pack(">I", 3) + good[12:], "shape (2, 3)")
    # An images file with 2 dimensions instead of (N, H, W).
    write_mnist(tmp_path / "m", "train", 4, gz=False)
    (tmp_path / "m" / "train-images-idx3-ubyte").write_bytes(good)
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, H, W\)"):
        load_dataset("mnist", "train", tmp_path / "m")


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 4, gz=True)
    labels = idx_bytes(np.zeros(3, np.uint8))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(DataError, match="4 images but .* has 3 labels"):
        load_dataset("mnist", "train", tmp_path)


def test_missing_labels_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 4, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", "train", tmp_path)


def test_mnist_in_torchvision_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw", "test", 3, gz=False)
    assert len(load_dataset("mnist", "test", tmp_path)) == 3


def test_data_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "mnist", "train", 5, gz=True)
    with pytest.raises(DataError, match="pass data_dir .* or set FN3_DATA_DIR"):
        load_dataset("mnist")
    monkeypatch.setenv("FN3_DATA_DIR", str(tmp_path))
    assert len(load_dataset("mnist")) == 5


def test_fashion_mnist_from_data_dir(tmp_path: Path) -> None:
    write_mnist(tmp_path / "fashion-mnist", "test", 11, gz=True)
    ds = load_dataset("fashion_mnist", "test", tmp_path)
    assert len(ds) == 11 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.name == "fashion-mnist/test"
    with pytest.raises(DataError, match=r"no fashion-mnist IDX files in .*train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", "train", tmp_path)  # never falls back when data_dir is given


def test_fashion_mnist_debian_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fn3.data import registry

    write_mnist(tmp_path / "debian", "test", 4, gz=True)
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    assert len(load_dataset("fashion-mnist", "test")) == 4
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "test")


def test_real_fashion_mnist_if_installed() -> None:
    from fn3.data.registry import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({DEBIAN_FASHION_MNIST})")
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
