"""`NestedSequential`: an ``nn.Sequential`` whose residual children are kept by ``layers`` axes.

This is the block gate :func:`fn3.nest_` puts in place of a user's ``nn.Sequential`` when some of its
children are shape-preserving residual blocks (``x + f(x)``): child ``i`` runs iff unit ``u`` of its
axis is kept, and a dropped child is the identity. The children keep their names, so the
``state_dict`` of the model is unchanged.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fn3.nn.slot import AxisSlot
    >>> from fn3.spec import Axis
    >>> depth = AxisSlot(Axis("body.depth", "layers", 3))
    >>> seq = NestedSequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4),
    ...                        gates={1: (depth, 1), 2: (depth, 2)})
    >>> depth.set((0,))                               # children 1 and 2 are skipped
    >>> x = torch.randn(2, 4)
    >>> torch.equal(seq(x), seq[0](x))
    True
    >>> type(seq.extract()[1]).__name__
    'Identity'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

from fn3.nn.base import NestedModule
from fn3.nn.protocol import AxisUse
from fn3.nn.slot import AxisSlot

__all__ = ["NestedModuleList", "NestedSequential"]


class NestedSequential(nn.Sequential, NestedModule):
    """``nn.Sequential`` with ``gates = {child position: (layers slot, unit)}``."""

    def __init__(self, *args: Any, gates: Mapping[int, tuple[AxisSlot, int]]):
        super().__init__(*args)
        for i, (slot, unit) in gates.items():
            if not 0 <= i < len(self) or not 0 <= unit < slot.axis.size:
                raise ValueError(f"gate {i} -> unit {unit} of {slot.axis.name} is out of range")
        self.gates = dict(gates)

    def fn3_slots(self) -> Iterator[AxisSlot]:
        seen: set[int] = set()
        for slot, _ in self.gates.values():
            if id(slot) not in seen:
                seen.add(id(slot))
                yield slot

    def runs(self, i: int) -> bool:
        """Whether child ``i`` runs in the active sub-model."""
        gate = self.gates.get(i)
        return gate is None or gate[1] in gate[0].blocks

    def forward(self, x: Any) -> Any:
        for i, module in enumerate(self):
            if self.runs(i):
                x = module(x)
        return x

    # -- the block-gate protocol (fn3.nn.protocol) -----------------------------------------------
    def fn3_axes(self) -> tuple[AxisUse, ...]:
        return tuple(AxisUse(s.axis.name, "blocks", 1) for s in self.fn3_slots())

    def fn3_skipped(self) -> list[nn.Module]:
        return [m for i, m in enumerate(self) if not self.runs(i)]

    def extract(self) -> nn.Module:
        """An ``nn.Sequential`` with the same child names; a skipped child is an ``nn.Identity``."""
        children = enumerate(self.named_children())
        kept = [(name, m if self.runs(i) else nn.Identity()) for i, (name, m) in children]
        return nn.Sequential(OrderedDict(kept))


class NestedModuleList(nn.ModuleList, NestedModule):
    """``nn.ModuleList`` whose residual children are kept by ``layers`` axes, for a forward that iterates it.

    ``for block in self.blocks: x = block(x)`` visits only the children that run (iteration skips the
    dropped ones); indexing (``self.blocks[i]``) and ``state_dict`` still see every child, so
    :func:`fn3.nest_` gates a list only after checking, at minimum depth, that the dropped children
    are really not called. ``gates = {child position: (layers slot, unit)}``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from fn3.nn.slot import AxisSlot
        >>> from fn3.spec import Axis
        >>> depth = AxisSlot(Axis("blocks.depth", "layers", 2))
        >>> blocks = NestedModuleList([nn.Linear(4, 4), nn.Linear(4, 4)], gates={1: (depth, 1)})
        >>> depth.set((0,))
        >>> len(blocks), len(list(blocks)), len(blocks.extract())
        (2, 1, 1)
    """

    def __init__(self, modules: Any = None, *, gates: Mapping[int, tuple[AxisSlot, int]]):
        super().__init__(modules)
        for i, (slot, unit) in gates.items():
            if not 0 <= i < len(self) or not 0 <= unit < slot.axis.size:
                raise ValueError(f"gate {i} -> unit {unit} of {slot.axis.name} is out of range")
        self.gates = dict(gates)

    fn3_slots = NestedSequential.fn3_slots
    runs = NestedSequential.runs
    fn3_axes = NestedSequential.fn3_axes

    def __iter__(self) -> Iterator[nn.Module]:
        return iter([m for i, m in enumerate(self._modules.values()) if self.runs(i)])

    def fn3_skipped(self) -> list[nn.Module]:  # over the list itself, not its (gated) iteration
        return [m for i, m in enumerate(self._modules.values()) if not self.runs(i)]

    def extract(self) -> nn.Module:
        """An ``nn.ModuleList`` of the kept children, in order (a forward iterating it runs those)."""
        return nn.ModuleList([m for i, m in enumerate(self._modules.values()) if self.runs(i)])
