"""Evaluator: cached per spec, batched with shared prefixes, bit-identical to fn3.evaluate."""

from __future__ import annotations

import pytest
import torch
from search_helpers import per_spec_scores

import fn3
from fn3.errors import ConfigError
from fn3.search import Evaluator, Heuristic, search


def _data(c, h, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(24, c, h, h, generator=g), torch.randint(0, 10, (24,), generator=g))
            for _ in range(n)]


def _specs(space, n=6):
    g = torch.Generator().manual_seed(1)
    specs = [space.sample(g, dist="uniform") for _ in range(n)]
    # parents and their one-block-removed children, as the heuristic scores them, some non-prefix
    for s in specs[:2]:
        for a in list(space)[::5]:
            kept = s.kept(a.name)
            if len(kept) > a.min_blocks:
                specs.append(s.with_blocks(a.name, kept[:-2] + kept[-1:] if len(kept) > a.min_blocks + 1
                                           else kept[:-1]))
    return specs


@pytest.mark.parametrize("name,kw", [
    ("resnet20", dict(in_channels=3, input_size=8, levels=("channels", "layers"))),
    ("mlp", dict(in_channels=1, input_size=8, hidden=(32, 32))),
])
def test_scores_equal_plain_accuracy(name, kw):
    model = fn3.create_model(name, num_classes=10, **kw)
    for m in model.modules():  # shared statistics far from any sub-model's: recalibration matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
    space = fn3.space(model)
    val, cal = _data(kw["in_channels"], 8), _data(kw["in_channels"], 8, seed=1)
    specs = _specs(space)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for recal in (None, cal):
        ev = Evaluator(model, val, recalibrate=recal)
        assert ev.reuse
        got = ev.evaluate_many(specs)
        want = per_spec_scores(model, specs, val, recal)
        assert got == want
        assert Evaluator(model, val, recalibrate=recal, reuse=False).evaluate_many(specs) == want
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # statistics restored
    assert fn3.current_spec(model) == space.largest()


def test_cache_counts_each_spec_once():
    model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(16,))
    space = fn3.space(model)
    ev = Evaluator(model, _data(1, 8))
    a = ev(space.smallest())
    assert ev.evaluate_many([space.smallest(), space.largest(), space.largest()])[0] == a
    assert (ev.evals, ev.hits) == (2, 2) and ev.cached(space.largest()) is not None
    assert ev.evals_per_second > 0
    res = search(model, ev, "params", Heuristic(beam=2, candidates=4), max_evals=20)
    assert res.evals <= 20 and ev.evals <= 2 + res.evals  # the two anchors were already cached
    ev.clear()
    assert ev.evals == 0 and ev.cached(space.largest()) is None
    with pytest.raises(ConfigError, match="at least one validation batch"):
        Evaluator(model, [])
    with pytest.raises(ConfigError, match="pairs"):
        Evaluator(model, [torch.zeros(2, 1, 8, 8)])
