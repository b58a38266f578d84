"""batches(): determinism, resume, epochs, augmentation and normalisation."""

from __future__ import annotations

import pytest
import torch

from fn3.data import ImageDataset, augment_batch, batches, num_batches
from fn3.errors import ConfigError


def toy(n: int = 23, channels: int = 3, size: int = 8) -> ImageDataset:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, channels, size, size), generator=gen).to(torch.uint8)
    return ImageDataset(images, torch.arange(n) % 4, ("a", "b", "c", "d"), "toy")


def collect(ds: ImageDataset, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    kwargs.setdefault("shuffle", True)
    return list(batches(ds, kwargs.pop("batch_size", 5), **kwargs))


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("augment", [False, True])
def test_same_seed_and_epoch_give_same_batches(augment: bool) -> None:
    ds = toy()
    first = collect(ds, seed=7, epoch=2, augment=augment)
    torch.manual_seed(123)  # the global RNG plays no part
    torch.rand(10)
    assert same(first, collect(ds, seed=7, epoch=2, augment=augment))


def test_epochs_and_seeds_differ_and_cover_everything() -> None:
    ds = toy()
    orders = {}
    for seed, epoch in [(0, 0), (0, 1), (1, 0)]:
        labels = torch.cat([y for _, y in collect(ds, seed=seed, epoch=epoch)])
        firsts = torch.cat([x[:, 0, 0, 0] for x, _ in collect(ds, seed=seed, epoch=epoch)])
        assert sorted(labels.tolist()) == sorted(ds.labels.tolist())  # a permutation
        orders[(seed, epoch)] = firsts
    assert not torch.equal(orders[(0, 0)], orders[(0, 1)])
    assert not torch.equal(orders[(0, 0)], orders[(1, 0)])


@pytest.mark.parametrize("augment", [False, True])
def test_resume_equals_skipping(augment: bool) -> None:
    ds = toy()
    full = collect(ds, seed=3, epoch=5, augment=augment)
    assert len(full) == 5
    for k in range(6):
        assert same(collect(ds, seed=3, epoch=5, augment=augment, start=k), full[k:])


def test_no_shuffle_keeps_order_and_normalises() -> None:
    ds = toy()
    (x, y), *_ = collect(ds, shuffle=False)
    assert y.tolist() == ds.labels[:5].tolist()
    expected = (ds.images[:5].float() / 255 - 0.5) / 0.5  # (5, C, H, W)
    assert x.dtype == torch.float32 and torch.allclose(x, expected)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    (x, _), *_ = collect(ds, shuffle=False, mean=mean, std=std, dtype=torch.float64)
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    assert x.dtype == torch.float64
    assert torch.allclose(x, (ds.images[:5].double() / 255 - m) / s)


def test_batch_sizes_and_drop_last() -> None:
    ds = toy(23)
    assert [len(y) for _, y in collect(ds)] == [5, 5, 5, 5, 3]
    assert [len(y) for _, y in collect(ds, drop_last=True)] == [5, 5, 5, 5]
    assert num_batches(23, 5, False) == 5 and num_batches(23, 5, True) == 4
    assert num_batches(0, 5, False) == 0 and num_batches(20, 5, True) == 4
    assert collect(ds, start=99) == []


def test_augmentation_keeps_shape_and_changes_pixels() -> None:
    ds = toy(64, channels=3, size=8)
    plain = collect(ds, batch_size=64, shuffle=False)[0][0]
    for mode in [True, "crop", "flip", "crop+flip"]:
        x, y = collect(ds, batch_size=64, shuffle=False, augment=mode)[0]
        assert x.shape == (64, 3, 8, 8) and y.shape == (64,) and x.dtype == torch.float32
        assert not torch.equal(x, plain)
    x, _ = collect(ds, batch_size=64, shuffle=False, augment="none")[0]
    assert torch.equal(x, plain)


def test_flip_only_mirrors_and_crop_only_shifts() -> None:
    images = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8)
    flipped = augment_batch(images, torch.Generator().manual_seed(0), crop=False, flip=True)
    is_same = (flipped == images).flatten(1).all(1)
    is_mirror = (flipped == images.flip(3)).flatten(1).all(1)
    assert bool((is_same | is_mirror).all()) and 50 < int(is_mirror.sum()) < 150
    cropped = augment_batch(images, torch.Generator().manual_seed(0), crop=True, flip=False)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))  # (B, C, 16, 16)
    for i in range(0, 200, 17):  # each crop is some 8x8 window of the padded image
        windows = padded[i].unfold(1, 8, 1).unfold(2, 8, 1)  # (C, 9, 9, 8, 8)
        match = (windows == cropped[i][:, None, None]).all(-1).all(-1).all(0)  # (9, 9)
        assert bool(match.any())


def test_true_means_no_flip_for_one_channel() -> None:
    ds = toy(64, channels=1, size=8)
    # Digits must not be mirrored: "True" on 1-channel data means "crop"; on RGB "crop+flip".
    a = collect(ds, batch_size=64, augment=True, seed=2)
    b = collect(ds, batch_size=64, augment="crop", seed=2)
    c = collect(ds, batch_size=64, augment="crop+flip", seed=2)
    assert same(a, b) and not same(a, c)
    rgb = toy(64, channels=3, size=8)
    a = collect(rgb, batch_size=64, augment=True, seed=2)
    assert same(a, collect(rgb, batch_size=64, augment="crop+flip", seed=2))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"start": -1}, "start"),
        ({"augment": "rotate"}, "augment"),
        ({"mean": (0.1, 0.2)}, "mean"),
        ({"std": 0.0}, "std"),
        ({"dtype": torch.int64}, "floating"),
    ],
)
def test_bad_arguments_raise_immediately(kwargs, pattern) -> None:
    kwargs = {"batch_size": 4, **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        batches(toy(), kwargs.pop("batch_size"), shuffle=True, **kwargs)  # no next() needed
