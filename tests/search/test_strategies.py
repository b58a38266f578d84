"""Every strategy: meets its budgets, is reproducible, respects max_evals; exhaustive is exact;
the heuristic gets close to exhaustive at a fraction of its evaluations."""

from __future__ import annotations

import pytest
from search_helpers import prefix_specs

import fn3
import fn3.cost
from fn3.errors import BudgetError, ConfigError
from fn3.search import (
    Evolutionary,
    Exhaustive,
    Greedy,
    Heuristic,
    RandomSearch,
    Uniform,
    list_strategies,
    make_strategy,
    search,
)
from fn3.search.heuristic import window_index

ALL = ["heuristic", "greedy", "uniform", "random", "evolutionary", "exhaustive"]


def run(model, syn, strategy, **kw):
    return search(model, syn.score, "units", strategy, cost_fns={"units": syn.units}, **kw)


def test_registry():
    assert sorted(ALL) == list_strategies()
    assert isinstance(make_strategy("heuristic", beam=2), Heuristic)
    h = Heuristic(beam=4, candidates=8, step=0.1)
    assert make_strategy(h) is h
    with pytest.raises(ConfigError, match="known: evolutionary, exhaustive, greedy"):
        make_strategy("annealing")
    with pytest.raises(ConfigError, match="no option 'width'.*beam, candidates"):
        make_strategy("heuristic", width=3)
    with pytest.raises(ConfigError, match="set them on the object"):
        make_strategy(h, beam=2)
    with pytest.raises(ConfigError, match="step"):
        Heuristic(step=0.0)


@pytest.mark.parametrize("name", ALL)
def test_budgets_met_and_same_seed_same_front(tiny, name):
    model, syn = tiny
    space = fn3.space(model)
    lo, hi = syn.units(space.smallest()), syn.units(space.largest())
    limit = lo + 0.4 * (hi - lo)
    a = run(model, syn, name, budgets={"units": limit}, seed=3)
    b = run(model, syn, name, budgets={"units": limit}, seed=3)
    assert [(p.spec, p.accuracy) for p in a.front] == [(p.spec, p.accuracy) for p in b.front]
    best = a.best_under(limit)
    assert best.cost("units") <= limit and a.best is best
    for p in a.points:  # no point beats the chosen one under the budget
        assert p.cost("units") > limit or p.accuracy <= best.accuracy
    for p in a.front:
        assert not any(q.cost("units") <= p.cost("units") and q.accuracy > p.accuracy for q in a.points)


@pytest.mark.parametrize("name", ["heuristic", "greedy", "random", "evolutionary", "exhaustive"])
def test_several_budgets_at_once(medium, name):
    model, syn = medium
    space = fn3.space(model)
    fc2 = lambda s: float(s.size("fc2.width", space))  # noqa: E731
    res = search(model, syn.score, "units", name, cost_fns={"units": syn.units, "fc2": fc2},
                 budgets={"units": 0.6 * syn.units(space.largest()), "fc2": 8}, seed=0, max_evals=150)
    best = res.best_under({"units": 0.6 * syn.units(space.largest()), "fc2": 8})
    assert best.cost("units") <= 0.6 * syn.units(space.largest()) and best.cost("fc2") <= 8


@pytest.mark.parametrize("name", ALL)
def test_max_evals_bounds_every_strategy(medium, name):
    model, syn = medium
    strat = Exhaustive(limit=10_000) if name == "exhaustive" else name
    res = run(model, syn, strat, max_evals=25, seed=1)
    assert res.evals <= 25 and syn.calls == res.evals


def test_exhaustive_finds_the_true_optimum(tiny):
    model, syn = tiny
    space = fn3.space(model)
    res = run(model, syn, "exhaustive")
    truth = prefix_specs(space)
    assert res.evals == len(truth) == 16 and res.info["complete"]
    for limit in sorted({syn.units(s) for s in truth}):
        best = max(syn.score(s) for s in truth if syn.units(s) <= limit)
        assert res.best_under(limit).accuracy == best
    with pytest.raises(ConfigError, match="512 sub-models, above its limit of 100"):
        run(*_medium_model(), Exhaustive(limit=100))


def _medium_model():
    from search_helpers import Synthetic, tiny_mlp

    model = tiny_mlp(hidden=(16, 16, 16), blocks=8)
    return model, Synthetic(fn3.space(model))


def test_heuristic_close_to_exhaustive_with_few_evaluations(medium):
    model, syn = medium
    ex = run(model, syn, "exhaustive")
    h = run(model, syn, Heuristic(beam=2, candidates=4, step=0.25), seed=0)
    floor = min(p.accuracy for p in ex.points)
    hv_ex = ex.hypervolume(ref_accuracy=floor)
    hv_h = h.hypervolume(ref_accuracy=floor)
    assert hv_h >= 0.98 * hv_ex, (hv_h, hv_ex)
    assert h.evals <= 0.3 * ex.evals
    # the heuristic walks all the way down, and may keep non-prefix sets
    assert h.front[0].spec == fn3.space(model).smallest()
    for other in ("random", "uniform"):
        r = run(model, syn, other, max_evals=h.evals, seed=0)
        assert hv_h >= r.hypervolume(ref_accuracy=floor), other
    eff = run(model, syn, Heuristic(beam=2, candidates=4, step=0.25, rank="efficiency"), seed=0)
    assert eff.hypervolume(ref_accuracy=floor) >= 0.98 * hv_ex


def test_heuristic_takes_blocks_out_of_order(medium):
    model, syn = medium
    # A score that rewards keeping the last block of fc1 makes out-of-order removal worth it.
    def score(spec):
        return syn.score(spec) + (0.05 if 7 in spec.kept("fc1.width") else 0.0)

    res = search(model, score, "units", Heuristic(beam=3, candidates=6, step=0.25),
                 cost_fns={"units": syn.units})
    assert any(not p.spec.is_prefix for p in res.points)
    assert any(not p.spec.is_prefix for p in res.front)


def test_window_bands():
    assert [window_index(16, j, 0.1) for j in (15, 14, 13, 0)] == [1, 1, 2, 10]
    assert [window_index(10, j, 0.1) for j in range(10)] == list(range(10, 0, -1))


def test_greedy_keeps_prefixes_and_uniform_is_uniform(medium):
    model, syn = medium
    g = run(model, syn, Greedy())
    assert all(p.spec.is_prefix for p in g.points)
    assert g.front[0].spec == fn3.space(model).smallest()
    u = run(model, syn, Uniform())
    for p in u.points:  # every axis keeps the same number of blocks
        assert len({len(b) for _, b in p.spec}) == 1
    assert u.evals == 8


def test_random_and_evolutionary_are_bounded(medium):
    model, syn = medium
    space = fn3.space(model)
    tight = syn.units(space.smallest()) + 1.0  # only the smallest sub-model fits
    res = run(model, syn, Evolutionary(population=8, generations=50, retries=5), budgets=tight)
    assert all(p.cost("units") <= tight for p in res.points[1:])  # points[0]: the full-model anchor
    assert res.info.get("stopped") == "no new children"
    r = run(model, syn, RandomSearch(count=40), seed=2)
    assert r.evals <= 42 and all(p.spec.is_prefix for p in r.points)


def test_budget_errors(tiny):
    model, syn = tiny
    space = fn3.space(model)
    small = syn.units(space.smallest())
    msg = f"budget units=1 is below the smallest sub-model \\(units={small:g}\\)"
    with pytest.raises(BudgetError, match=msg):
        run(model, syn, "heuristic", budgets={"units": 1.0})
    res = run(model, syn, "random", anchors=False, seed=0, max_evals=3)
    with pytest.raises(BudgetError, match="below the smallest"):
        res.best_under(1.0)
    with pytest.raises(ConfigError, match="unknown metric 'speed'; known metrics: bitops"):
        search(model, syn.score, "speed")


def test_real_costs_and_axes_restriction(tiny):
    model, syn = tiny
    res = search(model, syn.score, "params", "exhaustive", axes=["fc2.width"], metrics=["flops"])
    assert res.evals == 4  # fc1 frozen at full size, fc2 has 4 choices
    assert all(p.spec.kept("fc1.width") == (0, 1, 2, 3) for p in res.points)
    assert all(p.costs["params"] == fn3.cost(model, p.spec, "params") for p in res.points)
    assert res.pareto_front("flops")
    with pytest.raises(ConfigError, match="matches no axis"):
        search(model, syn.score, "params", axes=["conv*"])
