"""The one protocol every nested leaf speaks: which axes slice it, what it costs, its plain form.

A *nested leaf* is a module that holds maximum-size parameters and computes with the active slice
(:class:`~fn3.nn.conv.NestedConv2d`, :class:`~fn3.nn.linear.NestedLinear`, the norms, the activation
quantizer). It answers three questions about the sub-model its :class:`~fn3.nn.slot.AxisSlot` objects
hold right now (what ``fn3.active(model, spec)`` set):

``fn3_axes()``
    which axis slices which of its dimensions: a tuple of :class:`AxisUse` (``("stage1.width",
    "out", 1)``: the axis ``stage1.width`` slices the output channels, one channel per unit);
``fn3_cost(in_shape)``
    what it costs (:class:`LeafCost`: MACs, FLOPs, parameters, bits, BitOPs) for an input of the
    full-model shape ``in_shape``: arithmetic only, no forward pass;
``extract()``
    its plain torch form for the active sub-model (an ``nn.Conv2d`` of the kept size, ...), which
    computes exactly what the leaf computes now.

A quantized leaf also answers ``fn3_quant_weight()``: how its extracted weight is coded
(:class:`QuantWeight`), so a file stores it as bit-packed codes (:mod:`fn3.export.user`).

A *block gate* (:class:`~fn3.nn.blocks.NestedStage`, :class:`~fn3.nn.gate.NestedSequential`,
:class:`~fn3.nn.gate.NestedModuleList`) decides
which of its children run; it answers ``fn3_axes()``, ``fn3_skipped()`` (the children that do not
run) and ``extract()`` (its kept children, already extracted).

Cost (:func:`fn3.cost.leaves.leaf_costs`, and the traced :class:`~fn3.cost.plan.CostPlan`) and export
(:func:`fn3.export.submodel.extract_submodel`) only ask these questions, so a model fn3 did not build
works as soon as its layers are nested leaves. The traced plan reads a leaf's ``fn3_axes()`` and its
``extract()`` under the full spec: a leaf whose plain form is an ``nn.Conv2d``, ``nn.Linear`` or
``nn.BatchNorm2d`` (behind its activation quantizer) gets every metric, peak memory and latency
included; any other leaf is priced by ``fn3_cost`` alone (:class:`~fn3.cost.leafplan.LeafPlan`).
A gate's ``fn3_skipped()`` under specs that drop one block at a time tells the plan which block
gates which child. Adding a layer type is one class implementing the three methods (see
``docs/nested_layers.md``).

Example:
    >>> import torch
    >>> from fn3.nn import AxisSlot, NestedLinear
    >>> from fn3.spec import Axis
    >>> hidden = AxisSlot(Axis("fc.width", "neurons", 8, step=2))
    >>> fc = NestedLinear(4, 8, out_axis=hidden)
    >>> is_leaf(fc), fc.fn3_axes()
    (True, (AxisUse(axis='fc.width', dim='out', per_unit=1),))
    >>> hidden.set((0,))                            # keep 2 of the 8 neurons
    >>> fc.fn3_cost((1, 4)).macs, type(fc.extract()).__name__
    (8, 'Linear')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from fn3.nn.slot import AxisSlot

__all__ = [
    "FLOAT_BITS",
    "AxisUse",
    "BlockGate",
    "LeafCost",
    "NestedLeaf",
    "QuantWeight",
    "is_gate",
    "is_leaf",
    "uses",
]

#: Bits of a float parameter or of a float operand of a multiplication.
FLOAT_BITS = 32


@dataclass(frozen=True)
class AxisUse:
    """Axis ``axis`` slices dimension ``dim`` of a leaf, ``per_unit`` entries per unit of the axis.

    ``dim`` is one of ``"in"``, ``"out"`` (channels / features), ``"groups"`` (whole groups of a
    grouped or depthwise convolution), ``"wbits"``, ``"abits"`` (bit-planes) or ``"blocks"`` (the
    children of a block gate).
    """

    axis: str
    dim: str
    per_unit: int = 1


@dataclass(frozen=True)
class LeafCost:
    """What one leaf costs in the active sub-model, for one input of the recorded shape.

    ``flops`` follows :mod:`torch.utils.flop_counter`: ``2 * macs`` for convolutions and matrix
    products, nothing for norms, activations or biases.
    """

    macs: int = 0
    flops: int = 0
    params: int = 0
    bits: int = 0
    bitops: int = 0

    def __add__(self, other: LeafCost) -> LeafCost:
        return LeafCost(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.macs, self.flops, self.params, self.bits, self.bitops)

    def as_dict(self) -> dict[str, float]:
        names = ("macs", "flops", "params", "bits", "bitops")
        return {n: float(v) for n, v in zip(names, self.as_tuple(), strict=True)}


@dataclass(frozen=True)
class QuantWeight:
    """How a quantized leaf codes the weight of its extracted form (``fn3_quant_weight()``).

    The extracted weight is ``grid_values(code, total_bits, ...) * scale`` (:mod:`fn3.nn.functional`)
    for integer codes made of the kept bit-planes ``planes`` (0 = the most significant) of the
    ``total_bits``-bit code, read under ``scheme``; ``scale`` holds one step per kept output row. A file
    then stores ``len(planes)`` bits per weight and the scales (:mod:`fn3.export.user`).
    """

    scale: torch.Tensor  # (out_active,)
    total_bits: int
    planes: tuple[int, ...]
    scheme: str


@runtime_checkable
class NestedLeaf(Protocol):
    """A module that slices its own parameters; see the module docstring."""

    def fn3_axes(self) -> tuple[AxisUse, ...]: ...

    def fn3_cost(self, in_shape: tuple[int, ...]) -> LeafCost: ...

    def extract(self) -> nn.Module: ...


@runtime_checkable
class BlockGate(Protocol):
    """A container that runs only some of its children (a ``layers`` axis)."""

    def fn3_axes(self) -> tuple[AxisUse, ...]: ...

    def fn3_skipped(self) -> Iterable[nn.Module]: ...

    def extract(self) -> nn.Module: ...


def is_gate(module: nn.Module) -> bool:
    """True for a block gate (it has ``fn3_skipped``)."""
    return isinstance(module, BlockGate)


def is_leaf(module: nn.Module) -> bool:
    """True for a nested leaf (a module speaking the protocol that is not a block gate)."""
    return isinstance(module, NestedLeaf) and not is_gate(module)


def uses(*pairs: tuple[AxisSlot | None, str, int]) -> tuple[AxisUse, ...]:
    """``AxisUse`` of every ``(slot, dim, per_unit)`` whose slot is not ``None``."""
    return tuple(AxisUse(s.axis.name, d, p) for s, d, p in pairs if s is not None)


def bits_of(slot: AxisSlot | None) -> int:
    """Kept bits of a bits slot, or 32 for a float operand."""
    return FLOAT_BITS if slot is None else slot.units


def conv_out_hw(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] | str,
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """Spatial output size of a convolution (torch's formula; ``"same"`` keeps the size)."""
    if padding == "same":
        return hw
    pad = (0, 0) if padding == "valid" else padding
    return tuple(  # type: ignore[return-value]
        (hw[i] + 2 * pad[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )


def pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    """``(v, v)`` for an int, the tuple itself otherwise."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def plain_copy(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """Fill a freshly built plain ``module`` with ``weight`` / ``bias`` (detached copies), eval mode."""
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module.eval()
