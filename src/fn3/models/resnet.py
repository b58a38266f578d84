"""Nested CIFAR-style ResNet-20/32/56 (channels, layers, bits) and a small ResNeXt (+ paths).

Layout (He et al. 2016, CIFAR variant): a 3x3 stem, three stages of n blocks at widths w, 2w, 4w
(strides 1, 2, 2), global average pooling and a linear classifier. The first block of stages 2 and 3
has a 1x1 projection shortcut. Axes:

* ``stageS.width`` (channels): the residual stream of stage S, coupled by the identity shortcuts, so
  one axis covers the stem (for stage 1), every block output and the projection of that stage;
* ``stageS.blockB.width`` (channels): the inner width of a basic block;
* ``stageS.blockB.paths`` (paths, ResNeXt): the parallel paths of a block;
* ``stageS.depth`` (layers): how many blocks of the stage run (block 0 always does);
* ``<layer>.wbits`` / ``<layer>.abits`` (bits): per convolution, except stem and classifier, which stay
  in float unless ``quantize_ends=True`` (as Any-Precision DNN and AdaBits do).

Channel axes have 8 blocks and keep at least 25% by default (``width_blocks``, ``min_width``).

Example:
    >>> import torch, fn3
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3)
    >>> space = fn3.space(net)
    >>> space.kinds()
    ('bits', 'channels', 'layers')
    >>> with fn3.active(net, space.uniform({"channels": 0.5, "layers": 0.34, "bits": 4})):
    ...     net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fn3.models._builder import AxisFactory
from fn3.models.registry import register_model
from fn3.nn.blocks import BasicBlock, NestedStage, ResNeXtBlock
from fn3.nn.conv import NestedConv2d
from fn3.nn.linear import NestedLinear
from fn3.nn.norm import NestedBatchNorm2d

__all__ = ["NestedResNet"]


class NestedResNet(nn.Module):
    """Stem -> nested stages -> pool -> classifier; ``block`` is ``"basic"`` or ``"resnext"``."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        levels: tuple[str, ...],
        depths: Sequence[int],
        widths: Sequence[int],
        block: str = "basic",
        cardinality: int = 8,
        group_widths: Sequence[int] = (2, 4, 8),
        width_blocks: int = 8,
        min_width: float = 0.25,
        total_bits: int = 8,
        min_bits: int = 2,
        quantize_ends: bool = False,
    ):
        super().__init__()
        f = AxisFactory(levels, total_bits, min_bits)
        streams = [
            f.axis(f"stage{s + 1}.width", "channels", w, width_blocks, min_width)
            for s, w in enumerate(widths)
        ]
        no_bits = lambda _: (None, None)  # noqa: E731
        stem_bits = f.bits("stem")("conv") if quantize_ends else (None, None)
        self.stem = NestedConv2d(
            in_channels,
            widths[0],
            3,
            1,
            1,
            out_axis=streams[0],
            wbits=stem_bits[0],
            abits=stem_bits[1],
            total_bits=total_bits,
            signed_input=True,
        )
        self.stem_bn = NestedBatchNorm2d(widths[0], axis=streams[0])
        stages = []
        prev_w, prev_axis = widths[0], streams[0]
        for s, (n, w) in enumerate(zip(depths, widths, strict=True)):
            blocks = []
            for b in range(n):
                name = f"stage{s + 1}.block{b}"
                stride = 2 if (s > 0 and b == 0) else 1
                bits = f.bits(name) if "bits" in levels else no_bits
                if block == "basic":
                    mid_axis = f.axis(f"{name}.width", "channels", w, width_blocks, min_width)
                    blocks.append(
                        BasicBlock(
                            prev_w,
                            w,
                            w,
                            stride,
                            in_axis=prev_axis,
                            mid_axis=mid_axis,
                            out_axis=streams[s],
                            bits=bits,
                            total_bits=total_bits,
                        )
                    )
                else:
                    paths = f.axis(f"{name}.paths", "paths", cardinality)
                    blocks.append(
                        ResNeXtBlock(
                            prev_w,
                            w,
                            cardinality,
                            group_widths[s],
                            stride,
                            in_axis=prev_axis,
                            out_axis=streams[s],
                            path_axis=paths,
                            bits=bits,
                            total_bits=total_bits,
                        )
                    )
                prev_w, prev_axis = w, streams[s]
            depth = f.axis(f"stage{s + 1}.depth", "layers", n) if n > 1 else None
            stages.append(NestedStage(blocks, depth=depth))
        self.stages = nn.ModuleList(stages)
        fc_bits = f.bits("fc")("") if quantize_ends else (None, None)
        self.fc = NestedLinear(
            widths[-1],
            num_classes,
            in_axis=streams[-1],
            wbits=fc_bits[0],
            abits=fc_bits[1],
            total_bits=total_bits,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) -> (B, w, H, W) -> ... -> (B, 4w, H/4, W/4) -> (B, 4w) -> (B, classes)
        x = F.relu(self.stem_bn(self.stem(x)))
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _resnet(depth: int):
    n = (depth - 2) // 6

    def build(
        *,
        num_classes: int,
        in_channels: int,
        input_size: tuple[int, int],
        levels: tuple[str, ...],
        width: int = 16,
        **kwargs: object,
    ) -> NestedResNet:
        return NestedResNet(
            num_classes, in_channels, levels, (n, n, n), (width, 2 * width, 4 * width), **kwargs
        )

    build.__doc__ = (
        f"CIFAR ResNet-{depth} ({n} basic blocks per stage), nested in channels, layers and bits."
    )
    return build


for _d in (20, 32, 56):
    register_model(f"resnet{_d}", levels=("bits", "channels", "layers"))(_resnet(_d))


@register_model("resnext_tiny", levels=("bits", "channels", "paths", "layers"))
def resnext_tiny(
    *,
    num_classes: int,
    in_channels: int,
    input_size: tuple[int, int],
    levels: tuple[str, ...],
    depths: Sequence[int] = (2, 2, 2),
    widths: Sequence[int] = (32, 64, 128),
    cardinality: int = 8,
    group_widths: Sequence[int] = (2, 4, 8),
    **kwargs: object,
) -> NestedResNet:
    """Small CIFAR ResNeXt: 3 stages of 2 blocks, 8 paths per block, nested in all four of its levels."""
    return NestedResNet(
        num_classes,
        in_channels,
        levels,
        tuple(depths),
        tuple(widths),
        block="resnext",
        cardinality=cardinality,
        group_widths=tuple(group_widths),
        **kwargs,
    )
