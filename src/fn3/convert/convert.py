"""`fn3.nest_(model, example_inputs)`: make an ordinary PyTorch model fully nested, in place.

Steps (each in its own module of :mod:`fn3.convert`):

1. :mod:`~fn3.convert.trace` - trace the forward with ``torch.fx`` on the example inputs;
2. :mod:`~fn3.convert.groups` - channel groups by union-find over the graph;
3. :mod:`~fn3.convert.axes` - one axis per group that can shrink, or the reason it is frozen;
4. :mod:`~fn3.convert.reorder` - (pretrained weights) reorder units by importance inside each group;
5. here - replace every ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` / ``nn.LayerNorm`` by its
   nested twin sharing the group's :class:`~fn3.nn.slot.AxisSlot`, with weight and activation bits
   axes on every convolution and linear layer when ``"bits"`` is asked for;
6. :mod:`~fn3.convert.layers` - residual blocks of a sequence become a ``layers`` axis;
7. :mod:`~fn3.convert.report` - the table of groups, printed and returned.

Without ``"bits"`` the full nested model computes exactly what the original did (the reordering is a
consistent permutation); with it, the full model is the 8-bit quantized original.

Example:
    >>> import torch, fn3
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    >>> x = torch.randn(2, 3, 8, 8)
    >>> before = net(x)
    >>> report = fn3.nest_(net, x, levels=("channels",), verbose=False)
    >>> report.axes, bool((net(x) - before).abs().max() < 1e-5)
    (('0.width',), True)
    >>> with fn3.active(net, fn3.space(net).smallest()):
    ...     net(x).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from fn3._cache import forget
from fn3.convert.axes import AxisPlan, plan_axes
from fn3.convert.groups import Groups, analyse
from fn3.convert.layers import nest_layers
from fn3.convert.reorder import reorder_
from fn3.convert.report import GroupRow, NestingReport
from fn3.convert.rules import conversion_for
from fn3.convert.rules import role as registered_role
from fn3.convert.trace import trace_regions
from fn3.errors import ConfigError, NestingError
from fn3.nn.base import NestedActQuant, NestedModule, eval_mode
from fn3.nn.conv import NestedConv2d
from fn3.nn.linear import NestedLinear
from fn3.nn.norm import NestedBatchNorm2d, NestedLayerNorm
from fn3.nn.slot import AxisSlot
from fn3.spec import KINDS, Axis

__all__ = ["nest_"]

Roles = dict[str, tuple[AxisSlot, int]]  # role -> (slot, entries per unit)
_WIDTH_ROLES = ("conv_in", "conv_out", "conv_tied", "linear_in", "linear_out", "bn", "ln")


def _levels(levels: str | Iterable[str] | None) -> tuple[str, ...]:
    if levels is None:
        return KINDS
    items = [p.strip() for p in levels.split(",")] if isinstance(levels, str) else list(levels)
    for lv in items:
        if lv not in KINDS:
            raise ConfigError(f"unknown level {lv!r}; levels are {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in items)


@torch.no_grad()
def _calibrate(
    model: nn.Module, names: Iterable[str], inputs: Sequence[Any]
) -> dict[str, tuple[float, float]]:
    """``(min, max)`` of the input of each named layer on the example inputs (sets the quantizers)."""
    seen: dict[str, tuple[float, float]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            lo, hi = float(x.min()), float(x.max())
            old = seen.get(name, (lo, hi))
            seen[name] = (min(lo, old[0]), max(hi, old[1]))

        return record

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        with eval_mode(model):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def _nested(name: str, mod: nn.Module, roles: Roles, bits: dict | None) -> nn.Module:
    """The nested twin of plain ``mod`` (same arguments, weights copied)."""
    def slot(role: str) -> AxisSlot | None:
        return roles[role][0] if role in roles else None

    def per(role: str) -> int:
        return roles[role][1] if role in roles else 1

    rule = conversion_for(mod)
    if rule is not None:  # a registered type builds its own twin (fn3.convert.rules)
        new: nn.Module = rule.nested(mod, roles, bits or {}) if rule.quantized else rule.nested(mod, roles)
        if bits and not isinstance(getattr(new, "act_quant", None), NestedActQuant):
            raise NestingError(f"{name}: the nested twin of {type(mod).__name__} (a quantized conversion) "
                               "has no act_quant; give it the bits arguments (fn3.convert.rules.Conversion)")
    elif isinstance(mod, nn.Conv2d):
        k, s, p, d = (_square(v) for v in (mod.kernel_size, mod.stride, mod.padding, mod.dilation))
        new = NestedConv2d(
            mod.in_channels, mod.out_channels, k, s, p, mod.groups, mod.bias is not None, d,
            in_axis=slot("conv_in"), out_axis=slot("conv_out"), in_per_unit=per("conv_in"),
            out_per_unit=per("conv_out"), path_axis=slot("conv_tied"), **(bits or {}),
        )  # fmt: skip
    elif isinstance(mod, nn.Linear):
        new = NestedLinear(
            mod.in_features, mod.out_features, mod.bias is not None,
            in_axis=slot("linear_in"), out_axis=slot("linear_out"), in_per_unit=per("linear_in"),
            out_per_unit=per("linear_out"), **(bits or {}),
        )  # fmt: skip
    elif isinstance(mod, nn.BatchNorm2d):
        new = NestedBatchNorm2d(mod.num_features, axis=slot("bn"), per_unit=per("bn"), eps=mod.eps,
                                momentum=mod.momentum)
    else:
        new = NestedLayerNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, mod.bias is not None,
                              axis=slot("ln"), per_unit=per("ln"))
    missing, unexpected = new.load_state_dict(mod.state_dict(), strict=False)
    if unexpected or any(not k.startswith("act_quant.") for k in missing):
        raise NestingError(f"{name}: cannot copy its weights into {type(new).__name__}")
    ref = next(mod.parameters(), None)
    if ref is not None:
        new.to(device=ref.device, dtype=ref.dtype)
    return new.train(mod.training)


def _quantized_rule(mod: nn.Module) -> bool:
    """A module of a registered type whose conversion asks for bits axes (``Conversion.quantized``)."""
    rule = conversion_for(mod)
    return rule is not None and rule.quantized


def _square(v: Any) -> Any:
    """``3`` for ``(3, 3)`` (what fn3's other code reads for square kernels), ``v`` otherwise."""
    return v[0] if isinstance(v, tuple) and len(set(v)) == 1 else v


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _roles(plans: list[AxisPlan]) -> dict[str, Roles]:
    table: dict[str, Roles] = {}
    for plan in plans:
        if plan.axis is None:
            continue
        slot = AxisSlot(plan.axis)
        for m in plan.group.members:
            per_unit = 1 if m.role == "conv_tied" else m.per_unit * plan.unit
            table.setdefault(m.module, {})[m.role] = (slot, per_unit)
    return table


def _bits(name: str, total_bits: int, min_bits: int, seen: tuple[float, float] | None) -> dict[str, Any]:
    make = lambda s: AxisSlot(Axis(f"{name}.{s}", "bits", total_bits, min_size=min_bits))  # noqa: E731
    signed = seen is not None and seen[0] < 0
    return {"wbits": make("wbits"), "abits": make("abits"), "total_bits": total_bits, "signed_input": signed}


def _rows(plans: list[AxisPlan]) -> tuple[GroupRow, ...]:
    return tuple(
        GroupRow(p.name, p.group.size, p.axis.name if p.axis else None, p.axis.kind if p.axis else None,
                 p.frozen, tuple(dict.fromkeys(m.module for m in p.group.members)))
        for p in plans
    )  # fmt: skip


def _strict_problems(plans: list[AxisPlan], groups: Groups) -> list[str]:
    """Frozen groups other than the model's own inputs and outputs, and modules left as they are."""
    out = [f"{p.name}: {p.frozen}" for p in plans
           if p.axis is None and p.frozen and not p.frozen.startswith(("the model input", "the model output"))
           and "was not asked for" not in p.frozen and p.group.size > 1]  # fmt: skip
    return out + [f"{n}: left as it is" for n in sorted(groups.unconvertible)]


def nest_(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[Any],
    levels: str | Iterable[str] | None = None,
    strict: bool = False,
    *,
    blocks: int = 8,
    min_fraction: float = 0.25,
    total_bits: int = 8,
    min_bits: int = 2,
    reorder: bool = True,
    verbose: bool = True,
    signed_inputs: Iterable[str] | None = None,
) -> NestingReport:
    """Make ``model`` fully nested in place; print and return the :class:`NestingReport`.

    Args:
        model: any ``nn.Module`` whose forward ``torch.fx`` can trace (parts that cannot be traced
            are kept as they are, their widths frozen).
        example_inputs: one input tensor or a tuple of positional inputs the model accepts.
        levels: kinds of axes to create (default: all of ``fn3.KINDS``).
        strict: raise :class:`~fn3.errors.NestingError` (with the table) if any hidden width had to be
            frozen or a layer left as it is, before changing anything.
        blocks, min_fraction: blocks per channel/neuron axis, and the fraction always kept.
        total_bits, min_bits: the bits axes' code width and minimum kept bits.
        reorder: reorder units by importance first (for pretrained weights; the function is kept).
        verbose: print the report.
        signed_inputs: the layers whose activation quantizer is signed (``report.signed`` of an
            earlier nesting, to rebuild the same model); default: those whose example input is negative.
    """
    lv = _levels(levels)
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if any(isinstance(m, NestedModule) for m in model.modules()):
        raise NestingError(f"{type(model).__name__} already holds nested layers; nest_ a plain model")
    modules = dict(model.named_modules())
    regions = trace_regions(model, inputs)
    groups = analyse(regions, modules)
    plans = plan_axes(groups, lv, blocks, min_fraction)
    rows = _rows(plans)
    problems = _strict_problems(plans, groups)
    if strict and problems:
        table = str(NestingReport(rows))
        raise NestingError(f"{len(problems)} part(s) cannot be nested ({'; '.join(problems)}):\n{table}")
    orders = reorder_(plans, modules) if reorder else {}
    targets = [n for n in groups.called if n not in groups.unconvertible]
    weighted = [n for n in targets if groups.called[n] in ("Conv2d", "Linear") or _quantized_rule(modules[n])]
    seen = _calibrate(model, weighted, inputs) if "bits" in lv else {}
    roles = _roles(plans)
    total = sum(p.numel() for p in model.parameters())
    nested = 0
    bits_axes: list[str] = []
    signed: list[str] = []
    for name in targets:
        mod = modules[name]
        bits = _bits(name, total_bits, min_bits, seen.get(name)) if name in seen else None
        if bits is not None and signed_inputs is not None:
            bits["signed_input"] = name in set(signed_inputs)
        new = _nested(name, mod, roles.get(name, {}), bits)
        if bits is not None:
            bits_axes += [bits["wbits"].axis.name, bits["abits"].axis.name]
            if bits["signed_input"]:
                signed.append(name)
            lo, hi = seen[name]
            with torch.no_grad():
                new.act_quant.alpha.fill_(max(abs(lo), abs(hi), 1e-3))  # clip at the largest example value
        if any(role in _WIDTH_ROLES or registered_role(role) for role in roles.get(name, {})):
            nested += sum(p.numel() for p in mod.parameters())
        _replace(model, name, new)
    layer_axes, layer_notes = nest_layers(model, regions, inputs) if "layers" in lv else ([], [])
    forget(model)  # its leaves changed: drop the space and cost plans cached for it (fn3._cache)
    notes = tuple(n for r in regions for n in r.notes) + tuple(layer_notes)
    report = NestingReport(rows, tuple((a.name, a.size) for a in layer_axes), nested / max(total, 1),
                           notes, orders, tuple(bits_axes), tuple(signed))
    if verbose:
        print(report)
    return report
