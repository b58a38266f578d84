"""One forward trace of the full model that compiles its :class:`~fn3.cost.plan.CostPlan`.

The tracer knows layers only through the layer protocol (:mod:`fn3.nn.protocol`) and plain torch:

* a *nested leaf* (``is_leaf``) says which axis slices which of its dimensions (``fn3_axes()``:
  ``"in"``, ``"out"``, ``"groups"``, ``"wbits"``, ``"abits"``), and its plain form at full size
  (``extract()`` under the full spec: an ``nn.Conv2d``, ``nn.Linear`` or ``nn.BatchNorm2d``, behind the
  activation quantizer of an ``"abits"`` leaf) gives everything else: full sizes, kernel, stride,
  padding, groups, bias. That is all a :class:`~fn3.cost.plan.Layer` holds, whatever the leaf's class;
* a plain ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` is a layer of fixed size;
* a *block gate* (``is_gate``) says which of its children do not run (``fn3_skipped()``) under a spec:
  asking it once per droppable block of each of its ``"blocks"`` axes tells which block index gates
  which child, so the plan knows the ops inside each child run iff that block is kept.

Module hooks on the leaves and plain layers record what each computes; a
:class:`~torch.overrides.TorchFunctionMode` records the functional steps *between* layers: ReLU-family
activations, residual additions (also in place, ``out += identity``), poolings, and free views
(flatten, view, dropout at inference). Any other function applied to a traced activation (a ``mean``,
a concatenation, a product, attention) is not modelled: the trace raises a ConfigError and
:func:`~fn3.cost.plan.cost_plan` falls back to the :class:`~fn3.cost.leafplan.LeafPlan`, rather than
price it wrongly. Ops inside a leaf (fake quantization, slicing) are ignored: a depth counter set by
the leaf hooks says when we are inside one. Every tensor the trace creates is kept alive until the
end, so ``id()`` never gets reused for another tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fn3.cost.plan import CostPlan, Dim, Gate, Layer, Norm, Op, TensorInfo
from fn3.errors import ConfigError
from fn3.nest import active, gated_children
from fn3.nn.act_quant import relus_kept
from fn3.nn.base import eval_mode
from fn3.nn.protocol import AxisUse, is_gate, is_leaf
from fn3.spec import Axis

#: Element-wise activations the plan models (in place too, ``relu_``); latency units time them.
ACTIVATIONS = {"relu", "hardtanh", "relu6", "leaky_relu", "elu", "silu", "hardswish", "gelu"}
_ADD = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_ADAPTIVE_POOL = {"adaptive_avg_pool2d", "adaptive_max_pool2d"}
#: Positional parameters after the input of the windowed poolings (to read their arguments).
_WINDOW_POOL = {"max_pool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                "avg_pool2d": ("kernel_size", "stride", "padding", "ceil_mode")}
_FREE = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "clone", "dropout",
         "identity", "detach"}
_PLAIN = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def _square(v: Any, what: str, name: str) -> int:
    """The one size of a square ``v`` (an int or a pair of equal ints)."""
    vals = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else None
    if vals is None or len(vals) != 2 or vals[0] != vals[1] or not isinstance(vals[0], int):
        raise ConfigError(f"cost plan: {name} has {what} {v!r}; the traced plan models square ones only")
    return int(vals[0])


@dataclass(frozen=True)
class _Template:
    """What a layer is, known before the forward: everything of a :class:`Layer` but its spatial sizes."""

    kind: str  # "conv" | "linear" | "bn"
    in_dim: Dim
    out_dim: Dim
    groups: Dim
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    bias: bool = False
    wbits: str | None = None
    abits: str | None = None


def _axis_uses(name: str, leaf: nn.Module, allowed: set[str]) -> dict[str, AxisUse]:
    """``{dim: AxisUse}`` of a leaf; a ConfigError for a dim twice or one its kind cannot have."""
    out: dict[str, AxisUse] = {}
    for use in leaf.fn3_axes():
        if use.dim not in allowed or use.dim in out:
            raise ConfigError(f"cost plan: {name} ({type(leaf).__name__}) slices {use.dim!r} in a way the "
                              "traced plan does not model")
        out[use.dim] = use
    return out


def _dim(use: AxisUse | None, full: int) -> Dim:
    return Dim(use.axis, use.per_unit, full) if use is not None else Dim(None, 1, full)


def _plain_form(name: str, leaf: nn.Module, uses: dict[str, AxisUse]) -> nn.Module:
    """The leaf's plain layer at full size: ``extract()``, behind its activation quantizer if any."""
    plain = leaf.extract()
    if isinstance(plain, nn.Sequential) and "abits" in uses and len(plain) == 2:
        plain = plain[1]  # Sequential(activation quantizer, layer): the quantizer costs no MACs
    if not isinstance(plain, _PLAIN):
        raise ConfigError(f"cost plan: {name} ({type(leaf).__name__}) is a {type(plain).__name__}, which "
                          "the traced plan does not model")
    return plain


def _template(name: str, module: nn.Module) -> _Template:
    """A leaf's or plain layer's :class:`_Template` (under the full spec)."""
    if is_leaf(module):
        uses = _axis_uses(name, module, {"in", "out", "groups", "wbits", "abits"})
        plain = _plain_form(name, module, uses)
    else:
        uses, plain = {}, module
    wbits = uses["wbits"].axis if "wbits" in uses else None
    abits = uses["abits"].axis if "abits" in uses else None
    if isinstance(plain, nn.BatchNorm2d):
        if set(uses) - {"out"} or not plain.affine:
            raise ConfigError(f"cost plan: {name} is a batch norm the traced plan does not model")
        dim = _dim(uses.get("out"), plain.num_features)
        return _Template("bn", dim, dim, Dim(None, 1, 1))
    if isinstance(plain, nn.Linear):
        if "groups" in uses:
            raise ConfigError(f"cost plan: {name} is a dense layer with groups")
        return _Template("linear", _dim(uses.get("in"), plain.in_features),
                         _dim(uses.get("out"), plain.out_features), Dim(None, 1, 1),
                         bias=plain.bias is not None, wbits=wbits, abits=abits)
    assert isinstance(plain, nn.Conv2d)
    if plain.dilation != (1, 1) or plain.padding_mode != "zeros" or isinstance(plain.padding, str):
        raise ConfigError(f"cost plan: {name} is a dilated, non-zero-padded or 'same'/'valid' convolution; "
                          "the traced plan models plain zero padding without dilation")
    k = _square(plain.kernel_size, "kernel", name)
    s = _square(plain.stride, "stride", name)
    p = _square(plain.padding, "padding", name)
    cin, cout, g = plain.in_channels, plain.out_channels, plain.groups
    if "groups" in uses:
        # c kept groups (paths, or the channels of a depthwise conv): c * (in / groups) inputs and
        # c * (out / groups) outputs; the groups axis alone sets all three sizes.
        if "in" in uses or "out" in uses:
            raise ConfigError(f"cost plan: {name} slices its groups and its channels separately")
        gu = uses["groups"]
        in_dim = Dim(gu.axis, gu.per_unit * (cin // g), cin)
        out_dim = Dim(gu.axis, gu.per_unit * (cout // g), cout)
        groups = Dim(gu.axis, gu.per_unit, g)
    else:
        if g != 1 and "in" in uses:
            raise ConfigError(f"cost plan: {name} is a grouped convolution whose input channels are "
                              "sliced without its groups")
        in_dim, out_dim, groups = _dim(uses.get("in"), cin), _dim(uses.get("out"), cout), Dim(None, 1, g)
    return _Template("conv", in_dim, out_dim, groups, k, s, p, plain.bias is not None, wbits, abits)


def _layers(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The top-level leaves and plain layers below ``module`` (not the modules inside a leaf)."""
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if is_leaf(child) or (isinstance(child, _PLAIN) and not is_gate(child)):
            yield name, child
        else:
            yield from _layers(child, name)


def _block_gates(model: nn.Module, axes: dict[str, Axis]) -> dict[int, Gate]:
    """``{id(child): ((axis, block), ...)}``: the blocks whose dropping skips each gated child
    (:func:`fn3.nest.gated_children`), once every gate is checked to slice only whole blocks of the
    plan's axes."""
    gates = []
    for name, module in model.named_modules():
        if not is_gate(module):
            continue
        for use in module.fn3_axes():
            if use.dim != "blocks" or use.axis not in axes:
                raise ConfigError(f"cost plan: the gate {name} uses axis {use.axis!r} as {use.dim!r}")
        gates.append(module)
    return gated_children(model, gates, axes)


class _Tracer(TorchFunctionMode):
    """Records the plan's ops; see the module docstring."""

    def __init__(self, model: nn.Module, axes: dict[str, Axis]):
        super().__init__()
        self.axes = axes
        self.depth = 0  # > 0 while inside a leaf layer
        self.gates: list[tuple[str, int]] = []
        self.ids: dict[int, int] = {}  # id(tensor) -> tensor index
        self.traced: list[torch.Tensor] = []  # tensor index -> tensor (keeps ids stable)
        self.aliases: list[torch.Tensor] = []  # views of traced tensors, kept alive for the same reason
        self.tensors: list[TensorInfo] = []
        self.ops: list[Op] = []
        self.layers: list[Layer] = []
        self.norms: list[Norm] = []
        self.notes: list[str] = []
        self.handles: list[Any] = []
        try:
            for name, module in _layers(model):
                template = _template(name, module)
                self.handles.append(module.register_forward_pre_hook(self._enter))
                self.handles.append(module.register_forward_hook(self._make_leaf_hook(name, template)))
            modules = {id(m): m for m in model.modules()}
            for child, gate in _block_gates(model, axes).items():
                self.handles.append(modules[child].register_forward_pre_hook(self._push(gate)))
                self.handles.append(modules[child].register_forward_hook(self._pop(len(gate))))
        except BaseException:
            self.remove_hooks()
            raise

    def remove_hooks(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    # -- tensors ------------------------------------------------------------------------------
    def add_tensor(self, t: torch.Tensor, dim: Dim) -> int:
        hw = (int(t.shape[-2]), int(t.shape[-1])) if t.dim() == 4 else (1, 1)
        channels = int(t.shape[1]) if t.dim() >= 2 else 1  # (1, C, H, W) or (1, features)
        if dim.full != channels or t.dim() not in (2, 4):
            raise ConfigError(f"cost plan: expected {dim.full} channels, the trace saw {tuple(t.shape)}")
        self.tensors.append(TensorInfo(dim, hw, tuple(self.gates)))
        self.ids[id(t)] = len(self.tensors) - 1
        self.traced.append(t)
        return len(self.tensors) - 1

    def _tracked(self, args: Any) -> list[int]:
        out = []
        for a in args if isinstance(args, (tuple, list)) else (args,):
            if isinstance(a, (tuple, list)):  # torch.cat([a, b]): the tensors of a list argument
                out += self._tracked(a)
            elif isinstance(a, torch.Tensor) and id(a) in self.ids:
                out.append(self.ids[id(a)])
        return out

    # -- hooks --------------------------------------------------------------------------------
    def _enter(self, module: nn.Module, args: tuple) -> None:
        self.depth += 1

    def _make_leaf_hook(self, name: str, tp: _Template):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self.depth -= 1
            if self.depth:
                return
            inputs = self._tracked(args)
            if len(inputs) != 1 or not isinstance(out, torch.Tensor):
                raise ConfigError(f"cost plan: {name} does not read one traced tensor")
            gate = tuple(self.gates)
            if tp.kind == "bn":
                norm = Norm(name, tp.out_dim, gate)
                self.norms.append(norm)
                idx = self.add_tensor(out, norm.dim)
                self.ops.append(Op("bn", name, tuple(inputs), idx, gate))
                return
            x = args[0]
            if tp.kind == "conv":
                in_hw, out_hw = (int(x.shape[-2]), int(x.shape[-1])), (int(out.shape[-2]), int(out.shape[-1]))
            elif x.dim() != 2:
                raise ConfigError(f"cost plan: the dense layer {name} reads a {x.dim()}-d tensor")
            else:
                in_hw = out_hw = (1, 1)
            layer = Layer(name, tp.kind, tp.in_dim, tp.out_dim, tp.groups, tp.kernel, tp.stride, tp.padding,
                          in_hw, out_hw, tp.bias, tp.wbits, tp.abits, gate)
            self.layers.append(layer)
            idx = self.add_tensor(out, layer.out_dim)
            self.ops.append(Op(layer.kind, name, tuple(inputs), idx, gate, layer))

        return hook

    def _push(self, gate: Gate):
        def hook(module: nn.Module, args: tuple) -> None:
            self.gates.extend(gate)

        return hook

    def _pop(self, n: int):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            del self.gates[len(self.gates) - n:]
            idx = self.ids.get(id(out))
            if idx is not None:
                # A dropped block's output is replaced by its input (same shape): the tensor stays.
                t = self.tensors[idx]
                self.tensors[idx] = TensorInfo(t.dim, t.hw, t.gate, True)

        return hook

    # -- functional ops between layers --------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth or not isinstance(out, torch.Tensor):
            return out
        inputs = self._tracked(args)
        if not inputs:
            return out
        name = getattr(func, "__name__", str(func))
        # A traced tensor again is the same tensor (dropout at inference, contiguous: free), or one
        # changed in place (relu_, out += identity), which becomes a new tensor of the plan.
        if id(out) in self.ids and (name in _FREE or not any(out is a for a in args)):
            return out
        base = name.rstrip("_") if name.endswith("_") and not name.startswith("__") else name
        first = self.tensors[inputs[0]]
        gate = tuple(self.gates)
        if base in ACTIVATIONS:
            idx = self.add_tensor(out, first.dim)
            self.ops.append(Op("relu", base, tuple(inputs), idx, gate))
        elif name in _ADD:
            shapes = {tuple(a.shape) for a in args if isinstance(a, torch.Tensor)}
            if len(inputs) != 2 or shapes != {tuple(out.shape)}:
                raise ConfigError(
                    "cost plan: the model adds a tensor the plan does not follow, or broadcasts")
            idx = self.add_tensor(out, first.dim)
            self.ops.append(Op("add", "add", tuple(inputs), idx, gate))
        elif name in _ADAPTIVE_POOL or name in _WINDOW_POOL:
            idx = self.add_tensor(out, first.dim)
            self.ops.append(Op("pool", name, tuple(inputs), idx, gate, window=_window(name, args, kwargs)))
        elif name in _FREE and out.numel() == self.traced[inputs[0]].numel():
            # A view, or an op that is the identity at inference: the same tensor, free.
            self.ids[id(out)] = inputs[0]
            self.aliases.append(out)
        else:
            raise ConfigError(f"cost plan: the model applies {name!r} between layers; the traced plan models "
                              "conv, linear, batch norm, ReLU-family activations, add, pooling, views only")
        return out


def _window(name: str, args: tuple, kwargs: dict) -> tuple[int, ...]:
    """``(kernel, stride, padding)`` of a windowed pooling; ``()`` for an adaptive one."""
    if name not in _WINDOW_POOL:
        return ()
    got = dict(zip(_WINDOW_POOL[name], args[1:], strict=False))
    got.update(kwargs)
    k = _square(got["kernel_size"], "a pooling kernel", name)
    stride = got.get("stride")
    s = k if stride is None or stride == [] else _square(stride, "a pooling stride", name)
    p = _square(got.get("padding", 0), "a pooling padding", name)
    if got.get("ceil_mode") or _square(got.get("dilation", 1), "a pooling dilation", name) != 1:
        raise ConfigError(f"cost plan: {name} with ceil_mode or dilation is not modelled")
    return (k, s, p)


def trace_plan(model: nn.Module, shape: tuple[int, int, int], axes: dict[str, Axis]) -> CostPlan:
    """Trace ``model`` once at full size on a zero input of ``(1, *shape)``; see the module docstring."""
    param = next(model.parameters(), None)
    x = torch.zeros(1, *shape, device=param.device if param is not None else None)
    with eval_mode(model), torch.no_grad(), active(model, None):  # batch norm keeps its statistics
        tracer = _Tracer(model, axes)
        try:
            tracer.add_tensor(x, Dim(None, 1, shape[0]))
            with tracer, relus_kept():  # the float sub-model's ReLUs (see relu_unless_quantized)
                y = model(x)
            if not isinstance(y, torch.Tensor) or id(y) not in tracer.ids:
                raise ConfigError("cost plan: the model output is not produced by a layer the plan follows")
            out_idx = tracer.ids[id(y)]
        finally:
            tracer.remove_hooks()
    live = _liveness(tracer.ops, len(tracer.tensors), out_idx)
    return CostPlan(shape, axes, tracer.layers, tracer.norms, tracer.tensors, tracer.ops, live, tracer.notes)


def _liveness(ops: list[Op], n_tensors: int, output: int) -> list[tuple[int, ...]]:
    """For each op, the tensors alive while it runs: produced at or before it, last used at or after."""
    first = [-1] * n_tensors  # the model input (tensor 0) exists before op 0
    last = [-1] * n_tensors
    for i, op in enumerate(ops):
        first[op.output] = i
        for t in op.inputs:
            last[t] = max(last[t], i)
    last[output] = len(ops)
    return [tuple(t for t in range(n_tensors) if first[t] <= i <= max(last[t], first[t]))
            for i in range(len(ops))]
