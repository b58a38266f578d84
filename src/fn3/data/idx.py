"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the array in C order, big-endian. MNIST ships four of them per dataset
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``), usually gzipped. Compression is detected from the content (the gzip
magic ``1f 8b``), never from the file name, and every header field and the exact payload length
are checked, so a truncated download fails with a :class:`~fn3.errors.DataError` naming the file.

Example:
    >>> import gzip, tempfile
    >>> from pathlib import Path
    >>> from fn3.data.idx import read_idx
    >>> raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))  # 2x3 ubyte
    >>> path = Path(tempfile.mkdtemp()) / "tiny-idx2-ubyte.gz"
    >>> _ = path.write_bytes(gzip.compress(raw))
    >>> read_idx(path).tolist()
    [[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fn3.data.dataset import ImageDataset
from fn3.errors import DataError

__all__ = ["find_idx_file", "load_idx_dataset", "parse_idx", "read_idx"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# File-name prefix of each split ("t10k" is MNIST's name for the test set).
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_bytes_maybe_gzip(path: Path) -> bytes:
    """The content of ``path``, decompressed if it starts with the gzip magic ``1f 8b``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(
            f"cannot read {path}: {err.strerror or err}; expected a readable file"
        ) from err
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"{path} is a truncated or corrupt gzip file ({err}); expected a complete download"
            ) from err
    return data


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX byte string into a native-endian numpy array.

    Args:
        data: the whole file content (header and payload).
        source: what to call the data in error messages (usually the file path).

    Raises:
        DataError: bad magic, unknown dtype code, zero dimensions, or a payload that is shorter
            or longer than the header promises.
    """
    if len(data) < 4:
        raise DataError(f"{source} has {len(data)} bytes; expected an IDX header of at least 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{source} starts with {data[:4].hex(' ')}; expected IDX magic 00 00 <type> <ndim>"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise DataError(f"{source} has IDX dtype code 0x{code:02x}; expected one of {known}")
    if ndim == 0:
        raise DataError(f"{source} declares 0 dimensions; expected at least 1")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{source} is truncated inside its header ({len(data)} bytes);"
            f" expected {header_len} header bytes for {ndim} dimensions"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    # Python ints: an int64 product of hostile dimensions can wrap around (to 0, even).
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "too long"
        raise DataError(
            f"{source} is {what}: payload has {actual} bytes; expected {expected} for shape"
            f" {dims} of {dtype.name}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)  # read-only view
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array; see :func:`parse_idx`."""
    path = Path(path)
    return parse_idx(read_bytes_maybe_gzip(path), str(path))


def idx_file_names(prefix: str, ndim: int) -> list[str]:
    """The file names tried for ``prefix`` (e.g. ``"train-images"``), most common first."""
    stems = [f"{prefix}-idx{ndim}-ubyte", f"{prefix}.idx{ndim}-ubyte"]
    return [name for stem in stems for name in (stem + ".gz", stem)]


def find_idx_file(directory: str | Path, prefix: str, ndim: int) -> Path | None:
    """The first existing file in ``directory`` named like ``<prefix>-idx<ndim>-ubyte[.gz]``.

    Also accepts the ``<prefix>.idx<ndim>-ubyte`` spelling; returns ``None`` if none exists.
    """
    directory = Path(directory)
    for name in idx_file_names(prefix, ndim):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dataset(
    directory: str | Path, split: str, *, name: str, classes: Sequence[str]
) -> ImageDataset:
    """Load an MNIST-style split (``"train"`` or ``"test"``) from the IDX files in ``directory``.

    Returns images as ``uint8 (N, 1, H, W)`` and labels as ``int64 (N,)``.
    """
    directory = Path(directory)
    if split not in _SPLIT_PREFIX:
        raise DataError(f"{name} has no split {split!r}; expected 'train' or 'test'")
    prefix = _SPLIT_PREFIX[split]
    image_path = find_idx_file(directory, f"{prefix}-images", 3)
    label_path = find_idx_file(directory, f"{prefix}-labels", 1)
    if image_path is None or label_path is None:
        missing = (
            f"{prefix}-images-idx3-ubyte" if image_path is None else f"{prefix}-labels-idx1-ubyte"
        )
        raise DataError(
            f"{directory} has no {missing}[.gz] for {name}/{split}; expected"
            f" {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] there"
        )
    images = read_idx(image_path)  # (N, H, W)
    labels = read_idx(label_path)  # (N,)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{image_path} holds {images.dtype} of shape {images.shape};"
            " expected uint8 images of shape (N, H, W)"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{label_path} holds {labels.dtype} of shape {labels.shape};"
            " expected uint8 labels of shape (N,)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{image_path} has {images.shape[0]} images but {label_path} has {labels.shape[0]}"
            " labels; expected the same count"
        )
    if labels.size and int(labels.max()) >= len(classes):
        raise DataError(
            f"{label_path} has label {int(labels.max())}; expected labels 0..{len(classes) - 1}"
        )
    image_tensor = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W) uint8
    label_tensor = torch.from_numpy(labels.astype(np.int64))  # (N,) int64
    return ImageDataset(image_tensor, label_tensor, tuple(classes), f"{name}/{split}")
