"""Ordered dropout: the index frequencies follow the configured distribution; draws are pure."""

from __future__ import annotations

import pytest
import torch

import fn3
from fn3.sampling import blocks_from_uniform, keep_probabilities
from fn3.spec import Axis, Space

AXES = [
    Axis("a", "channels", 32, step=4, min_size=8),
    Axis("b", "bits", 8, min_size=2),
    Axis("c", "layers", 3),
]


@pytest.mark.parametrize("dist", ["geometric", "uniform"])
@pytest.mark.parametrize("rho", [0.7, 0.9])
def test_index_frequencies_match_distribution(dist, rho):
    space = Space(AXES)
    odo = fn3.OrderedDropout(space, dist=dist, rho=rho, seed=3)
    n = 6000
    counts = {a.name: torch.zeros(a.num_blocks) for a in AXES}
    for t in range(n):
        spec = odo.sample(t)
        for a in AXES:
            counts[a.name][len(spec.kept(a.name)) - 1] += 1
    for a in AXES:
        expected = torch.tensor(keep_probabilities(a, dist, rho))
        observed = counts[a.name] / n
        assert observed[: a.min_blocks - 1].sum() == 0  # the minimum is always kept
        # 4 standard errors of a proportion at n=6000 is at most ~0.026
        assert torch.allclose(observed, expected, atol=0.026), (a.name, observed, expected)


def test_geometric_keep_probability_is_rho_power():
    ax = Axis("a", "neurons", 10)
    p = torch.tensor(keep_probabilities(ax, "geometric", 0.8))
    kept = torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])  # P(block m kept) = P(k >= m)
    assert torch.allclose(kept, torch.tensor([0.8**m for m in range(10)]), atol=1e-9)


def test_inverse_cdf_edges():
    ax = Axis("a", "neurons", 10, min_size=3)
    assert blocks_from_uniform(ax, 0.0, "geometric", 0.9) == 10
    assert blocks_from_uniform(ax, 0.999999, "geometric", 0.9) == 3
    assert blocks_from_uniform(ax, 0.0, "uniform", 0.9) == 3
    assert blocks_from_uniform(ax, 0.999999, "uniform", 0.9) == 10


def test_draws_are_pure_functions_of_seed_and_step():
    space = Space(AXES)
    a = fn3.OrderedDropout(space, seed=1)
    b = fn3.OrderedDropout(space, seed=1)
    assert [a.sample(t) for t in range(50)] == [b.sample(t) for t in reversed(range(50))][::-1]
    assert [a.sample(t) for t in range(20)] != [
        fn3.OrderedDropout(space, seed=2).sample(t) for t in range(20)
    ]
    assert all(s.is_prefix for s in (a.sample(t) for t in range(20)))


def test_sandwich_has_largest_smallest_and_n_random():
    space = Space(AXES)
    specs = fn3.Sandwich(space, n=3, seed=0).step_specs(5)
    assert specs[0] == space.largest() and specs[1] == space.smallest()
    assert len(specs) == 5


def test_bad_settings():
    with pytest.raises(fn3.ConfigError, match="distribution"):
        fn3.OrderedDropout(Space(AXES), dist="normal")
    with pytest.raises(fn3.ConfigError, match="rho"):
        fn3.OrderedDropout(Space(AXES), rho=1.5)


def test_tie_kind_keeps_the_same_fraction_on_every_axis_of_a_kind():
    model = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8,
                             levels=("channels", "layers"))
    space = fn3.space(model)
    odo = fn3.OrderedDropout(space, dist="uniform", seed=3, tie="kind")
    widths = [a for a in space.of_kind("channels")]
    assert len(widths) > 1 and len({a.num_blocks for a in widths}) == 1
    seen = set()
    for step in range(40):
        spec = odo.sample(step)
        kept = {len(spec.kept(a.name)) for a in widths}
        assert len(kept) == 1  # one fraction for every channel axis this step
        seen |= kept
        assert spec == odo.sample(step)
    assert len(seen) > 3  # and it still varies from step to step
    untied = fn3.OrderedDropout(space, dist="uniform", seed=3)
    assert any(len({len(untied.sample(t).kept(a.name)) for a in widths}) > 1 for t in range(5))
    with pytest.raises(fn3.ConfigError, match="tie"):
        fn3.OrderedDropout(space, tie="layer")
