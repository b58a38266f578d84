"""Points of a search and the trade-offs among them: `Point`, `pareto_front`, `hypervolume`.

A :class:`Point` is one evaluated sub-model: its :class:`~fn3.Spec`, its validation accuracy and its
cost under one or more metrics (``{"flops": 2.1e6, "bits": 8.4e5}``). The Pareto front over a pair of
quantities keeps the points that no other point beats on both: lower cost and higher accuracy.
The hypervolume of a front is the area it dominates in the (normalised cost, accuracy) plane, one
number that grows when the front moves left (cheaper) or up (more accurate).

Example:
    >>> from fn3.spec import Spec
    >>> s = Spec({"a": (0,)})
    >>> pts = [Point(s, 0.90, {"flops": 10.0}), Point(s, 0.80, {"flops": 20.0}),
    ...        Point(s, 0.95, {"flops": 30.0})]
    >>> [p.accuracy for p in pareto_front(pts, x="flops")]
    [0.9, 0.95]
    >>> round(hypervolume(pts, ref_cost=40.0, metric="flops"), 4)   # 0.5*0.9 + 0.25*0.95
    0.6875
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fn3.errors import ConfigError
from fn3.spec import Spec

__all__ = ["Point", "dominates", "hypervolume", "pareto_front"]

# Quantities a front can be taken over besides the cost metrics; both are maximised.
SCORES = ("accuracy", "test_accuracy")


@dataclass(frozen=True, eq=False)
class Point:
    """One evaluated sub-model.

    Args:
        spec: the sub-model.
        accuracy: its score on the held-out validation split (higher is better).
        costs: its cost per metric, e.g. ``{"flops": 2.1e6}``; the search metric comes first.
        test_accuracy: filled in after a search for the front points (never used to choose).

    Example:
        >>> p = Point(Spec({"a": (0, 1)}), 0.9, {"flops": 1e6})
        >>> p.cost("flops"), p.value("accuracy")
        (1000000.0, 0.9)
    """

    spec: Spec
    accuracy: float
    costs: Mapping[str, float] = field(default_factory=dict)
    test_accuracy: float | None = None

    def cost(self, metric: str) -> float:
        """The cost under ``metric`` (ConfigError if the search did not record it)."""
        try:
            return float(self.costs[metric])
        except KeyError:
            raise ConfigError(f"metric {metric!r} was not recorded for these points; recorded: "
                              f"{', '.join(self.costs) or 'none'} (pass metrics=(...) to search)") from None

    def value(self, name: str) -> float:
        """``accuracy``, ``test_accuracy`` or the cost under metric ``name``."""
        if name == "accuracy":
            return float(self.accuracy)
        if name == "test_accuracy":
            if self.test_accuracy is None:
                raise ConfigError("test accuracy was not measured for these points")
            return float(self.test_accuracy)
        return self.cost(name)

    def __repr__(self) -> str:
        costs = ", ".join(f"{k}={v:.4g}" for k, v in self.costs.items())
        return f"Point(accuracy={self.accuracy:.4f}, {costs}, {self.spec!r})"


def _sign(name: str) -> float:
    # Work in "lower is better" coordinates: costs as they are, scores negated.
    return -1.0 if name in SCORES else 1.0


def dominates(a: Point, b: Point, x: str, y: str = "accuracy") -> bool:
    """True if ``a`` is at least as good as ``b`` on both ``x`` and ``y`` and better on one."""
    ax, ay = _sign(x) * a.value(x), _sign(y) * a.value(y)
    bx, by = _sign(x) * b.value(x), _sign(y) * b.value(y)
    return ax <= bx and ay <= by and (ax < bx or ay < by)


def pareto_front(points: Iterable[Point], x: str, y: str = "accuracy") -> list[Point]:
    """The non-dominated points over ``(x, y)``, sorted by ``x`` from best to worst.

    Costs are minimised and ``accuracy``/``test_accuracy`` maximised, so ``x="flops"`` gives the
    usual accuracy-vs-cost front, from the cheapest point to the most accurate one, and
    ``x="flops", y="bits"`` the points no other point beats on both costs. Of points equal on both,
    the first one is kept (deterministic).
    """
    pts = list(points)
    sx, sy = _sign(x), _sign(y)
    keyed = sorted(((sx * p.value(x), sy * p.value(y), i) for i, p in enumerate(pts)))
    front: list[Point] = []
    best = math.inf
    for _, vy, i in keyed:
        if vy < best:  # strictly better on y than every cheaper (or equally cheap) point
            front.append(pts[i])
            best = vy
    return front


def hypervolume(points: Iterable[Point], ref_cost: float, *, metric: str | None = None,
                min_cost: float = 0.0, ref_accuracy: float = 0.0) -> float:
    """Area dominated by the points in the (normalised cost, accuracy) plane, in [0, 1 - ref_accuracy].

    Cost is normalised to ``(cost - min_cost) / (ref_cost - min_cost)``, so the unit square spans
    ``min_cost..ref_cost``; the region counted is bounded by ``cost <= ref_cost`` and
    ``accuracy >= ref_accuracy``. Points beyond the reference add nothing. A front that reaches
    accuracy ``a`` from normalised cost ``c`` onwards dominates ``(1 - c) * (a - ref_accuracy)``.

    Args:
        points: any points (the front is taken first).
        ref_cost: the cost reference, typically the largest sub-model's cost.
        metric: the cost metric; default: the first metric the points record.
        min_cost: the cost mapped to 0, typically the smallest sub-model's cost.
        ref_accuracy: the accuracy floor, e.g. ``1 / num_classes`` (chance).
    """
    pts = list(points)
    if not pts:
        return 0.0
    if metric is None:
        metric = next(iter(pts[0].costs), None)
        if metric is None:
            raise ConfigError("hypervolume needs a cost metric; these points record none")
    span = float(ref_cost) - float(min_cost)
    if not span > 0:
        raise ConfigError(f"hypervolume: ref_cost ({ref_cost:g}) must be above min_cost ({min_cost:g})")
    front = [p for p in pareto_front(pts, x=metric) if p.cost(metric) <= ref_cost
             and p.accuracy > ref_accuracy]
    area = 0.0
    # front: cost ascending, accuracy ascending; each point owns the strip up to the next point.
    for i, p in enumerate(front):
        c = max(0.0, (p.cost(metric) - min_cost) / span)
        nxt = 1.0 if i + 1 == len(front) else max(0.0, (front[i + 1].cost(metric) - min_cost) / span)
        area += (nxt - c) * (p.accuracy - ref_accuracy)
    return area

