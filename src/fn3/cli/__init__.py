"""The ``fn3`` command line: thin commands that parse flags, build a config and call one function.

User errors (:class:`fn3.Fn3Error`, bad flags) print one line and exit with code 2; anything else is a
bug in fn3 and exits with code 1 and a hint to report it.
"""

from __future__ import annotations

from fn3.cli._app import app, main

# Each module adds its commands to ``app`` when imported.
from fn3.cli import cost as _cost  # noqa: E402,F401  isort: skip
from fn3.cli import demo as _demo  # noqa: E402,F401  isort: skip
from fn3.cli import export as _export  # noqa: E402,F401  isort: skip
from fn3.cli import nest as _nest  # noqa: E402,F401  isort: skip
from fn3.cli import search as _search  # noqa: E402,F401  isort: skip
from fn3.cli import train as _train  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]
