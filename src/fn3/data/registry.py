"""Load a dataset by name: ``load_dataset("mnist", "train", data_dir)``.

=================  ==========================================================================
name               where the files come from
=================  ==========================================================================
``digits``         scikit-learn's bundled 8x8 digits (1,797 images; no files needed), split into
                   a fixed stratified 80/20 train/test; the embedded default dataset
``mnist``          the four IDX files (gzipped or not) in ``data_dir`` or ``data_dir/mnist``
``fashion-mnist``  the same for Fashion-MNIST (``data_dir/fashion-mnist``); without a
                   ``data_dir`` also Debian's ``/usr/share/datasets/fashion-mnist``
``cifar10``        ``data_dir`` holding binary batches, python batches, an image-folder tree or a
                   ``.tar.gz`` of one (also in a ``cifar-10-batches-bin/``,
                   ``cifar-10-batches-py/`` or ``cifar10-jpeg/`` subfolder)
``imagefolder``    ``data_dir`` is a directory or archive of ``<split>/<class>/*.jpg|png``
=================  ==========================================================================

Without ``data_dir`` the environment variable ``FN3_DATA_DIR`` is used. ``limit`` keeps at most
that many images per class (the first ones), handy for quick tests.

Example:
    >>> from fn3.data import list_datasets, load_dataset
    >>> "digits" in list_datasets()
    True
    >>> test = load_dataset("digits", "test")
    >>> len(test), test.image_shape, test.num_classes
    (359, (1, 8, 8), 10)
    >>> len(load_dataset("digits", "train", limit=5))
    50
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from fn3.data.cifar import load_cifar_binary, load_cifar_python
from fn3.data.dataset import ImageDataset, train_val_split
from fn3.data.folder import is_archive, load_image_folder
from fn3.data.idx import find_idx_file, load_idx_dataset
from fn3.errors import ConfigError, DataError

__all__ = ["DATA_DIR_ENV", "list_datasets", "load_dataset"]

DATA_DIR_ENV = "FN3_DATA_DIR"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_NAMES = ("cifar10", "digits", "fashion-mnist", "imagefolder", "mnist")
_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "image-folder": "imagefolder"}
# Subfolders of data_dir searched for each IDX dataset (the last ones are torchvision's layout).
_IDX_SUBDIRS = {
    "mnist": ("mnist", "MNIST", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
}
_CIFAR_SUBDIRS = ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10-jpeg", "cifar10")
_OFFICIAL_CIFAR_ARCHIVES = ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz")
_DIGITS_TEST_FRACTION, _DIGITS_SEED = 0.2, 0


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts, sorted."""
    return list(_NAMES)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    limit: int | None = None,
) -> ImageDataset:
    """Load split ``split`` of the dataset ``name`` (see :func:`list_datasets`).

    Args:
        name: ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or ``"imagefolder"``.
        split: ``"train"`` or ``"test"`` (``imagefolder`` accepts any split folder name).
        data_dir: where the files are; ``None`` uses ``$FN3_DATA_DIR``. Unused for ``digits``.
        limit: keep at most this many images per class (the first ones); ``None`` keeps all.

    Raises:
        ConfigError: unknown name, split or a bad ``limit``.
        DataError: files missing, truncated or in the wrong format (the message names them).
    """
    key = _canonical(name)
    if (
        not isinstance(split, str)
        or not split
        or (key != "imagefolder" and split not in ("train", "test"))
    ):
        raise ConfigError(
            f"split {split!r} is not available for {key!r}; expected 'train' or 'test'"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit is {limit!r}; expected a positive number of images per class")

    if key == "digits":
        ds = _load_digits(split)
    elif key in _IDX_SUBDIRS:
        ds = _load_idx(key, split, data_dir)
    elif key == "cifar10":
        ds = _load_cifar10(_data_root(key, data_dir), split, limit)
    else:  # imagefolder
        root = _data_root(key, data_dir)
        ds = load_image_folder(root, split, limit=limit)
    return ds if limit is None else _first_per_class(ds, limit)


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _NAMES:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(_NAMES)}")
    return key


def first_per_class_mask(ds: ImageDataset, limit: int) -> torch.Tensor:
    """Mask (N,) bool of the first ``limit`` images of each class, in dataset order: the images
    ``load_dataset(..., limit=limit)`` keeps."""
    one_hot = torch.nn.functional.one_hot(ds.labels, ds.num_classes)  # (N, K)
    rank = (one_hot.cumsum(0) * one_hot).sum(1)  # (N,) 1-based position within its class
    return rank <= limit


def _first_per_class(ds: ImageDataset, limit: int) -> ImageDataset:
    """The first ``limit`` images of each class, in dataset order."""
    keep = first_per_class_mask(ds, limit)  # (N,) bool
    return ds if bool(keep.all()) else ds.subset(keep)


def _load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits  # imported lazily: sklearn is slow to import

    bunch = load_digits()
    # Values are 0..16; scale to the 0..255 of every other dataset.
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    full = ImageDataset(
        torch.from_numpy(pixels).unsqueeze(1),  # (1797, 1, 8, 8) uint8
        torch.from_numpy(bunch.target.astype(np.int64)),  # (1797,) int64
        MNIST_CLASSES,
        "digits",
    )
    train, test = train_val_split(full, _DIGITS_TEST_FRACTION, _DIGITS_SEED)
    return dataclasses.replace(train if split == "train" else test, name=f"digits/{split}")


def _data_root(key: str, data_dir: str | Path | None) -> Path:
    """``data_dir``, else ``$FN3_DATA_DIR``; it must exist."""
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get(DATA_DIR_ENV, "")
        if not env:
            raise DataError(
                f"dataset {key!r} needs its files: pass data_dir (the --data-dir flag) or set"
                f" {DATA_DIR_ENV} to the folder holding them"
            )
        data_dir = env
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"data directory {root} does not exist; expected the {key} files there")
    return root


def _idx_dir(root: Path, key: str, split: str) -> Path | None:
    """The first of ``root`` and its known subfolders that holds the split's image file."""
    prefix = "train" if split == "train" else "t10k"
    for candidate in (root, *(root / sub for sub in _IDX_SUBDIRS[key])):
        if candidate.is_dir() and find_idx_file(candidate, f"{prefix}-images", 3) is not None:
            return candidate
    return None


def _load_idx(key: str, split: str, data_dir: str | Path | None) -> ImageDataset:
    classes = MNIST_CLASSES if key == "mnist" else FASHION_MNIST_CLASSES
    roots: list[Path] = []
    if data_dir is not None and str(data_dir) != "":
        roots.append(_data_root(key, data_dir))
    else:
        if os.environ.get(DATA_DIR_ENV):
            roots.append(_data_root(key, None))
        if key == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir():
            roots.append(DEBIAN_FASHION_MNIST)
        if not roots:
            extra = " or install the Debian package dataset-fashion-mnist" if key != "mnist" else ""
            raise DataError(
                f"dataset {key!r} needs its IDX files: pass data_dir (the --data-dir flag) or set"
                f" {DATA_DIR_ENV}{extra}"
            )
    for root in roots:
        found = _idx_dir(root, key, split)
        if found is not None:
            return load_idx_dataset(found, split, name=key, classes=classes)
    prefix = "train" if split == "train" else "t10k"
    looked = ", ".join(str(r) for r in roots)
    subdir = _IDX_SUBDIRS[key][0]
    raise DataError(
        f"no {key} IDX files in {looked} (nor in a {subdir}/ subfolder); expected"
        f" {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]"
    )


def _load_cifar10(root: Path, split: str, limit: int | None) -> ImageDataset:
    if root.is_file():
        if is_archive(root):
            return load_image_folder(root, split, limit=limit, name="cifar10")
        raise DataError(
            f"{root} is a file; expected a CIFAR-10 directory or a .tar.gz image folder"
        )
    for folder in (root, *(root / sub for sub in _CIFAR_SUBDIRS)):
        if not folder.is_dir():
            continue
        if (folder / "data_batch_1.bin").is_file() or (folder / "test_batch.bin").is_file():
            return load_cifar_binary(folder, split)
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return load_cifar_python(folder, split)
        if (folder / "train").is_dir() or (folder / "test").is_dir():
            return load_image_folder(folder, split, limit=limit, name="cifar10")
        archives = sorted(p for p in folder.iterdir() if p.is_file() and is_archive(p))
        official = [p for p in archives if p.name in _OFFICIAL_CIFAR_ARCHIVES]
        others = [p for p in archives if p.name not in _OFFICIAL_CIFAR_ARCHIVES]
        if len(others) == 1:
            return load_image_folder(others[0], split, limit=limit, name="cifar10")
        if len(others) > 1:
            names = ", ".join(p.name for p in others)
            raise DataError(
                f"{folder} holds several archives ({names}); expected one, or pass its path"
                " as data_dir"
            )
        if official:
            raise DataError(
                f"{official[0]} is the official CIFAR-10 download, which fn3 reads unpacked;"
                f" expected it extracted: tar xzf {official[0]} -C {folder}"
            )
    raise DataError(
        f"no CIFAR-10 in {root}; expected cifar-10-batches-bin/ (data_batch_1.bin ...),"
        " cifar-10-batches-py/ (data_batch_1 ...), a train/ + test/ image folder or a .tar.gz of it"
    )
