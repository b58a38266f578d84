"""Latency units: the plan's ops grouped the way a runtime executes them, each with a signature.

A latency table is keyed by *unit signatures*. A unit is a layer together with the batch norm and
ReLU that directly follow it (``conv2d(...,bn=1,relu=1)``: ONNX Runtime folds the norm into the
convolution and fuses the ReLU, and timing them together captures that), a residual addition with
its ReLU, a pooling, or a lone batch norm / ReLU. A unit's signature lists everything that changes
its run time: channels, kernel, stride, padding, groups, input height and width, bias, the fused ops
(``relu=1`` for any fused activation; one other than a ReLU is named too, ``act=hardtanh`` for a
ReLU6), a windowed pooling's kernel, stride and padding.
Bits do not appear: on a float back-end (PyTorch or ONNX Runtime on CPU) a sub-model's quantized
weights are still float tensors, so its latency does not depend on them.

:meth:`Unit.build` makes the plain torch module a unit stands for, which is what gets timed.

Example:
    >>> import fn3
    >>> from fn3.cost.plan import cost_plan
    >>> from fn3.cost.units import latency_units
    >>> model = fn3.create_model("resnet20", input_size=8)
    >>> plan = cost_plan(model, (3, 8, 8))
    >>> stem = latency_units(plan)[0]
    >>> stem.signature(stem.sizes(plan.resolve(fn3.space(model).largest()).units))
    'conv2d(in=3,out=16,k=3,s=1,p=1,g=1,h=8,w=8,bias=0,bn=1,relu=1)'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fn3.cost.plan import CostPlan, Dim, Gate, Op

__all__ = ["Unit", "latency_units"]


@dataclass(frozen=True)
class Unit:
    """One timed unit. ``dims`` are the sizes a spec may change; ``static`` the rest of the signature.

    ``kind`` and ``dims``: ``conv2d`` (in, out, groups), ``linear`` (in, out), and ``add``, ``pool``,
    ``batchnorm2d``, ``relu`` (channels). ``static`` is a tuple of ``(field, value)`` pairs.
    """

    kind: str
    dims: tuple[Dim, ...]
    static: tuple[tuple[str, object], ...]
    gate: Gate

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the axes that change this unit's signature."""
        return tuple(dict.fromkeys(d.axis for d in self.dims if d.axis is not None))

    def sizes(self, units: dict[str, int]) -> tuple[int, ...]:
        return tuple(units[d.axis] * d.per_unit if d.axis is not None else d.full for d in self.dims)

    def signature(self, sizes: tuple[int, ...]) -> str:
        names = {"conv2d": ("in", "out", "g"), "linear": ("in", "out")}.get(self.kind, ("c",))
        fields = dict(zip(names, sizes, strict=True))
        fields.update(self.static)
        if self.kind == "conv2d":  # keep torch's argument order: in, out, k, s, p, g, ...
            order = ("in", "out", "k", "s", "p", "g", "h", "w", "bias", "bn", "relu", "act")
            fields = {k: fields[k] for k in order if k in fields}
        return f"{self.kind}(" + ",".join(f"{k}={v}" for k, v in fields.items()) + ")"

    def build(self, sizes: tuple[int, ...], batch_size: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """The plain torch module this unit stands for (eval mode) and a random input batch."""
        f = dict(self.static)
        act = _ACT_MODULES[str(f.get("act", "relu"))]
        if self.kind == "conv2d":
            cin, cout, g = sizes
            conv = nn.Conv2d(cin, cout, f["k"], f["s"], f["p"], groups=g, bias=bool(f["bias"]))
            mods: list[nn.Module] = [conv]
            if f["bn"]:
                mods.append(nn.BatchNorm2d(cout))
            if f["relu"]:
                mods.append(act())
            x = (torch.randn(batch_size, cin, f["h"], f["w"]),)
            return nn.Sequential(*mods).eval(), x
        if self.kind == "linear":
            cin, cout = sizes
            mods = [nn.Linear(cin, cout, bias=bool(f["bias"]))] + ([act()] if f["relu"] else [])
            return nn.Sequential(*mods).eval(), (torch.randn(batch_size, cin),)
        (c,) = sizes
        x = torch.randn(batch_size, c, f["h"], f["w"])
        if self.kind == "add":
            return _Add(act() if f["relu"] else None).eval(), (x, torch.randn_like(x))
        if self.kind == "pool":
            if "k" in f:  # a windowed pooling: kernel, stride, padding
                window = (f["k"], f["s"], f["p"])
                pool = nn.AvgPool2d(*window) if f["op"] == "avg" else nn.MaxPool2d(*window)
            else:
                out = (f["oh"], f["ow"])
                pool = nn.AdaptiveAvgPool2d(out) if f["op"] == "avg" else nn.AdaptiveMaxPool2d(out)
            return pool.eval(), (x,)
        if self.kind == "batchnorm2d":
            mods = [nn.BatchNorm2d(c)] + ([act()] if f["relu"] else [])
            return nn.Sequential(*mods).eval(), (x,)
        return act().eval(), (x,)


#: The module timed for each activation of the plan (:data:`fn3.cost._trace.ACTIVATIONS`); a unit
#: whose activation is not a ReLU names it in its signature (``act=hardtanh``).
_ACT_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "hardtanh": nn.Hardtanh, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
    "silu": nn.SiLU, "hardswish": nn.Hardswish, "gelu": nn.GELU,
}


class _Add(nn.Module):
    """``act(a + b)`` (or ``a + b``): the tail of a residual block."""

    def __init__(self, act: nn.Module | None):
        super().__init__()
        self.act = act

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = a + b
        return self.act(y) if self.act is not None else y


def latency_units(plan: CostPlan) -> list[Unit]:
    """The plan's ops grouped into units (cached on the plan)."""
    cached = getattr(plan, "_latency_units", None)
    if cached is not None:
        return cached
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(plan.ops):
        for t in op.inputs:
            consumers.setdefault(t, []).append(i)
    taken: set[int] = set()

    def follow(i: int, kind: str) -> int | None:
        # The op consuming op i's output, if it is the only consumer, of ``kind``, in the same block.
        users = consumers.get(plan.ops[i].output, [])
        nxt = plan.ops[users[0]] if len(users) == 1 else None
        if nxt is not None and nxt.kind == kind and nxt.gate == plan.ops[i].gate:
            return users[0]
        return None

    units: list[Unit] = []
    for i, op in enumerate(plan.ops):
        if i in taken:
            continue
        taken.add(i)
        t = plan.tensors[op.inputs[0]] if op.inputs else plan.tensors[op.output]
        h, w = t.hw
        if op.kind in ("conv", "linear"):
            bn = follow(i, "bn") if op.kind == "conv" else None
            last = bn if bn is not None else i
            relu = follow(last, "relu")
            taken.update(j for j in (bn, relu) if j is not None)
            units.append(_layer_unit(op, h, w, bn is not None, _act(plan, relu)))
            continue
        if op.kind in ("add", "bn"):
            relu = follow(i, "relu")
            if relu is not None:
                taken.add(relu)
            kind = "add" if op.kind == "add" else "batchnorm2d"
            static = (("h", h), ("w", w), ("relu", int(relu is not None)), *_act_field(_act(plan, relu)))
            units.append(Unit(kind, (t.dim,), static, op.gate))
            continue
        if op.kind == "pool":
            oh, ow = plan.tensors[op.output].hw
            window = tuple(zip(("k", "s", "p"), op.window, strict=False))
            units.append(Unit("pool", (t.dim,), (("op", _pool_op(op)), ("h", h), ("w", w), ("oh", oh),
                                                 ("ow", ow), *window), op.gate))
            continue
        units.append(Unit("relu", (t.dim,), (("h", h), ("w", w), *_act_field(op.name)), op.gate))
    plan._latency_units = units  # type: ignore[attr-defined]
    return units


def _pool_op(op: Op) -> str:
    return "max" if "max" in op.name else "avg"


def _act(plan: CostPlan, i: int | None) -> str | None:
    """The activation of op ``i`` (``None`` when no activation follows)."""
    return plan.ops[i].name if i is not None else None


def _act_field(act: str | None) -> tuple[tuple[str, object], ...]:
    """``(("act", name),)`` for an activation other than ReLU: a ReLU unit's signature names none."""
    return (("act", act),) if act not in (None, "relu") else ()


def _layer_unit(op: Op, h: int, w: int, bn: bool, act: str | None) -> Unit:
    layer = op.layer
    assert layer is not None
    relu = act is not None
    if layer.kind == "linear":
        return Unit("linear", (layer.in_dim, layer.out_dim),
                    (("bias", int(layer.bias)), ("relu", int(relu)), *_act_field(act)), op.gate)
    static = (("k", layer.kernel), ("s", layer.stride), ("p", layer.padding), ("h", h), ("w", w),
              ("bias", int(layer.bias)), ("bn", int(bn)), ("relu", int(relu)), *_act_field(act))
    return Unit("conv2d", (layer.in_dim, layer.out_dim, layer.groups), static, op.gate)
