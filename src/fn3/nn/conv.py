"""`NestedConv2d`: a convolution with nested channels, paths (groups) and bits.

Channels: the input/output channel axes slice ``weight[:out, :in]``. Paths: with ``path_axis`` the
convolution is grouped (``groups`` = number of paths) and a sub-model keeps the first ``c`` paths,
i.e. the first ``c`` groups, so the active convolution is grouped with ``c`` groups over ``c * d``
channels.

Example:
    >>> import torch
    >>> from fn3.spec import Axis
    >>> from fn3.nn.slot import AxisSlot
    >>> paths = AxisSlot(Axis("b.paths", "paths", 8))
    >>> conv = NestedConv2d(32, 32, 3, padding=1, groups=8, path_axis=paths)
    >>> paths.set((0, 1))               # 2 of 8 paths: 8 of 32 channels, 2 groups
    >>> conv(torch.randn(1, 8, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fn3.nn.base import NestedActQuant, NestedModule, full, quantized_weight, select
from fn3.nn.slot import AxisSlot

__all__ = ["NestedConv2d"]


class NestedConv2d(NestedModule):
    """``nn.Conv2d`` with nested channels, paths and bits (arguments as torch's, plus the axes).

    Args:
        in_axis, out_axis: channel slots of the input and output (``None``: not nested).
        in_per_unit, out_per_unit: channels per unit of those axes (1 for a channel axis).
        path_axis: for a grouped convolution, the paths slot (its size must equal ``groups``).
        wbits, abits, total_bits, signed_input: as :class:`~fn3.nn.linear.NestedLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        *,
        in_axis: AxisSlot | None = None,
        out_axis: AxisSlot | None = None,
        in_per_unit: int = 1,
        out_per_unit: int = 1,
        path_axis: AxisSlot | None = None,
        wbits: AxisSlot | None = None,
        abits: AxisSlot | None = None,
        total_bits: int = 8,
        signed_input: bool = False,
    ):
        super().__init__()
        if path_axis is not None and (groups != path_axis.axis.size or in_axis or out_axis):
            raise ValueError("a path-nested convolution needs groups == paths and no channel axes")
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = (
            kernel_size,
            stride,
            padding,
            groups,
        )
        self.in_axis, self.out_axis, self.path_axis, self.wbits = (
            in_axis,
            out_axis,
            path_axis,
            wbits,
        )
        self.in_per_unit, self.out_per_unit = in_per_unit, out_per_unit
        self.total_bits = total_bits
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.act_quant = (
            NestedActQuant(abits, total_bits, signed_input, 3.0 if signed_input else 4.0)
            if abits is not None
            else None
        )
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def active_groups(self) -> int:
        return self.path_axis.units if self.path_axis is not None else self.groups

    def active_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Active weight (out_a, in_a / groups_a, k, k) and bias (out_a,)."""
        if self.path_axis is not None:
            out = self.path_axis.select(self.out_channels // self.groups)
            w = out.take(self.weight, 0)  # each kept group keeps all its (in / groups) inputs
        else:
            out = select(self.out_axis, self.out_channels, self.out_per_unit)
            inp = (
                select(self.in_axis, self.in_channels, self.in_per_unit)
                if self.groups == 1
                else full(self.in_channels // self.groups)
            )
            w = out.take(inp.take(self.weight, 1), 0)
        w = quantized_weight(w, self.weight, out, self.wbits, self.total_bits, self.quant_scheme)
        b = out.take(self.bias, 0) if self.bias is not None else None
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in_active, H, W) -> (B, C_out_active, H', W')
        if self.act_quant is not None:
            x = self.act_quant(x)
        w, b = self.active_weight()
        return F.conv2d(x, w, b, self.stride, self.padding, 1, self.active_groups())

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}"
        )
