"""Never trust a search result file (what ``fn3.export.load(..., budget=, front=)`` reads).

``SearchResult.load`` / ``load_results`` answer a damaged or edited file with
:class:`fn3.errors.FileFormatError` naming the file: not UTF-8, nested too deeply, numbers too large
for a float, fields of the wrong type.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzz_strategies import FUZZ, corrupted, deep_json, edited_json, expect_error, expect_only
from hypothesis import given, settings

from fn3.errors import FileFormatError
from fn3.search import SearchResult
from fn3.search.pareto import Point
from fn3.search.result import load_results
from fn3.spec import Axis, Space

SPACE = Space([Axis("fc1.width", "neurons", 8, step=2), Axis("fc1.wbits", "bits", 4)])
RESULT = SearchResult(
    "bits",
    [
        Point(SPACE.prefix({"fc1.width": k, "fc1.wbits": b}), 0.5 + 0.1 * k, {"bits": 8.0 * k * b})
        for k in range(1, 5)
        for b in (1, 4)
    ],
    SPACE,
    strategy="heuristic",
    budgets={"bits": 100.0},
    min_costs={"bits": 8.0},
    max_costs={"bits": 128.0},
)
TEXT = RESULT.to_json(indent=1)


def test_valid_result_round_trips(tmp_path: Path) -> None:
    RESULT.save(tmp_path / "front.json")
    assert SearchResult.load(tmp_path / "front.json").to_json(indent=1) == TEXT


@settings(max_examples=100, **FUZZ)
@given(blob=corrupted(TEXT.encode(), header=64))
def test_search_result_damaged(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("bad") / "front.json"
    path.write_text(blob.decode("utf-8", "replace"))  # invalid UTF-8: test_search_result_not_utf8
    out = expect_only(FileFormatError, lambda: SearchResult.load(path))
    if not isinstance(out, Exception):
        # A damaged JSON file that is still valid JSON may load with other values (it has no
        # checksum); what is loaded must then be a consistent result that round-trips.
        again = path.with_name("again.json")
        out.save(again)
        assert SearchResult.load(again).to_json(indent=1) == out.to_json(indent=1)
    expect_only(FileFormatError, lambda: load_results(path))


def test_search_result_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "front.json"
    path.write_bytes(TEXT.encode().replace(b'"bits"', b'"bi\xe9ts"', 1))
    expect_error(FileFormatError, lambda: SearchResult.load(path), names=path)


@settings(max_examples=120, **FUZZ)
@given(doc=edited_json(json.loads(TEXT)))
def test_search_result_edited(tmp_path_factory: pytest.TempPathFactory, doc: object) -> None:
    path = tmp_path_factory.mktemp("edit") / "front.json"
    path.write_text(json.dumps(doc))
    expect_only(FileFormatError, lambda: SearchResult.load(path))


@pytest.mark.parametrize("where", ["accuracy", "cost", "wall_time", "seed"])
def test_search_result_huge_number(tmp_path: Path, where: str) -> None:
    doc = json.loads(TEXT)
    if where == "accuracy":
        doc["points"][0]["accuracy"] = 10**400
    elif where == "cost":
        doc["points"][0]["costs"]["bits"] = 10**400
    elif where == "wall_time":
        doc["wall_time"] = 10**400
    else:
        doc["seed"] = float("inf")
    path = tmp_path / "front.json"
    path.write_text(json.dumps(doc))
    expect_error(FileFormatError, lambda: SearchResult.load(path), names=path)


def test_search_result_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "front.json"
    path.write_text(deep_json())
    expect_error(FileFormatError, lambda: SearchResult.load(path), names=path)
    expect_error(FileFormatError, lambda: load_results(path), names=path)


def test_search_result_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "front.json"
    path.write_text(json.dumps({**json.loads(TEXT), "version": 99}))
    expect_error(FileFormatError, lambda: SearchResult.load(path), names=path)


def test_search_result_metric_not_recorded(tmp_path: Path) -> None:
    """Found by Hypothesis in CI: a damaged metric name (``"bits"`` -> ``"cits"``) loaded, and the
    result could not be used or saved again. It must be refused at load."""
    path = tmp_path / "front.json"
    doc = json.loads(TEXT)
    doc["metric"] = "cits"
    path.write_text(json.dumps(doc))
    expect_error(FileFormatError, lambda: SearchResult.load(path), names=path)
