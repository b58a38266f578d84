"""`search`: one trained FN3, the accuracy/cost trade-off of its sub-models, the best one per budget.

Example:
    >>> import torch, fn3
    >>> from fn3.search import search
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32, 32),
    ...                          levels=("neurons",))
    >>> space = fn3.space(model)
    >>> units = lambda spec: float(sum(spec.size(a.name, space) for a in space))
    >>> acc = lambda spec: units(spec) / 64 - 0.001 * len(spec.kept("fc2.width"))  # a toy score
    >>> res = search(model, acc, "units", "heuristic", cost_fns={"units": units}, seed=0,
    ...              beam=2, candidates=4)
    >>> res.best_under(40).cost("units") <= 40
    True
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fn3.errors import ConfigError
from fn3.nest import space as model_space
from fn3.search.budget import Budget, check_budgets, normalize_budgets
from fn3.search.problem import Problem, Progress, Strategy, make_strategy
from fn3.search.result import SearchResult
from fn3.spec import KINDS, Axis, Space, Spec

__all__ = ["cost_functions", "restrict", "search"]

CostFn = Callable[[Spec], float]


def restrict(space: Space, axes: str | Iterable[str] | None) -> Space:
    """The space with only ``axes`` free; the others are frozen at full size (one choice).

    ``axes`` holds axis names, shell patterns (``"stage*.width"``) or kinds (``"channels"``).
    """
    if axes is None:
        return space
    patterns = [axes] if isinstance(axes, str) else list(axes)
    chosen = {a.name for a in space for p in patterns if a.kind == p or fnmatch.fnmatchcase(a.name, p)}
    for p in patterns:
        if not any(a.kind == p or fnmatch.fnmatchcase(a.name, p) for a in space):
            raise ConfigError(f"axes entry {p!r} matches no axis; kinds are {', '.join(KINDS)}, "
                              f"axes are {', '.join(space.names)}")
    return Space(a if a.name in chosen else Axis(a.name, a.kind, a.size, a.step, min_size=a.size)
                 for a in space)


def cost_functions(model: nn.Module, metrics: Sequence[str], *, input_shape: Sequence[int] | None = None,
                   cost_fns: Mapping[str, CostFn] | None = None,
                   cost_options: Mapping[str, Any] | None = None) -> dict[str, CostFn]:
    """``{metric: spec -> cost}``: ``cost_fns`` entries first, the others from :func:`fn3.cost.cost`.

    ``cost_options`` go to :func:`fn3.cost.cost` (e.g. ``{"table": latency_table}`` for latency).
    """
    from fn3.cost import cost as analytic_cost

    shape = tuple(input_shape) if input_shape is not None else None
    opts = dict(cost_options or {})
    out: dict[str, CostFn] = {}
    for m in dict.fromkeys(metrics):
        if cost_fns and m in cost_fns:
            out[m] = cost_fns[m]
            continue

        def fn(spec: Spec, m: str = m) -> float:
            return float(analytic_cost(model, spec, m, input_shape=shape, **opts))

        out[m] = fn
    return out


def _batch_evaluate(evaluate: Any) -> Callable[[Sequence[Spec]], Sequence[float]]:
    many = getattr(evaluate, "evaluate_many", None)
    if callable(many):
        return many
    if callable(evaluate):
        return lambda specs: [float(evaluate(s)) for s in specs]
    raise ConfigError(f"evaluate must be a callable spec -> accuracy or an Evaluator, got "
                      f"{type(evaluate).__name__}")


def search(model: nn.Module, evaluate: Callable[[Spec], float] | Any, metric: str,
           strategy: str | Strategy = "heuristic", *, budgets: Budget | Iterable[str] | None = None,
           input_shape: tuple[int, int, int] | None = None, seed: int = 0, max_evals: int | None = None,
           axes: str | Iterable[str] | None = None, metrics: Sequence[str] = (),
           cost_fns: Mapping[str, CostFn] | None = None, cost_options: Mapping[str, Any] | None = None,
           anchors: bool = True,
           progress: Callable[[Progress], None] | None = None, **options: Any) -> SearchResult:
    """Search the sub-models of ``model`` for the best accuracy/cost trade-offs.

    Args:
        model: a trained nested model.
        evaluate: ``spec -> accuracy`` on a held-out split, or an :class:`~fn3.search.Evaluator`
            (which scores whole batches of candidates at once).
        metric: the cost metric, a name :func:`fn3.cost.cost` knows (``"flops"``, ``"bits"``, ...)
            or a key of ``cost_fns``.
        strategy: a registered name (:func:`~fn3.search.list_strategies`) or a strategy object.
        budgets: a limit on ``metric`` (``2e7``), ``{metric: limit}`` or ``["flops=20M", ...]``;
            strategies use it to focus and :attr:`SearchResult.best` picks under it.
        input_shape: ``(C, H, W)`` for pricing; default from the model's creation arguments.
        seed: seeds the strategy's own generator: the same seed gives the same points.
        max_evals: at most this many distinct sub-models are scored.
        axes: search only these axes (names, patterns or kinds); the others stay full.
        metrics: extra cost metrics to record for every point (for other fronts and budgets later).
        cost_fns: ``{metric: spec -> cost}`` overriding or extending the analytic costs.
        cost_options: options for :func:`fn3.cost.cost`, e.g. ``{"table": table}`` for latency.
        anchors: score the full and the smallest sub-model first, so the front spans the whole range
            and every feasible budget has an answer.
        progress: called after every scored batch with a :class:`~fn3.search.problem.Progress`.
        options: options of the named strategy, e.g. ``beam=4, candidates=8, step=0.1``.

    Raises:
        ConfigError: unknown strategy, option or metric.
        BudgetError: a budget below the smallest sub-model's cost (names that cost).
    """
    strat = make_strategy(strategy, **options)
    if max_evals is not None and max_evals < 1:
        raise ConfigError(f"max_evals must be >= 1, got {max_evals}")
    full = model_space(model)
    space = restrict(full, axes)
    limits = normalize_budgets(budgets, metric)
    fns = cost_functions(model, [metric, *limits, *metrics], input_shape=input_shape, cost_fns=cost_fns,
                         cost_options=cost_options)
    smallest, largest = space.smallest(), space.largest()
    min_costs = {m: float(fn(smallest)) for m, fn in fns.items()}  # also validates every metric name
    max_costs = {m: float(fn(largest)) for m, fn in fns.items()}
    check_budgets(limits, min_costs)
    problem = Problem(space, _batch_evaluate(evaluate), fns, metric, limits, max_evals,
                      torch.Generator().manual_seed(int(seed)), progress)
    start = time.perf_counter()
    if anchors:
        problem.evaluate([largest, smallest])
    if not problem.exhausted:
        strat.run(problem)
    wall = time.perf_counter() - start
    info = dict(problem.info)
    if space is not full:
        info["axes"] = [a.name for a in space if a.min_blocks < a.num_blocks]
    return SearchResult(metric=metric, points=problem.points, space=full, strategy=strat.name,
                        options=strat.options(), seed=int(seed), budgets=limits, wall_time=wall,
                        min_costs=min_costs, max_costs=max_costs, info=info)
