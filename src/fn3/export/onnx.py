"""`to_onnx`: an exported model as one self-contained ONNX file, quantized layers in QDQ form.

fn3 writes the ONNX graph itself, node by node, from the exported module tree (a dozen module types).
Both of torch's exporters were tried (torch 2.13 with onnxscript): ``torch.onnx.export(dynamo=True)``
and ``dynamo=False`` both run, but both constant-fold the dequantization of the stored codes into
float32 weights, so the int8 codes and the QDQ structure are lost, and the dynamo exporter takes ~5 s
per model. Writing the graph directly keeps the codes as ``int8`` initializers, is exact about every
quantizer, takes milliseconds, and always yields a single file (no external data).

Mapping:

* quantized weight, ``c <= 8`` bits, prefix planes: ``int8`` codes -> ``DequantizeLinear`` (per-output-
  channel scale ``scale * 2^(B-c)``, zero point 0), plus, under the ``"centred"`` scheme, the
  per-channel centre offset ``scale * (2^(B-c) - 1) / 2`` (``Add``) -> ``Conv`` / ``Gemm``;
  other bit-plane sets or ``c > 8``: the decoded float weight (float fake-quant);
* activation quantizer, ``"centred"`` scheme (``c`` bits rounded on the ``c``-bit grid):
  ``Clip`` to ``[0, alpha]`` (``[-alpha, alpha]`` signed), then ``QuantizeLinear`` /
  ``DequantizeLinear`` with the ``c``-bit step (uint8 / int8): three nodes, the QDQ pair ONNX
  Runtime's quantization tools recognise;
* activation quantizer, ``"truncate"`` scheme (files of format 1): ``QuantizeLinear`` (uint8, step =
  ``alpha / (2^B - 1)``), the dropped low bits cleared in the integer domain (``BitShift`` right then
  left, or ``BitwiseAnd`` for a non-prefix plane set), ``DequantizeLinear``; signed: ``Clip`` then int8
  QDQ at ``c = B``, else the float formula (``Div``, ``Round``, ``Floor``, ``Mul``);
* BatchNorm -> ``BatchNormalization``, residual -> ``Add`` + ``Relu``, pooling -> ``GlobalAveragePool``.

ONNX Runtime computes convolutions with other float rounding than PyTorch, so where an activation is
quantized a value lying within rounding error of a step boundary can land on the neighbouring step:
outputs then agree to within a few activation steps rather than to 1e-5 (float models agree to 1e-5).

Example:
    >>> import os, tempfile, torch, fn3
    >>> import onnxruntime as ort
    >>> from fn3.export import export, to_onnx
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3, levels=("channels",)).eval()
    >>> small = export(net, fn3.space(net).uniform({"channels": 0.5}))
    >>> path = to_onnx(small, os.path.join(tempfile.mkdtemp(), "m.onnx"), (3, 32, 32))
    >>> x = torch.randn(2, 3, 32, 32)
    >>> y = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    >>> bool(abs(y - small(x).detach().numpy()).max() < 1e-4)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from fn3.errors import ConfigError
from fn3.export.container import atomic_write
from fn3.export.qmodules import ActQuant, ExportedModel, QuantConv2d, QuantLinear, Residual, is_prefix

__all__ = ["to_onnx"]


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: object) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).numpy()


def _weight(g: _Graph, m: QuantConv2d | QuantLinear | nn.Conv2d | nn.Linear) -> str:
    """The float weight as a graph value: DequantizeLinear of int8 codes where possible."""
    if isinstance(m, (QuantConv2d, QuantLinear)):
        if m.bits <= 8 and is_prefix(m.planes):
            codes = g.const("codes", m.codes.numpy().astype(np.int8))
            scale = g.const("wscale", _f32(m.scale) * np.float32(2 ** (m.total_bits - m.bits)))
            zero = g.const("wzero", np.zeros(m.codes.shape[0], dtype=np.int8))
            w = g.op("DequantizeLinear", [codes, scale, zero], "weight", axis=0)
            if m.offset:  # the centre of each cell: (out, 1, ...) broadcast over the weight
                shape = (-1, *([1] * (m.codes.dim() - 1)))
                off = (_f32(m.scale) * np.float32(m.offset)).reshape(shape)
                w = g.op("Add", [w, g.const("woffset", off)], "weight")
            return w
        return g.const("weight", _f32(m.weight()))
    return g.const("weight", _f32(m.weight))


def _act(g: _Graph, m: ActQuant, x: str) -> str:
    b, c = m.total_bits, m.bits
    step = _f32(m.step()).reshape(())
    a = np.float32(abs(float(m.alpha)))
    if m.scheme == "centred" and c <= 8:
        # Clip first: QuantizeLinear saturates at the type's range (0..255), not at 2^c - 1.
        xc = g.op("Clip", [x, g.const("lo", np.float32(-a if m.signed else 0.0)), g.const("hi", a)])
        s = g.const("astep", step)
        z = g.const("azero", np.zeros((), dtype=np.int8 if m.signed else np.uint8))
        return g.op("DequantizeLinear", [g.op("QuantizeLinear", [xc, s, z], "q"), s, z], "dq")
    if m.scheme == "centred":  # more than 8 bits: the float formula
        xc = g.op("Clip", [x, g.const("lo", np.float32(-a if m.signed else 0.0)), g.const("hi", a)])
        q = g.op("Round", [g.op("Div", [xc, g.const("astep", step)])])
        return g.op("Mul", [q, g.const("astep", step)])
    if not m.signed and b <= 8:
        s, z = g.const("astep", step), g.const("azero", np.zeros((), dtype=np.uint8))
        q = g.op("QuantizeLinear", [x, s, z], "q")  # round(x / step) saturated to 0..255
        if c < b and is_prefix(m.planes):
            k = g.const("shift", np.full((), b - c, dtype=np.uint8))
            q = g.op("BitShift", [g.op("BitShift", [q, k], direction="RIGHT"), k], direction="LEFT")
        elif c < b:
            mask = sum(1 << (b - 1 - p) for p in m.planes)
            q = g.op("BitwiseAnd", [q, g.const("mask", np.full((), mask, dtype=np.uint8))])
        return g.op("DequantizeLinear", [q, s, z], "dq")
    lo = g.const("lo", np.float32(-a if m.signed else 0.0))
    xc = g.op("Clip", [x, lo, g.const("hi", a)])
    if m.signed and c == b and b <= 8:
        s, z = g.const("astep", step), g.const("azero", np.zeros((), dtype=np.int8))
        return g.op("DequantizeLinear", [g.op("QuantizeLinear", [xc, s, z], "q"), s, z], "dq")
    q = g.op("Round", [g.op("Div", [xc, g.const("astep", step)])])
    if c < b and is_prefix(m.planes):
        unit = np.float32(2 ** (b - c))
        q = g.op("Mul", [g.op("Floor", [g.op("Div", [q, g.const("unit", unit)])]), g.const("unit", unit)])
    elif c < b:
        mask = sum(1 << (b - 1 - p) for p in m.planes) | -(1 << b)
        qi = g.op("Cast", [q], to=TensorProto.INT32)
        qi = g.op("BitwiseAnd", [qi, g.const("mask", np.full((), mask, dtype=np.int32))])
        q = g.op("Cast", [qi], to=TensorProto.FLOAT)
    return g.op("Mul", [q, g.const("astep", step)])


def _emit(g: _Graph, m: nn.Module, x: str) -> str:
    """Append the nodes of module ``m`` applied to value ``x``; return the output value."""
    if isinstance(m, nn.Sequential):  # includes ExportedModel
        for child in m:
            x = _emit(g, child, x)
        return x
    if isinstance(m, Residual):
        body = _emit(g, m.body, x)
        short = x if m.shortcut is None else _emit(g, m.shortcut, x)
        return g.op("Relu", [g.op("Add", [body, short])])
    if isinstance(m, (QuantConv2d, nn.Conv2d)):
        k = m.kernel_size if isinstance(m, QuantConv2d) else m.kernel_size[0]
        s = m.stride if isinstance(m, QuantConv2d) else m.stride[0]
        p = m.padding if isinstance(m, QuantConv2d) else m.padding[0]
        inputs = [x, _weight(g, m)] + ([g.const("bias", _f32(m.bias))] if m.bias is not None else [])
        return g.op("Conv", inputs, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=m.groups)
    if isinstance(m, (QuantLinear, nn.Linear)):
        inputs = [x, _weight(g, m)] + ([g.const("bias", _f32(m.bias))] if m.bias is not None else [])
        return g.op("Gemm", inputs, transB=1)
    if isinstance(m, ActQuant):
        return _act(g, m, x)
    if isinstance(m, nn.BatchNorm2d):
        ins = [x] + [
            g.const(n, _f32(getattr(m, n))) for n in ("weight", "bias", "running_mean", "running_var")
        ]
        return g.op("BatchNormalization", ins, epsilon=float(m.eps))
    if isinstance(m, nn.ReLU):
        return g.op("Relu", [x])
    if isinstance(m, nn.Flatten):
        return g.op("Flatten", [x], axis=1)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return g.op("GlobalAveragePool", [x])
    if isinstance(m, nn.Identity):
        return g.op("Identity", [x])
    raise ConfigError(f"cannot write {type(m).__name__} to ONNX: not part of an fn3 export")


@torch.no_grad()
def to_onnx(
    exported: nn.Module, path: str | Path, input_shape: Sequence[int] | None = None, *, opset: int = 18
) -> Path:
    """Write ``exported`` (from :func:`fn3.export.export`) as a single-file ONNX model.

    Args:
        exported: an exported model.
        path: the ``.onnx`` file to write (atomically).
        input_shape: ``(C, H, W)`` of one input; default: ``exported.meta["input_shape"]``. The batch
            dimension is dynamic (``"batch"``).
        opset: ONNX opset, 18 or later (``BitwiseAnd`` and per-axis ``DequantizeLinear``).

    The graph's input is ``"input"`` (float32, ``(batch, C, H, W)``), its output ``"output"``.
    """
    if opset < 18:
        raise ConfigError(f"opset {opset} is too old: fn3 writes opset 18 or later")
    if input_shape is None:
        input_shape = getattr(exported, "meta", {}).get("input_shape")
        if input_shape is None:
            raise ConfigError("give input_shape=(C, H, W): the exported model does not record it")
    out_shape = list(exported(torch.zeros(1, *map(int, input_shape))).shape[1:])  # checks the shape too
    g = _Graph(opset)
    out = _emit(g, exported, "input")
    g.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    graph = helper.make_graph(
        g.nodes,
        "fn3",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *map(int, input_shape)])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *out_shape])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fn3")
    model.ir_version = min(model.ir_version, 10)  # what current ONNX Runtime releases read
    meta = getattr(exported, "meta", {}) if isinstance(exported, ExportedModel) else {}
    if "spec" in meta:
        import json

        helper.set_model_props(model, {"fn3.spec": json.dumps(meta["spec"], sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    atomic_write(path, [model.SerializeToString()])
    return path
