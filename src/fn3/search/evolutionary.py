"""Evolutionary search over prefix specs (as Once-for-All searches its sub-networks), bounded retries.

A genome is the number of kept blocks per axis. Each generation breeds ``population`` new children,
each the uniform crossover of two tournament-selected parents (probability ``crossover``) or a copy
of one, then mutated (each axis re-drawn with probability ``mutation``). Children that break the
budget or were scored before are rejected, at most ``retries`` draws per wanted child, so a tight
budget ends the search early instead of looping forever.

Selection: under budgets, the most accurate survive (every member meets them). Without budgets the
search targets the whole front: NSGA-II order (non-dominated rank over (cost, accuracy), then
crowding distance), so cheap and accurate sub-models both survive.

Example:
    >>> from fn3.spec import Axis, Space
    >>> from fn3.search.problem import Problem
    >>> space = Space([Axis("a", "neurons", 8), Axis("b", "neurons", 8)])
    >>> units = lambda s: float(len(s.kept("a")) + len(s.kept("b")))
    >>> prob = Problem(space, lambda specs: [units(s) / 16 for s in specs], {"units": units}, "units",
    ...                max_evals=30)
    >>> Evolutionary(population=6, generations=4).run(prob)
    >>> prob.evals <= 30
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fn3.errors import ConfigError
from fn3.search.baselines import random_prefix
from fn3.search.pareto import Point
from fn3.search.problem import Problem, Strategy, register_strategy
from fn3.spec import Spec

__all__ = ["Evolutionary", "nsga_order"]


@register_strategy("evolutionary")
@dataclass(frozen=True)
class Evolutionary(Strategy):
    """Mutation + crossover over prefix specs, under the budget, with bounded retries.

    Args:
        population: sub-models kept (and children bred) per generation.
        generations: number of generations after the initial population.
        mutation: probability that a child's axis is re-drawn uniformly.
        crossover: probability that a child mixes two parents (else it mutates one).
        tournament: parents are the best of this many random members.
        retries: draws allowed per wanted child (rejections: over budget or already scored).
    """

    population: int = 16
    generations: int = 10
    mutation: float = 0.2
    crossover: float = 0.5
    tournament: int = 2
    retries: int = 20

    def __post_init__(self) -> None:
        if self.population < 2 or self.generations < 0 or self.tournament < 1 or self.retries < 1:
            raise ConfigError("evolutionary: need population >= 2, generations >= 0, tournament >= 1, "
                              f"retries >= 1 (got {self.population}, {self.generations}, "
                              f"{self.tournament}, {self.retries})")
        for name in ("mutation", "crossover"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"evolutionary: {name} must be in [0, 1], got {getattr(self, name)}")

    def run(self, problem: Problem) -> None:
        space = problem.space
        init: dict[Spec, None] = {}
        for _ in range(self.population * self.retries):
            if len(init) >= self.population:
                break
            s = random_prefix(problem)
            if problem.feasible(s):
                init.setdefault(s, None)
        if not init and problem.feasible(space.smallest()):
            init[space.smallest()] = None
        pop = self._survivors(problem, problem.evaluate(list(init)))
        gens = 0
        for _ in range(self.generations):
            if problem.exhausted or not pop:
                break
            children: dict[Spec, None] = {}
            for _ in range(self.population * self.retries):
                if len(children) >= self.population:
                    break
                child = self._breed(problem, pop)
                if child in children or problem.point(child) is not None or not problem.feasible(child):
                    continue
                children[child] = None
            if not children:
                problem.info["stopped"] = "no new children"
                break
            pop = self._survivors(problem, pop + problem.evaluate(list(children)))
            gens += 1
        problem.info["generations"] = gens

    def _survivors(self, problem: Problem, points: list[Point]) -> list[Point]:
        if problem.budgets:
            ranked = sorted(points, key=problem.rank_key)
        else:
            ranked = nsga_order(points, problem.metric, problem.rank_key)
        return ranked[: self.population]

    def _pick(self, problem: Problem, pop: Sequence[Point]) -> Point:
        # pop is ordered best first, so the lowest index among the contestants wins.
        return pop[min(problem.randint(len(pop)) for _ in range(self.tournament))]

    def _breed(self, problem: Problem, pop: Sequence[Point]) -> Spec:
        space = problem.space
        a = self._pick(problem, pop).spec
        genes = {ax.name: len(a.kept(ax.name)) for ax in space}
        if problem.rand() < self.crossover:
            b = self._pick(problem, pop).spec
            for ax in space:
                if problem.rand() < 0.5:
                    genes[ax.name] = len(b.kept(ax.name))
        for ax in space:
            if problem.rand() < self.mutation:
                genes[ax.name] = ax.min_blocks + problem.randint(ax.num_blocks - ax.min_blocks + 1)
        return space.prefix(genes)


def nsga_order(points: Sequence[Point], metric: str, tie=None) -> list[Point]:
    """Points best first: non-dominated rank over (cost, accuracy), then crowding distance (NSGA-II)."""
    remaining = list(points)
    out: list[Point] = []
    while remaining:
        front = [p for p in remaining
                 if not any(_dominates(q, p, metric) for q in remaining if q is not p)]
        ids = {id(p) for p in front}
        remaining = [p for p in remaining if id(p) not in ids]
        out += sorted(front, key=lambda p, d=_crowding(front, metric): (-d[id(p)],
                                                                        *(tie(p) if tie else ())))
    return out


def _dominates(a: Point, b: Point, metric: str) -> bool:
    ca, cb = a.cost(metric), b.cost(metric)
    return ca <= cb and a.accuracy >= b.accuracy and (ca < cb or a.accuracy > b.accuracy)


def _crowding(front: Sequence[Point], metric: str) -> dict[int, float]:
    d = {id(p): 0.0 for p in front}
    for key in (lambda p: p.cost(metric), lambda p: p.accuracy):
        srt = sorted(front, key=key)
        lo, hi = key(srt[0]), key(srt[-1])
        d[id(srt[0])] = d[id(srt[-1])] = math.inf  # the ends always survive
        if hi > lo:
            for i in range(1, len(srt) - 1):
                d[id(srt[i])] += (key(srt[i + 1]) - key(srt[i - 1])) / (hi - lo)
    return d
