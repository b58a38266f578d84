"""`extract_submodel(model, spec)`: copy the model, replace each nested leaf by its extracted form.

This is export as Once-for-All's ``get_active_subnet()`` does it, and it needs nothing but the
nested-leaf protocol (:mod:`fn3.nn.protocol`): the copy keeps the model's own classes and its own
``forward`` (a user's forward survives); every nested leaf becomes its plain torch form for the spec
(``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` / ``nn.LayerNorm`` of the kept sizes, a quantized
layer's weight fake-quantized to its kept bits, its activation quantizer pinned to its kept bits),
and every block gate keeps only its kept children. The original model is not changed.

Example:
    >>> import torch, fn3
    >>> from fn3.export.submodel import extract_submodel
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> spec = fn3.space(net).uniform({"channels": 0.5, "layers": 0.34, "bits": 4})
    >>> small = extract_submodel(net, spec)
    >>> x = torch.randn(2, 3, 32, 32)
    >>> with torch.no_grad(), fn3.active(net, spec):
    ...     ref = net(x)
    >>> bool((small(x) - ref).abs().max() <= 1e-5), len(fn3.space(small))
    (True, 0)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fn3._cache import forget
from fn3.nest import set_active, space
from fn3.nn.protocol import QuantWeight, is_gate, is_leaf
from fn3.spec import Spec

__all__ = ["extract_coded", "extract_submodel"]



def _extract(module: nn.Module, skipped: set[int], path: str = "", coded: dict | None = None) -> nn.Module:
    """``module`` with every nested leaf below it extracted, children first (in place).

    ``coded`` (if given) collects, for every quantized leaf, ``id(extracted layer) -> (the leaf's
    path in the nested model, its QuantWeight)``: the coding of the extracted weight, found by the
    module itself since extraction renames paths (a gate's ``blocks`` list disappears).
    """
    if is_leaf(module):
        q = module.fn3_quant_weight() if coded is not None and hasattr(module, "fn3_quant_weight") else None
        new = module.extract()
        if q is not None:  # the layer is the extracted form, or its last child after the act quantizer
            layer = new[-1] if isinstance(new, nn.Sequential) else new
            coded[id(layer)] = (f"{path}.weight" if path else "weight", q)
        return new
    if is_gate(module):  # the blocks a gate drops may sit below a container (a ModuleList)
        skipped = skipped | {id(m) for m in module.fn3_skipped()}
    for name, child in list(module.named_children()):
        if id(child) in skipped:
            continue  # a dropped residual block: its gate leaves it out
        new = _extract(child, skipped, f"{path}.{name}" if path else name, coded)
        if new is not child:
            setattr(module, name, new)
    return module.extract() if is_gate(module) else module


@torch.no_grad()
def extract_submodel(model: nn.Module, spec: Spec | None = None) -> nn.Module:
    """A plain copy of ``model`` computing sub-model ``spec`` (``None``: the full model), eval mode.

    The copy equals ``model(x)`` under ``fn3.active(model, spec)`` in eval mode, holds no axis (its
    ``fn3.space`` is empty) and none of ``model``'s tensors.
    """
    return extract_coded(model, spec)[0]


@torch.no_grad()
def extract_coded(
    model: nn.Module, spec: Spec | None = None
) -> tuple[nn.Module, dict[str, tuple[str, QuantWeight]]]:
    """:func:`extract_submodel`, and the coding of its quantized weights.

    The mapping is ``state_dict key of the extracted weight -> (key of the nested weight, coding)``
    for every quantized layer the spec keeps: how a file stores that weight as c-bit codes.
    """
    sp = space(model)
    spec = sp.largest() if spec is None else sp.validate(spec)
    sub = copy.deepcopy(model)  # a copy has no cache of its own yet (fn3._cache)
    set_active(sub, spec)
    coded: dict[int, tuple[str, QuantWeight]] = {}
    sub = _extract(sub, set(), "", coded)
    forget(sub)  # its slots and space changed: extraction replaced its leaves
    keys = {}
    for name, m in sub.named_modules():
        if id(m) in coded:
            keys[f"{name}.weight" if name else "weight"] = coded[id(m)]
    return sub.eval().requires_grad_(False), keys
