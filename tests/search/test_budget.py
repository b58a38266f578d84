"""Budget strings: suffixes, scientific notation, and one clear line for bad input."""

from __future__ import annotations

import pytest

from fn3.errors import BudgetError, ConfigError
from fn3.search import format_number, parse_budget, parse_number
from fn3.search.budget import check_budgets, normalize_budgets


@pytest.mark.parametrize("text,value", [("20M", 2e7), ("2e6", 2e6), ("1.5G", 1.5e9), ("300k", 3e5),
                                        ("300K", 3e5), ("1_000", 1000.0), (" 7 ", 7.0), (5, 5.0)])
def test_numbers(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "abc", "20X", "-5", "nan", "inf"])
def test_bad_numbers(text):
    with pytest.raises(ConfigError):
        parse_number(text)


def test_budgets():
    assert parse_budget("flops=20M") == ("flops", 2e7)
    assert normalize_budgets(["flops=20M", "bits=2e6"], "flops") == {"flops": 2e7, "bits": 2e6}
    assert normalize_budgets(3e6, "flops") == {"flops": 3e6}
    assert normalize_budgets({"bits": "1M"}, "flops") == {"bits": 1e6}
    for bad in ("flops", "=3", "flops="):
        with pytest.raises(ConfigError, match="METRIC=VALUE"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="twice"):
        normalize_budgets(["flops=1", "flops=2"], "flops")
    assert format_number(2.1e6) == "2.1e6" and format_number(1000.0) == "1000"
    msg = r"budget flops=1000 is below the smallest sub-model \(flops=2.1e6\)"
    with pytest.raises(BudgetError, match=msg):
        check_budgets({"flops": 1e3}, {"flops": 2.1e6})
