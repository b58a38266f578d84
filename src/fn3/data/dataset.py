"""The in-memory image dataset every fn3 loader returns, and helpers that work on it.

An :class:`ImageDataset` is just two tensors and some names: ``images`` holds raw pixels as
``uint8`` in ``(N, C, H, W)`` layout and ``labels`` holds class indices as ``int64`` of shape
``(N,)``. Keeping the pixels as bytes makes even CIFAR-10 small (150 MB for the training set); the
batch loader in :mod:`fn3.data.loader` converts one batch at a time to floats.

Example:
    >>> import torch
    >>> from fn3.data import ImageDataset, channel_stats, train_val_split
    >>> images = torch.arange(10, dtype=torch.uint8).repeat_interleave(4).reshape(10, 1, 2, 2)
    >>> ds = ImageDataset(images, torch.arange(10) % 2, classes=("even", "odd"), name="toy")
    >>> len(ds), ds.num_classes, ds.image_shape
    (10, 2, (1, 2, 2))
    >>> train, val = train_val_split(ds, val_fraction=0.2, seed=0)
    >>> len(train), len(val), sorted(val.labels.tolist())
    (8, 2, [0, 1])
    >>> mean, std = channel_stats(ds)
    >>> round(mean[0] * 255, 3)
    4.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fn3.errors import DataError

__all__ = ["ImageDataset", "channel_stats", "train_val_split"]


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled set of images held in memory.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``, raw pixel values 0..255.
        labels: ``int64`` tensor of shape ``(N,)``, each in ``0 .. len(classes) - 1``.
        classes: the class names; ``labels[i]`` indexes into it.
        name: a short name for messages and reports (e.g. ``"mnist/train"``).

    The constructor checks dtypes, shapes and the label range and raises
    :class:`~fn3.errors.DataError` when they do not fit.
    """

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        # Normalise a list of class names to a tuple (frozen: go through object.__setattr__).
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = _describe(images)
            raise DataError(
                f"dataset {self.name!r}: images are {got}; expected a uint8 tensor (N, C, H, W)"
            )
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
            got = _describe(labels)
            raise DataError(
                f"dataset {self.name!r}: labels are {got}; expected an int64 tensor (N,)"
            )
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"dataset {self.name!r} has {images.shape[0]} images but {labels.shape[0]} labels;"
                " expected one label per image"
            )
        if not self.classes:
            raise DataError(f"dataset {self.name!r} has no classes; expected at least one name")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            raise DataError(
                f"dataset {self.name!r} has labels in {int(labels.min())}..{int(labels.max())};"
                f" expected 0..{len(self.classes) - 1} for {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape},"
            f" num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``), also for classes with no images here."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def subset(self, index: torch.Tensor) -> ImageDataset:
        """The images at ``index`` (int64 positions or a bool mask of shape ``(N,)``), in order.

        The result shares ``classes`` and ``name`` and owns copies of the selected rows.
        """
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            if index.shape != self.labels.shape:
                raise DataError(
                    f"subset of {self.name!r}: bool mask has shape {tuple(index.shape)};"
                    f" expected ({len(self)},)"
                )
        elif index.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            index = index.long().reshape(-1)
            if index.numel() and (int(index.min()) < -len(self) or int(index.max()) >= len(self)):
                raise DataError(
                    f"subset of {self.name!r}: index out of range; expected positions"
                    f" in 0..{len(self) - 1}"
                )
        else:
            raise DataError(
                f"subset of {self.name!r}: index has dtype {index.dtype}; expected int64 or bool"
            )
        return ImageDataset(self.images[index], self.labels[index], self.classes, self.name)


def train_val_split(
    ds: ImageDataset, val_fraction: float, seed: int
) -> tuple[ImageDataset, ImageDataset]:
    """Split ``ds`` into ``(train, val)``, stratified per class and deterministic in ``seed``.

    Each class ``c`` with ``n_c`` images gives ``round(n_c * val_fraction)`` randomly chosen images
    to ``val`` (at least one if ``n_c >= 2``, never all of them if ``n_c >= 2``); both parts keep
    the original order of ``ds``. The same ``(ds, val_fraction, seed)`` always gives the same split,
    independent of the global random state.

    Raises:
        DataError: ``val_fraction`` is not strictly between 0 and 1, or a part would be empty.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise DataError(f"val_fraction is {val_fraction!r}; expected a number in (0, 1)")
    if not 0.0 < float(val_fraction) < 1.0:  # also rejects NaN
        raise DataError(f"val_fraction is {val_fraction}; expected a number strictly in (0, 1)")
    gen = torch.Generator().manual_seed(int(seed))
    is_val = torch.zeros(len(ds), dtype=torch.bool)  # (N,)
    for c in range(ds.num_classes):
        members = torch.nonzero(ds.labels == c).flatten()  # (n_c,) positions of class c
        n_c = members.numel()
        if n_c == 0:
            continue
        n_val = round(n_c * val_fraction)
        if n_c >= 2:
            n_val = min(max(n_val, 1), n_c - 1)
        chosen = members[torch.randperm(n_c, generator=gen)[:n_val]]
        is_val[chosen] = True
    n_val_total = int(is_val.sum())
    if n_val_total == 0 or n_val_total == len(ds):
        raise DataError(
            f"val_fraction {val_fraction} leaves an empty part of {ds.name!r} ({len(ds)} images);"
            " expected a dataset with at least 2 images and a fraction that splits it"
        )
    return ds.subset(~is_val), ds.subset(is_val)


def channel_stats(ds: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``images / 255`` over the whole dataset.

    Pass the result as ``mean``/``std`` to :func:`fn3.data.batches` to standardise inputs.
    Computed in float64 chunk by chunk, so it needs little extra memory even for large sets.
    """
    if len(ds) == 0:
        raise DataError(f"dataset {ds.name!r} is empty; expected at least one image for stats")
    c = ds.image_shape[0]
    total = torch.zeros(c, dtype=torch.float64)  # (C,) sum of x
    total_sq = torch.zeros(c, dtype=torch.float64)  # (C,) sum of x^2
    for start in range(0, len(ds), 4096):
        chunk = ds.images[start : start + 4096].to(torch.float64).div_(255.0)  # (b, C, H, W)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = len(ds) * ds.image_shape[1] * ds.image_shape[2]
    mean = total / count  # (C,)
    var = (total_sq / count - mean.square()).clamp_min(0.0)  # (C,) population variance
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"
