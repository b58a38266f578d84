"""Baseline strategies the heuristic is measured against: greedy, uniform, random, exhaustive.

All of them visit *prefix* specs only (the first k blocks of every axis, what ordered dropout
trains); the heuristic is the one that may take blocks out of order.

* :class:`Greedy` - from the full model, remove one tail block at a time: of all single removals,
  the one that loses the least accuracy per unit of cost saved.
* :class:`Uniform` - the same kept fraction in every axis of a kind (slimmable networks), over a grid
  of fractions per kind (bit counts for bits).
* :class:`RandomSearch` - uniformly random prefix specs.
* :class:`Exhaustive` - every prefix spec; refuses spaces above ``limit``.

Example:
    >>> from fn3.spec import Axis, Space
    >>> from fn3.search.problem import Problem
    >>> space = Space([Axis("a", "neurons", 4), Axis("b", "neurons", 4)])
    >>> units = lambda s: float(len(s.kept("a")) + len(s.kept("b")))
    >>> prob = Problem(space, lambda specs: [units(s) / 8 for s in specs], {"units": units}, "units")
    >>> Exhaustive().run(prob)
    >>> prob.evals
    16
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from fn3.errors import ConfigError
from fn3.search.problem import Problem, Strategy, register_strategy
from fn3.spec import Space, Spec

__all__ = ["Exhaustive", "Greedy", "RandomSearch", "Uniform", "count_prefix_specs"]


def count_prefix_specs(space: Space) -> int:
    """Number of distinct prefix specs: the product of each axis's number of choices."""
    return math.prod(a.num_blocks - a.min_blocks + 1 for a in space)


@register_strategy("greedy")
@dataclass(frozen=True)
class Greedy(Strategy):
    """One tail block at a time, the removal losing least accuracy per unit of cost saved.

    Cost saved is the search metric plus any budget metrics, each relative to the full model, so
    under several budgets a removal that saves on any of them counts. Removals that save nothing
    are never taken. Each round scores every single removal (about one per axis).

    Args:
        stop_at_budget: with budgets, stop at the first sub-model meeting them.
    """

    stop_at_budget: bool = True

    def run(self, problem: Problem) -> None:
        space = problem.space
        current = space.largest()
        (best,) = problem.evaluate([current]) or [None]
        while best is not None and not problem.exhausted:
            if self.stop_at_budget and problem.budgets and problem.feasible(current):
                problem.info["stopped"] = "budget met"
                break
            cands = [current.with_blocks(a.name, current.kept(a.name)[:-1]) for a in space
                     if len(current.kept(a.name)) > a.min_blocks]
            here = problem.weighted_cost(current)
            cands = [c for c in cands if problem.weighted_cost(c) < here]
            if not cands:
                break
            points = problem.evaluate(cands)
            if not points:
                break

            def score(p, acc=best.accuracy, here=here):  # accuracy lost per unit of cost saved
                return ((acc - p.accuracy) / (here - problem.weighted_cost(p.spec)),
                        p.cost(problem.metric), repr(p.spec))

            best = min(points, key=score)
            current = best.spec


@register_strategy("uniform")
@dataclass(frozen=True)
class Uniform(Strategy):
    """The same kept fraction in every axis of a kind, over a grid (bits: every bit count).

    Args:
        levels: fractions ``k / levels`` per non-bit kind; ``None``: one per block of the
            finest axis of that kind (e.g. 16 for 16-block neuron axes).

    With several kinds the grid is their product. Above ``max_evals``, sub-models evenly spread over
    the grid's cost range are scored.
    """

    levels: int | None = None

    def __post_init__(self) -> None:
        if self.levels is not None and self.levels < 1:
            raise ConfigError(f"uniform: levels must be >= 1, got {self.levels}")

    def run(self, problem: Problem) -> None:
        specs = uniform_grid(problem.space, self.levels)
        specs.sort(key=lambda s: (problem.cost(s), repr(s)))
        n = problem.remaining
        if n is not None and len(specs) > n:
            # Evenly spread over the cost-sorted grid, both ends included.
            idx = sorted({round(i * (len(specs) - 1) / max(n - 1, 1)) for i in range(n)})
            specs = [specs[i] for i in idx]
        problem.evaluate(specs)


def uniform_grid(space: Space, levels: int | None = None) -> list[Spec]:
    """Distinct uniform specs: a product over kinds of kept fractions (bit counts for bits)."""
    choices: list[list[tuple[str, float]]] = []
    for kind in space.kinds():
        axes = space.of_kind(kind)
        if kind == "bits":
            lo = min(a.min_size for a in axes)
            choices.append([(kind, b) for b in range(max(a.size for a in axes), lo - 1, -1)])
        else:
            n = levels or max(a.num_blocks for a in axes)
            choices.append([(kind, k / n) for k in range(n, 0, -1)])
    out: dict[Spec, None] = {}
    for combo in itertools.product(*choices):
        out.setdefault(space.uniform(dict(combo)), None)
    return list(out)


@register_strategy("random")
@dataclass(frozen=True)
class RandomSearch(Strategy):
    """Uniformly random prefix specs (each axis's kept count uniform), drawn from the seeded generator.

    Args:
        count: how many distinct specs to score (``max_evals`` bounds it too).
        feasible_only: with budgets, draw only specs meeting them (bounded retries).
        retries: draws allowed per wanted spec before giving up (duplicates and infeasible ones).
    """

    count: int = 100
    feasible_only: bool = True
    retries: int = 20

    def __post_init__(self) -> None:
        if self.count < 1 or self.retries < 1:
            raise ConfigError(f"random: count and retries must be >= 1 (got {self.count}, {self.retries})")

    def run(self, problem: Problem) -> None:
        want = self.count if problem.remaining is None else min(self.count, problem.remaining)
        specs: dict[Spec, None] = {}
        for _ in range(want * self.retries):
            if len(specs) >= want:
                break
            s = random_prefix(problem)
            if self.feasible_only and problem.budgets and not problem.feasible(s):
                continue
            specs.setdefault(s, None)
        problem.evaluate(list(specs))


def random_prefix(problem: Problem) -> Spec:
    """One uniformly random prefix spec: per axis a kept count uniform in min..max blocks."""
    return problem.space.prefix({a.name: a.min_blocks + problem.randint(a.num_blocks - a.min_blocks + 1)
                                 for a in problem.space})


@register_strategy("exhaustive")
@dataclass(frozen=True)
class Exhaustive(Strategy):
    """Every prefix spec (within budget, if given), scored in batches.

    Args:
        limit: refuse spaces with more prefix specs than this (ConfigError naming the count).
        batch: specs scored per batch; consecutive specs differ in the last axes, so a batch shares
            most of its early layers (see :class:`~fn3.search.Evaluator`).
    """

    limit: int = 4096
    batch: int = 64

    def __post_init__(self) -> None:
        if self.limit < 1 or self.batch < 1:
            raise ConfigError(f"exhaustive: limit and batch must be >= 1 (got {self.limit}, {self.batch})")

    def run(self, problem: Problem) -> None:
        space = problem.space
        n = count_prefix_specs(space)
        if n > self.limit:
            raise ConfigError(f"exhaustive search would score {n:,} sub-models, above its limit of "
                              f"{self.limit:,}; use the heuristic, search fewer axes (axes=...), or "
                              "raise Exhaustive(limit=...)")
        ranges = [range(a.num_blocks, a.min_blocks - 1, -1) for a in space]  # largest first
        names = [a.name for a in space]
        wanted: list[Spec] = []
        for combo in itertools.product(*ranges):
            spec = space.prefix(dict(zip(names, combo, strict=True)))
            if not problem.budgets or problem.feasible(spec):
                wanted.append(spec)
        for i in range(0, len(wanted), self.batch):
            if problem.exhausted:
                break
            problem.evaluate(wanted[i : i + self.batch])
        problem.info["complete"] = all(problem.point(s) is not None for s in wanted)
