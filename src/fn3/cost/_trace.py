"""One forward trace of the full model that compiles its :class:`~fn3.cost.plan.CostPlan`.

Module hooks on the layers (nested or plain ``Conv2d`` / ``Linear`` / ``BatchNorm2d``) record what
each computes; a :class:`~torch.overrides.TorchFunctionMode` records the functional steps *between*
layers (ReLU, residual addition, pooling, flatten). Ops inside a layer (fake quantization, slicing)
are ignored: a depth counter set by the layer hooks says when we are inside one. Every tensor the
trace creates is kept alive until the end, so ``id()`` never gets reused for another tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fn3.cost.plan import CostPlan, Dim, Gate, Layer, Norm, Op, TensorInfo
from fn3.errors import ConfigError
from fn3.nest import active
from fn3.nn.base import eval_mode
from fn3.nn.blocks import NestedStage
from fn3.nn.conv import NestedConv2d
from fn3.nn.linear import NestedLinear
from fn3.nn.norm import NestedBatchNorm2d
from fn3.nn.slot import AxisSlot
from fn3.spec import Axis

_RELU = {"relu", "relu_"}
_ADD = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_POOL = {"adaptive_avg_pool2d", "adaptive_max_pool2d"}
_FREE = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "clone", "dropout",
         "identity"}
_LEAVES = (NestedConv2d, NestedLinear, nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def _dim(slot: AxisSlot | None, per_unit: int, full: int) -> Dim:
    return Dim(slot.axis.name, per_unit, full) if slot is not None else Dim(None, 1, full)


def _bits(slot: AxisSlot | None) -> str | None:
    return slot.axis.name if slot is not None else None


def _conv_layer(name: str, m: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int],
                gate: Gate) -> Layer:
    if isinstance(m, NestedConv2d):
        k, s, p, g = m.kernel_size, m.stride, m.padding, m.groups
        wbits, abits = _bits(m.wbits), _bits(m.act_quant.slot if m.act_quant is not None else None)
        if m.path_axis is not None:
            # c kept paths: c groups over c * (in / groups) inputs and c * (out / groups) outputs.
            p_ax = m.path_axis
            in_dim = _dim(p_ax, m.in_channels // g, m.in_channels)
            out_dim = _dim(p_ax, m.out_channels // g, m.out_channels)
            groups = _dim(p_ax, 1, g)
        else:
            in_dim = (_dim(m.in_axis, m.in_per_unit, m.in_channels) if g == 1
                      else Dim(None, 1, m.in_channels))
            out_dim = _dim(m.out_axis, m.out_per_unit, m.out_channels)
            groups = Dim(None, 1, g)
        bias = m.bias is not None
    else:
        assert isinstance(m, nn.Conv2d)
        if m.dilation != (1, 1) or len(set(m.kernel_size)) != 1 or len(set(m.stride)) != 1 or \
                not isinstance(m.padding, tuple) or len(set(m.padding)) != 1:
            raise ConfigError(f"cost plan: layer {name!r} needs square kernels/strides/padding, no dilation")
        k, s, p, g = m.kernel_size[0], m.stride[0], m.padding[0], m.groups
        in_dim, out_dim, groups = Dim(None, 1, m.in_channels), Dim(None, 1, m.out_channels), Dim(None, 1, g)
        wbits = abits = None
        bias = m.bias is not None
    return Layer(name, "conv", in_dim, out_dim, groups, k, s, p, in_hw, out_hw, bias, wbits, abits, gate)


def _linear_layer(name: str, m: nn.Module, gate: Gate) -> Layer:
    if isinstance(m, NestedLinear):
        in_dim = _dim(m.in_axis, 1, m.in_features)
        out_dim = _dim(m.out_axis, 1, m.out_features)
        wbits, abits = _bits(m.wbits), _bits(m.act_quant.slot if m.act_quant is not None else None)
    else:
        assert isinstance(m, nn.Linear)
        in_dim, out_dim = Dim(None, 1, m.in_features), Dim(None, 1, m.out_features)
        wbits = abits = None
    return Layer(name, "linear", in_dim, out_dim, Dim(None, 1, 1), 1, 1, 0, (1, 1), (1, 1),
                 m.bias is not None, wbits, abits, gate)


def _norm_dim(m: nn.BatchNorm2d) -> Dim:
    if isinstance(m, NestedBatchNorm2d):
        return _dim(m.axis, m.per_unit, m.num_features)
    return Dim(None, 1, m.num_features)


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
        self.standin_blocks: set[int] = set()
        names = {m: n for n, m in model.named_modules()}
        for module, name in names.items():
            if isinstance(module, _LEAVES):
                self.handles.append(module.register_forward_pre_hook(self._enter))
                self.handles.append(module.register_forward_hook(self._make_leaf_hook(name)))
            if isinstance(module, NestedStage) and module.depth is not None:
                for i, block in enumerate(module.blocks):
                    gate = (module.depth.axis.name, i)
                    self.handles.append(block.register_forward_pre_hook(self._push(gate)))
                    self.handles.append(block.register_forward_hook(self._pop))

    # -- tensors ------------------------------------------------------------------------------
    def add_tensor(self, t: torch.Tensor, dim: Dim, standin: bool = False) -> int:
        hw = (int(t.shape[-2]), int(t.shape[-1])) if t.dim() == 4 else (1, 1)
        channels = int(t.shape[1]) if t.dim() >= 2 else 1  # (1, C, H, W) or (1, features)
        if dim.full != channels:
            raise ConfigError(f"cost plan: expected {dim.full} channels, the trace saw {tuple(t.shape)}")
        self.tensors.append(TensorInfo(dim, hw, tuple(self.gates), standin))
        self.ids[id(t)] = len(self.tensors) - 1
        self.traced.append(t)
        return len(self.tensors) - 1

    def _tracked(self, args: Any) -> list[int]:
        out = []
        for a in args if isinstance(args, (tuple, list)) else (args,):
            if isinstance(a, torch.Tensor) and id(a) in self.ids:
                out.append(self.ids[id(a)])
        return out

    # -- hooks --------------------------------------------------------------------------------
    def _enter(self, module: nn.Module, args: tuple) -> None:
        self.depth += 1

    def _make_leaf_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self.depth -= 1
            if self.depth:
                return
            inputs = self._tracked(args)
            gate = tuple(self.gates)
            if isinstance(module, nn.BatchNorm2d):
                norm = Norm(name, _norm_dim(module), gate)
                self.norms.append(norm)
                idx = self.add_tensor(out, norm.dim)
                self.ops.append(Op("bn", name, tuple(inputs), idx, gate))
                return
            if isinstance(module, (NestedConv2d, nn.Conv2d)):
                x = args[0]
                layer = _conv_layer(name, module, (int(x.shape[-2]), int(x.shape[-1])),
                                    (int(out.shape[-2]), int(out.shape[-1])), gate)
            else:
                layer = _linear_layer(name, module, gate)
            self.layers.append(layer)
            idx = self.add_tensor(out, layer.out_dim)
            self.ops.append(Op(layer.kind, name, tuple(inputs), idx, gate, layer))

        return hook

    def _push(self, gate: tuple[str, int]):
        def hook(module: nn.Module, args: tuple) -> None:
            self.gates.append(gate)

        return hook

    def _pop(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        self.gates.pop()
        idx = self.ids.get(id(out))
        if idx is not None:
            # A dropped block's output is replaced by its input (same shape): the tensor stays.
            t = self.tensors[idx]
            self.tensors[idx] = TensorInfo(t.dim, t.hw, t.gate, True)

    # -- functional ops between layers --------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.depth or not isinstance(out, torch.Tensor) or id(out) in self.ids:
            return out
        inputs = self._tracked(args)
        if not inputs:
            return out
        name = getattr(func, "__name__", str(func))
        first = self.tensors[inputs[0]]
        gate = tuple(self.gates)
        if name in _RELU or name in _ADD:
            idx = self.add_tensor(out, first.dim)
            kind = "relu" if name in _RELU else "add"
            self.ops.append(Op(kind, name, tuple(inputs), idx, gate))
        elif name in _POOL:
            idx = self.add_tensor(out, first.dim)
            self.ops.append(Op("pool", name, tuple(inputs), idx, gate))
        elif out.numel() == self.traced[inputs[0]].numel():
            # A view or an element-wise op the plan does not model: the same tensor, free.
            self.ids[id(out)] = inputs[0]
            self.aliases.append(out)
            if name not in _FREE and name not in self.notes:
                self.notes.append(name)
        else:
            raise ConfigError(f"cost plan: the model applies {name!r} between layers, which changes the "
                              "number of elements; fn3.cost models conv, linear, batch norm, relu, add and "
                              "adaptive pooling only")
        return out


def trace_plan(model: nn.Module, shape: tuple[int, int, int], axes: dict[str, Axis]) -> CostPlan:
    """Trace ``model`` once at full size on a zero input of ``(1, *shape)``; see the module docstring."""
    param = next(model.parameters(), None)
    x = torch.zeros(1, *shape, device=param.device if param is not None else None)
    tracer = _Tracer(model, axes)
    try:
        with eval_mode(model), torch.no_grad(), active(model, None):  # batch norm keeps its statistics
            tracer.add_tensor(x, Dim(None, 1, shape[0]))
            with tracer:
                y = model(x)
        if id(y) not in tracer.ids:
            raise ConfigError("cost plan: the model output is not produced by a layer the plan follows")
        out_idx = tracer.ids[id(y)]
    finally:
        for h in tracer.handles:
            h.remove()
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
