"""Shared fixtures: where the real datasets are, and a deterministic CPU setup."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

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


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> Iterator[Callable[[str, str], str]]:
    """``write(name, source)`` writes ``name.py`` into the test's directory, puts it on ``sys.path``
    and returns ``name`` (for ``--model name:factory``); the module is forgotten after the test."""
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def benchmark_script() -> Callable[[str], ModuleType]:
    """``load(name)`` executes ``benchmarks/<name>.py`` as a fresh module (not as ``__main__``) and
    returns it, so a test can call the script's ``main`` or its functions."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
