"""The float sub-model a latency back-end runs, and reference specs spread from small to large.

:func:`float_submodel` copies a nested model and replaces every nested layer by a plain
``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` holding its active slice (and each ``NestedStage``
by an ``nn.Sequential`` of its kept blocks), without quantizers: on a float back-end this is what a
sub-model costs. (:func:`fn3.export.export` builds the deployable model with integer weight codes;
its modules dequantize on the fly, which is not what a float latency table measures.)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fn3.nest import set_active
from fn3.nn.base import select
from fn3.nn.blocks import NestedStage
from fn3.nn.conv import NestedConv2d
from fn3.nn.linear import NestedLinear
from fn3.nn.norm import NestedBatchNorm2d
from fn3.spec import Space, Spec


def _plain(m: nn.Module) -> nn.Module | None:
    if isinstance(m, NestedConv2d):
        w, b = m.active_weight()  # (out, in / groups, k, k), fake-quantized values: still float
        g = m.active_groups()
        new = nn.Conv2d(w.shape[1] * g, w.shape[0], m.kernel_size, m.stride, m.padding, groups=g,
                        bias=b is not None)
    elif isinstance(m, NestedLinear):
        w, b = m.active_weight()
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    elif isinstance(m, NestedBatchNorm2d):
        sel = select(m.axis, m.num_features, m.per_unit)
        bn = nn.BatchNorm2d(sel.n, eps=m.eps)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, attr).copy_(sel.take(getattr(m, attr), 0))
        return bn
    elif isinstance(m, NestedStage):
        return nn.Sequential(*[m.blocks[i] for i in m.active_blocks()])
    else:
        return None
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new


@torch.no_grad()
def float_submodel(model: nn.Module, spec: Spec) -> nn.Module:
    """A plain float copy of sub-model ``spec`` (eval mode); ``model`` itself is not changed."""
    sub = copy.deepcopy(model).eval()
    set_active(sub, spec)
    for name, m in reversed(list(sub.named_modules())):  # children before their parents
        new = _plain(m)
        if new is not None:
            parent, _, leaf = name.rpartition(".")
            setattr(sub.get_submodule(parent) if parent else sub, leaf, new.eval())
    return sub


def spread_specs(space: Space, n: int, seed: int) -> list[Spec]:
    """``n`` distinct prefix specs from small to large: the smallest, the largest, then random ones
    with a random overall kept fraction per spec, jittered per axis (``space.sample`` alone draws
    every axis independently, which concentrates the costs around the middle)."""
    gen = torch.Generator().manual_seed(seed)
    specs = [space.smallest(), space.largest()][:n]
    for _ in range(100 * n):
        if len(specs) >= n:
            break
        f = 0.15 + 0.85 * float(torch.rand((), generator=gen))
        blocks = {}
        for ax in space:
            u = min(1.0, max(0.0, f + 0.5 * (float(torch.rand((), generator=gen)) - 0.5)))
            blocks[ax.name] = max(ax.min_blocks, min(ax.num_blocks, round(u * ax.num_blocks)))
        spec = space.prefix(blocks)
        if spec not in specs:
            specs.append(spec)
    return specs
