"""Shared fixtures: where the real datasets are, and a deterministic CPU setup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FN3_TEST_DATA", ROOT / ".." / "shared" / "data")).resolve()


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real datasets (MNIST IDX, CIFAR-10 JPEG archive)."""
    if not (DATA / "mnist").is_dir():
        pytest.skip(f"shared data not found at {DATA} (set FN3_TEST_DATA)")
    return DATA
