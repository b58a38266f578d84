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

Converted: an ``fn3.nn.act_quant.QuantInput`` pair (activation quantizer, then ``nn.Conv2d``) of an
:class:`~fn3.export.user.Exported` model whose quantizer is unsigned, ``"centred"``, on a prefix of
its bit-planes with at most 8 bits, and whose weight keeps a prefix of its planes (at most 8 bits).
Everything else (the stem, the classifier, signed quantizers, non-prefix plane sets) is left as is.

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> from fn3.export.integer import integer
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

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
import torch.nn.functional as F
from torch import nn

from fn3.errors import ConfigError
from fn3.nn.act_quant import ActQuant, QuantInput, is_prefix
from fn3.nn.protocol import QuantWeight

__all__ = ["IntConv2d", "integer"]

_qd = torch.ops.quantized_decomposed


class IntConv2d(nn.Module):
    """A quantized activation, then a convolution of ``c``-bit weight codes, as int8 kernels run it.

    ``forward`` is written with ``quantized_decomposed`` ops, which eager PyTorch runs in float (the
    values of the export) and Inductor lowers to one oneDNN ``qconv`` (see the module docstring).
    """

    def __init__(self, act: ActQuant, conv: nn.Conv2d, quant: QuantWeight):
        super().__init__()
        step, _, hi = act._grid()
        self.step, self.qmax = float(step), int(hi)
        c = len(quant.planes)
        k = quant.total_bits - c
        offset = (2**k - 1) / 2 if quant.scheme == "centred" else 0.0
        s = quant.scale.detach().to(torch.float32)  # (out,) the B-bit step of each row
        w = conv.weight.detach()  # (out, in, kh, kw), on the grid: (code * 2^k + offset) * s
        codes = torch.round(w / s.view(-1, 1, 1, 1) - offset) / 2**k
        if not torch.equal(codes, codes.round()) or codes.min() < -128 or codes.max() > 127:
            raise ValueError("fn3 bug: a quantized weight is not on its c-bit grid")
        self.register_buffer("codes", codes.to(torch.int8))  # (out, in, kh, kw)
        self.register_buffer("w_scale", s * 2**k)  # (out,) the step of a c-bit code
        self.register_buffer("w_zero", torch.zeros(s.shape, dtype=torch.int64))
        self.offset = float(offset)
        self.register_buffer("centre", (offset * s).view(1, -1, 1, 1))  # (1, out, 1, 1)
        bias = None if conv.bias is None else conv.bias.detach().clone()
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding = conv.stride, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, H, W) float -> uint8 codes -> their float values (Inductor: the qconv's input)
        xq = _qd.quantize_per_tensor.default(x, self.step, 0, 0, self.qmax, torch.uint8)
        xd = _qd.dequantize_per_tensor.default(xq, self.step, 0, 0, self.qmax, torch.uint8)
        w = _qd.dequantize_per_channel.default(
            self.codes, self.w_scale, self.w_zero, 0, -128, 127, torch.int8
        )
        y = F.conv2d(xd, w, self.bias, self.stride, self.padding)  # (B, C_out, H', W')
        if self.offset:  # the centre offset: a per-row constant times a box sum of the input
            total = xd.sum(1, keepdim=True)  # (B, 1, H, W)
            kh, kw = self.codes.shape[2:]
            # the k x k window sum as a mean times its size: a pooling loop Inductor generates itself
            # (a 1-channel convolution measured slower)
            box = F.avg_pool2d(total, (kh, kw), self.stride, self.padding, count_include_pad=True)
            y = y + (self.centre * (kh * kw)) * box  # (B, C_out, H', W')
        return y

    def extra_repr(self) -> str:
        out, cin, kh, kw = self.codes.shape
        return (
            f"{cin}, {out}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}, "
            f"act_levels={self.qmax + 1}, centred={bool(self.offset)}"
        )


def _convertible(pair: nn.Module, quant: QuantWeight | None, min_channels: int) -> bool:
    """Is ``pair`` a quantizer + convolution an int8 kernel computes (see the module docstring)?"""
    if not (isinstance(pair, QuantInput) and len(pair) == 2 and quant is not None):
        return False
    act, conv = pair[0], pair[1]
    if not (isinstance(act, ActQuant) and type(conv) is nn.Conv2d):
        return False
    if act.signed or act.scheme != "centred" or not is_prefix(act.planes) or act.bits > 8:
        return False
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str):
        return False
    if any(2 * p > k for p, k in zip(conv.padding, conv.kernel_size, strict=True)):
        return False  # the window sum is an average pool, which pads at most half its window
    if not is_prefix(quant.planes) or len(quant.planes) > 8 or quant.scheme not in ("centred", "truncate"):
        return False
    return min(conv.in_channels, conv.out_channels) >= min_channels


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
    from fn3.export.user import Exported

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
            if _convertible(child, quant, min_channels):
                setattr(parent, child_name, IntConv2d(child[0], child[1], quant))
    return module.requires_grad_(False)
