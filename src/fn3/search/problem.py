"""What every search strategy works on: a `Problem`, and the `Strategy` registry.

A :class:`Problem` hands a strategy the search space, the seeded generator it must draw from, the
cost of any spec (memoised; analytic, so cheap) and one way to score specs, :meth:`Problem.evaluate`,
which scores a whole batch at once, never scores a spec twice, stops at ``max_evals`` and records
every scored spec as a :class:`~fn3.search.pareto.Point`. A strategy is a frozen dataclass of options
with one method, ``run(problem)``; it returns nothing, the problem keeps the points.

Example:
    >>> from fn3.spec import Axis, Space
    >>> space = Space([Axis("w", "neurons", 4)])
    >>> units = lambda spec: float(space["w"].units(spec.kept("w")))
    >>> prob = Problem(space, lambda specs: [0.1 * units(s) for s in specs], {"units": units},
    ...                "units", max_evals=3)
    >>> [p.accuracy for p in prob.evaluate([space.largest(), space.smallest()])]
    [0.4, 0.1]
    >>> prob.evals, prob.remaining
    (2, 1)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fn3.errors import ConfigError
from fn3.search.budget import meets
from fn3.search.pareto import Point
from fn3.spec import Space, Spec

__all__ = ["Problem", "Progress", "Strategy", "list_strategies", "make_strategy", "register_strategy"]

CostFn = Callable[[Spec], float]
BatchEvaluate = Callable[[Sequence[Spec]], Sequence[float]]


@dataclass(frozen=True)
class Progress:
    """Reported after every scored batch: evaluations so far, the bound, the best accuracy so far."""

    evals: int
    max_evals: int | None
    best_accuracy: float


class Problem:
    """The search state a strategy acts on.

    Args:
        space: the space searched (axes frozen by ``search(axes=...)`` have one choice).
        evaluate_many: scores a list of specs (higher is better).
        cost_fns: ``{metric: spec -> cost}``; ``metric`` first, then the budget metrics.
        metric: the search metric.
        budgets: ``{metric: limit}`` that strategies may use to focus (points are recorded anyway).
        max_evals: bound on distinct specs scored (``None``: no bound).
        generator: the only source of randomness strategies may use.
        progress: called with a :class:`Progress` after every scored batch.
    """

    def __init__(self, space: Space, evaluate_many: BatchEvaluate, cost_fns: Mapping[str, CostFn],
                 metric: str, budgets: Mapping[str, float] | None = None, max_evals: int | None = None,
                 generator: torch.Generator | None = None,
                 progress: Callable[[Progress], None] | None = None):
        self.space = space
        self.metric = metric
        self.budgets = dict(budgets or {})
        self.max_evals = max_evals
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self._evaluate_many = evaluate_many
        self._cost_fns = dict(cost_fns)
        self._costs: dict[Spec, dict[str, float]] = {}
        self._points: dict[Spec, Point] = {}
        self._progress = progress
        self._best = -math.inf
        self.info: dict[str, Any] = {}
        self._largest = space.largest()
        self._scale = {m: max(self.costs(self._largest)[m], 1e-30) for m in self._weighted_metrics()}

    # -- costs --------------------------------------------------------------------------------
    def costs(self, spec: Spec) -> dict[str, float]:
        """Cost of ``spec`` under every recorded metric (memoised)."""
        c = self._costs.get(spec)
        if c is None:
            c = {m: float(fn(spec)) for m, fn in self._cost_fns.items()}
            self._costs[spec] = c
        return c

    def cost(self, spec: Spec, metric: str | None = None) -> float:
        return self.costs(spec)[metric or self.metric]

    def _weighted_metrics(self) -> list[str]:
        return [self.metric, *(m for m in self.budgets if m != self.metric)]

    def weighted_cost(self, spec: Spec) -> float:
        """Search metric plus budget metrics, each divided by the largest sub-model's cost."""
        c = self.costs(spec)
        return sum(c[m] / s for m, s in self._scale.items())

    def feasible(self, spec: Spec) -> bool:
        """True if ``spec`` meets every budget (always, without budgets)."""
        return meets(self.costs(spec), self.budgets)

    # -- scoring ------------------------------------------------------------------------------
    @property
    def evals(self) -> int:
        return len(self._points)

    @property
    def remaining(self) -> int | None:
        return None if self.max_evals is None else max(0, self.max_evals - self.evals)

    @property
    def exhausted(self) -> bool:
        return self.max_evals is not None and self.evals >= self.max_evals

    @property
    def points(self) -> list[Point]:
        """Every scored spec, in the order first scored."""
        return list(self._points.values())

    def point(self, spec: Spec) -> Point | None:
        return self._points.get(spec)

    def evaluate(self, specs: Iterable[Spec]) -> list[Point]:
        """Score ``specs`` (one batch); returns their points in order, without duplicates.

        Specs scored before are returned without being scored again. When ``max_evals`` runs out,
        the specs beyond it are left out of the returned list (``exhausted`` turns true).
        """
        order: list[Spec] = []
        seen: set[Spec] = set()
        for s in specs:
            if s not in seen:
                seen.add(s)
                order.append(s)
        new = [s for s in order if s not in self._points]
        if self.remaining is not None and len(new) > self.remaining:
            dropped = set(new[self.remaining:])
            new = new[: self.remaining]
            order = [s for s in order if s not in dropped]
            self.info["stopped"] = "max_evals"
        if new:
            scores = list(self._evaluate_many(new))
            if len(scores) != len(new):
                raise ConfigError(f"evaluate returned {len(scores)} scores for {len(new)} specs")
            for s, a in zip(new, scores, strict=True):
                a = float(a)
                if not math.isfinite(a):
                    raise ConfigError(f"evaluate returned {a} for {s!r}; scores must be finite")
                self._points[s] = Point(s, a, dict(self.costs(s)))
                self._best = max(self._best, a)
            if self._progress is not None:
                self._progress(Progress(self.evals, self.max_evals, self._best))
        return [self._points[s] for s in order]

    # -- helpers strategies share -------------------------------------------------------------
    def randint(self, n: int) -> int:
        """Uniform integer in ``0..n-1`` from the problem's generator."""
        return int(torch.randint(n, (), generator=self.generator))

    def randperm(self, n: int) -> list[int]:
        return torch.randperm(n, generator=self.generator).tolist()

    def rand(self) -> float:
        return float(torch.rand((), generator=self.generator, dtype=torch.float64))

    def rank_key(self, p: Point) -> tuple[float, float, str]:
        """Sort key, best first: higher accuracy, then lower cost, then a fixed order of specs."""
        return (-p.accuracy, p.cost(self.metric), repr(p.spec))


class Strategy:
    """Base of search strategies: a frozen dataclass of options with ``run(problem)``.

    Subclasses register with :func:`register_strategy` and are then reachable by name.
    """

    name: ClassVar[str] = ""

    def run(self, problem: Problem) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: make a :class:`Strategy` subclass available as ``strategy=name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return deco


def list_strategies() -> list[str]:
    """Names of the registered strategies, sorted."""
    return sorted(_STRATEGIES)


def make_strategy(strategy: str | Strategy, **options: Any) -> Strategy:
    """A strategy object from a name and options, or the object itself."""
    if isinstance(strategy, Strategy):
        if options:
            raise ConfigError(f"options {sorted(options)} were given with a {type(strategy).__name__} "
                              "object; set them on the object instead")
        return strategy
    if not isinstance(strategy, str) or strategy not in _STRATEGIES:
        raise ConfigError(f"unknown search strategy {strategy!r}; known: {', '.join(list_strategies())}")
    cls = _STRATEGIES[strategy]
    fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(f"strategy {strategy!r} has no option {unknown[0]!r}; its options are "
                          f"{', '.join(fields) or 'none'}")
    return cls(**options)
