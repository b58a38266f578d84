"""Fixtures of the search tests: a tiny nested MLP with a synthetic score (see search_helpers)."""

from __future__ import annotations

import pytest
import torch
from search_helpers import Synthetic, tiny_mlp

import fn3


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny tensors gain nothing from two, and on a busy machine spinning
    OpenMP threads make each forward pass up to 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny():
    model = tiny_mlp()
    return model, Synthetic(fn3.space(model))


@pytest.fixture()
def medium():
    """Three hidden layers of 8 blocks: 512 prefix sub-models, 21 removable blocks."""
    model = tiny_mlp(hidden=(16, 16, 16), blocks=8)
    return model, Synthetic(fn3.space(model))
