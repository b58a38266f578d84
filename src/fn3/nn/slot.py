"""`AxisSlot`: the shared, mutable "which blocks are active" state of one axis.

Every nested layer that an axis governs holds a reference to the same slot (a plain attribute, not a
parameter or buffer, so ``state_dict`` is unaffected). ``fn3.active(model, spec)`` writes the kept
blocks of every axis into its slot; each layer then reads ``slot.select(per_unit)`` to know which
channels / neurons / paths / bit-planes to compute with.

A layer may count an axis in a coarser unit than channels: a ResNeXt block's 1x1 convolution has
``paths * d`` output channels, so it asks ``select(per_unit=d)`` of the paths axis.

Example:
    >>> from fn3.spec import Axis
    >>> slot = AxisSlot(Axis("stage1.width", "channels", 16, step=4))
    >>> slot.select().n
    16
    >>> slot.set((0, 2))
    >>> sel = slot.select()
    >>> sel.n, sel.index.tolist()
    (8, [0, 1, 2, 3, 8, 9, 10, 11])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fn3.spec import Axis

__all__ = ["AxisSlot", "Selection"]


@dataclass(frozen=True)
class Selection:
    """Which units of a dimension are active: the first ``n`` (``index is None``) or ``index``."""

    n: int
    index: torch.Tensor | None  # int64 (n,), only for non-prefix selections

    def take(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """Active part of ``t`` along ``dim``: a view for a prefix, a gather otherwise."""
        if self.index is None:
            return t if t.shape[dim] == self.n else t.narrow(dim, 0, self.n)
        return t.index_select(dim, self.index.to(t.device))


class AxisSlot:
    """Holds the kept blocks of one :class:`~fn3.spec.Axis` (all blocks until told otherwise)."""

    def __init__(self, axis: Axis):
        self.axis = axis
        self._cache: dict[tuple[tuple[int, ...], int], Selection] = {}
        self.blocks: tuple[int, ...] = tuple(range(axis.num_blocks))

    def set(self, blocks: tuple[int, ...] | None) -> None:
        """Keep ``blocks`` (sorted block indices); ``None`` keeps every block."""
        self.blocks = tuple(range(self.axis.num_blocks)) if blocks is None else tuple(blocks)

    @property
    def is_prefix(self) -> bool:
        return self.blocks == tuple(range(len(self.blocks)))

    @property
    def units(self) -> int:
        """Number of active units (channels, neurons, paths, residual blocks or bits)."""
        return self.axis.units(self.blocks)

    def select(self, per_unit: int = 1) -> Selection:
        """Active indices of a dimension holding ``per_unit`` entries for every unit of the axis."""
        key = (self.blocks, per_unit)
        sel = self._cache.get(key)
        if sel is None:
            n = self.units * per_unit
            if self.is_prefix:
                sel = Selection(n, None)
            else:
                units = [u for b in self.blocks for u in self.axis.block_units(b)]
                idx = [u * per_unit + i for u in units for i in range(per_unit)]
                sel = Selection(n, torch.tensor(idx, dtype=torch.long))
            if len(self._cache) > 4096:  # a search may visit many sets; keep memory bounded
                self._cache.clear()
            self._cache[key] = sel
        return sel

    def bit_mask(self, total_bits: int) -> int:
        """Integer mask of the kept bit-planes of a ``total_bits`` code (block 0 = the MSB)."""
        return sum(1 << (total_bits - 1 - b) for b in self.blocks)

    def __repr__(self) -> str:
        return f"AxisSlot({self.axis.name}, blocks={self.blocks})"

    def __deepcopy__(self, memo: dict) -> AxisSlot:
        # Share nothing with the original but keep sharing inside the copied model (deepcopy memo).
        new = AxisSlot(self.axis)
        new.blocks = self.blocks
        memo[id(self)] = new
        return new
