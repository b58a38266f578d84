"""Analytic cost of any nested model, asked of its leaves: `leaf_costs(model, spec, *inputs)`.

One forward pass of the full model (cached per model and input shape) records the input shape of
every nested leaf and, with :class:`torch.utils.flop_counter.FlopCounterMode`, the FLOPs that each
module computes itself outside the leaves (a user's functional ``x @ w``, an attention module fn3
left plain). After that, a sub-model's cost is arithmetic: every nested leaf that runs in the spec
answers ``fn3_cost(in_shape)`` (:mod:`fn3.nn.protocol`), block gates say which children do not run,
and the plain parts add their recorded FLOPs and their parameters (as 32-bit floats). Those plain
parts must not depend on the spec (:func:`fn3.nest_` freezes every channel group a plain op touches).

Counts are for the recorded input (its batch size included); FLOPs follow ``torch.utils.flop_counter``.

Example:
    >>> import torch, fn3
    >>> from fn3.cost.leaves import leaf_costs
    >>> net = fn3.create_model("resnet20", input_size=32)
    >>> spec = fn3.space(net).uniform({"channels": 0.5})
    >>> x = torch.zeros(1, 3, 32, 32)
    >>> leaf_costs(net, spec, x)["flops"] == fn3.cost(net, spec, "flops")
    True
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fn3.nest import active
from fn3.nn.base import eval_mode
from fn3.nn.protocol import FLOAT_BITS, LeafCost, is_gate, is_leaf
from fn3.spec import Spec

__all__ = ["leaf_costs"]


@dataclass
class _Record:
    shapes: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)  # id(leaf) -> input shapes
    own_flops: dict[str, int] = field(default_factory=dict)  # module name -> FLOPs outside children


_RECORDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Record]] = weakref.WeakKeyDictionary()


def _shape_key(inputs: Sequence[object]) -> tuple:
    return tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else repr(x) for x in inputs)


@torch.no_grad()
def _record(model: nn.Module, inputs: Sequence[object]) -> _Record:
    per_model = _RECORDS.setdefault(model, {})
    key = _shape_key(inputs)
    if key in per_model:
        return per_model[key]
    rec = _Record()
    leaves = [m for m in model.modules() if is_leaf(m)]

    def hook(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            rec.shapes.setdefault(id(module), []).append(tuple(args[0].shape))

    handles = [m.register_forward_pre_hook(hook) for m in leaves]
    counter = FlopCounterMode(display=False)
    try:
        with eval_mode(model), active(model, None), counter:  # batch norm keeps its statistics
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    # FlopCounterMode names modules "<RootClass>.<path>"; a module's own FLOPs are its total minus
    # its children's totals.
    root = type(model).__name__
    totals = {
        ("" if k == root else k[len(root) + 1 :]): sum(v.values())
        for k, v in counter.get_flop_counts().items()
        if k == root or k.startswith(root + ".")
    }
    # A container that is never called itself (a ModuleList) counts through its children.
    def reached(name: str, module: nn.Module) -> int:
        if name in totals:
            return totals[name]
        return sum(reached(f"{name}.{c}" if name else c, m) for c, m in module.named_children())

    for name, module in model.named_modules():
        inner = sum(reached(f"{name}.{c}" if name else c, m) for c, m in module.named_children())
        rec.own_flops[name] = totals[name] - inner if name in totals else 0
    per_model[key] = rec
    return rec


def _walk(module: nn.Module, name: str, rec: _Record, skipped: set[int]) -> LeafCost:
    if is_leaf(module):
        total = LeafCost()
        for shape in rec.shapes.get(id(module), ()):
            total = total + module.fn3_cost(shape)
        return total
    flops = rec.own_flops.get(name, 0)
    params = sum(p.numel() for p in module.parameters(recurse=False))
    total = LeafCost(flops // 2, flops, params, params * FLOAT_BITS, (flops // 2) * FLOAT_BITS**2)
    if is_gate(module):  # the blocks a gate drops may sit below a container (a ModuleList)
        skipped = skipped | {id(m) for m in module.fn3_skipped()}
    for child_name, child in module.named_children():
        if id(child) not in skipped:
            total = total + _walk(child, f"{name}.{child_name}" if name else child_name, rec, skipped)
    return total


def leaf_costs(model: nn.Module, spec: Spec | None, *example_inputs: object) -> dict[str, float]:
    """``{"macs", "flops", "params", "bits", "bitops"}`` of sub-model ``spec`` on ``example_inputs``.

    ``spec=None`` is the full model. Only the shapes of ``example_inputs`` matter (one recording
    forward per shape); the model's active sub-model is restored afterwards.
    """
    rec = _record(model, example_inputs)
    with active(model, spec):
        return _walk(model, "", rec, set()).as_dict()
