"""Nested MLP (neurons, bits), the paper's MNIST model.

Each hidden layer's neurons form an axis of 16 blocks (so 100/50/25/12.5/6.25% widths are all
reachable); each quantized layer has a weight-bits and an input-activation-bits axis. Following
Any-Precision DNN and AdaBits, the first and last layers stay in float unless ``quantize_ends=True``.

Example:
    >>> import torch, fn3
    >>> mlp = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=28, hidden=(64, 32))
    >>> [a.name for a in fn3.space(mlp) if a.kind == "neurons"]
    ['fc1.width', 'fc2.width']
    >>> mlp(torch.randn(4, 1, 28, 28)).shape
    torch.Size([4, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fn3.models._builder import AxisFactory
from fn3.models.registry import register_model
from fn3.nn.act_quant import relu_unless_quantized
from fn3.nn.linear import NestedLinear

__all__ = ["NestedMLP"]


class NestedMLP(nn.Module):
    """``flatten -> [NestedLinear -> ReLU] * len(hidden) -> NestedLinear``."""

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        hidden: Sequence[int],
        levels: tuple[str, ...],
        width_blocks: int = 16,
        total_bits: int = 8,
        min_bits: int = 2,
        quantize_ends: bool = False,
    ):
        super().__init__()
        f = AxisFactory(levels, total_bits, min_bits)
        layers = []
        prev_axis, prev = None, in_features
        n = len(hidden) + 1
        for i, h in enumerate([*hidden, num_classes]):
            last = i == n - 1
            out_axis = None if last else f.axis(f"fc{i + 1}.width", "neurons", h, width_blocks)
            quant = quantize_ends or (0 < i < n - 1)
            wb, ab = f.bits(f"fc{i + 1}")("") if quant else (None, None)
            layers.append(
                NestedLinear(
                    prev,
                    h,
                    in_axis=prev_axis,
                    out_axis=out_axis,
                    wbits=wb,
                    abits=ab,
                    total_bits=total_bits,
                    signed_input=(i == 0),
                )
            )
            prev_axis, prev = out_axis, h
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) -> (B, C*H*W) -> ... -> (B, num_classes)
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = relu_unless_quantized(x, self.layers[i + 1])  # its quantizer clips at 0
        return x


@register_model("mlp", levels=("neurons", "bits"))
def mlp(
    *,
    num_classes: int,
    in_channels: int,
    input_size: tuple[int, int],
    levels: tuple[str, ...],
    hidden: Sequence[int] = (512, 256),
    **kwargs: object,
) -> NestedMLP:
    """MLP with nested hidden neurons and bits (default hidden sizes 512, 256)."""
    return NestedMLP(
        num_classes, in_channels * input_size[0] * input_size[1], tuple(hidden), levels, **kwargs
    )
