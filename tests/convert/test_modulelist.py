"""Residual blocks iterated from an ``nn.ModuleList`` become a ``layers`` axis; indexed ones do not."""

from __future__ import annotations

import copy

import torch
from torch import nn

import fn3
from fn3.cost.leaves import leaf_costs
from fn3.export.submodel import extract_submodel
from fn3.nn import NestedModuleList


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class Tower(nn.Module):
    def __init__(self, iterate: bool = True, d: int = 8, n: int = 4):
        super().__init__()
        self.iterate = iterate
        self.inp, self.out = nn.Linear(6, d), nn.Linear(d, 3)
        self.blocks = nn.ModuleList(Block(d) for _ in range(n))

    def forward(self, x):
        x = self.inp(x)
        if self.iterate:
            for block in self.blocks:
                x = block(x)
        else:
            for i in range(len(self.blocks)):
                x = self.blocks[i](x)
        return self.out(x)


def test_an_iterated_module_list_gets_a_layers_axis():
    torch.manual_seed(0)
    model, x = Tower().eval(), torch.randn(5, 6)
    orig = copy.deepcopy(model)
    report = fn3.nest_(model, x, levels="neurons,layers", verbose=False)
    assert isinstance(model.blocks, NestedModuleList) and dict(report.layers) == {"blocks.depth": 4}
    space = fn3.space(model)
    with torch.no_grad():
        assert (model(x) - orig(x)).abs().max().item() <= 1e-5  # full model: the original
    spec = space.largest().with_blocks("blocks.depth", [0, 2])
    with torch.no_grad(), fn3.active(model, spec):
        ref = model(x)
        h = orig.inp(x)
        want = orig.out(orig.blocks[2](orig.blocks[0](h)))
    torch.testing.assert_close(ref, want)
    small = extract_submodel(model, spec)
    assert len(small.blocks) == 2 and (small(x) - ref).abs().max().item() <= 1e-5
    full = leaf_costs(model, space.largest(), x[:1])["flops"]
    assert leaf_costs(model, spec, x[:1])["flops"] < full
    assert fn3.cost(model, spec, "flops", input_shape=(6,)) == leaf_costs(model, spec, x[:1])["flops"]


def test_an_indexed_module_list_is_kept_whole_with_a_note():
    model, x = Tower(iterate=False).eval(), torch.randn(5, 6)
    report = fn3.nest_(model, x, levels="neurons,layers", verbose=False)
    assert type(model.blocks) is nn.ModuleList and not report.layers
    assert any("by index" in n for n in report.notes)
