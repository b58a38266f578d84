"""`export(model, spec)`: a plain, physically small copy of sub-model ``spec``; and :func:`build`,
which reads fn3's former module-tree files.

:func:`export` copies the model and replaces each nested leaf by its extracted form
(:func:`fn3.export.submodel.extract_submodel`, the layer protocol only): the model's own classes and
forward survive, for a built-in model as for your own, and :mod:`fn3.export.user` saves it as its
recipe and its tensors (file format 3).

Files of formats 1 and 2 store instead a JSON *tree* of a dozen node types (``seq``, ``stage``,
``residual``, ``conv``, ``linear``, ``bn``, ``act``, ``relu``, ``flatten``, ``gap``, ``identity``),
which fn3 once wrote with a describer per model class: a second description of every architecture.
fn3 no longer writes it; :func:`build` still turns such a tree into ``torch.nn`` layers of the kept
sizes (:class:`~fn3.export.ExportedModel`), reading every tensor from a *source*: a dedicated file's
blobs (:mod:`fn3.export.io`) or the byte ranges of a nested file (:mod:`fn3.export.nested`). Such a
module holds :class:`~fn3.export.qmodules.QuantLinear` / ``QuantConv2d`` (the ``c``-bit codes and
the full weight's per-channel scale), an :class:`~fn3.export.qmodules.ActQuant` before a layer whose
input is quantized, and BatchNorm unfolded; ``tests/export/legacy.py`` keeps the writer, to test
that these files still load.

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> spec = fn3.space(net).uniform({"channels": 0.5, "bits": 4})
    >>> small = export(net, spec)
    >>> x = torch.randn(2, 3, 32, 32)
    >>> with torch.no_grad(), fn3.active(net, spec):
    ...     ref = net(x)
    >>> bool((small(x) - ref).abs().max() <= 1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn

from fn3.errors import FileFormatError
from fn3.export.qmodules import ActQuant, QuantConv2d, QuantLinear, Residual
from fn3.models.info import model_info
from fn3.nn.act_quant import QuantInput
from fn3.nn.slot import AxisSlot, Selection
from fn3.spec import Space, Spec

__all__ = ["TensorSource", "build", "export"]

Sels = tuple[Selection | None, ...]  # one selection per leading dimension (None: the whole dimension)


class TensorSource(Protocol):
    """Where :func:`build` reads tensors from (the model, or a nested file)."""

    def floats(self, key: str, sels: Sels) -> torch.Tensor:
        """Float tensor ``key`` restricted to ``sels`` along its first dimensions."""

    def codes(self, key: str, sels: Sels, planes: tuple[int, ...], total_bits: int) -> torch.Tensor:
        """``c``-bit codes of the kept ``planes`` of weight ``key``'s ``B``-bit code, sliced by ``sels``."""

    def scale(self, key: str, out: Selection | None, total_bits: int) -> torch.Tensor:
        """Per-output-channel ``B``-bit step of the full weight ``key``, restricted to ``out``."""


class _Selector:
    """Turns axis references of the description into index selections for one spec."""

    def __init__(self, space: Space, spec: Spec):
        self.space, self.spec = space, spec
        self._slots: dict[str, AxisSlot] = {}

    def units(self, name: str) -> tuple[int, ...]:
        axis = self.space[name]
        return tuple(u for b in self.spec.kept(name) for u in axis.block_units(b))

    def __call__(self, ref: list | None) -> Selection | None:
        if ref is None:
            return None
        name, per_unit = ref
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = AxisSlot(self.space[name])
            slot.set(self.spec.kept(name))
        return slot.select(int(per_unit))


def _act(node: Mapping, name: str, src: TensorSource, sel: _Selector) -> ActQuant:
    return ActQuant(
        src.floats(f"{name}.alpha", ()),
        planes=sel.units(node["abits"]),
        total_bits=node["total_bits"],
        signed=node["signed"],
        scheme=_scheme(node),
    )


def _scheme(node: Mapping) -> str:
    # Descriptions written before quantization schemes existed (nested files of format 1) truncated.
    return node.get("scheme", "truncate")


def _layer(node: Mapping, src: TensorSource, sel: _Selector) -> nn.Module:
    """A conv or linear node: (ActQuant ->) float or quantized layer of the kept size."""
    name, conv = node["name"], node["type"] == "conv"
    groups = node["groups"] if conv else 1
    if conv and node["path_axis"] is not None:
        out, inp = sel(node["path_axis"]), None
        groups = len(sel.units(node["path_axis"][0]))  # c kept paths = c groups
    else:
        out, inp = sel(node["out_axis"]), (sel(node["in_axis"]) if groups == 1 else None)
    bias = src.floats(f"{name}.bias", (out,)) if node["bias"] else None
    if node["wbits"] is not None:
        planes, bits = sel.units(node["wbits"]), node["total_bits"]
        codes = src.codes(f"{name}.weight", (out, inp), planes, bits)
        scale = src.scale(f"{name}.weight", out, bits)
        if conv:
            layer = QuantConv2d(
                codes,
                scale,
                bias,
                stride=node["stride"],
                padding=node["padding"],
                groups=groups,
                planes=planes,
                total_bits=bits,
                scheme=_scheme(node),
            )
        else:
            layer = QuantLinear(codes, scale, bias, planes=planes, total_bits=bits, scheme=_scheme(node))
    else:
        w = src.floats(f"{name}.weight", (out, inp))
        if conv:
            layer = nn.Conv2d(
                w.shape[1] * groups,
                w.shape[0],
                node["k"],
                node["stride"],
                node["padding"],
                groups=groups,
                bias=bias is not None,
            )
        else:
            layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(w)
            if bias is not None:
                layer.bias.copy_(bias)
    if node["act"] is None:
        return layer
    return QuantInput(_act(node["act"], f"{name}.act_quant", src, sel), layer)


def _bn(node: Mapping, src: TensorSource, sel: _Selector) -> nn.BatchNorm2d:
    name, s = node["name"], (sel(node["axis"]),)
    w = src.floats(f"{name}.weight", s)
    bn = nn.BatchNorm2d(w.shape[0], eps=node["eps"])
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(src.floats(f"{name}.bias", s))
        bn.running_mean.copy_(src.floats(f"{name}.running_mean", s))
        bn.running_var.copy_(src.floats(f"{name}.running_var", s))
    return bn.eval()


def _first(m: nn.Module) -> nn.Module:
    """The first module ``m`` applies (descending into ``nn.Sequential``)."""
    while isinstance(m, nn.Sequential) and len(m):
        m = m[0]
    return m


def _drop_redundant_relus(mods: list[nn.Module]) -> list[nn.Module]:
    """``mods`` without a ReLU whose output goes straight into an unsigned activation quantizer:
    the quantizer clips to ``[0, alpha]`` itself, so the ReLU is a wasted pass over the feature map
    (the values do not change)."""
    out = []
    for i, m in enumerate(mods):
        nxt = _first(mods[i + 1]) if i + 1 < len(mods) else None
        if type(m) is nn.ReLU and isinstance(nxt, ActQuant) and not nxt.signed:
            continue
        out.append(m)
    return out


def build(node: Mapping, src: TensorSource, spec: Spec, space: Space) -> nn.Module:
    """The plain module for description ``node`` as sub-model ``spec`` (tensors from ``src``)."""
    return _build(node, src, _Selector(space, spec))


def _build(node: Mapping, src: TensorSource, sel: _Selector) -> nn.Module:
    kind = node["type"]
    if kind == "seq":
        return nn.Sequential(*_drop_redundant_relus([_build(c, src, sel) for c in node["children"]]))
    if kind == "stage":
        keep = range(len(node["blocks"])) if node["depth"] is None else sel.units(node["depth"])
        return nn.Sequential(*[_build(node["blocks"][i], src, sel) for i in keep])
    if kind == "residual":
        short = None if node["shortcut"] is None else _build(node["shortcut"], src, sel)
        return Residual(_build(node["body"], src, sel), short)
    if kind in ("conv", "linear"):
        return _layer(node, src, sel)
    if kind == "bn":
        return _bn(node, src, sel)
    if kind == "act":
        return _act(node, node["name"], src, sel)
    simple = {
        "relu": nn.ReLU,
        "flatten": nn.Flatten,
        "identity": nn.Identity,
        "gap": lambda: nn.AdaptiveAvgPool2d(1),
    }
    if kind in simple:
        return simple[kind]()
    raise FileFormatError(f"unknown node type {kind!r} in the model description")


def export_meta(model: nn.Module, spec: Spec, extra: Mapping | None = None) -> dict:
    """The JSON-ready ``meta`` of an export: spec, source model config, input shape, extras."""
    meta: dict = {"spec": spec.to_dict()}
    info = model_info(model)
    if info is not None:
        meta["model"] = dict(info.config)
        if info.input_shape is not None and len(info.input_shape) == 3:
            meta["input_shape"] = list(info.input_shape)
    meta.update(extra or {})
    return meta


@torch.no_grad()
def export(model: nn.Module, spec: Spec | None = None, *, meta: Mapping | None = None) -> nn.Module:
    """A plain, physically small module computing ``model`` as sub-model ``spec``, in eval mode.

    Args:
        model: a nested model: a registered one (:func:`fn3.create_model`), one of your own
            (:func:`fn3.nest_`, ``fn3 train --model pkg.mod:factory``), or any module of fn3 layers.
        spec: the sub-model (``None``: the full model); validated against ``fn3.space(model)``.
        meta: extra JSON-ready entries for ``exported.meta`` (e.g. the input normalisation).

    Export is "copy the model, replace each nested leaf by its extracted form"
    (:func:`~fn3.export.submodel.extract_submodel`), so the model's own forward survives: the result
    is a :class:`~fn3.export.user.Exported` holding that copy, its ``meta`` (spec, the model's
    recipe, input shape) and the coding of its quantized weights (how a file stores them as c-bit
    codes). It is an inference artifact (eval mode, ``requires_grad=False``), holds no axis slot, and
    equals ``model(x)`` under ``fn3.active(model, spec)`` in eval mode. To export with BatchNorm
    statistics re-estimated for this spec, export inside :func:`fn3.evaluate.bn_recalibrated`.
    """
    from fn3.export.user import export_user

    return export_user(model, spec, meta=meta)

