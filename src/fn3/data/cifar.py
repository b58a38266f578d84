"""CIFAR-10 in its two official formats: binary batches and (safely unpickled) python batches.

*Binary* (``cifar-10-batches-bin/``): ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
``test_batch.bin``, each a sequence of 3073-byte records: 1 label byte, then the 32x32 image as
1024 red, 1024 green and 1024 blue bytes; ``batches.meta.txt`` lists the class names.

*Python* (``cifar-10-batches-py/``): ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` are
pickled dicts with ``b"data"`` (a uint8 array of shape ``(N, 3072)``) and ``b"labels"`` (a list of
ints); ``batches.meta`` holds ``b"label_names"``. A pickle can run arbitrary code when loaded, so
these files are read only through :class:`RestrictedUnpickler`, which resolves nothing but the few
numpy globals an array needs and raises :class:`~fn3.errors.DataError` for anything else.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from fn3.data.cifar import load_cifar_binary
    >>> root = Path(tempfile.mkdtemp())
    >>> record = bytes([3]) + bytes(3072)  # one black image of class 3 ("cat")
    >>> _ = (root / "test_batch.bin").write_bytes(record * 2)
    >>> ds = load_cifar_binary(root, "test")
    >>> tuple(ds.images.shape), ds.labels.tolist(), ds.classes[3]
    ((2, 3, 32, 32), [3, 3], 'cat')
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fn3._io import one_line
from fn3.data.dataset import ImageDataset
from fn3.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "RestrictedUnpickler",
    "load_cifar_binary",
    "load_cifar_python",
    "restricted_loads",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_IMAGE_BYTES = 3 * 32 * 32  # 3072: one image, channel-major (R plane, G plane, B plane)
_RECORD_BYTES = 1 + _IMAGE_BYTES  # 3073: label byte + image
_BATCH_STEMS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    """``name`` from the first importable module of ``modules`` (numpy 2 moved ``core``)."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        if reconstruct is not None:
            allowed[(module, "_reconstruct")] = reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        if frombuffer is not None:  # what numpy uses for arrays pickled with protocol 5
            allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds plain containers and numpy arrays.

    ``find_class`` returns the real object for an explicit allow-list of numpy globals
    (``ndarray``, ``dtype``, ``_reconstruct``, ``_frombuffer``) and ``_codecs.encode``, resolved
    without importing the module the pickle names; every other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`~fn3.errors.DataError` before anything runs.
    """

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>") -> None:
        # encoding="bytes": the official CIFAR pickles were written by Python 2.
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._ALLOWED is None:
            RestrictedUnpickler._ALLOWED = _allowed_globals()
        try:
            return RestrictedUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source} references the global {one_line(f'{module}.{name}')}, which a data"
                " file must not use; expected only numpy arrays, lists, dicts, numbers and strings"
            ) from None


def restricted_loads(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure becomes a ``DataError``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except Exception as err:  # malformed pickles raise many types (UnpicklingError, EOF, ...)
        raise DataError(
            f"{source} is not a valid pickle ({type(err).__name__}: {one_line(err)});"
            " expected a CIFAR python batch file"
        ) from err


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(
            f"cannot read {path}: {err.strerror or err}; expected a readable file"
        ) from err


def _batch_paths(directory: Path, split: str, suffix: str) -> list[Path]:
    if split not in _BATCH_STEMS:
        raise DataError(f"cifar10 has no split {split!r}; expected 'train' or 'test'")
    paths = [directory / (stem + suffix) for stem in _BATCH_STEMS[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        expected = ", ".join(p.name for p in paths)
        raise DataError(f"{directory} lacks {', '.join(missing)}; expected {expected} there")
    return paths


def _check_labels(labels: np.ndarray, num_classes: int, source: Path) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{source} has labels in {int(labels.min())}..{int(labels.max())};"
            f" expected 0..{num_classes - 1}"
        )


def _binary_classes(directory: Path) -> tuple[str, ...]:
    meta = directory / "batches.meta.txt"
    if not meta.is_file():
        return CIFAR10_CLASSES
    names = tuple(line.strip() for line in _read(meta).decode("utf-8", "replace").splitlines())
    names = tuple(n for n in names if n)
    if len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{meta} lists {len(names)} class names; expected 10, one per line")
    return names


def load_cifar_binary(directory: str | Path, split: str = "train") -> ImageDataset:
    """Load a split of CIFAR-10's binary format from ``directory``.

    Returns images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)``.
    """
    directory = Path(directory)
    classes = _binary_classes(directory)
    images, labels = [], []
    for path in _batch_paths(directory, split, ".bin"):
        data = _read(path)
        if not data or len(data) % _RECORD_BYTES:
            raise DataError(
                f"{path} has {len(data)} bytes; expected a positive multiple of {_RECORD_BYTES}"
                " (1 label byte + 3072 pixel bytes per image)"
            )
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD_BYTES)  # (n, 3073)
        _check_labels(records[:, 0], len(classes), path)
        labels.append(records[:, 0].astype(np.int64))  # (n,)
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))  # (n, 3, 32, 32) view
    image_array = np.concatenate(images)  # (N, 3, 32, 32), a fresh writable copy
    label_array = np.concatenate(labels)  # (N,)
    return ImageDataset(
        torch.from_numpy(image_array), torch.from_numpy(label_array), classes, f"cifar10/{split}"
    )


def _get(mapping: dict, key: str, source: Path) -> Any:
    """``mapping[b"key"]`` (Python 2 pickles) or ``mapping["key"]`` (Python 3 pickles)."""
    for k in (key.encode(), key):
        if k in mapping:
            return mapping[k]
    raise DataError(f"{source} has no {key!r} entry; expected a dict with b{key!r}")


def _python_classes(directory: Path) -> tuple[str, ...]:
    meta = directory / "batches.meta"
    if not meta.is_file():
        return CIFAR10_CLASSES
    content = restricted_loads(_read(meta), str(meta))
    if not isinstance(content, dict):
        raise DataError(f"{meta} holds a {type(content).__name__}; expected a dict")
    names = _get(content, "label_names", meta)
    if not isinstance(names, list | tuple) or len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{meta} has label_names {names!r:.80}; expected a list of 10 names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar_python(directory: str | Path, split: str = "train") -> ImageDataset:
    """Load a split of CIFAR-10's python (pickle) format from ``directory``, safely.

    Returns images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)``.
    """
    directory = Path(directory)
    paths = _batch_paths(directory, split, "")
    classes = _python_classes(directory)
    images, labels = [], []
    for path in paths:
        raw = _read(path)
        batch = restricted_loads(raw, str(path))
        if not isinstance(batch, dict):
            raise DataError(f"{path} holds a {type(batch).__name__}; expected a dict")
        data = _get(batch, "data", path)
        label_list = _get(batch, "labels", path)
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != _IMAGE_BYTES
        ):
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
            raise DataError(f"{path} has data {got}; expected a uint8 array of shape (N, 3072)")
        if data.nbytes > len(raw):  # numpy can unpickle a huge array over a few bytes (0 strides)
            raise DataError(
                f"{path} claims {len(data)} images ({data.nbytes} bytes) in a {len(raw)}-byte file;"
                " expected the pixels to be stored in the file"
            )
        if not isinstance(label_list, list | tuple | np.ndarray) or len(label_list) != len(data):
            n = len(label_list) if hasattr(label_list, "__len__") else type(label_list).__name__
            raise DataError(f"{path} has {n} labels for {len(data)} images; expected one per image")
        label_array = np.asarray(label_list).reshape(-1)  # (n,)
        if label_array.size and label_array.dtype.kind not in "iu":
            raise DataError(
                f"{path} has labels of type {label_array.dtype}; expected integers 0..9"
            )
        label_array = label_array.astype(np.int64)
        _check_labels(label_array, len(classes), path)
        images.append(data.reshape(-1, 3, 32, 32))  # (n, 3, 32, 32)
        labels.append(label_array)
    return ImageDataset(
        torch.from_numpy(np.concatenate(images)),  # (N, 3, 32, 32) uint8
        torch.from_numpy(np.concatenate(labels)),  # (N,) int64
        classes,
        f"cifar10/{split}",
    )
