"""Float rounding: rewrite each activation QDQ pair of an ONNX graph into ONNX Runtime's fast layout.

ONNX Runtime runs a float convolution chain in its blocked (NCHWc) layout, with BatchNorm folded and
ReLU / Clip fused into the convolution. ``QuantizeLinear`` / ``DequantizeLinear`` have no blocked
kernel, so every activation quantizer between two convolutions also costs a reorder out of the
blocked layout and one back: about five passes over the feature map where the float model has none.
:func:`float_rounding` rewrites the graph so that the same values are computed by ops that stay in
the blocked layout. It reads only the graph, never the model that produced it, so it serves any
network ``torch.onnx.export`` writes (fn3's own and users' ``fn3.nest_``-ed ones alike): there is no
second description of an architecture to keep in sync.

For a quantizer ``x -> QuantizeLinear(step) [-> Clip(lo, hi) of the integer codes] ->
DequantizeLinear(step)`` whose every consumer is a ``Conv`` reading it as its input, on a feature map
whose channels ONNX Runtime blocks (:func:`blocked`):

* ``x / step + M`` with ``M = 1.5 * 2^23``: float32 numbers near ``M`` are one apart, so the addition
  rounds ``x / step`` to an integer, half to even, as ``QuantizeLinear`` does. The ``1 / step`` is
  folded into the convolution producing ``x`` (through a ReLU after it) when that convolution has no
  other consumer; else a depthwise 1x1 ``Conv`` multiplies. ``+ M`` is a depthwise 1x1 ``Conv`` of
  its own: a convolution kernel may start from its bias and accumulate the products at ``M``'s
  magnitude, losing the fraction;
* ``Clip`` to ``[M + lo, M + hi]`` (ONNX Runtime fuses it into that convolution): the clip;
* a depthwise 1x1 ``Conv`` subtracting ``M``: the integer codes, exactly;
* each consumer's weight is multiplied by ``step``, so it reads the codes as ``codes * step``.

An unsigned quantizer whose producing convolution it alone reads (the second convolution of a
ResNet block) takes one depthwise pass instead of two: the clip to ``[0, hi]`` goes before the
rounding, fused into that convolution (where the float model fuses its ReLU), and the ``- M`` into
the ``+ M`` pass as a ``HardSigmoid`` of slope ``2^-k`` (:func:`code_unit`), which ONNX Runtime
fuses too; the consumers read ``codes * 2^-k`` and their weights take ``step * 2^k``. The values are
the two-pass graph's, bit for bit (``2^-k`` scalings are exact).

The values equal the QDQ graph's up to float rounding (``x * (1 / step)`` for ``x / step``, like
BatchNorm folding): an activation within rounding error of a step boundary can land on the
neighbouring step (the step-boundary tolerance of :mod:`fn3.export.onnx`). A quantizer feeding
anything other than convolutions (a residual addition, a matrix product, pooling) keeps its QDQ
nodes. ``python benchmarks/export.py`` measures the speed ("ORT float-round" column).

Example:
    >>> import os, tempfile, torch, fn3
    >>> import onnxruntime as ort
    >>> from fn3.export import export, to_onnx
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = export(net, fn3.space(net).uniform({"bits": 4}))
    >>> path = to_onnx(small, os.path.join(tempfile.mkdtemp(), "m.onnx"), rounding="float")
    >>> x = torch.randn(2, 3, 32, 32)
    >>> y = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    >>> bool(abs(y - small(x).numpy()).max() < 0.1)   # a few activation steps at most
    True
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = [
    "BLOCK_CHANNELS",
    "MAGIC",
    "CodedWeight",
    "blocked",
    "code_unit",
    "coded_weights",
    "float_rounding",
    "short_names",
    "tidy",
]

#: ``1.5 * 2^23``: float32 values near it are exactly one apart, so adding it rounds to an integer.
MAGIC = 12582912.0

#: Channels per block of ONNX Runtime's blocked (NCHWc) layout: 16 with AVX-512, 8 with AVX2.
BLOCK_CHANNELS = 16


def blocked(channels: int) -> bool:
    """Whether a feature map of ``channels`` runs in ONNX Runtime's blocked layout on every x86 CPU
    (a multiple of :data:`BLOCK_CHANNELS`): only there does float rounding beat ``QuantizeLinear`` /
    ``DequantizeLinear``. An unblocked map costs QDQ no reorder, and a depthwise 1x1 convolution
    outside the blocked layout is slow: on ResNet-20 at half width (8 channels in the first stage;
    AVX-512, batch 64) float rounding everywhere ran at 1.40x the float model, QDQ at 1.17-1.19x, and
    float rounding on the blocked maps only at 1.16-1.17x. On an AVX2 CPU an 8-channel map is blocked
    too and keeps its QDQ nodes all the same (the file does not know its CPU)."""
    return channels % BLOCK_CHANNELS == 0


def code_unit(hi: int) -> float:
    """``2^-k``, the smallest power of two with ``hi * 2^-k < 1``: a ``HardSigmoid`` of slope
    ``2^-k`` and offset ``-M * 2^-k`` turns ``codes + M`` (codes in ``[0, hi]``) into ``codes * 2^-k``
    exactly (a power-of-two scaling, then a sum that is representable), and its clip to ``[0, 1]``
    never binds."""
    return 2.0 ** -int(np.ceil(np.log2(hi + 1)))


_RANGE = {onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.INT8: (-128, 127)}


class _Graph:
    """Index of an ONNX graph: constants, producers, consumers, and fresh names."""

    def __init__(self, graph: onnx.GraphProto):
        self.g = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in graph.output}
        self._n = 0

    def const(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is a constant (initializer, Constant, or Identity of one)."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            attr = {a.name: a for a in node.attribute}
            return numpy_helper.to_array(attr["value"].t) if "value" in attr else None
        if node.op_type == "Identity":
            return self.const(node.input[0])
        return None

    def dtype(self, name: str) -> int | None:
        if name in self.inits:
            return self.inits[name].data_type
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return {a.name: a for a in node.attribute}["value"].t.data_type
        if node is not None and node.op_type == "Identity":
            return self.dtype(node.input[0])
        return None

    def only_consumer(self, name: str, node: onnx.NodeProto) -> bool:
        users = self.consumers.get(name, [])
        return name not in self.outputs and len(users) == 1 and users[0] is node

    def new_const(self, hint: str, value: np.ndarray) -> str:
        self._n += 1
        name = f"fn3_round/{hint}_{self._n}"
        tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.g.initializer.append(tensor)
        self.inits[name] = tensor  # a later rewrite may read it (a consumer scaled, then a producer)
        return name

    def new_name(self, hint: str) -> str:
        self._n += 1
        return f"fn3_round/{hint}_{self._n}"


def _depthwise(g: _Graph, x: str, c: int, scale: float, shift: float) -> tuple[onnx.NodeProto, str]:
    """``x * scale + shift`` on (N, c, H, W) as a depthwise 1x1 ``Conv`` (it stays in the blocked layout)."""
    w = g.new_const("w", np.full((c, 1, 1, 1), scale, np.float32))
    b = g.new_const("b", np.full(c, shift, np.float32))
    out = g.new_name("affine")
    return helper.make_node("Conv", [x, w, b], [out], name=out, kernel_shape=[1, 1], group=c), out


def _channels(g: _Graph, conv: onnx.NodeProto) -> int | None:
    w = g.const(conv.input[1])
    if w is None or w.ndim != 4:
        return None
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    return int(w.shape[1] * group)


def _quantizer(g: _Graph, dq: onnx.NodeProto) -> tuple[list[onnx.NodeProto], str, float, int, int] | None:
    """``(nodes, x, step, lo, hi)`` of the quantizer ``dq`` ends, or ``None`` if it is not one fn3 writes."""
    src = g.producer.get(dq.input[0])
    clip = src if src is not None and src.op_type == "Clip" else None
    q = g.producer.get(clip.input[0]) if clip is not None else src
    if q is None or q.op_type != "QuantizeLinear" or len(q.input) < 3:
        return None
    if not g.only_consumer(q.output[0], clip or dq):
        return None
    if clip is not None and not g.only_consumer(clip.output[0], dq):
        return None
    s, zq, ds, zd = (g.const(n) for n in (q.input[1], q.input[2], dq.input[1], dq.input[2]))
    if any(v is None for v in (s, zq, ds, zd)) or s.size != 1 or np.any(zq != 0) or np.any(zd != 0):
        return None
    step = float(s.reshape(()))
    if not step > 0 or np.any(ds.astype(np.float32) != np.float32(step)):
        return None
    rng = _RANGE.get(g.dtype(q.input[2]))
    if rng is None:
        return None
    lo, hi = rng
    if clip is not None:
        bounds = [g.const(n) for n in clip.input[1:3]]
        if len(bounds) != 2 or any(b is None for b in bounds):
            return None
        lo, hi = max(lo, int(bounds[0])), min(hi, int(bounds[1]))
    return [n for n in (q, clip, dq) if n is not None], q.input[0], step, lo, hi


def _producer_conv(g: _Graph, x: str, q: onnx.NodeProto) -> onnx.NodeProto | None:
    """The ``Conv`` producing ``x`` (directly or through one ReLU) whose output feeds nothing else."""
    node = g.producer.get(x)
    if node is not None and node.op_type == "Relu" and g.only_consumer(x, q):
        q, x, node = node, node.input[0], g.producer.get(node.input[0])
    if node is None or node.op_type != "Conv" or not g.only_consumer(x, q):
        return None
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if g.const(node.input[1]) is None or (has_bias and g.const(node.input[2]) is None):
        return None
    return node


def _scale_input(g: _Graph, node: onnx.NodeProto, i: int, factor: float) -> None:
    """Replace constant input ``i`` of ``node`` by a fresh copy times ``factor`` (never edit a shared one)."""
    value = g.const(node.input[i]).astype(np.float32) * np.float32(factor)
    node.input[i] = g.new_const("scaled", value)


def float_rounding(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every activation QDQ pair feeding only convolutions into float rounding (in place).

    Returns ``model``; see the module doc for the nodes written and when a pair is left as it is.
    """
    g = _Graph(model.graph)
    plans = []
    for dq in list(model.graph.node):
        if dq.op_type != "DequantizeLinear":
            continue
        found = _quantizer(g, dq)
        users = g.consumers.get(dq.output[0], [])
        if found is None or not users or dq.output[0] in g.outputs:
            continue
        if any(u.op_type != "Conv" or u.input[0] != dq.output[0] or g.const(u.input[1]) is None
               for u in users):  # fmt: skip
            continue
        channels = {_channels(g, u) for u in users}
        if len(channels) != 1 or None in channels:
            continue
        c = channels.pop()
        if blocked(c):
            plans.append((found, users, c))
    drop: set[int] = set()
    insert: dict[int, list[onnx.NodeProto]] = {}
    for (nodes, x, step, lo, hi), users, c in plans:
        q = nodes[0]
        prev = _producer_conv(g, x, q)
        if prev is not None:  # conv(x) / step: the 1 / step goes into its weight and bias
            _scale_input(g, prev, 1, 1.0 / step)
            if len(prev.input) > 2 and prev.input[2]:
                _scale_input(g, prev, 2, 1.0 / step)
        new = []
        if prev is not None and lo == 0:  # one depthwise pass: clip first, - M in a HardSigmoid
            unit = code_unit(hi)
            hi_c, zero = g.new_const("hi", np.float32(hi)), g.new_const("lo", np.float32(0.0))
            clipped = g.new_name("clip")
            new.append(helper.make_node("Clip", [x, zero, hi_c], [clipped], name=clipped))
            node, t = _depthwise(g, clipped, c, 1.0, MAGIC)
            codes = g.new_name("codes")
            new += [node, helper.make_node("HardSigmoid", [t], [codes], name=codes,
                                           alpha=unit, beta=-MAGIC * unit)]  # fmt: skip
        else:  # + M (the 1 / step too when no convolution took it), clip, - M
            unit = 1.0
            node, t = _depthwise(g, x, c, 1.0 if prev is not None else 1.0 / step, MAGIC)
            lo_c, hi_c = g.new_const("lo", np.float32(MAGIC + lo)), g.new_const("hi", np.float32(MAGIC + hi))
            clipped = g.new_name("clip")
            tail, codes = _depthwise(g, clipped, c, 1.0, -MAGIC)
            new += [node, helper.make_node("Clip", [t, lo_c, hi_c], [clipped], name=clipped), tail]
        for u in users:  # the consumer reads codes * unit: its weight takes step / unit
            u.input[0] = codes
            _scale_input(g, u, 1, step / unit)
        insert[id(q)] = new
        drop.update(id(n) for n in nodes)
    if plans:
        _splice(model, insert, drop)
    return model


def tidy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph ``torch.onnx.export`` writes, with the fewest nodes (in place; returns ``model``).

    * ``Constant`` nodes become initializers, and an ``Identity`` of an initializer (the exporter's
      de-duplication of equal tensors) is read as that initializer: neither is an op ONNX Runtime
      should schedule;
    * a ``Relu`` whose only reader is an unsigned ``QuantizeLinear`` (zero point 0) is dropped: the
      quantizer's saturation at 0 is the ReLU.
    """
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            graph.initializer.append(t)
            inits.add(t.name)
        elif node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    g = _Graph(graph)
    for node in graph.node:
        if node.op_type != "Relu" or node.output[0] in g.outputs:
            continue
        users = g.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or len(users[0].input) < 3:
            continue
        q = users[0]
        zero = g.const(q.input[2])
        if g.dtype(q.input[2]) == onnx.TensorProto.UINT8 and zero is not None and not np.any(zero != 0):
            q.input[0] = node.input[0]  # the ReLU now feeds nothing: _prune drops it
    _prune(model)
    return model


def _splice(
    model: onnx.ModelProto, insert: dict[int, list[onnx.NodeProto]], drop: set[int] = frozenset()
) -> None:
    """Put ``insert[id(node)]`` right before each such node, leave out the nodes in ``drop`` (ids),
    then drop what nothing reads any more (:func:`_prune`). The node order stays topological."""
    out = []
    for node in model.graph.node:
        out.extend(insert.get(id(node), []))
        if id(node) not in drop:
            out.append(node)
    del model.graph.node[:]
    model.graph.node.extend(out)
    _prune(model)


def _prune(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers nothing reads any more (the quantizers' constants, scaled-away weights)."""
    graph = model.graph
    live = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in live for o in node.output):
            keep.append(node)
            live.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in live]
    del graph.initializer[:]
    graph.initializer.extend(inits)


# -- weights as int8 codes: compact files, and ONNX Runtime's integer kernels -----------------------
@dataclass(frozen=True)
class CodedWeight:
    """A quantized weight as a graph pass needs it: ``value = (codes + offset) * step`` per row.

    ``value`` (out, ...) float32 is what the model computes with, ``codes`` (out, ...) its signed
    integer codes, ``step`` (out,) the value of one code step per output row, ``offset`` the centre
    of a cell in steps (``"centred"`` below ``B`` bits; 0 when the weight is exactly ``codes * step``).
    """

    value: np.ndarray
    codes: np.ndarray
    step: np.ndarray
    offset: float


def _row_factor(w: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """``k`` (out,) with ``w == k * ref`` row by row (a BatchNorm folded in), or ``None``."""
    a, b = w.reshape(w.shape[0], -1).astype(np.float64), ref.reshape(ref.shape[0], -1).astype(np.float64)
    den = (b * b).sum(1)
    k = np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1.0), 1.0)
    err = np.abs(a - k[:, None] * b).max(1)
    if np.any(err > 1e-5 * np.maximum(np.abs(a).max(1), 1e-30)):
        return None
    return k.astype(np.float32)


def _integer_ok(g: _Graph, conv: onnx.NodeProto, w: CodedWeight) -> onnx.NodeProto | None:
    """The activation ``DequantizeLinear`` feeding ``conv`` when ONNX Runtime may fuse the three into
    an integer ``QLinearConv`` that computes the same: an exact weight (no centre offset) between an
    unsigned fn3 quantizer read only by ``conv`` and a ``QuantizeLinear`` reading only ``conv``, with
    codes small enough for x86 u8 x s8 kernels, which add pairs of products in int16 and saturate
    (``2 * max activation code * max |weight code| <= 32767``)."""
    if w.offset or conv.op_type != "Conv":
        return None
    dq = g.producer.get(conv.input[0])
    found = _quantizer(g, dq) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if found is None or not g.only_consumer(dq.output[0], conv):
        return None
    _, _, _, lo, hi = found
    users = g.consumers.get(conv.output[0], [])
    if lo < 0 or len(users) != 1 or users[0].op_type != "QuantizeLinear" or conv.output[0] in g.outputs:
        return None
    return dq if 2 * hi * int(np.abs(w.codes).max(initial=0)) <= 32767 else None


def coded_weights(
    model: onnx.ModelProto, weights: list[CodedWeight], *, compact: bool, integer: bool
) -> onnx.ModelProto:
    """Store quantized weights as int8 codes + ``DequantizeLinear`` (in place; returns ``model``).

    Every ``Conv`` / ``Gemm`` whose constant weight is one of ``weights`` (up to a per-row factor:
    the exporter folds BatchNorm into it) and whose codes fit int8 gets ``DequantizeLinear(codes,
    step * factor, axis 0)`` (plus the per-row centre ``Add`` under ``"centred"``): with ``compact``
    every one of them (the smallest file), with ``integer`` only those ONNX Runtime fuses into an
    exact integer ``QLinearConv`` (:func:`_integer_ok`; their activation ``DequantizeLinear`` becomes
    per-tensor, as the fusion needs). The graph is matched by values, not names: it serves any
    model ``torch.onnx.export`` wrote.
    """
    g = _Graph(model.graph)
    by_shape: dict[tuple[int, ...], list[CodedWeight]] = defaultdict(list)
    for w in weights:
        by_shape[tuple(w.value.shape)].append(w)
    insert: dict[int, list[onnx.NodeProto]] = {}
    for node in list(model.graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in g.inits:
            continue
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            continue  # a weight stored (in, out): not how torch writes nn.Linear
        value = g.const(node.input[1])
        if value is None or value.dtype != np.float32:
            continue
        match = next(((w, k) for w in by_shape.get(tuple(value.shape), [])
                      if (k := _row_factor(value, w.value)) is not None), None)  # fmt: skip
        if match is None:
            continue
        w, k = match
        if w.codes.min(initial=0) < -128 or w.codes.max(initial=0) > 127:
            continue
        act = None if compact else (_integer_ok(g, node, w) if integer else None)
        if not compact and act is None:
            continue
        if act is not None:  # the fusion needs one activation scale: all channels' are equal
            s = g.const(act.input[1]).reshape(-1)[:1].reshape(())
            z = g.const(act.input[2]).reshape(-1)[:1].reshape(())
            act.input[1], act.input[2] = g.new_const("ascale", s), g.new_const("azero", z)
            kept = [a for a in act.attribute if a.name != "axis"]
            del act.attribute[:]
            act.attribute.extend(kept)
        step = (w.step * k).astype(np.float32)
        codes = g.new_const("codes", w.codes.astype(np.int8))
        zero = g.new_const("wzero", np.zeros(len(step), np.int8))
        out = g.new_name("weight")
        new = [helper.make_node("DequantizeLinear", [codes, g.new_const("wscale", step), zero], [out],
                                name=out, axis=0)]  # fmt: skip
        if w.offset:
            off = (np.float32(w.offset) * step).reshape(-1, *([1] * (value.ndim - 1)))
            added = g.new_name("weight")
            new.append(helper.make_node("Add", [out, g.new_const("woffset", off)], [added], name=added))
            out = added
        node.input[1] = out
        insert[id(node)] = new
    if insert:
        _splice(model, insert)
    return model


def short_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rename every node and every tensor but the graph's inputs and outputs to a short name (in
    place; returns ``model``): ``torch.onnx.export`` names them by module path, which takes a third of
    a compact 2-bit file."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for t in graph.initializer:
        t.name = short(t.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for v in graph.value_info:
        v.name = short(v.name)
    return model
