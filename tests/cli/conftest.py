"""Fixtures of the CLI tests: a Python module of the user's own, importable for one test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest


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
