"""Import a module of ``benchmarks/repro`` as the scripts themselves do (``from runner import ...``):
the folder goes on ``sys.path`` once, and every benchmark test imports through :func:`load`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

REPRO = Path(__file__).resolve().parents[2] / "benchmarks" / "repro"


def load(name: str) -> ModuleType:
    """The module ``benchmarks/repro/<name>.py``, imported once (``load("runner")``)."""
    if str(REPRO) not in sys.path:
        sys.path.insert(0, str(REPRO))
    return importlib.import_module(name)
