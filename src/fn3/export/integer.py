"""`integer`: an exported sub-model whose quantized convolutions run on int8 kernels (oneDNN, VNNI).

A quantized convolution of an export reads a ``c``-bit activation (``round(clip(x) / step)``, an
unsigned integer of at most 8 bits times ``step``) and a weight whose value is a ``c``-bit code on
the ``B``-bit grid of its row. Both are integers times a scale, so the convolution itself can run on
integer kernels: int8 x uint8 products summed in int32, then one float multiply. Under
``torch.compile`` with freezing, Inductor recognises the ``quantize -> dequantize -> convolution``
pattern written here with PyTorch's decomposed quantization ops (the same graph its own PT2E
quantization flow produces) and calls oneDNN's ``qconv``, which on a CPU with AVX-512 VNNI (or
AVX-VNNI) runs the int8 products at about four times the float rate. Measured on this project's
2-core AVX-512 VNNI machine: the compiled ResNet-20 export at batch 64 in 0.47-0.94x the time of
its compiled float twin, where the fake-quantized export (float convolutions and fused rounding
loops, :func:`fn3.export.compiled`) costs 1.07-1.19x (``python benchmarks/export.py``).

**The weight's centre offset.** Below ``B`` bits a weight code sits at the *centre* of its cell of
the ``B``-bit grid (``scheme="centred"``): its value is ``(code * 2^k + (2^k - 1) / 2) * s`` with
``k = B - c``, half a ``B``-grid step off every integer multiple of ``2^k * s``, so no int8 weight
holds it exactly (``2 * code + 1`` would need ``c + k + 1 = B + 1`` bits). The offset is the same
for every weight of a row, so the convolution splits exactly::

    conv(x, w)[o] = 2^k s_o * conv(x, code)[o]  +  (2^k - 1) / 2 * s_o * box(sum_c x)

an int8 convolution of the codes, plus a per-row constant times one single-channel box sum of the
input (the channel sum, then a ``k x k`` window sum: ``1 / C_out`` of the convolution's work).
Inductor fuses the addition into the loop after the convolution. The values are those of the export
up to float rounding, except where an activation lies exactly on a rounding tie: the decomposed
quantizer multiplies by ``1 / step`` where the export divides by ``step``, so such a value may take
the neighbouring step (the step-boundary tolerance of :mod:`fn3.export.onnx`).

**Where it pays.** oneDNN's int8 kernels want channel counts of 16 and more; on narrower layers (a
ResNet-20 stage at half width has 8) the int8 layer measured slower than the float one, so by
default only layers with at least ``min_channels`` input and output channels are converted; the
others keep the export's float convolution and fused quantizer. On a CPU without VNNI the int8
kernels are not faster (``docs/benchmarks.md``): measure with ``python benchmarks/export.py``.

Converted: an ``fn3.nn.act_quant.QuantInput`` pair (activation quantizer, then ``nn.Conv2d`` or
``nn.Linear``) of an :class:`~fn3.export.user.Exported` model whose quantizer is unsigned,
``"centred"``, on a prefix of its bit-planes with at most 8 bits, and whose weight keeps a prefix of
its planes (at most 8 bits); a convolution also dense, not dilated, zero-padded by at most half its
window. A linear layer (:class:`IntLinear`, oneDNN ``qlinear``) adds its centre offset as a per-row
constant times the sum of its input features. Everything else (an unquantized stem or classifier,
signed quantizers, non-prefix plane sets) is left as is.

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> from fn3.export.integer import integer
    >>> _ = torch.manual_seed(0)
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = export(net, fn3.space(net).uniform({"bits": 4}))
    >>> fast = integer(small)
    >>> sum(isinstance(m, IntConv2d) for m in fast.modules())  # 18 block convolutions, 2 shortcuts
    20
    >>> x = torch.randn(2, 3, 32, 32)
    >>> with torch.no_grad():
    ...     bool((fast(x) - small(x)).abs().max() < 1e-4)
    True
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
import torch.nn.functional as F
from torch import nn

from fn3.errors import ConfigError
from fn3.export.user import Exported, _codes_of
from fn3.nn.act_quant import ActQuant, QuantInput, is_prefix
from fn3.nn.protocol import QuantWeight

__all__ = ["IntConv2d", "IntLinear", "integer"]

_qd = torch.ops.quantized_decomposed


def _int8_state(layer: nn.Module, act: ActQuant, plain: nn.Module, quant: QuantWeight) -> None:
    """The int8 form of a quantizer + weight layer, as buffers of ``layer``: the activation step and
    top code, the weight's ``c``-bit codes (int8) with the step of a code per row, the centre offset
    per row, the bias."""
    step, _, hi = act._grid()
    layer.step, layer.qmax = float(step), int(hi)
    c = len(quant.planes)
    k = quant.total_bits - c
    offset = (2**k - 1) / 2 if quant.scheme == "centred" else 0.0
    s = quant.scale.detach().to(torch.float32)  # (out,) the B-bit step of each row
    w = plain.weight.detach()  # (out, in, ...) on the grid: (code * 2^k + offset) * s
    # the c-bit codes a file stores for this weight (fn3.export.user, which checks the grid); a row
    # with a zero step keeps codes 0 (its weight is 0 whatever they are)
    live = s > 0
    codes = torch.zeros(w.shape, dtype=torch.int64)
    codes[live] = _codes_of(w[live], dataclasses.replace(quant, scale=s[live]))
    layer.register_buffer("codes", codes.to(torch.int8))  # (out, in, ...), c <= 8 bits
    layer.register_buffer("w_scale", s * 2**k)  # (out,) the step of a c-bit code
    layer.register_buffer("w_zero", torch.zeros(s.shape, dtype=torch.int64))
    layer.offset = float(offset)
    layer.register_buffer("centre", offset * s)  # (out,)
    bias = None if plain.bias is None else plain.bias.detach().clone()
    layer.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)


def _dequantized(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x on its c-bit grid, the weight)`` through the decomposed ops Inductor's int8 patterns
    match: quantize -> dequantize for the input, dequantize of the int8 codes for the weight."""
    xq = _qd.quantize_per_tensor.default(x, layer.step, 0, 0, layer.qmax, torch.uint8)
    xd = _qd.dequantize_per_tensor.default(xq, layer.step, 0, 0, layer.qmax, torch.uint8)
    w = _qd.dequantize_per_channel.default(layer.codes, layer.w_scale, layer.w_zero, 0, -128, 127, torch.int8)
    return xd, w



class IntConv2d(nn.Module):
    """A quantized activation, then a convolution of ``c``-bit weight codes, as int8 kernels run it.

    ``forward`` is written with ``quantized_decomposed`` ops, which eager PyTorch runs in float (the
    values of the export) and Inductor lowers to one oneDNN ``qconv`` (see the module docstring).
    """

    def __init__(self, act: ActQuant, conv: nn.Conv2d, quant: QuantWeight):
        super().__init__()
        _int8_state(self, act, conv, quant)
        self.stride, self.padding = conv.stride, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xd, w = _dequantized(self, x)  # (B, C_in, H, W) on the c-bit grid; Inductor: the qconv's input
        y = F.conv2d(xd, w, self.bias, self.stride, self.padding)  # (B, C_out, H', W')
        if self.offset:  # the centre offset: a per-row constant times a box sum of the input
            total = xd.sum(1, keepdim=True)  # (B, 1, H, W)
            kh, kw = self.codes.shape[2:]
            # the k x k window sum as a mean times its size: a pooling loop Inductor generates itself
            # (a 1-channel convolution measured slower)
            box = F.avg_pool2d(total, (kh, kw), self.stride, self.padding, count_include_pad=True)
            y = y + (self.centre.view(1, -1, 1, 1) * (kh * kw)) * box  # (B, C_out, H', W')
        return y

    def extra_repr(self) -> str:
        out, cin, kh, kw = self.codes.shape
        return (
            f"{cin}, {out}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}, "
            f"act_levels={self.qmax + 1}, centred={bool(self.offset)}"
        )



class IntLinear(nn.Module):
    """A quantized activation, then ``nn.Linear`` of ``c``-bit weight codes (Inductor: oneDNN
    ``qlinear``); the centre offset is a per-row constant times the sum of the input features."""

    def __init__(self, act: ActQuant, linear: nn.Linear, quant: QuantWeight):
        super().__init__()
        _int8_state(self, act, linear, quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xd, w = _dequantized(self, x)  # (..., in)
        y = F.linear(xd, w, self.bias)  # (..., out)
        if self.offset:
            y = y + self.centre * xd.sum(-1, keepdim=True)
        return y

    def extra_repr(self) -> str:
        out, cin = self.codes.shape
        levels = self.qmax + 1
        return f"in_features={cin}, out_features={out}, act_levels={levels}, centred={bool(self.offset)}"


def _convertible(pair: nn.Module, quant: QuantWeight | None, min_channels: int) -> type[nn.Module] | None:
    """The int8 layer that computes ``pair`` (a quantizer + convolution or linear layer), or None
    (see the module docstring)."""
    if not (isinstance(pair, QuantInput) and len(pair) == 2 and quant is not None):
        return None
    act, layer = pair[0], pair[1]
    if not isinstance(act, ActQuant) or act.signed or act.scheme != "centred":
        return None
    if not is_prefix(act.planes) or act.bits > 8:
        return None
    if not is_prefix(quant.planes) or len(quant.planes) > 8 or quant.scheme not in ("centred", "truncate"):
        return None
    if type(layer) is nn.Linear:
        return IntLinear if min(layer.in_features, layer.out_features) >= min_channels else None
    if type(layer) is not nn.Conv2d:
        return None
    if layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros":
        return None
    if isinstance(layer.padding, str):
        return None
    if any(2 * p > k for p, k in zip(layer.padding, layer.kernel_size, strict=True)):
        return None  # the window sum is an average pool, which pads at most half its window
    return IntConv2d if min(layer.in_channels, layer.out_channels) >= min_channels else None


def integer(model: nn.Module, *, min_channels: int = 16) -> nn.Module:
    """A copy of the exported ``model`` with its int8-computable convolutions as :class:`IntConv2d`.

    Args:
        model: an :class:`~fn3.export.user.Exported` (what :func:`fn3.export.export` returns for
            every model, fn3's own networks and yours).
        min_channels: convert only convolutions with at least this many input and output channels
            (narrower ones measured slower on int8 kernels than in float).

    Returns:
        A plain module (the export's module tree, converted layers replaced) for running: pass it
        to :func:`fn3.export.compiled` (``compiled(model, integer=True)`` does both), where Inductor
        turns each :class:`IntConv2d` into an int8 oneDNN convolution. Eager PyTorch runs it in float
        (the same values, slower than the export). Save the export, not this copy.
    """
    if not isinstance(model, Exported):
        raise ConfigError(
            f"integer() converts an exported sub-model (fn3.export.export(...)), got {type(model).__name__}"
        )
    if min_channels < 1:
        raise ConfigError(f"min_channels {min_channels}: expected a positive channel count")
    module = copy.deepcopy(model.module).eval()
    for name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            key = f"{name}.{child_name}.1.weight" if name else f"{child_name}.1.weight"
            quant = model.quant.get(key)
            kind = _convertible(child, quant, min_channels)
            if kind is not None:
                setattr(parent, child_name, kind(child[0], child[1], quant))
    return module.requires_grad_(False)
