"""Nested layers: maximum-size parameters, a forward pass that computes only the active part.

See :mod:`fn3.nn.functional` for the quantization maths, :mod:`fn3.nn.slot` for how the active
sub-model reaches every layer, and :mod:`fn3.nn.protocol` for the three questions every nested leaf
answers (its axes, its cost, its plain form).
"""

from fn3.nn.base import NestedActQuant, NestedModule
from fn3.nn.blocks import BasicBlock, NestedStage, ResNeXtBlock
from fn3.nn.conv import NestedConv2d
from fn3.nn.gate import NestedModuleList, NestedSequential
from fn3.nn.linear import NestedLinear
from fn3.nn.norm import NestedBatchNorm2d, NestedLayerNorm
from fn3.nn.protocol import AxisUse, LeafCost
from fn3.nn.slot import AxisSlot, Selection

__all__ = [
    "AxisSlot",
    "AxisUse",
    "BasicBlock",
    "LeafCost",
    "NestedActQuant",
    "NestedBatchNorm2d",
    "NestedConv2d",
    "NestedLayerNorm",
    "NestedLinear",
    "NestedModule",
    "NestedModuleList",
    "NestedSequential",
    "NestedStage",
    "ResNeXtBlock",
    "Selection",
]
