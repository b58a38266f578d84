"""`float_twin`: the float sub-model of the same spec as an exported quantized one, to compare against.

A quantized sub-model should be judged against the network a user would otherwise ship: the same
kept channels, blocks and groups, in float32, without quantizers. :func:`float_twin` builds exactly
that from an exported model: each quantized layer becomes the ``nn.Conv2d`` / ``nn.Linear`` of its
dequantized weight, and each activation quantizer the float operation it stands in for: ``nn.ReLU``
where an unsigned quantizer clips a value that can be negative (the export leaves out the ReLU right
before it), ``nn.Identity`` elsewhere (after a ReLU, or a signed quantizer). The twin then has the layer
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
    >>> [type(m).__name__ for m in q[3][0].body if not isinstance(m, torch.nn.Sequential)]
    ['BatchNorm2d', 'BatchNorm2d']
    >>> [[type(m).__name__ for m in s] for s in q[3][0].body if isinstance(s, torch.nn.Sequential)]
    [['ActQuant', 'QuantConv2d'], ['ActQuant', 'QuantConv2d']]
    >>> [[type(m).__name__ for m in s] for s in f[3][0].body if isinstance(s, torch.nn.Sequential)]
    [['Conv2d'], ['ReLU', 'Conv2d']]
    >>> f(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fn3.export.qmodules import ActQuant, QuantConv2d, QuantLinear, Residual

__all__ = ["float_twin"]


@torch.no_grad()
def _float_layer(m: nn.Module) -> nn.Module:
    """``nn.Conv2d`` / ``nn.Linear`` holding the dequantized weight of a quantized layer."""
    if isinstance(m, QuantConv2d):
        layer = nn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            groups=m.groups,
            bias=m.bias is not None,
        )
    else:
        layer = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    layer.weight.copy_(m.weight())  # (out, in / groups, k, k) or (out, in): dequantized once
    if m.bias is not None:
        layer.bias.copy_(m.bias)
    return layer


def _replace(module: nn.Module, nonneg: bool) -> bool:
    """Replace the quantized children of ``module`` in place; ``nonneg``: its input is ``>= 0``
    (after a ReLU). Returns whether its output is ``>= 0``."""
    if isinstance(module, Residual):
        _replace(module.body, nonneg)
        if module.shortcut is not None:
            _replace(module.shortcut, nonneg)
        return True
    if not isinstance(module, nn.Sequential):
        _replace_anywhere(module)
        return isinstance(module, nn.ReLU)
    for name, child in list(module.named_children()):
        if isinstance(child, ActQuant):
            # The ReLU the export left out before an unsigned quantizer, where the input can be < 0.
            if child.signed or nonneg:
                del module._modules[name]  # nothing stands in for it
                continue
            new, nonneg = nn.ReLU(), True
        elif isinstance(child, (QuantConv2d, QuantLinear)):
            new, nonneg = _float_layer(child), False
        else:
            new, nonneg = child, _replace(child, nonneg)
        setattr(module, name, new)
    return nonneg


def _replace_anywhere(module: nn.Module) -> None:
    """Replace the quantizers below a module whose forward fn3 does not know (a network of your own,
    extracted): it may apply a ReLU in its ``forward`` that no module shows, so an unsigned quantizer
    becomes a ``nn.ReLU`` (its clip at 0, without the clip at ``alpha``: one pass, a no-op after a
    ReLU) and a signed one ``nn.Identity``."""
    for name, child in list(module.named_children()):
        if isinstance(child, ActQuant):
            setattr(module, name, nn.Identity() if child.signed else nn.ReLU())
        elif isinstance(child, (QuantConv2d, QuantLinear)):
            setattr(module, name, _float_layer(child))
        elif isinstance(child, (nn.Sequential, Residual)):
            _replace(child, False)
        else:
            _replace_anywhere(child)


@torch.no_grad()
def float_twin(exported: nn.Module) -> nn.Module:
    """A float32 copy of ``exported`` without quantization (see the module doc); eval mode.

    ``exported`` (an :class:`~fn3.export.ExportedModel`, or any module holding fn3's quantized
    layers or quantizers, e.g. :func:`fn3.export.extract_submodel` of a network of your own) is not
    changed. The copy keeps ``meta`` when ``exported`` has one.
    """
    if isinstance(exported, (QuantConv2d, QuantLinear)):
        return _float_layer(exported).eval().requires_grad_(False)
    twin = copy.deepcopy(exported)
    _replace(nn.Sequential(twin) if not isinstance(twin, (nn.Sequential, Residual)) else twin, False)
    return twin.eval().requires_grad_(False)
