"""`NestedConv2d`: a convolution with nested channels, paths (groups) and bits.

Channels: the input/output channel axes slice ``weight[:out, :in]``. Paths: with ``path_axis`` the
convolution is grouped (``groups`` = number of paths) and a sub-model keeps the first ``c`` paths,
i.e. the first ``c`` groups, so the active convolution is grouped with ``c`` groups over ``c * d``
channels. A depthwise convolution (``groups == in_channels``) is the same thing with one channel per
group: its channel axis is passed as ``path_axis`` and ties the input and output channels.

``kernel_size``, ``stride``, ``padding`` and ``dilation`` take an int or a pair (or a padding string),
as ``nn.Conv2d`` does.

Example:
    >>> import torch
    >>> from fn3.spec import Axis
    >>> from fn3.nn.slot import AxisSlot, Selection
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

from fn3.nn.act_quant import QuantInput
from fn3.nn.base import NestedActQuant, NestedModule, full, quant_weight, quantized_weight, select
from fn3.nn.protocol import (
    FLOAT_BITS,
    AxisUse,
    LeafCost,
    QuantWeight,
    bits_of,
    conv_out_hw,
    pair,
    plain_copy,
    uses,
)
from fn3.nn.slot import AxisSlot, Selection

__all__ = ["NestedConv2d"]


class NestedConv2d(NestedModule):
    """``nn.Conv2d`` with nested channels, paths and bits (arguments as torch's, plus the axes).

    Args:
        in_axis, out_axis: channel slots of the input and output (``None``: not nested).
        in_per_unit, out_per_unit: channels per unit of those axes (1 for a channel axis).
        path_axis: for a grouped convolution, the slot whose units are whole groups (its size must
            equal ``groups``): a ResNeXt paths axis, or a depthwise convolution's channel axis.
        wbits, abits, total_bits, signed_input: as :class:`~fn3.nn.linear.NestedLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        groups: int = 1,
        bias: bool = False,
        dilation: int | tuple[int, int] = 1,
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
        self.dilation = dilation
        self.total_bits = total_bits
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *pair(kernel_size)))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.act_quant = (
            NestedActQuant(abits, total_bits, signed_input, 3.0 if signed_input else 4.0)
            if abits is not None
            else None
        )
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def active_groups(self) -> int:
        return self.path_axis.units if self.path_axis is not None else self.groups

    def active_out(self) -> Selection:
        """The kept output channels (whole groups of ``out / groups`` for a paths axis)."""
        if self.path_axis is not None:
            return self.path_axis.select(self.out_channels // self.groups)
        return select(self.out_axis, self.out_channels, self.out_per_unit)

    def fn3_quant_weight(self) -> QuantWeight | None:
        """How the extracted weight is coded (``None``: a float weight); see the protocol."""
        return quant_weight(self, self.active_out())

    def active_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Active weight (out_a, in_a / groups_a, k, k) and bias (out_a,)."""
        out = self.active_out()
        if self.path_axis is not None:
            w = out.take(self.weight, 0)  # each kept group keeps all its (in / groups) inputs
        else:
            inp = (
                select(self.in_axis, self.in_channels, self.in_per_unit)
                if self.groups == 1
                else full(self.in_channels // self.groups)
            )
            w = out.take(inp.take(self.weight, 1), 0)
        w = quantized_weight(self, w, out)
        b = out.take(self.bias, 0) if self.bias is not None else None
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in_active, H, W) -> (B, C_out_active, H', W')
        if self.act_quant is not None:
            x = self.act_quant(x)
        w, b = self.active_weight()
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.active_groups())

    # -- the nested-leaf protocol (fn3.nn.protocol) ----------------------------------------------
    def fn3_axes(self) -> tuple[AxisUse, ...]:
        abits = self.act_quant.slot if self.act_quant is not None else None
        if self.path_axis is not None:
            return uses((self.path_axis, "groups", 1), (self.wbits, "wbits", 1), (abits, "abits", 1))
        return uses((self.in_axis, "in", self.in_per_unit), (self.out_axis, "out", self.out_per_unit),
                    (self.wbits, "wbits", 1), (abits, "abits", 1))

    def active_sizes(self) -> tuple[int, int, int]:
        """Active ``(in_channels, out_channels, groups)``."""
        g = self.active_groups()
        if self.path_axis is not None:
            return g * (self.in_channels // self.groups), g * (self.out_channels // self.groups), g
        cin = self.in_channels
        if self.groups == 1:
            cin = select(self.in_axis, self.in_channels, self.in_per_unit).n
        return cin, select(self.out_axis, self.out_channels, self.out_per_unit).n, g

    def fn3_cost(self, in_shape: tuple[int, ...]) -> LeafCost:
        # in_shape: (N, C_in, H, W) of the full model; channel slicing never changes H, W.
        cin, cout, g = self.active_sizes()
        kh, kw = self.weight.shape[2:]
        ho, wo = conv_out_hw((int(in_shape[-2]), int(in_shape[-1])), (kh, kw), pair(self.stride),
                             self.padding if isinstance(self.padding, str) else pair(self.padding),
                             pair(self.dilation))
        n = int(in_shape[0]) if len(in_shape) == 4 else 1
        weights = cout * (cin // g) * kh * kw
        macs = n * ho * wo * weights
        wbits = bits_of(self.wbits)
        abits = bits_of(self.act_quant.slot if self.act_quant is not None else None)
        has_b = self.bias is not None
        bits = weights * wbits + (cout * FLOAT_BITS if has_b else 0)
        bits += cout * FLOAT_BITS if self.wbits is not None else 0  # one scale per output channel
        bits += FLOAT_BITS if self.act_quant is not None else 0  # the clipping level
        return LeafCost(macs, 2 * macs, weights + (cout if has_b else 0), bits, macs * wbits * abits)

    @torch.no_grad()
    def extract(self) -> nn.Module:
        """A plain ``nn.Conv2d`` of the active size holding the active (fake-quantized) weight."""
        w, b = self.active_weight()  # (out_a, in_a / groups_a, kh, kw), (out_a,)
        g = self.active_groups()
        conv = nn.Conv2d(w.shape[1] * g, w.shape[0], tuple(w.shape[2:]), self.stride, self.padding,
                         self.dilation, g, bias=b is not None)
        conv = plain_copy(conv, w, b)
        if self.act_quant is None:
            return conv
        return QuantInput(self.act_quant.extract(), conv)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}"
            + (f", dilation={self.dilation}" if self.dilation != 1 else "")
        )
