"""From channel groups to axes: which groups become which axis, and which stay frozen, and why.

A group becomes one :class:`~fn3.spec.Axis`: ``channels`` for convolution channels, ``neurons`` for
the features of linear layers, ``paths`` when a grouped convolution ties it (its units are whole
convolution groups of ``size / groups`` channels). Channel and neuron axes have ``blocks`` blocks and
keep at least ``min_fraction`` of their width, as the built-in models do.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fn3.convert.groups import analyse
    >>> from fn3.convert.trace import trace_regions
    >>> net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    >>> groups = analyse(trace_regions(net, (torch.zeros(1, 4),)), dict(net.named_modules()))
    >>> [(p.name, p.axis.kind if p.axis else p.frozen) for p in plan_axes(groups, ("neurons",))]
    [('input', 'the model input'), ('0.width', 'neurons'), ('2.width', 'the model output')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fn3.convert.groups import GroupInfo, Groups
from fn3.convert.rules import role
from fn3.spec import Axis

__all__ = ["AxisPlan", "plan_axes"]

_PRODUCERS = ("conv_out", "linear_out", "conv_tied")
_CONV_ROLES = ("conv_in", "conv_out", "conv_tied", "bn")


@dataclass
class AxisPlan:
    """What one group becomes: an axis (``axis``, ``unit`` channels per unit) or ``frozen``."""

    group: GroupInfo
    name: str
    axis: Axis | None
    unit: int = 1
    frozen: str | None = None


def _kind(info: GroupInfo) -> tuple[str | None, int, str | None]:
    """``(kind, channels per unit, why frozen)`` of a group."""
    if info.frozen:
        return None, 1, info.frozen
    if info.size < 2:
        return None, 1, "a single channel"
    if not any(_produces(m.role) for m in info.members):
        return None, 1, "no nested layer produces these channels"
    paths = {g for g in info.groups if g != info.size}
    if len(paths) > 1 or (paths and info.size in info.groups):
        return None, 1, f"grouped convolutions with different group counts ({sorted(info.groups)})"
    if paths:
        g = paths.pop()
        return "paths", info.size // g, None
    if any(m.role in _CONV_ROLES or getattr(role(m.role), "kind", "") == "channels" for m in info.members):
        return "channels", 1, None
    return "neurons", 1, None


def _produces(name: str) -> bool:
    """True for a role whose module creates the width (a built-in or a registered producer)."""
    return name in _PRODUCERS or getattr(role(name), "produces", False)


def _hint(info: GroupInfo) -> str:
    for m in info.members:
        if _produces(m.role):
            return m.module
    return info.hint


def plan_axes(
    groups: Groups, levels: Sequence[str], blocks: int = 8, min_fraction: float = 0.25
) -> list[AxisPlan]:
    """One :class:`AxisPlan` per group, in graph order; axis names are ``<first producer>.width``."""
    plans: list[AxisPlan] = []
    used: set[str] = set()
    for info in groups.infos():
        kind, unit, why = _kind(info)
        base = f"{_hint(info)}.{'paths' if kind == 'paths' else 'width'}"
        name, i = base, 1
        while name in used:
            i += 1
            name = f"{base}{i}"
        if kind is None:
            plans.append(AxisPlan(info, info.hint if why and info.hint == "input" else name, None, 1, why))
            continue
        used.add(name)
        if kind not in levels:
            plans.append(AxisPlan(info, name, None, unit, f"level {kind!r} was not asked for"))
            continue
        units = info.size // unit
        step = 1 if kind == "paths" else max(1, units // blocks)
        min_size = min(units, max(step, math.ceil(min_fraction * units / step) * step))
        plans.append(AxisPlan(info, name, Axis(name, kind, units, step=step, min_size=min_size), unit))
    return plans
