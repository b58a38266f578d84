"""`NestedLinear`: a dense layer whose active neurons (and bits) are a prefix or set of its blocks.

Example:
    >>> import torch
    >>> from fn3.spec import Axis
    >>> from fn3.nn.slot import AxisSlot
    >>> hidden = AxisSlot(Axis("fc1.width", "neurons", 64, step=16))
    >>> fc1 = NestedLinear(10, 64, out_axis=hidden)
    >>> fc2 = NestedLinear(64, 3, in_axis=hidden)
    >>> hidden.set((0,))                # keep 16 of the 64 neurons
    >>> h = fc1(torch.randn(2, 10))
    >>> h.shape, fc2(h).shape
    (torch.Size([2, 16]), torch.Size([2, 3]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fn3.nn.act_quant import QuantInput
from fn3.nn.base import NestedActQuant, NestedModule, quant_weight, quantized_weight, select
from fn3.nn.protocol import FLOAT_BITS, AxisUse, LeafCost, QuantWeight, bits_of, plain_copy, uses
from fn3.nn.slot import AxisSlot

__all__ = ["NestedLinear"]


class NestedLinear(NestedModule):
    """``nn.Linear`` with nested input/output neurons and nested weight/activation bits.

    Args:
        in_features, out_features, bias: as ``nn.Linear`` (the maximum sizes).
        in_axis: slot governing the input neurons (the previous layer's ``out_axis``), or ``None``.
        out_axis: slot governing the output neurons, or ``None``.
        in_per_unit, out_per_unit: features per unit of those axes (a linear layer after a flatten of
            ``C x H x W`` reads ``H * W`` features per channel of the channel axis).
        wbits, abits: bits slots for the weight and the input activation, or ``None`` (float).
        total_bits: B, the code width that every kept bit-width truncates.
        signed_input: the input may be negative (the network input); otherwise it follows a ReLU.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        in_axis: AxisSlot | None = None,
        out_axis: AxisSlot | None = None,
        in_per_unit: int = 1,
        out_per_unit: int = 1,
        wbits: AxisSlot | None = None,
        abits: AxisSlot | None = None,
        total_bits: int = 8,
        signed_input: bool = False,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.in_axis, self.out_axis, self.wbits = in_axis, out_axis, wbits
        self.in_per_unit, self.out_per_unit = in_per_unit, out_per_unit
        self.total_bits = total_bits
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.act_quant = (
            NestedActQuant(abits, total_bits, signed_input, 3.0 if signed_input else 4.0)
            if abits is not None
            else None
        )
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def fn3_quant_weight(self) -> QuantWeight | None:
        """How the extracted weight is coded (``None``: a float weight); see the protocol."""
        out = select(self.out_axis, self.out_features, self.out_per_unit)
        return quant_weight(self, out)

    def active_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The active (sliced, quantized) weight (out_a, in_a) and bias (out_a,)."""
        out = select(self.out_axis, self.out_features, self.out_per_unit)
        w = out.take(select(self.in_axis, self.in_features, self.in_per_unit).take(self.weight, 1), 0)
        w = quantized_weight(self, w, out)
        b = out.take(self.bias, 0) if self.bias is not None else None
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_active) -> (B, out_active)
        if self.act_quant is not None:
            x = self.act_quant(x)
        w, b = self.active_weight()
        return F.linear(x, w, b)

    # -- the nested-leaf protocol (fn3.nn.protocol) ----------------------------------------------
    def fn3_axes(self) -> tuple[AxisUse, ...]:
        abits = self.act_quant.slot if self.act_quant is not None else None
        return uses((self.in_axis, "in", self.in_per_unit), (self.out_axis, "out", self.out_per_unit),
                    (self.wbits, "wbits", 1), (abits, "abits", 1))

    def fn3_cost(self, in_shape: tuple[int, ...]) -> LeafCost:
        # in_shape: (..., in_features) of the full model; every leading entry is one row of the product.
        rows = 1
        for d in in_shape[:-1]:
            rows *= int(d)
        cin = select(self.in_axis, self.in_features, self.in_per_unit).n
        cout = select(self.out_axis, self.out_features, self.out_per_unit).n
        macs = rows * cin * cout
        wbits = bits_of(self.wbits)
        abits = bits_of(self.act_quant.slot if self.act_quant is not None else None)
        has_b = self.bias is not None
        bits = cin * cout * wbits + (cout * FLOAT_BITS if has_b else 0)
        bits += (cout * FLOAT_BITS if self.wbits is not None else 0)  # one scale per output neuron
        bits += FLOAT_BITS if self.act_quant is not None else 0  # the clipping level
        return LeafCost(macs, 2 * macs, cin * cout + (cout if has_b else 0), bits, macs * wbits * abits)

    @torch.no_grad()
    def extract(self) -> nn.Module:
        """A plain ``nn.Linear`` of the active size holding the active (fake-quantized) weight."""
        w, b = self.active_weight()  # (out_a, in_a), (out_a,)
        layer = plain_copy(nn.Linear(w.shape[1], w.shape[0], bias=b is not None), w, b)
        if self.act_quant is None:
            return layer
        return QuantInput(self.act_quant.extract(), layer)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"
