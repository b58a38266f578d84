"""Datasets for fn3: loading images into memory and cutting them into deterministic batches.

Everything is held as raw ``uint8`` pixels in an :class:`ImageDataset` (``images (N, C, H, W)``,
``labels (N,)``); :func:`batches` turns it into normalised float batches, resumable mid-epoch.

=====================  ====================================================================
:func:`load_dataset`   a split of ``digits`` (bundled, no files), ``mnist``, ``fashion-mnist``,
                       ``cifar10`` or any ``imagefolder`` (directory or ``.tar.gz``)
:func:`batches`        ``(x, y)`` batches; order a pure function of ``(seed, epoch)``
:func:`train_val_split` a deterministic stratified hold-out split
:func:`channel_stats`  per-channel mean/std for normalisation
=====================  ====================================================================

Example:
    >>> from fn3.data import batches, channel_stats, load_dataset, train_val_split
    >>> ds = load_dataset("digits", "train")
    >>> train, val = train_val_split(ds, val_fraction=0.1, seed=0)
    >>> mean, std = channel_stats(train)
    >>> x, y = next(batches(train, 32, shuffle=True, seed=0, epoch=0, mean=mean, std=std))
    >>> tuple(x.shape), y.dtype
    ((32, 1, 8, 8), torch.int64)
"""

from fn3.data.cifar import CIFAR10_CLASSES, load_cifar_binary, load_cifar_python
from fn3.data.dataset import ImageDataset, channel_stats, train_val_split
from fn3.data.folder import load_image_folder
from fn3.data.idx import parse_idx, read_idx
from fn3.data.loader import augment_batch, batches, num_batches
from fn3.data.registry import DATA_DIR_ENV, list_datasets, load_dataset

__all__ = [
    "CIFAR10_CLASSES",
    "DATA_DIR_ENV",
    "ImageDataset",
    "augment_batch",
    "batches",
    "channel_stats",
    "list_datasets",
    "load_cifar_binary",
    "load_cifar_python",
    "load_dataset",
    "load_image_folder",
    "num_batches",
    "parse_idx",
    "read_idx",
    "train_val_split",
]
