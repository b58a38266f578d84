"""ImageDataset validation, subset, train_val_split and channel_stats."""

from __future__ import annotations

import pytest
import torch

from fn3.data import ImageDataset, channel_stats, train_val_split
from fn3.errors import DataError


def toy(n_per_class: tuple[int, ...] = (30, 20, 10), channels: int = 3) -> ImageDataset:
    """Images whose first pixel stores the sample index, so identities can be tracked."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])  # (N,)
    n = len(labels)
    images = torch.randint(0, 256, (n, channels, 4, 4), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n).to(torch.uint8)  # (N, C, H, W) with an id pixel
    classes = tuple(f"c{i}" for i in range(len(n_per_class)))
    return ImageDataset(images, labels, classes, "toy")


def test_properties_and_subset() -> None:
    ds = toy()
    assert len(ds) == 60 and ds.num_classes == 3 and ds.image_shape == (3, 4, 4)
    sub = ds.subset(torch.tensor([5, 40, 59]))
    assert sub.labels.tolist() == [0, 1, 2] and sub.images[:, 0, 0, 0].tolist() == [5, 40, 59]
    assert sub.classes == ds.classes and sub.name == ds.name
    masked = ds.subset(ds.labels == 2)
    assert len(masked) == 10 and masked.images[:, 0, 0, 0].tolist() == list(range(50, 60))
    with pytest.raises(DataError, match="out of range"):
        ds.subset(torch.tensor([60]))
    with pytest.raises(DataError, match="expected int64 or bool"):
        ds.subset(torch.tensor([0.5]))


@pytest.mark.parametrize(
    ("images", "labels", "pattern"),
    [
        (torch.zeros(2, 1, 4, 4), torch.zeros(2).long(), "uint8"),
        (torch.zeros(2, 4, 4, dtype=torch.uint8), torch.zeros(2).long(), r"\(N, C, H, W\)"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2).int(), "int64"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3).long(), "2 images but 3"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), r"labels in 0\.\.2"),
    ],
)
def test_validation(images, labels, pattern) -> None:
    with pytest.raises(DataError, match=pattern):
        ImageDataset(images, labels, ("a", "b"), "bad")


def test_train_val_split_deterministic_disjoint_stratified() -> None:
    ds = toy()
    train, val = train_val_split(ds, 0.2, seed=3)
    train2, val2 = train_val_split(ds, 0.2, seed=3)
    assert torch.equal(val.images, val2.images) and torch.equal(train.labels, train2.labels)
    ids_train = set(train.images[:, 0, 0, 0].tolist())
    ids_val = set(val.images[:, 0, 0, 0].tolist())
    assert ids_train.isdisjoint(ids_val) and ids_train | ids_val == set(range(60))
    assert torch.bincount(val.labels).tolist() == [6, 4, 2]  # 20 % of each class
    assert torch.bincount(train.labels).tolist() == [24, 16, 8]
    # Both parts keep the original order.
    assert val.images[:, 0, 0, 0].tolist() == sorted(ids_val)
    # Another seed picks other images, and the global RNG is untouched.
    state = torch.get_rng_state()
    _, other = train_val_split(ds, 0.2, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(other.images[:, 0, 0, 0].tolist()) != ids_val


def test_train_val_split_small_classes_keep_both_parts() -> None:
    train, val = train_val_split(toy((2, 3, 1)), 0.1, seed=0)
    assert torch.bincount(val.labels, minlength=3).tolist() == [1, 1, 0]
    assert torch.bincount(train.labels, minlength=3).tolist() == [1, 2, 1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.2", True])
def test_train_val_split_bad_fraction(fraction) -> None:
    with pytest.raises(DataError, match="val_fraction"):
        train_val_split(toy(), fraction, seed=0)


def test_channel_stats_matches_direct_computation() -> None:
    ds = toy((3000, 2000, 1000), channels=3)  # more than one 4096-image chunk
    mean, std = channel_stats(ds)
    x = ds.images.double() / 255  # (N, C, H, W)
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(x.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-9)
    gray = ImageDataset(
        torch.full((4, 1, 2, 2), 51, dtype=torch.uint8), torch.zeros(4).long(), ("a",), "gray"
    )
    assert channel_stats(gray) == (pytest.approx((0.2,)), pytest.approx((0.0,)))
