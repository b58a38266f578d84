"""`describe`: a nested model as a JSON-ready tree of a dozen node types, with its axes named.

Export does not copy a model's Python class: it walks the module tree once and writes down what each
module computes and which axis governs which dimension of which tensor. That description is what
:func:`fn3.export.export` slices for a spec, what the nested file stores (so a reader needs no model
code), and what makes "any model built from fn3.nn layers" exportable.

Node types (``"type"`` key): ``seq`` (children in order), ``stage`` (residual blocks, some dropped by
a ``layers`` axis), ``residual`` (``relu(body(x) + shortcut(x))``), ``conv``, ``linear``, ``bn``,
``act`` (a standalone activation quantizer), ``relu``, ``flatten``, ``gap`` (global average pool),
``identity``. An axis reference is ``[axis name, entries per unit]``; tensors are named by the
model's ``state_dict`` keys (``"<name>.weight"``).

A model class with its own ``forward`` (a top-level network) needs a describer saying what that
forward computes; fn3's registered models have one, and :func:`register_describer` adds others.

Example:
    >>> import fn3
    >>> from fn3.export.arch import describe
    >>> net = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32,))
    >>> [n["type"] for n in describe(net)["children"]]
    ['flatten', 'linear', 'relu', 'linear']
    >>> describe(net)["children"][1]["out_axis"]
    ['fc1.width', 1]
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fn3.errors import ConfigError

__all__ = ["describe", "register_describer"]

Node = dict
Describer = Callable[[nn.Module, str], Node]
_DESCRIBERS: dict[type, Describer] = {}


def register_describer(cls: type) -> Callable[[Describer], Describer]:
    """Decorator: ``fn(module, name) -> node`` describes modules of class ``cls`` (exact class first)."""

    def deco(fn: Describer) -> Describer:
        _DESCRIBERS[cls] = fn
        return fn

    return deco


def describe(module: nn.Module, name: str = "") -> Node:
    """The JSON-ready description of ``module`` (whose ``state_dict`` prefix is ``name``)."""
    _register_builtin()
    for cls in type(module).__mro__:
        fn = _DESCRIBERS.get(cls)
        if fn is not None:
            return fn(module, name)
    raise ConfigError(
        f"cannot export module {name or '<root>'!r} of type {type(module).__name__}; "
        "describe it with fn3.export.register_describer"
    )


def _join(prefix: str, child: str) -> str:
    return f"{prefix}.{child}" if prefix else child


def _axis_ref(slot: object, per_unit: int = 1) -> list | None:
    return None if slot is None else [slot.axis.name, int(per_unit)]


def _bits_name(slot: object) -> str | None:
    return None if slot is None else slot.axis.name


def _act(layer: nn.Module) -> dict | None:
    q = layer.act_quant
    return (
        None
        if q is None
        else {"abits": q.slot.axis.name, "signed": bool(q.signed), "total_bits": int(q.total_bits),
              "scheme": q.quant_scheme}
    )


def _seq(children: list[Node]) -> Node:
    return {"type": "seq", "children": children}


_registered = False


def _register_builtin() -> None:
    """Register fn3's own layers and models (late: keeps imports light and cycle-free)."""
    global _registered
    if _registered:
        return
    _registered = True
    from fn3.models.mlp import NestedMLP
    from fn3.models.resnet import NestedResNet
    from fn3.nn import (
        BasicBlock,
        NestedActQuant,
        NestedBatchNorm2d,
        NestedConv2d,
        NestedLinear,
        NestedStage,
        ResNeXtBlock,
    )

    @register_describer(NestedConv2d)
    def _(m: NestedConv2d, name: str) -> Node:
        path = _axis_ref(m.path_axis, m.out_channels // m.groups) if m.path_axis is not None else None
        return {
            "type": "conv",
            "name": name,
            "in": m.in_channels,
            "out": m.out_channels,
            "k": m.kernel_size,
            "stride": m.stride,
            "padding": m.padding,
            "groups": m.groups,
            "bias": m.bias is not None,
            "in_axis": _axis_ref(m.in_axis, m.in_per_unit),
            "out_axis": _axis_ref(m.out_axis, m.out_per_unit),
            "path_axis": path,
            "wbits": _bits_name(m.wbits),
            "act": _act(m),
            "total_bits": m.total_bits,
            "scheme": m.quant_scheme,
        }

    @register_describer(NestedLinear)
    def _(m: NestedLinear, name: str) -> Node:
        return {
            "type": "linear",
            "name": name,
            "in": m.in_features,
            "out": m.out_features,
            "bias": m.bias is not None,
            "in_axis": _axis_ref(m.in_axis),
            "out_axis": _axis_ref(m.out_axis),
            "wbits": _bits_name(m.wbits),
            "act": _act(m),
            "total_bits": m.total_bits,
            "scheme": m.quant_scheme,
        }

    @register_describer(nn.Conv2d)
    def _(m: nn.Conv2d, name: str) -> Node:
        k, s, p = m.kernel_size, m.stride, m.padding
        if (
            len(set(k)) != 1
            or len(set(s)) != 1
            or not isinstance(p, tuple)
            or len(set(p)) != 1
            or m.dilation != (1, 1)
            or m.padding_mode != "zeros"
        ):
            raise ConfigError(f"cannot export {name!r}: only square, undilated, zero-padded convolutions")
        return {
            "type": "conv",
            "name": name,
            "in": m.in_channels,
            "out": m.out_channels,
            "k": k[0],
            "stride": s[0],
            "padding": p[0],
            "groups": m.groups,
            "bias": m.bias is not None,
            "in_axis": None,
            "out_axis": None,
            "path_axis": None,
            "wbits": None,
            "act": None,
            "total_bits": 8,
        }

    @register_describer(nn.Linear)
    def _(m: nn.Linear, name: str) -> Node:
        return {
            "type": "linear",
            "name": name,
            "in": m.in_features,
            "out": m.out_features,
            "bias": m.bias is not None,
            "in_axis": None,
            "out_axis": None,
            "wbits": None,
            "act": None,
            "total_bits": 8,
        }

    @register_describer(nn.BatchNorm2d)
    def _(m: nn.BatchNorm2d, name: str) -> Node:
        if m.running_mean is None or not m.affine:
            raise ConfigError(
                f"cannot export BatchNorm {name!r}: it needs running statistics and affine=True"
            )
        axis = getattr(m, "axis", None)
        return {
            "type": "bn",
            "name": name,
            "num_features": m.num_features,
            "eps": float(m.eps),
            "axis": _axis_ref(axis, getattr(m, "per_unit", 1)),
        }

    register_describer(NestedBatchNorm2d)(_DESCRIBERS[nn.BatchNorm2d])

    @register_describer(NestedActQuant)
    def _(m: NestedActQuant, name: str) -> Node:
        return {
            "type": "act",
            "name": name,
            "abits": m.slot.axis.name,
            "signed": bool(m.signed),
            "total_bits": int(m.total_bits),
            "scheme": m.quant_scheme,
        }

    @register_describer(nn.Sequential)
    def _(m: nn.Sequential, name: str) -> Node:
        return _seq([describe(c, _join(name, k)) for k, c in m.named_children()])

    @register_describer(NestedStage)
    def _(m: NestedStage, name: str) -> Node:
        return {
            "type": "stage",
            "depth": None if m.depth is None else m.depth.axis.name,
            "blocks": [describe(b, _join(name, f"blocks.{i}")) for i, b in enumerate(m.blocks)],
        }

    def _block(layers: tuple[str, ...]) -> Describer:
        def fn(m: nn.Module, name: str) -> Node:
            body = []
            for layer in layers:
                body.append(
                    {"type": "relu"} if layer == "relu" else describe(getattr(m, layer), _join(name, layer))
                )
            short = None if m.shortcut is None else describe(m.shortcut, _join(name, "shortcut"))
            return {"type": "residual", "body": _seq(body), "shortcut": short}

        return fn

    register_describer(BasicBlock)(_block(("conv1", "bn1", "relu", "conv2", "bn2")))
    register_describer(ResNeXtBlock)(_block(("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3")))

    @register_describer(NestedResNet)
    def _(m: NestedResNet, name: str) -> Node:
        # forward: relu(stem_bn(stem(x))) -> stages -> adaptive_avg_pool2d(., 1) -> flatten -> fc
        stages = [describe(s, _join(name, f"stages.{i}")) for i, s in enumerate(m.stages)]
        return _seq(
            [
                describe(m.stem, _join(name, "stem")),
                describe(m.stem_bn, _join(name, "stem_bn")),
                {"type": "relu"},
                *stages,
                {"type": "gap"},
                {"type": "flatten"},
                describe(m.fc, _join(name, "fc")),
            ]
        )

    @register_describer(NestedMLP)
    def _(m: NestedMLP, name: str) -> Node:
        # forward: flatten -> [layer -> relu] * (n - 1) -> layer
        children: list[Node] = [{"type": "flatten"}]
        for i, layer in enumerate(m.layers):
            children.append(describe(layer, _join(name, f"layers.{i}")))
            if i < len(m.layers) - 1:
                children.append({"type": "relu"})
        return _seq(children)

    for cls, node in ((nn.ReLU, {"type": "relu"}), (nn.Identity, {"type": "identity"})):
        register_describer(cls)(lambda m, name, node=node: dict(node))

    @register_describer(nn.Flatten)
    def _(m: nn.Flatten, name: str) -> Node:
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ConfigError(f"cannot export {name!r}: only Flatten(1, -1)")
        return {"type": "flatten"}

    @register_describer(nn.AdaptiveAvgPool2d)
    def _(m: nn.AdaptiveAvgPool2d, name: str) -> Node:
        if m.output_size not in (1, (1, 1)):
            raise ConfigError(f"cannot export {name!r}: only global average pooling (output size 1)")
        return {"type": "gap"}
