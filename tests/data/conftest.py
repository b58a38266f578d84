"""Shared fixtures for the fn3.data tests: the real-data folder and an isolated cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def real_data_dir() -> Path:
    """``../shared/data`` next to the project root, or ``$FN3_TEST_DATA``."""
    env = os.environ.get("FN3_TEST_DATA")
    if env:
        return Path(env)
    return (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()


@pytest.fixture
def real_data() -> Path:
    return real_data_dir()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test reads the user's FN3_DATA_DIR or writes to ~/.cache/fn3."""
    monkeypatch.setenv("FN3_CACHE_DIR", str(tmp_path_factory.mktemp("fn3-cache")))
    monkeypatch.delenv("FN3_DATA_DIR", raising=False)
