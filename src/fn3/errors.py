"""The error types fn3 raises for problems the user can fix.

Every user-facing problem (a bad flag, a missing or corrupt file, a spec that does not fit the model,
an impossible budget) raises a subclass of :class:`Fn3Error` whose message is one readable line that
names what is wrong and what would be right. The CLI prints that line and exits with code 2; any other
exception is a bug in fn3 (exit code 1).

Example:
    >>> import fn3
    >>> try:
    ...     fn3.create_model("no-such-model")
    ... except fn3.Fn3Error as err:
    ...     print(type(err).__name__)
    ConfigError
"""

from __future__ import annotations


class Fn3Error(Exception):
    """Base class of every error caused by user input (exit code 2 in the CLI)."""


class ConfigError(Fn3Error, ValueError):
    """A configuration value, flag or name is invalid (unknown model, level, metric, ...)."""


class SpecError(Fn3Error, ValueError):
    """A :class:`~fn3.Spec` does not fit its :class:`~fn3.Space` (names the axis)."""


class DataError(Fn3Error, ValueError):
    """A dataset is missing, truncated or in the wrong format (names the file)."""


class FileFormatError(Fn3Error, ValueError):
    """A file fn3 reads (checkpoint, exported model, spec, table) is corrupt or mismatched."""


class BudgetError(Fn3Error, ValueError):
    """A resource budget cannot be met by any sub-model (names the smallest achievable cost)."""


class NestingError(Fn3Error, ValueError):
    """A model cannot be nested as asked (:func:`fn3.nest_` with ``strict=True`` shows the table)."""
