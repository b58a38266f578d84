"""Generic segments (fn3.search._segments): any nested model is cut from its fx trace, and the trie
scores every spec bit-identically to one forward per spec, with and without BatchNorm re-estimation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from search_helpers import per_spec_scores
from torch import nn

import fn3
from fn3.convert.user import UserModel, build_user_model
from fn3.nest import slots
from fn3.nn import AxisSlot, NestedLinear
from fn3.search import Evaluator
from fn3.search._segments import Segment, score_tree, segments_of
from fn3.spec import Axis

sys.path.insert(0, str(Path(__file__).parents[1] / "convert"))
from archs import build  # noqa: E402  (the op-pattern architectures of the conversion tests)


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return x + F.relu(self.bn(self.conv(x)))


class _ListNet(nn.Module):
    """A stem, residual blocks in a ModuleList the forward iterates (a layers axis), a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleList([_Residual(8) for _ in range(3)])
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))


class _InPlace(nn.Module):
    """Writes into conv1's output in place while conv2's is live: no cut may sit after conv1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10, bias=False)  # the features decide the class

    def forward(self, x):
        y = self.conv1(x)
        w = self.conv2(y)
        # not idempotent: a second group of specs run from the same y would read other values
        y.mul_(-2.0).add_(1.0)
        y = F.relu(self.conv3(y) + w)
        return self.fc(y.mean((2, 3)))


class _Branchy(nn.Module):
    """A Python branch on the data: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        w1 = AxisSlot(Axis("fc1.width", "neurons", 16, step=4))
        w2 = AxisSlot(Axis("fc2.width", "neurons", 16, step=4))
        self.fc1 = NestedLinear(3 * 8 * 8, 16, out_axis=w1)
        self.fc2 = NestedLinear(16, 16, in_axis=w1, out_axis=w2)
        self.fc3 = NestedLinear(16, 10, in_axis=w2)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        if x.sum() > 0:
            x = x * 2
        return self.fc3(F.relu(self.fc2(x)))


def _nested(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A nested user model (all levels) with shared BatchNorm statistics far from any sub-model's."""
    torch.manual_seed(0)
    if name == "example_net":
        desc = UserModel("fn3.export.user:example_net", {"width": 8}, (1, 8, 8), ("channels", "bits"))
        model, shape = build_user_model(desc)[0], (1, 8, 8)
    elif name == "resnet18":
        model, x = build("resnet18")
        fn3.nest_(model, x, verbose=False)
        shape = tuple(x.shape[1:])
    else:
        model = {"listnet": _ListNet, "inplace": _InPlace, "branchy": _Branchy}[name]()
        shape = (3, 8, 8)
        if name != "branchy":  # built from nested layers already
            fn3.nest_(model, torch.randn(2, *shape), verbose=False)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
    return model.eval(), shape


def _data(model, shape, n=2, seed=0):
    """Random inputs labelled by the full model: accuracy then moves with any change of the outputs."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(16, *shape, generator=g) for _ in range(n)]
    with torch.no_grad(), fn3.active(model, None):
        return [(x, model(x).argmax(1)) for x in xs]


def _specs(space, n=12):
    """Random specs and one-block-removed children of the first (what the heuristic scores)."""
    g = torch.Generator().manual_seed(2)
    specs = [space.sample(g, dist="uniform") for _ in range(n // 2)]
    parent = specs[0]
    for a in space:
        kept = parent.kept(a.name)
        if len(kept) > a.min_blocks and len(specs) < n:
            specs.append(parent.with_blocks(a.name, kept[:-1]))
    return specs


@pytest.mark.parametrize("name", ["example_net", "resnet18", "listnet", "inplace"])
def test_generic_segments_score_like_one_forward_per_spec(name, monkeypatch):
    monkeypatch.setattr("fn3.search.evaluator.MIN_SHARED", 0.0)  # the trie for every batch of specs
    model, shape = _nested(name)
    segs = segments_of(model)
    assert segs is not None and len(segs) > 1
    assert {a for s in segs for a in s.set_axes()} == set(fn3.space(model).names)  # every axis read
    val, cal = _data(model, shape), _data(model, shape, seed=1)
    specs = _specs(fn3.space(model))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for recal in (None, cal):
        ev = Evaluator(model, val, recalibrate=recal)
        assert ev.reuse
        got = ev.evaluate_many(specs)
        assert got == Evaluator(model, val, recalibrate=recal, reuse=False).evaluate_many(specs)
        assert got == per_spec_scores(model, specs, val, recal)
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_layers_axes_become_gated_segments():
    """A dropped residual block is skipped by its own segment: the trie shares it across its axes."""
    for model in (_nested("listnet")[0], _nested("resnet18")[0],
                  fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=8)):
        gates = [s.gate for s in segments_of(model) if s.gate is not None]
        depth = [a.name for a in fn3.space(model) if a.kind == "layers"]
        assert gates and {a for a, _ in gates} == set(depth)


def test_untraceable_model_is_scored_spec_by_spec():
    model, shape = _nested("branchy")
    assert segments_of(model) is None
    val = _data(model, shape)
    ev = Evaluator(model, val)
    assert not ev.reuse
    specs = _specs(fn3.space(model))
    assert ev.evaluate_many(specs) == per_spec_scores(model, specs, val, None)


def test_trie_runs_each_shared_prefix_once():
    model, shape = _nested("example_net")
    segs = segments_of(model)
    calls = [0] * len(segs)

    def counted(k: int, seg: Segment) -> Segment:
        def run(x):
            calls[k] += 1
            return seg.run(x)
        return Segment(run, seg.axes, seg.modules, seg.gate)

    space = fn3.space(model)
    late = set(segs[-1].set_axes()) - {a for s in segs[:-1] for a in s.set_axes()}
    assert late  # the last segment reads an axis of its own
    axis = sorted(late)[0]
    ax = space[axis]
    full = space.largest()
    specs = [full.with_blocks(axis, tuple(range(n))) for n in range(ax.min_blocks, ax.num_blocks + 1)]
    val = _data(model, shape)
    with fn3.active(model, None):
        got = score_tree([counted(k, s) for k, s in enumerate(segs)], slots(model), specs, val, None)
    assert got == per_spec_scores(model, specs, val, None)
    batches = len(val)
    assert calls[:-1] == [batches] * (len(segs) - 1)  # the shared prefix: once
    assert calls[-1] == batches * len(specs)  # the differing segment: once per spec
    assert sum(calls) < batches * len(specs) * len(segs)


def test_the_trie_is_used_only_where_specs_share_work(monkeypatch):
    """Random specs share (almost) no prefix: scored one forward each; a parent and its
    one-block-removed children (the heuristic's batches) share most of theirs: the trie."""
    import fn3.search.evaluator as evaluator
    from fn3.search._segments import shared_fraction

    model, shape = _nested("resnet18")
    space, val = fn3.space(model), _data(model, shape)
    g = torch.Generator().manual_seed(5)
    random = [space.sample(g, dist="uniform") for _ in range(8)]
    parent = space.largest()
    children = [parent.with_blocks(a.name, parent.kept(a.name)[:-1]) for a in space if a.num_blocks > 1]
    children = children[:: max(1, len(children) // 12)]  # spread over the axes, as the heuristic's
    segs = segments_of(model)
    assert shared_fraction(segs, random) < evaluator.MIN_SHARED <= shared_fraction(segs, children)
    calls = []
    real = evaluator.score_tree
    monkeypatch.setattr(evaluator, "score_tree", lambda *a, **k: calls.append(1) or real(*a, **k))
    ev = Evaluator(model, val)
    ev.evaluate_many(random)
    assert calls == []
    ev.evaluate_many(children)
    assert calls == [1]
