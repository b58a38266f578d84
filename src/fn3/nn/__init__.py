"""Nested layers: maximum-size parameters, a forward pass that computes only the active part.

See :mod:`fn3.nn.functional` for the quantization maths and :mod:`fn3.nn.slot` for how the active
sub-model reaches every layer.
"""

from fn3.nn.base import NestedActQuant, NestedModule
from fn3.nn.blocks import BasicBlock, NestedStage, ResNeXtBlock
from fn3.nn.conv import NestedConv2d
from fn3.nn.linear import NestedLinear
from fn3.nn.norm import NestedBatchNorm2d
from fn3.nn.slot import AxisSlot, Selection

__all__ = [
    "AxisSlot",
    "BasicBlock",
    "NestedActQuant",
    "NestedBatchNorm2d",
    "NestedConv2d",
    "NestedLinear",
    "NestedModule",
    "NestedStage",
    "ResNeXtBlock",
    "Selection",
]
