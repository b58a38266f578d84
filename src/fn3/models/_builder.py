"""Shared plumbing for model builders: creates axis slots for the enabled levels only."""

from __future__ import annotations

import math

from fn3.nn.slot import AxisSlot
from fn3.spec import Axis


class AxisFactory:
    """Makes :class:`AxisSlot` objects for enabled levels and ``None`` for the others."""

    def __init__(self, levels: tuple[str, ...], total_bits: int = 8, min_bits: int = 2):
        self.levels = set(levels)
        self.total_bits, self.min_bits = total_bits, min_bits

    def axis(
        self, name: str, kind: str, size: int, blocks: int | None = None, min_fraction: float = 0.0
    ) -> AxisSlot | None:
        """An axis of ``size`` units in ``blocks`` blocks keeping at least ``min_fraction`` of them."""
        if kind not in self.levels:
            return None
        step = max(1, size // blocks) if blocks else 1
        min_size = min(size, max(step, math.ceil(min_fraction * size / step) * step))
        return AxisSlot(Axis(name, kind, size, step=step, min_size=min_size))

    def bits(self, prefix: str):
        """``bits(layer) -> (wbits, abits)`` slots for the layers of module ``prefix``."""

        def make(layer: str) -> tuple[AxisSlot | None, AxisSlot | None]:
            if "bits" not in self.levels:
                return (None, None)
            name = f"{prefix}.{layer}" if layer else prefix
            mk = lambda suffix: AxisSlot(  # noqa: E731
                Axis(f"{name}.{suffix}", "bits", self.total_bits, min_size=self.min_bits)
            )
            return (mk("wbits"), mk("abits"))

        return make
