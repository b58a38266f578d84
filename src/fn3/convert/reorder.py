"""Reorder pretrained channels by importance, consistently across a group, before nesting.

Ordered dropout keeps the *first* units of every axis, so the first units should be the important
ones. For a pretrained model, :func:`reorder_` ranks the units of every group that becomes an axis
and permutes every member of the group the same way: the output rows of its producers (and their
biases), the input columns of its consumers, the parameters and statistics of its norms, whole
groups of a grouped convolution. Permuting a hidden width consistently does not change the function,
so the full nested model still computes exactly what the original did (up to float summation order).

Importance of a unit: the L1 norm of the consumer weights that read it, each consumer normalised to
sum 1, summed over the consumers of the group (the producers' output rows when nothing consumes it).

Example:
    >>> import torch
    >>> unit_order(torch.tensor([0., 1., 0., 3.]))
    tensor([3, 1, 0, 2])
"""

from __future__ import annotations

import torch
from torch import nn

from fn3.convert.axes import AxisPlan
from fn3.convert.rules import role as rule_of

__all__ = ["reorder_", "unit_order"]


def unit_order(importance: torch.Tensor) -> torch.Tensor:
    """Units from the most to the least important (stable: ties keep their order)."""
    return torch.sort(importance, descending=True, stable=True).indices


def _expand(order: torch.Tensor, per_unit: int) -> torch.Tensor:
    """Entry indices of units ``order`` when each unit holds ``per_unit`` consecutive entries."""
    return (order[:, None] * per_unit + torch.arange(per_unit)).flatten()


def _ranks(name: str) -> bool:
    """True for a registered role whose weights rank the units (a consumer of the group)."""
    rule = rule_of(name)
    return rule is not None and rule.importance is not None


def _importance(plan: AxisPlan, modules: dict[str, nn.Module]) -> torch.Tensor:
    units = plan.group.size // plan.unit
    total = torch.zeros(units, dtype=torch.float64)
    consumers = [m for m in plan.group.members if m.role in ("conv_in", "linear_in") or _ranks(m.role)]
    for member in consumers or [m for m in plan.group.members if m.role.endswith(("_out", "_tied"))]:
        rule = rule_of(member.role)
        if rule is not None:  # a registered type: the L1 norm of its ranking tensor along the units
            name, dim = rule.importance
            t = getattr(modules[member.module], name).detach().abs().double().movedim(dim, 0)
            per_channel = t.flatten(1).sum(1).reshape(-1, member.per_unit).sum(1)
            per_unit = per_channel.reshape(units, plan.unit).sum(1)
            total += per_unit / per_unit.sum().clamp_min(1e-12)
            continue
        w = modules[member.module].weight.detach().abs().double()
        if member.role == "conv_in":
            per_channel = w.sum(dim=(0, 2, 3))  # (C,)
        elif member.role == "linear_in":
            per_channel = w.sum(dim=0).reshape(-1, member.per_unit).sum(1)  # (C * per_unit,) -> (C,)
        else:
            per_channel = w.flatten(1).sum(1)  # output rows (C,)
        per_unit = per_channel.reshape(units, plan.unit).sum(1)
        total += per_unit / per_unit.sum().clamp_min(1e-12)
    return total


@torch.no_grad()
def _permute(module: nn.Module, role: str, idx: torch.Tensor) -> None:
    def take(name: str, dim: int) -> None:
        t = getattr(module, name, None)
        if t is not None:
            t.data = t.data.index_select(dim, idx.to(t.device))

    registered = rule_of(role)
    if registered is not None:  # a registered type says which of its tensors hold the units
        for name, dim in registered.permute:
            take(name, dim)
    elif role in ("conv_out", "linear_out", "conv_tied"):
        take("weight", 0)  # a tied conv's groups move whole: each keeps its own input channels
        take("bias", 0)
    elif role in ("conv_in", "linear_in"):
        take("weight", 1)
    else:  # bn, ln
        for name in ("weight", "bias", "running_mean", "running_var"):
            take(name, 0)


def reorder_(plans: list[AxisPlan], modules: dict[str, nn.Module]) -> dict[str, list[int]]:
    """Permute every nested group of ``modules`` by importance; returns ``{axis: unit order}``."""
    orders: dict[str, list[int]] = {}
    for plan in plans:
        if plan.axis is None:
            continue
        order = unit_order(_importance(plan, modules))
        channels = _expand(order, plan.unit)
        for member in dict.fromkeys(plan.group.members):  # a module called twice is listed twice
            _permute(modules[member.module], member.role, _expand(channels, member.per_unit))
        orders[plan.name] = order.tolist()
    return orders
