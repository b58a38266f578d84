"""The float sub-model a latency back-end runs, and reference specs spread from small to large.

:func:`float_submodel` is :func:`fn3.export.submodel.extract_submodel` (every nested leaf replaced by
its plain form for the spec, every block gate by its kept children: nothing but the layer protocol)
without the activation quantizers: an extracted quantized leaf is ``Sequential(quantizer, layer)``,
which becomes the layer alone, and a quantizer standing alone becomes ``nn.Identity``. The weights
stay the fake-quantized float values of the kept bits. On a float back-end this is what a sub-model
costs. (:func:`fn3.export.export` builds the deployable model with integer weight codes; its modules
dequantize on the fly, which is not what a float latency table measures.)
"""

from __future__ import annotations

import torch
from torch import nn

from fn3.export.submodel import extract_submodel
from fn3.nn.act_quant import ActQuant
from fn3.spec import Space, Spec


def _drop_quantizers(module: nn.Module) -> nn.Module:
    """``module`` without its (extracted) activation quantizers, in place; see the module docstring."""
    if isinstance(module, ActQuant):
        return nn.Identity()
    if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[0], ActQuant):
        return _drop_quantizers(module[1])  # an extracted quantized leaf: Sequential(quantizer, layer)
    for name, child in list(module.named_children()):
        new = _drop_quantizers(child)
        if new is not child:
            setattr(module, name, new)
    return module


@torch.no_grad()
def float_submodel(model: nn.Module, spec: Spec) -> nn.Module:
    """A plain float copy of sub-model ``spec`` (eval mode); ``model`` itself is not changed."""
    return _drop_quantizers(extract_submodel(model, spec)).eval()


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
