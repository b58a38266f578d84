"""SearchResult: best_under with one or several limits, JSON and CSV round trips."""

from __future__ import annotations

import csv
import json

import pytest

import fn3
from fn3.errors import BudgetError, ConfigError, FileFormatError
from fn3.search import Heuristic, SearchResult, search
from fn3.search.result import load_results, save_results


@pytest.fixture()
def result(medium):
    model, syn = medium
    space = fn3.space(model)
    fc1 = lambda s: float(s.size("fc1.width", space))  # noqa: E731
    return search(model, syn.score, "units", Heuristic(beam=2, candidates=4, step=0.25),
                  cost_fns={"units": syn.units, "fc1": fc1}, metrics=["fc1"], seed=0)


def test_best_under_one_and_several_limits(result):
    lo, hi = result.min_costs["units"], result.max_costs["units"]
    mid = (lo + hi) / 2
    b = result.best_under(mid)
    assert b.cost("units") <= mid
    assert b.accuracy == max(p.accuracy for p in result.points if p.cost("units") <= mid)
    both = result.best_under({"units": mid, "fc1": 6})
    assert both.cost("units") <= mid and both.cost("fc1") <= 6 and both.accuracy <= b.accuracy
    with pytest.raises(BudgetError, match=r"budget fc1=1 is below the smallest sub-model \(fc1=2\)"):
        result.best_under({"units": mid, "fc1": 1})
    with pytest.raises(ConfigError, match="'flops' was not recorded"):
        result.best_under({"flops": 1e9})


def test_json_round_trip(result, tmp_path):
    assert any(not p.spec.is_prefix for p in result.points)  # non-prefix specs survive too
    back = SearchResult.from_json(result.to_json())
    assert back.to_dict() == result.to_dict()
    assert [(p.spec, p.accuracy, dict(p.costs)) for p in back.points] == [
        (p.spec, p.accuracy, dict(p.costs)) for p in result.points]
    assert [p.spec for p in back.front] == [p.spec for p in result.front]
    data = json.loads(result.to_json())
    assert data["format"] == "fn3.search" and data["version"] == 1 and data["strategy"] == "heuristic"
    result.save(tmp_path / "r.json")
    save_results([result, result], tmp_path / "front.json", run="x")
    assert len(load_results(tmp_path / "front.json")) == 2
    assert load_results(tmp_path / "r.json")[0].to_dict() == result.to_dict()
    with pytest.raises(FileFormatError, match="version 7"):
        SearchResult.from_dict({**data, "version": 7})
    with pytest.raises(FileFormatError, match="unknown keys"):
        SearchResult.from_dict({**data, "extra": 1})
    with pytest.raises(FileFormatError, match="not valid JSON"):
        SearchResult.from_json("{")


def test_csv(result, tmp_path):
    result.to_csv(tmp_path / "front.csv", front_only=True)
    rows = list(csv.DictReader((tmp_path / "front.csv").open()))
    assert len(rows) == len(result.front)
    assert [float(r["units"]) for r in rows] == [p.cost("units") for p in result.front]
    assert set(rows[0]) == {"strategy", "on_front", "units", "fc1", "accuracy", "test_accuracy", "spec"}
    assert all(r["on_front"] == "1" for r in rows)
    assert len(result.to_csv().splitlines()) == result.evals + 1
