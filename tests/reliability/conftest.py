"""Fixtures of the "never trust a file" tests: an isolated cache, one thread, a hang guard."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test reads the user's FN3_DATA_DIR or writes the decode cache to ~/.cache/fn3."""
    monkeypatch.setenv("FN3_CACHE_DIR", str(tmp_path_factory.mktemp("fn3-cache")))
    monkeypatch.delenv("FN3_DATA_DIR", raising=False)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster and steadier on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
