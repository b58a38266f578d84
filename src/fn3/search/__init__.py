"""Offline search: one trained FN3, the best sub-model for every budget.

``fn3.search(model, evaluate, metric, strategy)`` scores sub-models on a held-out split and returns a
:class:`SearchResult`: every scored ``(cost, accuracy, Spec)`` point, the Pareto front, and
``best_under(budget)``. Strategies, by name or as objects:

=================  ===========================================================================
``heuristic``      the paper's Algorithm 1: K solutions, C candidates, a window sliding by dP
``greedy``         one tail block at a time, least accuracy lost per unit of cost saved
``uniform``        the same kept fraction in every axis (slimmable networks)
``random``         uniformly random prefix sub-models
``evolutionary``   mutation + crossover under the budget (bounded retries)
``exhaustive``     every prefix sub-model (small spaces only)
=================  ===========================================================================

:class:`Evaluator` makes scoring fast: a cache per spec, batches of candidates that share the
layers before their first difference, and optional BatchNorm re-estimation per candidate.

Example:
    >>> import torch, fn3
    >>> from fn3.search import Evaluator, Heuristic, search
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32, 32),
    ...                          levels=("neurons",))
    >>> space = fn3.space(model)
    >>> units = lambda spec: float(sum(spec.size(a.name, space) for a in space))
    >>> val = [(torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,)))]
    >>> res = search(model, Evaluator(model, val), "units", Heuristic(beam=2, candidates=4),
    ...              cost_fns={"units": units}, max_evals=40)
    >>> res.evals <= 40 and len(res.front) >= 1
    True

The package itself is callable (``fn3.search(...)`` is :func:`search`), so ``fn3.search`` works as
both the function and the namespace of these names.
"""


from fn3._callable import make_callable
from fn3.search import baselines as _baselines  # noqa: F401  (registers strategies)
from fn3.search import evolutionary as _evolutionary  # noqa: F401
from fn3.search import heuristic as _heuristic  # noqa: F401
from fn3.search.api import cost_functions, restrict, search
from fn3.search.baselines import Exhaustive, Greedy, RandomSearch, Uniform, count_prefix_specs
from fn3.search.budget import format_number, parse_budget, parse_number
from fn3.search.evaluator import Evaluator
from fn3.search.evolutionary import Evolutionary
from fn3.search.heuristic import Heuristic
from fn3.search.pareto import Point, dominates, hypervolume, pareto_front
from fn3.search.problem import Problem, Progress, Strategy, list_strategies, make_strategy, register_strategy
from fn3.search.result import SearchResult

__all__ = [
    "Evaluator",
    "Evolutionary",
    "Exhaustive",
    "Greedy",
    "Heuristic",
    "Point",
    "Problem",
    "Progress",
    "RandomSearch",
    "SearchResult",
    "Strategy",
    "Uniform",
    "cost_functions",
    "count_prefix_specs",
    "dominates",
    "format_number",
    "hypervolume",
    "list_strategies",
    "make_strategy",
    "pareto_front",
    "parse_budget",
    "parse_number",
    "register_strategy",
    "restrict",
    "search",
]


make_callable(__name__, search)
