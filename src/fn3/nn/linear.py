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

from fn3.nn.base import NestedActQuant, NestedModule, quantized_weight, select
from fn3.nn.slot import AxisSlot

__all__ = ["NestedLinear"]


class NestedLinear(NestedModule):
    """``nn.Linear`` with nested input/output neurons and nested weight/activation bits.

    Args:
        in_features, out_features, bias: as ``nn.Linear`` (the maximum sizes).
        in_axis: slot governing the input neurons (the previous layer's ``out_axis``), or ``None``.
        out_axis: slot governing the output neurons, or ``None``.
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
        wbits: AxisSlot | None = None,
        abits: AxisSlot | None = None,
        total_bits: int = 8,
        signed_input: bool = False,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.in_axis, self.out_axis, self.wbits = in_axis, out_axis, wbits
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

    def active_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The active (sliced, quantized) weight (out_a, in_a) and bias (out_a,)."""
        out = select(self.out_axis, self.out_features)
        w = out.take(select(self.in_axis, self.in_features).take(self.weight, 1), 0)
        w = quantized_weight(w, self.weight, out, self.wbits, self.total_bits, self.quant_scheme)
        b = out.take(self.bias, 0) if self.bias is not None else None
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_active) -> (B, out_active)
        if self.act_quant is not None:
            x = self.act_quant(x)
        w, b = self.active_weight()
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"
