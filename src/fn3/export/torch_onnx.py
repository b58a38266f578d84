"""ONNX through ``torch.onnx.export``: any module fn3 can export, including users' own networks.

:func:`fn3.export.to_onnx` sends every module here by default: an
:class:`~fn3.export.ExportedModel`, a plain copy of one sub-model from
:func:`fn3.export.extract_submodel`, also of a network converted by ``fn3.nest_`` (whose ``forward``
is the user's own). The graph then goes through :mod:`fn3.export.onnx_passes`. The model's own
forward is traced by the TorchScript-based exporter (``dynamo=False``: milliseconds, and it folds
BatchNorm into the convolution before it in eval mode); fn3's activation quantizers are swapped for
:class:`~fn3.export.qmodules.ActQuant`, which exports itself as these QDQ nodes:

* ``"centred"`` quantizer of ``c <= 8`` bits: ``QuantizeLinear`` (uint8 / int8, the ``c``-bit step),
  a ``Clip`` of the integer codes below 8 bits (or signed), ``DequantizeLinear`` with one (equal)
  scale per channel, so that ONNX Runtime does not requantize the float weight after it (see
  :mod:`fn3.export.onnx`);
* weights: the float weights of the extracted layers (already on their ``c``-bit grid), as float
  initializers; ``torch.onnx.export`` constant-folds a computation from stored codes the same way.

Quantizers of the ``"truncate"`` scheme or of more than 8 bits export as their float formula.

Why a custom op rather than ``torch.fake_quantize_per_tensor_affine``: both exporters (TorchScript and
dynamo/onnxscript, torch 2.13) write it as QuantizeLinear + DequantizeLinear only for the code ranges
``(0, 255)``, ``(-128, 127)`` and ``(0, 127)`` and refuse any other, i.e. every ``c < 8``-bit quantizer;
and its CPU kernel measured ~10x slower than fn3's four tensor operations.

Example:
    >>> import os, tempfile, torch, fn3
    >>> import onnxruntime as ort
    >>> from fn3.export import extract_submodel, to_onnx
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = extract_submodel(net, fn3.space(net).uniform({"channels": 0.5, "bits": 8}))
    >>> path = to_onnx(small, os.path.join(tempfile.mkdtemp(), "m.onnx"), (3, 32, 32))
    >>> x = torch.randn(2, 3, 32, 32)
    >>> y = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    >>> bool(abs(y - small(x).numpy()).max() < 0.05)   # a few 8-bit steps at most
    True
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence

import onnx
import torch
from torch import nn

from fn3.export.qmodules import ActQuant, QuantConv2d, QuantLinear
from fn3.nn.base import NestedActQuant

__all__ = ["QDQ", "pin_quantizers", "torch_onnx_model"]


class QDQ(torch.autograd.Function):
    """``round(x / step)`` clamped to ``[lo, hi]``, times ``step``; exported as QuantizeLinear, an
    integer Clip where the type's range is wider than ``[lo, hi]``, and a per-channel
    DequantizeLinear along dimension 1 (``channels`` entries)."""

    @staticmethod
    def forward(ctx, x, step: float, lo: float, hi: float, channels: int):
        return torch.div(x, step).round_().clamp_(lo, hi).mul_(step)

    @staticmethod
    def symbolic(g, x, step: float, lo: float, hi: float, channels: int):
        signed = lo < 0
        dtype = torch.int8 if signed else torch.uint8
        scale = g.op("Constant", value_t=torch.tensor(step, dtype=torch.float32))
        zero = g.op("Constant", value_t=torch.tensor(0, dtype=dtype))
        q = g.op("QuantizeLinear", x, scale, zero)
        if signed or hi < 255:
            lo_t = g.op("Constant", value_t=torch.tensor(int(lo), dtype=dtype))
            q = g.op("Clip", q, lo_t, g.op("Constant", value_t=torch.tensor(int(hi), dtype=dtype)))
        scales = g.op("Constant", value_t=torch.full((channels,), step, dtype=torch.float32))
        zeros = g.op("Constant", value_t=torch.zeros(channels, dtype=dtype))
        return g.op("DequantizeLinear", q, scales, zeros, axis_i=1)


def _as_act_quant(m: NestedActQuant) -> ActQuant:
    """The exported quantizer computing what the extracted (pinned) nested quantizer computes: its
    own :meth:`~fn3.nn.base.NestedActQuant.extract`, so both read the same clipping level."""
    return m.extract()


def pin_quantizers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose nested activation quantizers are :class:`ActQuant` modules and whose
    quantized layers (:class:`QuantConv2d`, :class:`QuantLinear`) are float layers of their
    dequantized weights, so that the exporter folds BatchNorm into them as into any convolution."""
    from fn3.export.twin import _float_layer

    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, (NestedActQuant, QuantConv2d, QuantLinear)):
            new = _as_act_quant(m) if isinstance(m, NestedActQuant) else _float_layer(m)
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return model


class _Exporting:
    """Inside: every ActQuant's forward is :class:`QDQ` (so the tracer records its symbolic)."""

    def __init__(self, model: nn.Module):
        self.quantizers = [
            m for m in model.modules() if isinstance(m, ActQuant) and m.scheme == "centred" and m.bits <= 8
        ]

    @staticmethod
    def _forward(q: ActQuant, x: torch.Tensor) -> torch.Tensor:
        step, lo, hi = q._grid()
        return QDQ.apply(x, step, lo, hi, int(x.shape[1]))

    def __enter__(self) -> _Exporting:
        for q in self.quantizers:
            q.forward = lambda x, q=q: self._forward(q, x)
        return self

    def __exit__(self, *exc: object) -> None:
        for q in self.quantizers:
            del q.forward


@torch.no_grad()
def torch_onnx_model(model: nn.Module, input_shape: Sequence[int], opset: int) -> onnx.ModelProto:
    """``model`` (nested quantizers pinned, eval mode) as an ONNX model traced by ``torch.onnx.export``.

    The graph's input is ``"input"`` (``(batch, *input_shape)``, batch dynamic), its output ``"output"``.
    """
    model = pin_quantizers(model).eval()
    buf = io.BytesIO()
    with _Exporting(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.zeros(1, *map(int, input_shape)),),
            buf,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())
