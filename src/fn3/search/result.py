"""`SearchResult`: every sub-model a search evaluated, its Pareto front, and the best under a budget.

The JSON form is versioned (``"format": "fn3.search", "version": 1``) and stable: each point's spec
is written with :meth:`Spec.to_dict` (prefix axes as kept units, other axes as block lists), so a
result read back compares equal point by point.

Example:
    >>> from fn3.spec import Axis, Space
    >>> space = Space([Axis("fc1.width", "neurons", 4)])
    >>> pts = [Point(space.prefix({"fc1.width": k}), 0.5 + 0.1 * k, {"units": float(k)})
    ...        for k in range(1, 5)]
    >>> res = SearchResult("units", pts, space, min_costs={"units": 1.0}, max_costs={"units": 4.0})
    >>> res.best_under(2.5).spec
    Spec(fc1.width=2)
    >>> SearchResult.from_json(res.to_json()).points[1].accuracy == res.points[1].accuracy
    True
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fn3._io import atomic_write_text, loads_untrusted, one_line
from fn3.errors import BudgetError, ConfigError, FileFormatError
from fn3.search.budget import Budget, check_budgets, describe, format_number, meets
from fn3.search.pareto import Point, hypervolume, pareto_front
from fn3.spec import Space, Spec

__all__ = ["RESULT_FORMAT", "RESULT_VERSION", "SearchResult", "load_results", "rows_to_csv", "save_results"]

RESULT_FORMAT = "fn3.search"
RESULT_VERSION = 1
_KEYS = {"format", "version", "metric", "strategy", "options", "seed", "budgets", "wall_time",
         "min_costs", "max_costs", "info", "space", "points", "front"}


@dataclass(frozen=True)
class SearchResult:
    """What a search found.

    Args:
        metric: the cost metric searched over (the front's x axis).
        points: every distinct evaluated sub-model, in evaluation order.
        space: the model's space (to write specs as kept units).
        strategy, options, seed: how the points were found.
        budgets: the limits the search was given (``{}`` for none).
        wall_time: seconds the search took.
        min_costs, max_costs: cost of the smallest / largest sub-model per recorded metric.
        info: strategy notes, e.g. ``{"stopped": "max_evals"}``.
    """

    metric: str
    points: Sequence[Point]
    space: Space
    strategy: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    budgets: Mapping[str, float] = field(default_factory=dict)
    wall_time: float = 0.0
    min_costs: Mapping[str, float] = field(default_factory=dict)
    max_costs: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    # -- summaries ----------------------------------------------------------------------------
    @property
    def evals(self) -> int:
        """Number of distinct sub-models evaluated."""
        return len(self.points)

    @property
    def evals_per_second(self) -> float:
        return self.evals / self.wall_time if self.wall_time > 0 else float("inf")

    @property
    def front(self) -> list[Point]:
        """Pareto-optimal points over (``metric``, accuracy), cheapest first."""
        return pareto_front(self.points, x=self.metric)

    def pareto_front(self, x: str | None = None, y: str = "accuracy") -> list[Point]:
        """The front over any pair, e.g. ``x="bits"`` (a recorded metric) or ``x="flops", y="bits"``."""
        return pareto_front(self.points, x=x or self.metric, y=y)

    def hypervolume(self, ref_cost: float | None = None, *, min_cost: float | None = None,
                    ref_accuracy: float = 0.0) -> float:
        """:func:`~fn3.search.hypervolume` of the front, by default over the space's cost range."""
        ref = self.max_costs.get(self.metric) if ref_cost is None else ref_cost
        lo = self.min_costs.get(self.metric, 0.0) if min_cost is None else min_cost
        if ref is None:
            raise ConfigError("hypervolume needs ref_cost (the largest sub-model's cost is unknown)")
        return hypervolume(self.points, ref, metric=self.metric, min_cost=lo, ref_accuracy=ref_accuracy)

    @property
    def best(self) -> Point:
        """The best point under the search's budgets, or the most accurate one without budgets."""
        if self.budgets:
            return self.best_under(self.budgets)
        if not self.points:
            raise BudgetError("the search evaluated no sub-model")
        return max(self.points, key=lambda p: (p.accuracy, -p.cost(self.metric)))

    def best_under(self, budget: Budget) -> Point:
        """The most accurate evaluated point meeting ``budget``.

        ``budget`` is a limit on the search metric (``2e7``) or several limits at once
        (``{"flops": 2e7, "bits": 2e6}``). Ties go to the cheaper point.

        Raises:
            BudgetError: a limit is below the smallest sub-model's cost, or no evaluated point meets
                every limit (the message names the cheapest one).
        """
        limits = {self.metric: float(budget)} if isinstance(budget, int | float) else {
            str(m): float(v) for m, v in budget.items()}
        if not limits:
            raise ConfigError("best_under needs at least one limit, e.g. {'flops': 2e7}")
        for m in limits:
            if self.points and m not in self.points[0].costs:
                raise ConfigError(f"metric {m!r} was not recorded by this search (recorded: "
                                  f"{', '.join(self.points[0].costs)}); search with budgets or metrics "
                                  f"naming {m}")
        check_budgets(limits, {m: self.min_costs.get(m, float("-inf")) for m in limits})
        feasible = [p for p in self.points if meets(p.costs, limits)]
        if not feasible:
            cheapest = min(self.points, key=lambda p: p.cost(self.metric), default=None)
            got = "no points" if cheapest is None else ", ".join(
                f"{m}={format_number(cheapest.cost(m))}" for m in limits)
            raise BudgetError(f"no evaluated sub-model meets {describe(limits)} (cheapest evaluated: "
                              f"{got}); search with this budget or more evaluations")
        return max(feasible, key=lambda p: (p.accuracy, -p.cost(self.metric)))

    def with_test_accuracy(self, scores: Mapping[Spec, float]) -> SearchResult:
        """A copy whose points carry ``scores[spec]`` as test accuracy (points not in it: unchanged)."""
        pts = [replace(p, test_accuracy=float(scores[p.spec])) if p.spec in scores else p
               for p in self.points]
        return replace(self, points=pts)

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self.points)}
        return {
            "format": RESULT_FORMAT, "version": RESULT_VERSION, "metric": self.metric,
            "strategy": self.strategy, "options": dict(self.options), "seed": self.seed,
            "budgets": dict(self.budgets), "wall_time": self.wall_time,
            "min_costs": dict(self.min_costs), "max_costs": dict(self.max_costs),
            "info": dict(self.info), "space": self.space.to_dict(),
            "points": [_point_dict(p, self.space) for p in self.points],
            "front": [index[id(p)] for p in self.front],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchResult:
        if not isinstance(data, Mapping) or data.get("format") != RESULT_FORMAT:
            raise FileFormatError(f"not an fn3 search result (expected \"format\": \"{RESULT_FORMAT}\")")
        if data.get("version") != RESULT_VERSION:
            raise FileFormatError(f"search result version {data.get('version')!r} is not supported "
                                  f"(expected {RESULT_VERSION})")
        unknown = set(data) - _KEYS
        if unknown:
            raise FileFormatError(f"search result has unknown keys {sorted(unknown)}")
        try:
            space = Space.from_dict(data["space"])
            points = [Point(Spec.from_dict(p["spec"], space), float(p["accuracy"]),
                            {str(k): float(v) for k, v in p["costs"].items()},
                            None if p.get("test_accuracy") is None else float(p["test_accuracy"]))
                      for p in data["points"]]
            metric = str(data["metric"])
            missing = next((p for p in points if metric not in p.costs), None)
            if missing is not None:  # the front is over the metric: every point must have its cost
                raise FileFormatError(f"search result is malformed (its metric {metric!r} is not among "
                                      f"a point's costs: {', '.join(missing.costs) or 'none'})")
            return cls(metric=metric, points=points, space=space,
                       strategy=str(data.get("strategy", "")), options=dict(data.get("options", {})),
                       seed=int(data.get("seed", 0)), budgets=dict(data.get("budgets", {})),
                       wall_time=float(data.get("wall_time", 0.0)),
                       min_costs=dict(data.get("min_costs", {})), max_costs=dict(data.get("max_costs", {})),
                       info=dict(data.get("info", {})))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            # OverflowError: float(10**400) or int(1e400) of an edited file.
            if isinstance(err, FileFormatError | ConfigError):
                raise
            raise FileFormatError(f"search result is malformed ({type(err).__name__}: "
                                  f"{one_line(err, 100)})") from None

    @classmethod
    def from_json(cls, text: str) -> SearchResult:
        return cls.from_dict(loads_untrusted(text, "<text>", "search result"))

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` atomically."""
        atomic_write_text(path, self.to_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        """Read a file written by :meth:`save`; a bad file raises FileFormatError naming it."""
        return _naming(path, lambda: cls.from_dict(_read(path, "search result")))

    def to_csv(self, path: str | Path | None = None, *, front_only: bool = False) -> str:
        """CSV text (written atomically to ``path`` if given): one row per point.

        Columns: strategy, on_front, one per recorded cost metric, accuracy, test_accuracy, spec
        (compact JSON).
        """
        return rows_to_csv([self], path, front_only=front_only)


def _point_dict(p: Point, space: Space) -> dict[str, Any]:
    d: dict[str, Any] = {"accuracy": p.accuracy, "costs": dict(p.costs), "spec": p.spec.to_dict(space)}
    if p.test_accuracy is not None:
        d["test_accuracy"] = p.test_accuracy
    return d


def rows_to_csv(results: Sequence[SearchResult], path: str | Path | None = None, *,
                front_only: bool = False) -> str:
    """CSV of several results' points (one ``strategy`` column), written atomically if ``path``."""
    metrics: list[str] = []
    for r in results:
        for p in r.points[:1]:
            metrics += [m for m in p.costs if m not in metrics]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["strategy", "on_front", *metrics, "accuracy", "test_accuracy", "spec"])
    for r in results:
        front = r.front
        on_front = {id(p) for p in front}
        for p in front if front_only else r.points:
            w.writerow([r.strategy, int(id(p) in on_front), *(_num(p.costs.get(m)) for m in metrics),
                        _num(p.accuracy), _num(p.test_accuracy),
                        json.dumps(p.spec.to_dict(r.space)["axes"], sort_keys=True,
                                   separators=(",", ":"))])
    text = buf.getvalue()
    if path is not None:
        atomic_write_text(path, text)
    return text


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


FRONTS_FORMAT = "fn3.search-fronts"


def save_results(results: Sequence[SearchResult], path: str | Path, **extra: Any) -> None:
    """Write several results (one per strategy) to one JSON file, atomically.

    ``extra`` holds JSON-ready context (the run, the chosen sub-model...) stored alongside.
    """
    data = {"format": FRONTS_FORMAT, "version": RESULT_VERSION, **extra,
            "results": [r.to_dict() for r in results]}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def load_results(path: str | Path) -> list[SearchResult]:
    """Read a file written by :func:`save_results` or :meth:`SearchResult.save`."""

    def read() -> list[SearchResult]:
        data = _read(path, "search results")
        if isinstance(data, Mapping) and data.get("format") == FRONTS_FORMAT:
            if data.get("version") != RESULT_VERSION:
                raise FileFormatError(f"version {data.get('version')!r} is not supported "
                                      f"(expected {RESULT_VERSION})")
            results = data.get("results", [])
            if not isinstance(results, list):
                raise FileFormatError('"results" must be a list of search results')
            return [SearchResult.from_dict(r) for r in results]
        return [SearchResult.from_dict(data)]

    return _naming(path, read)


def _read(path: str | Path, what: str) -> Any:
    """The JSON value in ``path`` (FileFormatError naming it if unreadable, not UTF-8, too deep...)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise FileFormatError(f"cannot read {what} {path}: {err.strerror}") from None
    return loads_untrusted(raw, path, what)


def _naming(path: str | Path, read: Any) -> Any:
    """Run ``read()``; a FileFormatError that does not name ``path`` gets it as a prefix."""
    try:
        return read()
    except FileFormatError as err:
        if str(path) in str(err):
            raise
        raise FileFormatError(f"{path}: {err}") from None
