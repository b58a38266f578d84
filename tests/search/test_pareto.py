"""Pareto fronts and hypervolume: non-dominated, sorted, exact on hand-computed cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fn3.errors import ConfigError
from fn3.search import Point, dominates, hypervolume, pareto_front
from fn3.spec import Spec

S = Spec({"a": (0,)})


def pts(pairs):
    return [Point(S, acc, {"flops": cost, "bits": 100 - cost}) for cost, acc in pairs]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=40))
def test_front_is_non_dominated_and_covers_every_point(pairs):
    points = pts([(c, a / 20) for c, a in pairs])
    front = pareto_front(points, x="flops")
    for p in front:
        assert not any(dominates(q, p, "flops") for q in points)
    for q in points:  # every point is on the front or dominated by / equal to a front point
        assert any(f is q or dominates(f, q, "flops") or (f.cost("flops") == q.cost("flops")
                   and f.accuracy == q.accuracy) for f in front)
    costs = [p.cost("flops") for p in front]
    accs = [p.accuracy for p in front]
    assert costs == sorted(costs) and accs == sorted(accs) and len(set(costs)) == len(costs)


def test_front_over_other_pairs():
    points = pts([(10, 0.5), (20, 0.9), (30, 0.7)])
    assert [p.cost("flops") for p in pareto_front(points, x="flops")] == [10, 20]
    # bits = 100 - flops: minimising both costs keeps every point (each is best on one of them).
    assert len(pareto_front(points, x="flops", y="bits")) == 3
    with pytest.raises(ConfigError, match="not recorded"):
        pareto_front(points, x="latency")


def test_hypervolume_by_hand():
    points = pts([(10, 0.5), (20, 0.9), (30, 0.7)])  # (30, 0.7) is dominated
    # normalised over 0..40: 0.5 from 0.25 to 0.5, 0.9 from 0.5 to 1
    assert hypervolume(points, 40, metric="flops") == pytest.approx(0.25 * 0.5 + 0.5 * 0.9)
    # over 10..40 with an accuracy floor of 0.5
    assert hypervolume(points, 40, metric="flops", min_cost=10, ref_accuracy=0.5) == pytest.approx(
        (2 / 3) * 0.4)
    assert hypervolume([], 40) == 0.0
    with pytest.raises(ConfigError, match="ref_cost"):
        hypervolume(points, 5, metric="flops", min_cost=10)
