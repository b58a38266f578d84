"""`to_onnx`: an exported model as one self-contained ONNX file that ONNX Runtime runs fast.

Two writers. By default every module, an :class:`~fn3.export.ExportedModel` included, goes through
``torch.onnx.export`` of its own forward (:mod:`fn3.export.torch_onnx`: quantizers as QDQ nodes,
BatchNorm folded by the exporter), then through graph passes that read only the ONNX graph
(:mod:`fn3.export.onnx_passes`: ``tidy``; ``coded_weights`` for ``compact=True`` / ``integer=True``,
which finds each quantized weight of an export in the graph by its values and stores it as int8
codes; ``float_rounding`` for ``rounding="float"``). Nothing in that path describes an architecture,
so any model fn3 can nest (users' ``fn3.nest_``-ed networks too) gets the same graph quality:
measured on ResNet-20 at 8/4/2 bits, the torch-written graphs run as fast as the ones fn3's own
writer writes, node for node (``tests/export/test_torch_onnx.py``).

fn3's own writer (``writer="fn3"``, below) walks an ``ExportedModel``'s module tree node by node: the
form a file of format 1 or 2 loads into. It writes
that form's ``compact`` / ``integer`` graphs and its ``"truncate"`` quantizers (format-1 files;
integer bit clearing); ``writer="auto"`` picks it only for those. The mapping below is its own; the
torch path computes the same values.

Mapping (``"centred"`` scheme):

* activation quantizer, ``c <= 8`` bits: ``QuantizeLinear`` (uint8, or int8 signed) with the ``c``-bit
  step, whose saturation is the clip at 8 bits unsigned; below 8 bits (or signed) a ``Clip`` of the
  *integer* codes to ``2^c - 1``; then ``DequantizeLinear``: two nodes at 8 bits, three below. A ReLU
  right before an unsigned quantizer is dropped (the quantizer clips at 0);
* BatchNorm after a convolution is folded into it (its factor multiplies the weight's per-channel
  scale, its shift is the bias): ONNX Runtime cannot fold it once the weight is a DequantizeLinear
  output;
* a quantized convolution between two activation quantizers whose weight is exactly an int8 code
  (``c = 8``, or a prefix under ``"truncate"``) and whose codes cannot saturate x86 AVX2 int8 kernels
  (``2 * max activation code * max |weight code| <= 32767``: 8-bit weights after activations of at
  most 7 bits): int8 codes -> ``DequantizeLinear`` (per-output-channel scale) -> ``Conv`` -> the next
  quantizer's ``QuantizeLinear``, the QDQ pattern ONNX Runtime fuses into one integer ``QLinearConv``
  (with ``integer=True``; ORT rounds the bias to int32 units of ``input step * weight step``);
* every other weight: float32, dequantized from its codes once at export (ONNX Runtime then packs it
  for its fastest float convolution). A centred weight of ``c < 8`` bits lies half a cell off the
  integer grid (``code * 2^(B-c) + (2^(B-c) - 1) / 2``), so no int8 kernel computes it exactly. The
  activation ``DequantizeLinear`` before such a layer has one scale per channel (all equal): ONNX
  Runtime requantizes a float weight that follows a per-tensor ``DequantizeLinear`` to per-tensor
  int8 (its ``WeightBiasQuantization`` pass), which would change the model;
* ``rounding="float"``: an activation quantizer right before a float convolution is computed in
  float arithmetic that ONNX Runtime keeps in its blocked (NCHWc) convolution layout, where
  ``QuantizeLinear`` / ``DequantizeLinear`` force a reorder out of and back into that layout around
  every quantizer. The producing convolution (BatchNorm folded) is scaled by ``1 / step`` (or, when
  the input is no convolution output, a depthwise 1x1 ``Conv`` computes ``x / step + M``); a depthwise
  1x1 ``Conv`` adds ``M = 1.5 * 2^23``: float32 numbers near ``M`` are one apart, so that addition
  rounds to an integer, half to even, as QuantizeLinear does; a ``Clip`` to ``M + [lo, hi]`` (fused
  into that convolution) is the clip; a second one subtracts ``M``; the next convolution's weight
  takes the ``step``. Same values up to float rounding (``x * (1/step)`` for ``x / step``), like
  BatchNorm folding. Each addition of ``M`` is a 1x1 depthwise convolution of its own: a convolution
  kernel may start from its bias and accumulate the products at ``M``'s magnitude. An unsigned
  quantizer after a convolution it alone reads is one such pass, not two (the clip fused into the
  producing convolution, ``- M`` as a fused ``HardSigmoid``; :mod:`fn3.export.onnx_passes`);
* ``compact=True``: every prefix weight of ``<= 8`` bits as int8 codes (``DequantizeLinear``, plus the
  per-channel centre offset ``Add`` under ``"centred"``): the smallest file, slower in ONNX Runtime;
* ``"truncate"`` activations (files of format 1): ``QuantizeLinear``, the dropped low bits cleared in
  the integer domain (``BitShift`` right then left, or ``BitwiseAnd``), ``DequantizeLinear``; signed
  below ``B`` bits: the float formula (``Div``, ``Round``, ``Floor``, ``Mul``);
* residual -> ``Add`` + ``Relu``, pooling -> ``GlobalAveragePool``.

ONNX Runtime computes convolutions with other float rounding than PyTorch (and folding BatchNorm
changes the rounding too), so where an activation is quantized a value lying within rounding error of a
step boundary can land on the neighbouring step: outputs then agree to within a few activation steps
rather than to 1e-5 (float models agree to 1e-5). ``python benchmarks/export.py`` measures the speed.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from fn3.errors import ConfigError
from fn3.export.container import atomic_write
from fn3.export.onnx_passes import MAGIC as _MAGIC
from fn3.export.onnx_passes import blocked, code_unit
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


def _flatten(m: nn.Module) -> list[nn.Module]:
    """The modules of nested ``nn.Sequential`` containers, in order (a Residual stays one module)."""
    if not isinstance(m, nn.Sequential):
        return [m]
    return [leaf for child in m for leaf in _flatten(child)]


def _bn_factor(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """``(k, b)``, each (C,), with ``bn(y) = k * y + b`` in eval mode."""
    k = _f32(bn.weight) / np.sqrt(_f32(bn.running_var) + np.float32(bn.eps))
    return k, _f32(bn.bias) - _f32(bn.running_mean) * k


def _int8_exact(m: nn.Module) -> bool:
    """True when the layer's weight is exactly ``int8 code * per-channel scale`` (no centre offset)."""
    return isinstance(m, (QuantConv2d, QuantLinear)) and m.bits <= 8 and is_prefix(m.planes) and not m.offset


def _codes_weight(g: _Graph, m: QuantConv2d | QuantLinear, k: np.ndarray) -> str:
    """DequantizeLinear of the int8 codes (per-output-channel scale ``scale * 2^(B-c) * k``), plus the
    per-channel centre offset (``Add``) under ``"centred"`` below ``B`` bits."""
    scale = _f32(m.scale) * k  # (out,)
    codes = g.const("codes", m.codes.numpy().astype(np.int8))
    zero = g.const("wzero", np.zeros(m.codes.shape[0], dtype=np.int8))
    u = np.float32(2 ** (m.total_bits - m.bits))
    w = g.op("DequantizeLinear", [codes, g.const("wscale", scale * u), zero], "weight", axis=0)
    if m.offset:  # the centre of each cell: (out, 1, ...) broadcast over the weight
        off = (scale * np.float32(m.offset)).reshape(-1, *([1] * (m.codes.dim() - 1)))
        w = g.op("Add", [w, g.const("woffset", off)], "weight")
    return w


def _float_weight(g: _Graph, m: nn.Module, k: np.ndarray) -> str:
    """The float weight (dequantized from its codes once, here), times ``k`` per output channel."""
    w = _f32(m.weight() if isinstance(m, (QuantConv2d, QuantLinear)) else m.weight)
    return g.const("weight", w * k.reshape(-1, *([1] * (w.ndim - 1))))


def _layer(
    g: _Graph,
    m: nn.Module,
    x: str,
    bn: nn.BatchNorm2d | None,
    codes: bool,
    in_scale: float = 1.0,
    out_scale: float = 1.0,
    out_shift: float = 0.0,
) -> str:
    """A convolution or linear layer (BatchNorm ``bn`` folded in), weights as codes or floats;
    float weights also take ``in_scale`` (the input arrives divided by it) and the output
    ``* out_scale + out_shift``."""
    out = (m.codes if isinstance(m, (QuantConv2d, QuantLinear)) else m.weight).shape[0]
    k, b = _bn_factor(bn) if bn is not None else (np.ones(out, np.float32), None)
    if m.bias is not None:
        b = _f32(m.bias) * k + (0 if b is None else b)
    if out_scale != 1.0 or out_shift != 0.0:
        k = k * np.float32(out_scale)
        b = (np.zeros(out, np.float32) if b is None else b * np.float32(out_scale)) + np.float32(out_shift)
    w = _codes_weight(g, m, k) if codes else _float_weight(g, m, k * np.float32(in_scale))
    inputs = [x, w] + ([g.const("bias", b.astype(np.float32))] if b is not None else [])
    if isinstance(m, (QuantLinear, nn.Linear)):
        return g.op("Gemm", inputs, transB=1)
    ks, s, p = (
        (m.kernel_size, m.stride, m.padding)
        if isinstance(m, QuantConv2d)
        else (m.kernel_size[0], m.stride[0], m.padding[0])
    )
    return g.op("Conv", inputs, kernel_shape=[ks, ks], strides=[s, s], pads=[p] * 4, group=m.groups)


def _dq(g: _Graph, q: str, step: np.ndarray, dtype: type, channels: int | None) -> str:
    """DequantizeLinear with the scalar ``step``, or with ``channels`` copies of it along axis 1."""
    if channels is None:
        return g.op(
            "DequantizeLinear", [q, g.const("astep", step), g.const("azero", np.zeros((), dtype))], "dq"
        )
    s, z = np.full(channels, step, np.float32), np.zeros(channels, dtype)
    return g.op("DequantizeLinear", [q, g.const("astep", s), g.const("azero", z)], "dq", axis=1)


def _act(g: _Graph, m: ActQuant, x: str, channels: int | None = None) -> str:
    """An activation quantizer; ``channels``: a per-channel DequantizeLinear (see the module doc)."""
    b, c = m.total_bits, m.bits
    step = _f32(m.step()).reshape(())
    a = np.float32(abs(float(m.alpha)))
    if m.scheme == "centred" and c <= 8:
        # QuantizeLinear rounds x / step and saturates at its type's range: that is the clip at 8
        # bits unsigned (0..255 = [0, alpha]); otherwise the codes are clipped to 2^c - 1 (signed:
        # +-(2^(c-1) - 1)) in the integer domain, one byte per value.
        dtype = np.int8 if m.signed else np.uint8
        q = g.op("QuantizeLinear", [x, g.const("astep", step), g.const("azero", np.zeros((), dtype))], "q")
        top = max(1, 2 ** (c - 1) - 1) if m.signed else 2**c - 1
        if m.signed or top < 255:
            lo = g.const("qlo", np.array(-top if m.signed else 0, dtype=dtype))
            q = g.op("Clip", [q, lo, g.const("qhi", np.array(top, dtype=dtype))], "qclip")
        return _dq(g, q, step, dtype, channels)
    if m.scheme == "centred":  # more than 8 bits: the float formula
        xc = g.op("Clip", [x, g.const("lo", np.float32(-a if m.signed else 0.0)), g.const("hi", a)])
        q = g.op("Round", [g.op("Div", [xc, g.const("astep", step)])])
        return g.op("Mul", [q, g.const("astep", step)])
    if not m.signed and b <= 8:
        q = g.op("QuantizeLinear", [x, g.const("astep", step), g.const("azero", np.zeros((), np.uint8))], "q")
        if c < b and is_prefix(m.planes):  # round(x / step) saturated to 0..255, low bits cleared
            k = g.const("shift", np.full((), b - c, dtype=np.uint8))
            q = g.op("BitShift", [g.op("BitShift", [q, k], direction="RIGHT"), k], direction="LEFT")
        elif c < b:
            mask = sum(1 << (b - 1 - p) for p in m.planes)
            q = g.op("BitwiseAnd", [q, g.const("mask", np.full((), mask, dtype=np.uint8))])
        return _dq(g, q, step, np.uint8, channels)
    lo = g.const("lo", np.float32(-a if m.signed else 0.0))
    xc = g.op("Clip", [x, lo, g.const("hi", a)])
    if m.signed and c == b and b <= 8:
        q = g.op("QuantizeLinear", [xc, g.const("astep", step), g.const("azero", np.zeros((), np.int8))], "q")
        return _dq(g, q, step, np.int8, channels)
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


_LAYERS = (QuantConv2d, QuantLinear, nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class _Form:
    """How layers are written: ``compact`` (int8 codes wherever possible), ``integer`` (int8 codes
    where ONNX Runtime fuses them into QLinearConv), ``float_round`` (quantizers before float
    convolutions as float rounding, ``rounding="float"``)."""

    compact: bool = False
    integer: bool = False
    float_round: bool = False


def _max_act_code(q: ActQuant) -> int:
    """Largest integer code an unsigned quantizer's QuantizeLinear produces."""
    return 2**q.bits - 1 if q.scheme == "centred" else 2**q.total_bits - 1


def _weights_as_codes(mods: list[nn.Module], j: int, form: _Form) -> bool:
    """Whether layer ``mods[j]`` is written with int8 codes (else float weights).

    Always under ``compact``. Otherwise where ONNX Runtime fuses the layer into an integer
    ``QLinearConv`` that computes it: an exact int8 weight (no centre offset) between an unsigned
    activation quantizer and the next quantizer (right after the layer once its BatchNorm is folded
    and the ReLU dropped), and codes small enough for x86 (AVX2) u8 x s8 kernels, which add pairs of
    products in int16 and saturate: ``2 * max activation code * max |weight code| <= 32767`` (8-bit
    activations with 8-bit weights measured wrong by up to 3.0 on a layer's outputs).
    """
    m = mods[j]
    if not isinstance(m, (QuantConv2d, QuantLinear)) or m.bits > 8 or not is_prefix(m.planes):
        return False
    if form.compact:
        return True
    before = mods[j - 1] if j > 0 else None
    after = [r for r in mods[j + 1 :] if not isinstance(r, (nn.BatchNorm2d, nn.ReLU))][:1]
    return (
        form.integer
        and isinstance(m, QuantConv2d)
        and _int8_exact(m)
        and isinstance(before, ActQuant)
        and not before.signed
        and before.total_bits <= 8
        and 2 * _max_act_code(before) * 2 ** (m.bits - 1) <= 32767
        and bool(after)
        and isinstance(after[0], ActQuant)
    )


def _rounds_in_float(mods: list[nn.Module], j: int, form: _Form) -> bool:
    """Whether quantizer ``mods[j]`` is written as float rounding (see ``_round_tail``)."""
    q = mods[j] if j < len(mods) else None
    nxt = mods[j + 1] if j + 1 < len(mods) else None
    before = [r for r in mods[:j] if not isinstance(r, (nn.BatchNorm2d, nn.ReLU))][-1:]
    if before and isinstance(before[0], _LAYERS) and _weights_as_codes(mods, mods.index(before[0]), form):
        return False  # the quantizer is the QuantizeLinear of an integer QLinearConv before it
    return (
        form.float_round
        and isinstance(q, ActQuant)
        and q.scheme == "centred"
        and q.bits <= 16
        and isinstance(nxt, (QuantConv2d, nn.Conv2d))
        and blocked(nxt.in_channels)
        and not _weights_as_codes(mods, j + 1, form)
    )


def _out_channels(m: nn.Module) -> int:
    return (m.codes if isinstance(m, (QuantConv2d, QuantLinear)) else m.weight).shape[0]


def _channel_affine(g: _Graph, x: str, c: int, scale: float, shift: float) -> str:
    """``x * scale + shift`` on (N, c, H, W) as a depthwise 1x1 ``Conv``: the one per-element op
    ONNX Runtime keeps in its blocked (NCHWc) layout, with a ``Clip`` fused after it."""
    w = g.const("aw", np.full((c, 1, 1, 1), scale, np.float32))
    return g.op("Conv", [x, w, g.const("ab", np.full(c, shift, np.float32))], kernel_shape=[1, 1], group=c)


def _round_tail(g: _Graph, x: str, lo: float, hi: float, c: int) -> str:
    """``x`` = value / step + M, already rounded: clip the codes to ``[lo, hi]``, subtract M."""
    lo_c, hi_c = g.const("lo", np.float32(_MAGIC + lo)), g.const("hi", np.float32(_MAGIC + hi))
    return _channel_affine(g, g.op("Clip", [x, lo_c, hi_c]), c, 1.0, -_MAGIC)


def _emit_seq(g: _Graph, mods: list[nn.Module], x: str, form: _Form) -> str:
    """A chain of modules (rewrites: BatchNorm folded into the layer before, ReLU before an unsigned
    quantizer dropped; see the module doc)."""
    i, in_scale = 0, 1.0  # in_scale: x holds the true value / in_scale (integer codes after rounding)
    while i < len(mods):
        m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.ReLU) and isinstance(nxt, ActQuant) and not nxt.signed:
            i += 1
        elif isinstance(m, ActQuant) and in_scale == 1.0 and _rounds_in_float(mods, i, form):
            step, lo, hi = m._grid()
            c = nxt.codes.shape[1] if isinstance(nxt, QuantConv2d) else nxt.weight.shape[1]
            c *= nxt.groups
            x = _channel_affine(g, x, c, 1.0 / step, _MAGIC)
            x = _round_tail(g, x, lo, hi, c)
            in_scale, i = step, i + 1
        elif isinstance(m, ActQuant):
            layer_float = isinstance(nxt, _LAYERS) and not _weights_as_codes(mods, i + 1, form)
            channels = None
            if layer_float:  # per-channel DequantizeLinear: keeps ORT off the float weight after it
                channels = (
                    nxt.codes.shape[1] if isinstance(nxt, (QuantConv2d, QuantLinear)) else nxt.weight.shape[1]
                )
                channels *= getattr(nxt, "groups", 1)
            x = _act(g, m, x, channels)
            i += 1
        elif isinstance(m, _LAYERS):
            bn = nxt if isinstance(m, (QuantConv2d, nn.Conv2d)) and isinstance(nxt, nn.BatchNorm2d) else None
            j = i + (2 if bn is not None else 1)
            if j + 1 < len(mods) and type(mods[j]) is nn.ReLU and _rounds_in_float(mods, j + 1, form):
                j += 1  # the ReLU before an unsigned quantizer
            codes = _weights_as_codes(mods, i, form)
            if not codes and _rounds_in_float(mods, j, form):
                step, lo, hi = mods[j]._grid()
                # conv(x) / step, then + M in an op of its own (a convolution kernel may add its bias
                # first and accumulate the products at M's magnitude, losing the fraction)
                c = _out_channels(m)
                x = _layer(g, m, x, bn, False, in_scale, 1.0 / step)
                if lo == 0:  # one pass, as fn3.export.onnx_passes.float_rounding writes it
                    unit = code_unit(int(hi))
                    x = g.op("Clip", [x, g.const("lo", np.float32(0.0)), g.const("hi", np.float32(hi))])
                    x = _channel_affine(g, x, c, 1.0, _MAGIC)
                    x = g.op("HardSigmoid", [x], alpha=unit, beta=-_MAGIC * unit)
                    in_scale, i = step / unit, j + 1
                    continue
                x = _round_tail(g, _channel_affine(g, x, c, 1.0, _MAGIC), lo, hi, c)
                in_scale, i = step, j + 1
                continue
            x = _layer(g, m, x, bn, codes, in_scale)
            in_scale, i = 1.0, i + (2 if bn is not None else 1)
        else:
            x = _emit(g, m, x, form)
            i += 1
    return x


def _emit(g: _Graph, m: nn.Module, x: str, form: _Form) -> str:
    """Append the nodes of module ``m`` applied to value ``x``; return the output value."""
    if isinstance(m, (nn.Sequential, *_LAYERS)):  # includes ExportedModel
        return _emit_seq(g, _flatten(m), x, form)
    if isinstance(m, Residual):
        body = _emit(g, m.body, x, form)
        short = x if m.shortcut is None else _emit(g, m.shortcut, x, form)
        return g.op("Relu", [g.op("Add", [body, short])])
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
    exported: nn.Module,
    path: str | Path,
    input_shape: Sequence[int] | None = None,
    *,
    opset: int = 18,
    compact: bool = False,
    integer: bool = False,
    rounding: str = "qdq",
    writer: str = "auto",
) -> Path:
    """Write ``exported`` (from :func:`fn3.export.export`, or any plain model) as a single-file ONNX model.

    Args:
        exported: an exported model, or any module ``torch.onnx.export`` traces (e.g. a sub-model from
            :func:`fn3.export.extract_submodel`, also of a network converted by ``fn3.nest_``).
        path: the ``.onnx`` file to write (atomically).
        input_shape: ``(C, H, W)`` of one input; default: ``exported.meta["input_shape"]``. The batch
            dimension is dynamic (``"batch"``).
        opset: ONNX opset, 18 or later (``BitwiseAnd`` and per-axis ``DequantizeLinear``).
        compact: every quantized weight of ``<= 8`` bits as int8 codes: the smallest file (about a
            quarter of the float weights), but ONNX Runtime then runs a ``c < 8``-bit centred layer
            as a slower unpacked float convolution. Default: float weights, dequantized once here,
            which ORT packs for its fastest float convolution.
        integer: write a convolution whose weight is exactly int8 codes, between two activation
            quantizers and with codes that cannot saturate an AVX2 int8 kernel (8-bit weights with
            activations of at most 7 bits), as int8 QDQ, which ONNX Runtime runs as an integer
            ``QLinearConv``. Off by default: ORT rounds the bias to int32 units of the input step
            times the weight step, a small change of the model (the tests measure up to 0.3% of
            outputs one step off after a 7-bit quantizer, 7% after a 2-bit one).
        rounding: how an activation quantizer before a float convolution is written: ``"qdq"``
            (``QuantizeLinear`` / ``DequantizeLinear``, the standard form integer back-ends and
            quantization tools read) or ``"float"`` (rounding by float addition inside the
            convolutions' blocked layout, the fastest on ONNX Runtime's CPU: see the module doc).
        writer: ``"torch"`` (``torch.onnx.export`` and graph passes, see :mod:`fn3.export.torch_onnx`
            and :mod:`fn3.export.onnx_passes`; ``compact`` / ``integer`` need an export of
            :func:`fn3.export.export`, which knows its coded weights), ``"fn3"`` (the graph written
            node by node; an ``ExportedModel`` only), or ``"auto"``: ``"torch"``, except ``"fn3"``
            for an ``ExportedModel``'s ``compact``, ``integer`` and ``"truncate"`` forms.

    The graph's input is ``"input"`` (float32, ``(batch, C, H, W)``), its output ``"output"``.
    """
    if opset < 18:
        raise ConfigError(f"opset {opset} is too old: fn3 writes opset 18 or later")
    if input_shape is None:
        input_shape = getattr(exported, "meta", {}).get("input_shape")
        if input_shape is None:
            raise ConfigError("give input_shape=(C, H, W): the exported model does not record it")
    out_shape = list(exported(torch.zeros(1, *map(int, input_shape))).shape[1:])  # checks the shape too
    if writer not in ("auto", "fn3", "torch"):
        raise ConfigError(f"writer {writer!r}: expected auto, fn3 or torch")
    if rounding not in ("qdq", "float"):
        raise ConfigError(f"rounding {rounding!r}: expected qdq or float")
    if writer == "auto":
        writer = "fn3" if _needs_fn3_writer(exported, compact, integer) else "torch"
    if writer == "torch":
        from fn3.export.onnx_passes import coded_weights, float_rounding, short_names, tidy
        from fn3.export.torch_onnx import torch_onnx_model

        weights = _coded(exported) if compact or integer else []
        model = tidy(torch_onnx_model(exported, input_shape, opset))
        if compact or integer:
            model = coded_weights(model, weights, compact=compact, integer=integer)
        model = float_rounding(model) if rounding == "float" else model
        return _finish(short_names(model) if compact else model, exported, path)
    g = _Graph(opset)
    out = _emit(g, exported, "input", _Form(compact, integer, rounding == "float"))
    g.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    graph = helper.make_graph(
        g.nodes,
        "fn3",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *map(int, input_shape)])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *out_shape])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fn3")
    return _finish(model, exported, path)


def _coded(exported: nn.Module) -> list:
    """The quantized weights of an export (:class:`~fn3.export.Exported`) as codes, steps and offsets,
    for :func:`~fn3.export.onnx_passes.coded_weights`: every prefix weight (the top ``c`` bits)."""
    from fn3.export.onnx_passes import CodedWeight
    from fn3.export.user import _codes_of

    quant = getattr(exported, "quant", None)
    if not isinstance(quant, dict) or not hasattr(exported, "module"):
        if isinstance(exported, ExportedModel):
            raise ConfigError("compact=True and integer=True of an ExportedModel are forms of fn3's own "
                              "writer: use writer='fn3'")
        raise ConfigError("compact=True and integer=True need an export of fn3.export.export (it knows "
                          "which weights are codes), not a plain module")
    state = exported.module.state_dict()
    out = []
    for key, q in quant.items():
        c = len(q.planes)
        if q.planes != tuple(range(c)):
            continue  # not a prefix: its levels are no integer grid
        unit = 2 ** (q.total_bits - c)
        offset = (unit - 1) / 2 / unit if q.scheme == "centred" else 0.0
        w = state[key].detach()
        codes = _codes_of(w, q).numpy()
        out.append(CodedWeight(w.numpy(), codes, (q.scale.numpy() * unit).astype(np.float32), offset))
    return out


def _needs_fn3_writer(exported: nn.Module, compact: bool, integer: bool) -> bool:
    """Whether only fn3's own writer writes this form: int8 weight codes in the file (``compact``),
    integer kernels (``integer``), or a ``"truncate"`` quantizer (integer bit clearing)."""
    if not isinstance(exported, ExportedModel):
        return False
    truncate = any(isinstance(m, ActQuant) and m.scheme != "centred" for m in exported.modules())
    return compact or integer or truncate


def _finish(model: onnx.ModelProto, exported: nn.Module, path: str | Path) -> Path:
    """Record the spec, check, and write ``model`` atomically to ``path``."""
    model.ir_version = min(model.ir_version, 10)  # what current ONNX Runtime releases read
    meta = getattr(exported, "meta", None)
    meta = meta if isinstance(meta, dict) else {}
    if "spec" in meta:
        import json

        helper.set_model_props(model, {"fn3.spec": json.dumps(meta["spec"], sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    atomic_write(path, [model.SerializeToString()])
    return path
