"""Residual building blocks and `NestedStage`, the level at which whole residual blocks are dropped.

* :class:`BasicBlock` - the CIFAR ResNet block: two 3x3 convolutions; its inner width is an axis.
* :class:`ResNeXtBlock` - 1x1 -> grouped 3x3 -> 1x1; its parallel paths (groups) are an axis.
* :class:`NestedStage` - a sequence of blocks whose identity-shortcut blocks are kept by a
  ``layers`` axis (block 0, which may carry a projection shortcut, is always kept).

Residual additions couple widths: a block's input and output share the stage's channel axis (the
residual stream), so every block of a stage reads the same slot.

Example:
    >>> import torch
    >>> from fn3.spec import Axis
    >>> from fn3.nn.slot import AxisSlot
    >>> depth = AxisSlot(Axis("stage1.depth", "layers", 3))
    >>> stage = NestedStage([BasicBlock(8, 8, 8) for _ in range(3)], depth=depth)
    >>> depth.set((0,))                 # only the first block runs
    >>> stage(torch.randn(1, 8, 4, 4)).shape
    torch.Size([1, 8, 4, 4])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fn3.nn.act_quant import relu_unless_quantized
from fn3.nn.base import NestedModule
from fn3.nn.conv import NestedConv2d
from fn3.nn.norm import NestedBatchNorm2d
from fn3.nn.protocol import AxisUse, uses
from fn3.nn.slot import AxisSlot

__all__ = ["BasicBlock", "NestedStage", "ResNeXtBlock", "zero_init_residual_"]

Bits = tuple[AxisSlot | None, AxisSlot | None]  # (weight bits, activation bits)


def _no_bits(_: str) -> Bits:
    return (None, None)


def _projection(
    in_channels: int,
    out_channels: int,
    stride: int,
    in_axis: AxisSlot | None,
    out_axis: AxisSlot | None,
    bits,
    total_bits: int,
) -> nn.Module | None:
    """The 1x1 convolution + BatchNorm shortcut a block needs when it changes shape, else ``None``."""
    if stride == 1 and in_channels == out_channels:
        return None
    ws, as_ = bits("shortcut")
    return nn.Sequential(
        NestedConv2d(
            in_channels,
            out_channels,
            1,
            stride,
            0,
            in_axis=in_axis,
            out_axis=out_axis,
            wbits=ws,
            abits=as_,
            total_bits=total_bits,
        ),
        NestedBatchNorm2d(out_channels, axis=out_axis),
    )


class _ResidualBlock(nn.Module):
    """What both residual blocks share: the optional projection and the final ``relu(y + shortcut(x))``."""

    shortcut: nn.Module | None

    @property
    def has_projection(self) -> bool:
        return self.shortcut is not None

    @property
    def last_norm(self) -> nn.Module:
        """The BatchNorm right before the residual add (zeroed by :func:`zero_init_residual_`)."""
        raise NotImplementedError

    def add_shortcut(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in_active, H, W), y: (B, C_out_active, H', W')
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class BasicBlock(_ResidualBlock):
    """CIFAR ResNet basic block ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    Args:
        in_channels, mid_channels, out_channels: maximum widths.
        stride: stride of the first convolution (and of the projection shortcut).
        in_axis, mid_axis, out_axis: channel slots (input stream, inner width, output stream).
        bits: maps a layer name (``"conv1"``, ``"conv2"``, ``"shortcut"``) to its (wbits, abits) slots.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        in_axis: AxisSlot | None = None,
        mid_axis: AxisSlot | None = None,
        out_axis: AxisSlot | None = None,
        bits=_no_bits,
        total_bits: int = 8,
    ):
        super().__init__()
        w1, a1 = bits("conv1")
        w2, a2 = bits("conv2")
        self.conv1 = NestedConv2d(
            in_channels,
            mid_channels,
            3,
            stride,
            1,
            in_axis=in_axis,
            out_axis=mid_axis,
            wbits=w1,
            abits=a1,
            total_bits=total_bits,
        )
        self.bn1 = NestedBatchNorm2d(mid_channels, axis=mid_axis)
        self.conv2 = NestedConv2d(
            mid_channels,
            out_channels,
            3,
            1,
            1,
            in_axis=mid_axis,
            out_axis=out_axis,
            wbits=w2,
            abits=a2,
            total_bits=total_bits,
        )
        self.bn2 = NestedBatchNorm2d(out_channels, axis=out_axis)
        self.shortcut = _projection(in_channels, out_channels, stride, in_axis, out_axis, bits, total_bits)

    @property
    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in_active, H, W) -> (B, C_out_active, H/stride, W/stride)
        y = relu_unless_quantized(self.bn1(self.conv1(x)), self.conv2)  # conv2's quantizer clips at 0
        y = self.bn2(self.conv2(y))
        return self.add_shortcut(x, y)


class ResNeXtBlock(_ResidualBlock):
    """ResNeXt block: 1x1 (in -> C*d), grouped 3x3 (C paths of d channels), 1x1 (C*d -> out).

    Args:
        cardinality: C, the number of parallel paths; ``path_axis`` keeps the first c of them.
        group_width: d, channels per path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cardinality: int,
        group_width: int,
        stride: int = 1,
        *,
        in_axis: AxisSlot | None = None,
        out_axis: AxisSlot | None = None,
        path_axis: AxisSlot | None = None,
        bits=_no_bits,
        total_bits: int = 8,
    ):
        super().__init__()
        mid = cardinality * group_width
        d = group_width
        w1, a1 = bits("conv1")
        w2, a2 = bits("conv2")
        w3, a3 = bits("conv3")
        # conv1/conv3 see the paths axis as a channel axis with d channels per path.
        self.conv1 = NestedConv2d(
            in_channels,
            mid,
            1,
            in_axis=in_axis,
            out_axis=path_axis,
            out_per_unit=d,
            wbits=w1,
            abits=a1,
            total_bits=total_bits,
        )
        self.bn1 = NestedBatchNorm2d(mid, axis=path_axis, per_unit=d)
        self.conv2 = NestedConv2d(
            mid,
            mid,
            3,
            stride,
            1,
            groups=cardinality,
            path_axis=path_axis,
            wbits=w2,
            abits=a2,
            total_bits=total_bits,
        )
        self.bn2 = NestedBatchNorm2d(mid, axis=path_axis, per_unit=d)
        self.conv3 = NestedConv2d(
            mid,
            out_channels,
            1,
            in_axis=path_axis,
            in_per_unit=d,
            out_axis=out_axis,
            wbits=w3,
            abits=a3,
            total_bits=total_bits,
        )
        self.bn3 = NestedBatchNorm2d(out_channels, axis=out_axis)
        self.shortcut = _projection(in_channels, out_channels, stride, in_axis, out_axis, bits, total_bits)

    @property
    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in_active, H, W); paths: (B, c*d, H', W')
        y = relu_unless_quantized(self.bn1(self.conv1(x)), self.conv2)
        y = relu_unless_quantized(self.bn2(self.conv2(y)), self.conv3)
        y = self.bn3(self.conv3(y))
        return self.add_shortcut(x, y)


class NestedStage(NestedModule):
    """Residual blocks run in order; a ``layers`` axis keeps block 0 and a subset of the others.

    Only identity-shortcut blocks may be dropped: a block with a projection shortcut changes the
    shape, so it must be block 0 (which every spec keeps).
    """

    def __init__(self, blocks: Sequence[nn.Module], *, depth: AxisSlot | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        if any(getattr(b, "has_projection", False) for b in self.blocks[1:]):
            raise ValueError("only the first block of a stage may have a projection shortcut")
        if depth is not None and depth.axis.size != len(self.blocks):
            raise ValueError("the depth axis must have one unit per block")
        self.depth = depth

    def active_blocks(self) -> tuple[int, ...]:
        return tuple(range(len(self.blocks))) if self.depth is None else self.depth.blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in self.active_blocks():
            x = self.blocks[i](x)
        return x

    # -- the block-gate protocol (fn3.nn.protocol) -----------------------------------------------
    def fn3_axes(self) -> tuple[AxisUse, ...]:
        return uses((self.depth, "blocks", 1))

    def fn3_skipped(self) -> list[nn.Module]:
        kept = set(self.active_blocks())
        return [b for i, b in enumerate(self.blocks) if i not in kept]

    def extract(self) -> nn.Module:
        """An ``nn.Sequential`` of the kept blocks (as they are now: extracted first by the caller)."""
        return nn.Sequential(*[self.blocks[i] for i in self.active_blocks()])


@torch.no_grad()
def zero_init_residual_(model: nn.Module) -> int:
    """Zero the scale of the last BatchNorm of every residual block of ``model``, in place; returns
    how many blocks there were.

    Each block then starts as its shortcut (Goyal et al., "Accurate, Large Minibatch SGD", 2017), so a
    network with blocks removed starts as close to the full one as it can: the reason it is a
    training option of fn3 for families nested in layers (``TrainConfig.zero_init_residual``).

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3)
        >>> zero_init_residual_(net)
        9
        >>> float(net.stages[0].blocks[0].bn2.weight.detach().abs().sum())
        0.0
    """
    blocks = [m for m in model.modules() if isinstance(m, _ResidualBlock)]
    for block in blocks:
        block.last_norm.weight.zero_()
    return len(blocks)
