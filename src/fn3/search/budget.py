"""Resource budgets: reading ``flops=20M`` and checking a budget against what the model can reach.

A budget is one or more limits ``{metric: largest allowed cost}``; a sub-model meets it when its cost
is at or below every limit. Numbers take a K/M/G/T suffix (powers of 1000) or scientific notation.

Example:
    >>> parse_number("20M"), parse_number("2e6"), parse_number("1.5k")
    (20000000.0, 2000000.0, 1500.0)
    >>> parse_budget("flops=20M")
    ('flops', 20000000.0)
    >>> format_number(2.1e6), format_number(512.0)
    ('2.1e6', '512')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from fn3.errors import BudgetError, ConfigError

__all__ = ["Budget", "check_budgets", "format_number", "meets", "normalize_budgets", "parse_budget",
           "parse_number"]

Budget = float | Mapping[str, float]

_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_number(text: str | float | int) -> float:
    """``"20M"`` -> 2e7; ``"2e6"``, ``"1.5G"``, ``"300k"`` and plain numbers too (suffixes x1000)."""
    if isinstance(text, bool):
        raise ConfigError(f"{text!r} is not a number")
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = str(text).strip().replace("_", "")
        scale = 1.0
        if s and s[-1].lower() in _SUFFIX:
            scale, s = _SUFFIX[s[-1].lower()], s[:-1]
        try:
            value = float(s) * scale
        except ValueError:
            raise ConfigError(f"{text!r} is not a number; write e.g. 20M, 2e6 or 1500 "
                              "(suffixes K, M, G, T)") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{text!r} is not a usable budget; expected a finite number >= 0")
    return value


def parse_budget(text: str) -> tuple[str, float]:
    """``"flops=20M"`` -> ``("flops", 2e7)``."""
    metric, sep, value = str(text).partition("=")
    metric = metric.strip()
    if not sep or not metric or not value.strip():
        raise ConfigError(f"budget {text!r}: expected METRIC=VALUE, e.g. flops=20M or bits=2e6")
    return metric, parse_number(value)


def normalize_budgets(budgets: Budget | Iterable[str] | None, metric: str) -> dict[str, float]:
    """A budget as ``{metric: limit}``: a number is a limit on ``metric``; strings are parsed."""
    if budgets is None:
        return {}
    if isinstance(budgets, int | float | str) and not isinstance(budgets, bool):
        if isinstance(budgets, str) and "=" in budgets:
            m, v = parse_budget(budgets)
            return {m: v}
        return {metric: parse_number(budgets)}
    if isinstance(budgets, Mapping):
        return {str(m): parse_number(v) for m, v in budgets.items()}
    out: dict[str, float] = {}
    for item in budgets:
        m, v = parse_budget(item)
        if m in out:
            raise ConfigError(f"budget on {m} given twice ({format_number(out[m])} and {format_number(v)})")
        out[m] = v
    return out


def format_number(x: float) -> str:
    """Compact: ``2.1e6`` for large values, ``512`` or ``0.25`` for small ones."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    mant, exp = f"{x:.3e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def describe(limits: Mapping[str, float]) -> str:
    """``flops<=2e7, bits<=2e6``."""
    return ", ".join(f"{m}<={format_number(v)}" for m, v in limits.items())


def meets(costs: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    """True if every limited metric's cost is at or below its limit."""
    return all(costs[m] <= v for m, v in limits.items())


def check_budgets(limits: Mapping[str, float], smallest: Mapping[str, float]) -> None:
    """Raise :class:`BudgetError` if a limit is below the smallest sub-model's cost under it."""
    for m, v in limits.items():
        if v < smallest[m]:
            raise BudgetError(f"budget {m}={format_number(v)} is below the smallest sub-model "
                              f"({m}={format_number(smallest[m])})")
