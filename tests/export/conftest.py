"""Fixtures of the export tests."""

from __future__ import annotations

import pytest
import torch
from export_helpers import NAMES, make_model


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: make_model(name) for name in NAMES}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is faster, and steady when other jobs share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
