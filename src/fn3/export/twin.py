"""`float_twin`: the float sub-model of the same spec as an exported quantized one, to compare against.

A quantized sub-model should be judged against the network a user would otherwise ship: the same
kept channels, blocks and groups, in float32, without quantizers. :func:`float_twin` builds exactly
that from an exported model: each quantized layer becomes the ``nn.Conv2d`` / ``nn.Linear`` of its
dequantized weight, and each activation quantizer the float operation it stands in for: ``nn.ReLU``
for an unsigned quantizer (which clips at 0 where the float network has its ReLU; the export leaves
out a ReLU right before it) and ``nn.Identity`` for a signed one. The twin then has the layer
structure of ``fn3.export(float_model, spec)`` for a float model with the same channel and depth axes.
Its outputs differ from the quantized model's (no quantization): it is a baseline for speed, not for
values.

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> from fn3.export.twin import float_twin
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> q = export(net, fn3.space(net).uniform({"channels": 0.5, "bits": 4}))
    >>> f = float_twin(q)
    >>> sorted({type(m).__name__ for m in f.modules()} - {type(m).__name__ for m in q.modules()})
    ['Conv2d', 'Linear']
    >>> f(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fn3.export.qmodules import ActQuant, QuantConv2d, QuantLinear

__all__ = ["float_twin"]


def _float_layer(m: nn.Module) -> nn.Module | None:
    """The float module standing in for ``m``, or ``None`` to keep ``m`` (and look inside it)."""
    if isinstance(m, QuantConv2d):
        conv = nn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            groups=m.groups,
            bias=m.bias is not None,
        )
    elif isinstance(m, QuantLinear):
        conv = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    elif isinstance(m, ActQuant):
        return nn.Identity() if m.signed else nn.ReLU()
    else:
        return None
    conv.weight.copy_(m.weight())  # (out, in / groups, k, k) or (out, in): dequantized once
    if m.bias is not None:
        conv.bias.copy_(m.bias)
    return conv


def _replace(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        new = _float_layer(child)
        if new is None:
            _replace(child)
        else:
            setattr(module, name, new)


@torch.no_grad()
def float_twin(exported: nn.Module) -> nn.Module:
    """A float32 copy of ``exported`` without quantization (see the module doc); eval mode.

    ``exported`` (an :class:`~fn3.export.ExportedModel`, or any module holding fn3's quantized
    layers) is not changed. The copy keeps ``meta`` when ``exported`` has one.
    """
    twin = copy.deepcopy(exported)
    root = _float_layer(twin)
    if root is not None:
        return root.eval().requires_grad_(False)
    _replace(twin)
    return twin.eval().requires_grad_(False)
