"""`float_twin`: the float sub-model of the same spec as an exported quantized one, to compare against.

A quantized sub-model should be judged against the network a user would otherwise ship: the same
kept channels, blocks and groups, in float32, without quantizers. :func:`float_twin` builds exactly
that from an exported model: each quantized layer becomes the ``nn.Conv2d`` / ``nn.Linear`` of its
dequantized weight, and each activation quantizer the float operation it stands in for. An export of
:func:`fn3.export.export` runs the model's own forward, which fn3 does not read: a random batch is run
through it once, and an unsigned quantizer that saw no negative input (it follows a ReLU) goes, as in
the float model; one that saw negative values becomes ``nn.ReLU`` (its clip at 0); a signed one goes.
In fn3's module tree (:class:`~fn3.export.ExportedModel`, what format-1/2 files load into) the
structure says it: ``nn.ReLU`` where the export left out the ReLU right before an unsigned quantizer,
nothing elsewhere. Either way the twin computes what ``fn3.export(float_model, spec)`` computes for a
float model with the same weights and the same channel and depth axes. Its outputs differ from the
quantized model's (no quantization): it is a baseline for speed, not for values.

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> from fn3.export.twin import float_twin
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> q = export(net, fn3.space(net).uniform({"channels": 0.5, "bits": 4}))
    >>> f = float_twin(q)
    >>> block, twin_block = q.module.stages[0][0], f.module.stages[0][0]
    >>> [type(m).__name__ for m in block.conv2], [type(m).__name__ for m in twin_block.conv2]
    (['ActQuant', 'Conv2d'], ['ReLU', 'Conv2d'])
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


def _replace_anywhere(module: nn.Module, nonneg: frozenset[int] | None = None) -> None:
    """Replace the quantizers below a module whose forward fn3 does not know (a network of your own,
    or a built-in model's own classes, extracted): it may apply a ReLU in its ``forward`` that no
    module shows. An unsigned quantizer whose input is ``>= 0`` (``id`` in ``nonneg``: after a ReLU)
    goes, as in the float model; any other unsigned one becomes a ``nn.ReLU`` (its clip at 0, without
    the clip at ``alpha``) and a signed one goes too. ``nonneg=None``: no probe was run; a
    ``Sequential`` or ``Residual`` below is then read as fn3's module-tree vocabulary (:func:`_replace`)."""
    for name, child in list(module.named_children()):
        if isinstance(child, ActQuant):
            setattr(module, name, nn.Identity() if child.signed or id(child) in (nonneg or ()) else nn.ReLU())
        elif isinstance(child, (QuantConv2d, QuantLinear)):
            setattr(module, name, _float_layer(child))
        elif isinstance(child, (nn.Sequential, Residual)) and nonneg is None:
            _replace(child, False)
        else:
            _replace_anywhere(child, nonneg)


@torch.no_grad()
def _nonneg_inputs(model: nn.Module, input_shape: object) -> frozenset[int]:
    """The unsigned quantizers of ``model`` whose input was ``>= 0`` in a forward of a random batch.

    A quantizer after a ReLU (or any op whose output cannot be negative) sees no negative value; one
    whose input can be negative sees thousands of them in a random batch of two, so "none seen" is
    how fn3 tells, for a forward it cannot read, where the float model has no ReLU to put back.
    """
    if not (isinstance(input_shape, (list, tuple)) and input_shape):
        return frozenset()
    seen: dict[int, bool] = {}

    def hook(mod: nn.Module, args: tuple) -> None:
        seen[id(mod)] = seen.get(id(mod), True) and bool((args[0] >= 0).all())

    quantizers = [m for m in model.modules() if isinstance(m, ActQuant) and not m.signed]
    handles = [m.register_forward_pre_hook(hook) for m in quantizers]
    try:
        x = torch.randn(2, *map(int, input_shape), generator=torch.Generator().manual_seed(0))
        model.eval()(x)
    except Exception:  # noqa: BLE001 - a forward the probe cannot run: keep every ReLU
        return frozenset()
    finally:
        for h in handles:
            h.remove()
    return frozenset(k for k, ok in seen.items() if ok)


@torch.no_grad()
def float_twin(exported: nn.Module) -> nn.Module:
    """A float32 copy of ``exported`` without quantization (see the module doc); eval mode.

    ``exported`` (an export of :func:`fn3.export.export`, an :class:`~fn3.export.ExportedModel` of a
    format-1/2 file, or any module holding fn3's quantized layers or quantizers, e.g.
    :func:`fn3.export.extract_submodel` of a network) is not changed. The copy keeps ``meta`` when
    ``exported`` has one.
    """
    from fn3.export.user import Exported

    if isinstance(exported, (QuantConv2d, QuantLinear)):
        return _float_layer(exported).eval().requires_grad_(False)
    twin = copy.deepcopy(exported)
    if isinstance(twin, Exported):  # the model's own forward: where are its inputs >= 0?
        twin.quant = {}
        _replace_anywhere(twin, _nonneg_inputs(twin, twin.meta.get("input_shape")))
        return twin.eval().requires_grad_(False)
    _replace(nn.Sequential(twin) if not isinstance(twin, (nn.Sequential, Residual)) else twin, False)
    return twin.eval().requires_grad_(False)
