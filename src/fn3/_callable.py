"""Make a package callable: ``fn3.cost(...)``, ``fn3.search(...)`` and ``fn3.export(...)``.

The verbs of fn3's public API (``fn3.cost(model, spec, "flops")``, ``fn3.search(...)``,
``fn3.export(model, spec)``) share their names with the sub-packages that implement them
(``fn3.cost.latency``, ``fn3.search.Heuristic``, ``fn3.export.to_onnx``). Binding the function to the
name in ``fn3/__init__.py`` would hide the package; instead each package's module object becomes
callable, so both spellings work.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["make_callable"]


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Calling the module ``module_name`` calls ``fn`` (the module keeps all its attributes)."""

    class CallableModule(types.ModuleType):
        __doc__ = fn.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
