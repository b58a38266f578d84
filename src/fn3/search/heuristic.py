"""The paper's fast heuristic search (FN3, Algorithm 1): a beam of partial solutions and a sliding window.

A *block* is ``(axis, block index)``; the first ``axis.min_blocks`` blocks of every axis are never
removable. A *solution* is the set of blocks removed so far (the sub-model keeps every other block).
The window ``W`` holds the removable blocks whose rank lies in the band ``(P, P + dP]`` of their axis
(rank ``r = j + 1`` of ``M`` blocks, as a fraction ``r / M``), starting at ``P = 1 - dP``, i.e. the
least important blocks, the tails of every axis. Each round:

1. every one of the ``K`` solutions draws ``C`` distinct candidate blocks from the window (blocks it
   has not removed yet) and adds ``solution + {block}`` to the pool;
2. the pool is scored in one batch and its ``K`` most accurate members become the new solutions;
3. when the current band is mostly used up (on average over the solutions at least ``fill`` of its
   blocks removed) the window slides by ``dP`` toward the most important blocks.

The search ends when no solution can remove anything more: every solution then is the smallest
sub-model. Inside the window blocks leave in any order, so solutions may keep non-prefix sets
(channel 13 without channel 12), which :class:`~fn3.Spec` and the nested layers support.

Where METHOD.md (our reading of the paper) leaves a choice open, fn3 takes these defaults and says
so: the window's lower edge slides but blocks of earlier bands that a solution has not removed stay
removable (otherwise a solution could never get below the blocks it skipped); "mostly used up" is
``fill = 0.5``; ties in accuracy go to the cheaper sub-model. The number of scored sub-models is at
most ``K * C`` per round and one round per removable block: O(K C N), against O(2^N) for exhaustive.

Example:
    >>> from fn3.spec import Axis, Space
    >>> from fn3.search.problem import Problem
    >>> space = Space([Axis("a", "neurons", 8), Axis("b", "neurons", 8)])
    >>> units = lambda s: float(len(s.kept("a")) + len(s.kept("b")))
    >>> prob = Problem(space, lambda specs: [units(s) / 16 for s in specs], {"units": units}, "units")
    >>> Heuristic(beam=2, candidates=3, step=0.25).run(prob)
    >>> prob.point(space.smallest()) is not None
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from fn3.errors import ConfigError
from fn3.search.problem import Problem, Strategy, register_strategy
from fn3.spec import Space, Spec

__all__ = ["Heuristic", "window_index"]

Block = tuple[str, int]


def window_index(num_blocks: int, block: int, step: float) -> int:
    """Band (1, 2, ...) of block ``block`` of an axis of ``num_blocks``: 1 holds the tail blocks.

    Block ``j`` (rank ``r = j + 1``) is in band ``n`` when ``r / M`` lies in ``(1 - n dP, 1 - (n-1) dP]``.

    Example:
        >>> [window_index(8, j, 0.25) for j in range(8)]
        [4, 4, 3, 3, 2, 2, 1, 1]
    """
    dp = Fraction(step).limit_denominator(10**6)  # exact: 0.1 must mean 1/10, not 0.1000000000000000055
    return math.floor(Fraction(num_blocks - (block + 1), num_blocks) / dp) + 1


@register_strategy("heuristic")
@dataclass(frozen=True)
class Heuristic(Strategy):
    """FN3's Algorithm 1 (see the module docstring).

    Args:
        beam: K, the number of partial solutions kept after each round.
        candidates: C, candidate blocks drawn per solution per round.
        step: dP, the window's width and slide, as a fraction of each axis.
        fill: slide once the solutions have removed (on average) this fraction of the current band.
        stop_at_budget: with budgets, stop once every solution meets them.
        rank: how the pool is ranked. ``"accuracy"`` (the paper): the K most accurate candidates
            survive. ``"efficiency"`` (an fn3 option): the K that lose the least accuracy per unit of
            cost saved relative to their parent (cost: the search metric plus budget metrics, each
            relative to the full model), which follows cheap-for-their-cost removals first when blocks
            of different axes cost very different amounts.

    Example:
        >>> Heuristic(beam=4, candidates=8, step=0.1).beam
        4
    """

    beam: int = 4
    candidates: int = 8
    step: float = 0.1
    fill: float = 0.5
    stop_at_budget: bool = True
    rank: str = "accuracy"

    def __post_init__(self) -> None:
        if self.rank not in ("accuracy", "efficiency"):
            raise ConfigError(f"heuristic: rank must be accuracy or efficiency, got {self.rank!r}")
        if self.beam < 1 or self.candidates < 1:
            raise ConfigError(f"heuristic: beam and candidates must be >= 1 (got {self.beam}, "
                              f"{self.candidates})")
        if not 0.0 < self.step <= 1.0:
            raise ConfigError(f"heuristic: step must be in (0, 1], got {self.step}")
        if not 0.0 < self.fill <= 1.0:
            raise ConfigError(f"heuristic: fill must be in (0, 1], got {self.fill}")

    def run(self, problem: Problem) -> None:
        space = problem.space
        bands: dict[Block, int] = {(a.name, j): window_index(a.num_blocks, j, self.step)
                                   for a in space for j in range(a.min_blocks, a.num_blocks)}
        if not bands:
            problem.evaluate([space.largest()])
            return
        order = {b: i for i, b in enumerate(bands)}  # fixed block order: draws depend on the seed only
        last_band = max(bands.values())
        band = 1
        solutions: list[frozenset[Block]] = [frozenset()]
        rounds = 0
        while not problem.exhausted:
            # Slide while the current band is empty or mostly used up (and there is a next band).
            while band < last_band and self._used(solutions, bands, band) >= self.fill:
                band += 1
            window = sorted((b for b, n in bands.items() if n <= band), key=order.__getitem__)
            pool: list[tuple[frozenset[Block], frozenset[Block]]] = []  # (candidate, its parent)
            for t in solutions:
                avail = [b for b in window if b not in t]
                for i in problem.randperm(len(avail))[: self.candidates]:
                    pool.append((t | {avail[i]}, t))
            if not pool:
                if band >= last_band:
                    break  # W is empty for every solution: all reached the smallest sub-model
                band += 1
                continue
            specs: dict[Spec, tuple[frozenset[Block], frozenset[Block]]] = {}
            for t, parent in pool:
                specs.setdefault(_spec(space, t), (t, parent))
            points = problem.evaluate(list(specs))
            if not points:
                break
            rounds += 1
            if self.rank == "accuracy":
                ranked = sorted(points, key=problem.rank_key)[: self.beam]
            else:
                ranked = sorted(points, key=lambda p: (self._loss_per_cost(problem, p, specs[p.spec][1]),
                                                       *problem.rank_key(p)))[: self.beam]
            solutions = [specs[p.spec][0] for p in ranked]
            if self.stop_at_budget and problem.budgets and all(problem.feasible(p.spec) for p in ranked):
                problem.info["stopped"] = "budget met"
                break
        problem.info["rounds"] = rounds

    @staticmethod
    def _loss_per_cost(problem: Problem, p, parent: frozenset[Block]) -> float:
        ps = _spec(problem.space, parent)
        pp = problem.point(ps)
        if pp is None:  # the parent was not scored (max_evals ran out): fall back to accuracy
            return -p.accuracy
        saved = problem.weighted_cost(ps) - problem.weighted_cost(p.spec)
        loss = pp.accuracy - p.accuracy
        return loss / saved if saved > 0 else (math.inf if loss > 0 else -math.inf)

    @staticmethod
    def _used(solutions: list[frozenset[Block]], bands: dict[Block, int], band: int) -> float:
        members = [b for b, n in bands.items() if n == band]
        if not members:
            return 1.0  # an empty band is trivially used up
        return sum(len(t.intersection(members)) for t in solutions) / (len(members) * len(solutions))


def _spec(space: Space, removed: frozenset[Block]) -> Spec:
    """The sub-model keeping every block not in ``removed``."""
    return Spec({a.name: [j for j in range(a.num_blocks) if (a.name, j) not in removed] for a in space})
