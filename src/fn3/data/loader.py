"""Deterministic, resumable mini-batches from an in-memory :class:`ImageDataset`.

No worker processes and no global random state: the order of epoch ``e`` is a pure function of
``(seed, e)``, and the augmentation of batch ``k`` of epoch ``e`` a pure function of
``(seed, e, k)``. So a run resumed with ``start=k`` produces exactly the batches the uninterrupted
run would have produced from batch ``k`` on, and the skipped batches cost nothing.

Each batch is ``x: float (B, C, H, W) = (images / 255 - mean) / std`` and ``y: int64 (B,)``.
Augmentation works on the whole uint8 batch at once: a random crop after 4 pixels of zero (black)
padding, and for 3-channel data a random horizontal flip (digits must not be mirrored).

Example:
    >>> import torch
    >>> from fn3.data import ImageDataset, batches, num_batches
    >>> ds = ImageDataset(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(10).long(),
    ...                   classes=("zero",), name="toy")
    >>> num_batches(len(ds), 4, drop_last=False)
    3
    >>> [tuple(x.shape) for x, y in batches(ds, 4, shuffle=True, seed=1, epoch=0)]
    [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
    >>> x, y = next(batches(ds, 4, shuffle=False, augment=True))
    >>> float(x[0, 0, 0, 0])  # (0/255 - 0.5) / 0.5
    -1.0
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch

from fn3.data.dataset import ImageDataset
from fn3.errors import ConfigError

__all__ = ["Augment", "batches", "num_batches"]

Augment = bool | Literal["none", "crop", "flip", "crop+flip"]
_AUGMENT_MODES = ("none", "crop", "flip", "crop+flip")


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """How many batches :func:`batches` yields for ``n`` samples."""
    _check_batch_size(batch_size)
    if n < 0:
        raise ConfigError(f"n is {n}; expected a non-negative number of samples")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (stable across runs and platforms)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: int64 ``(n,)``, a permutation if ``shuffle`` else arange."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(derive_seed("order", seed, epoch))
    return torch.randperm(n, generator=gen)


def batches(
    ds: ImageDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    augment: Augment = False,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    start: int = 0,
    drop_last: bool = False,
    dtype: torch.dtype = torch.float32,
    padding: int = 4,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``ds`` for one epoch.

    Args:
        ds: the dataset (uint8 images ``(N, C, H, W)``).
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        shuffle: permute the samples with a generator seeded from ``(seed, epoch)``.
        seed, epoch: make the order and augmentation reproducible and different per epoch.
        augment: ``False``/``"none"``; ``"crop"``; ``"flip"``; ``"crop+flip"``; ``True`` means
            ``"crop+flip"`` for 3-channel data and ``"crop"`` for 1-channel data.
        mean, std: per-channel (or scalar) normalisation of ``images / 255``; default 0.5 / 0.5.
            Pass :func:`fn3.data.channel_stats` of the training set to standardise.
        start: skip the first ``start`` batches without computing them (to resume an epoch).
        drop_last: drop a final batch smaller than ``batch_size``.
        dtype: floating dtype of ``x``.
        padding: zero padding in pixels before the random crop.

    Yields:
        ``x``: ``dtype (B, C, H, W)`` normalised images; ``y``: ``int64 (B,)`` labels.

    Raises:
        ConfigError: a bad batch size, start, augment mode, dtype or mean/std.
    """
    _check_batch_size(batch_size)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(f"start is {start!r}; expected a batch index >= 0")
    if not dtype.is_floating_point:
        raise ConfigError(f"dtype is {dtype}; expected a floating dtype such as torch.float32")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ConfigError(f"padding is {padding!r}; expected a number of pixels >= 0")
    channels = ds.image_shape[0]
    crop, flip = _augment_flags(augment, channels)
    mean_t = _channel_vector(0.5 if mean is None else mean, channels, "mean", dtype)  # (1,C,1,1)
    std_t = _channel_vector(0.5 if std is None else std, channels, "std", dtype)  # (1, C, 1, 1)
    if bool((std_t <= 0).any()):
        raise ConfigError(f"std is {std}; expected values > 0")
    return _iterate(
        ds, batch_size, shuffle, seed, epoch, crop, flip, padding, mean_t, std_t, start, drop_last
    )


def _iterate(
    ds: ImageDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    crop: bool,
    flip: bool,
    padding: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    start: int,
    drop_last: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = epoch_order(len(ds), shuffle=shuffle, seed=seed, epoch=epoch)  # (N,) int64
    for k in range(start, num_batches(len(ds), batch_size, drop_last)):
        index = order[k * batch_size : (k + 1) * batch_size]  # (B,)
        images = ds.images[index]  # (B, C, H, W) uint8, a copy
        labels = ds.labels[index]  # (B,) int64
        if crop or flip:
            gen = torch.Generator().manual_seed(derive_seed("augment", seed, epoch, k))
            images = augment_batch(images, gen, crop=crop, flip=flip, padding=padding)
        x = images.to(mean.dtype).div_(255.0).sub_(mean).div_(std)  # (B, C, H, W) float
        yield x, labels


def augment_batch(
    images: torch.Tensor,
    gen: torch.Generator,
    *,
    crop: bool = True,
    flip: bool = True,
    padding: int = 4,
) -> torch.Tensor:
    """Randomly crop (after ``padding`` zero pixels) and/or horizontally flip each image.

    Args:
        images: ``(B, C, H, W)`` of any dtype (fn3 passes uint8, so padding is black).
        gen: the generator all random draws come from.

    Returns:
        A new tensor of the same shape and dtype.
    """
    b, c, h, w = images.shape
    if crop and padding > 0:
        padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        # padded: (B, C, H + 2p, W + 2p); per-sample top-left corner in 0..2p.
        top = torch.randint(0, 2 * padding + 1, (b,), generator=gen)  # (B,)
        left = torch.randint(0, 2 * padding + 1, (b,), generator=gen)  # (B,)
        rows = (top[:, None] + torch.arange(h)).view(b, 1, h, 1)  # (B, 1, H, 1)
        cols = (left[:, None] + torch.arange(w)).view(b, 1, 1, w)  # (B, 1, 1, W)
        batch_idx = torch.arange(b).view(b, 1, 1, 1)  # (B, 1, 1, 1)
        chan_idx = torch.arange(c).view(1, c, 1, 1)  # (1, C, 1, 1)
        images = padded[batch_idx, chan_idx, rows, cols]  # (B, C, H, W)
    if flip:
        mirror = torch.rand(b, generator=gen) < 0.5  # (B,) bool
        images = torch.where(mirror.view(b, 1, 1, 1), images.flip(3), images)  # (B, C, H, W)
    return images


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size!r}; expected a positive integer")


def _augment_flags(augment: Augment, channels: int) -> tuple[bool, bool]:
    """``(crop, flip)`` for an ``augment`` setting."""
    if augment is True:
        return True, channels == 3
    if augment is False or augment is None:
        return False, False
    if augment not in _AUGMENT_MODES:
        raise ConfigError(
            f"augment is {augment!r}; expected True, False or one of {', '.join(_AUGMENT_MODES)}"
        )
    return "crop" in augment, "flip" in augment


def _channel_vector(
    value: float | Sequence[float], channels: int, what: str, dtype: torch.dtype
) -> torch.Tensor:
    """``value`` as a ``(1, C, 1, 1)`` tensor (a scalar is repeated over channels)."""
    try:
        vec = torch.as_tensor(value, dtype=torch.float64).flatten()  # (1,) or (C,)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{what} is {value!r}; expected a number or {channels} numbers") from err
    if vec.numel() == 1:
        vec = vec.expand(channels)
    if vec.numel() != channels or not bool(torch.isfinite(vec).all()):
        raise ConfigError(
            f"{what} is {value!r}; expected a finite number or {channels} finite numbers"
        )
    return vec.to(dtype).view(1, channels, 1, 1)
