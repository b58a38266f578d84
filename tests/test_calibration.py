"""BatchNorm re-estimation batches are augmented as the training batches are (fn3.train)."""

from __future__ import annotations

from itertools import islice

import torch

from fn3.config import TrainConfig
from fn3.data import batches
from fn3.data.dataset import ImageDataset
from fn3.train import calibration_batches


def _dataset(channels: int, size: int) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, channels, size, size), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(64) % 2, ("a", "b"), "synthetic")


def _first(it) -> torch.Tensor:
    return next(islice(it, 1))[0]


def test_colour_images_are_calibrated_on_augmented_batches():
    ds = _dataset(3, 32)  # augment="auto": random crop + flip, as in training
    cfg = TrainConfig(model="resnet20", data="cifar10", batch_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    clean = _first(batches(ds, 16, shuffle=True, seed=cfg.seed + 1, mean=cfg.mean, std=cfg.std))
    calib = _first(calibration_batches(ds, cfg))
    assert calib.shape == clean.shape and not torch.equal(calib, clean)
    again = _first(calibration_batches(ds, cfg))
    assert torch.equal(calib, again)  # a pure function of the seed: every evaluation sees the same
    plain = _first(calibration_batches(ds, cfg.replace(augment="none")))
    assert torch.equal(plain, clean)


def test_small_grey_images_are_not_augmented():
    ds = _dataset(1, 8)  # augment="auto" trains these without augmentation
    cfg = TrainConfig(batch_size=16, mean=(0.5,), std=(0.25,))
    clean = _first(batches(ds, 16, shuffle=True, seed=cfg.seed + 1, mean=cfg.mean, std=cfg.std))
    assert torch.equal(_first(calibration_batches(ds, cfg)), clean)
