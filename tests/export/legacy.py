"""fn3's module-tree vocabulary (file formats 1 and 2), *written* here only to test its readers.

Before the layer protocol, fn3 exported a built-in model by describing it as a JSON tree of a dozen
node types (one describer per model class: a second description of every architecture, kept in sync
by hand) and building :class:`~fn3.export.ExportedModel` modules from that tree; files of formats 1
and 2 store such a tree. fn3 now exports every model by extraction and writes format 3
(:mod:`fn3.export.user`), but it still *reads* formats 1 and 2 (:func:`fn3.export.slice.build`,
:mod:`fn3.export.nested`). The writer lives on here, in the tests, to make such files:
:func:`describe` (the describers), :class:`ModelSource`, :func:`export_tree` (a built-in model's
sub-model as an ``ExportedModel``) and :func:`save_nested_v2` (a version-2 nested file).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fn3.errors import ConfigError
from fn3.export import container
from fn3.export.layout import Record, records
from fn3.export.pack import keep_planes, to_planes
from fn3.export.qmodules import ExportedModel
from fn3.export.slice import Sels, build, export_meta
from fn3.nest import active, space
from fn3.nest import space as model_space
from fn3.nn.functional import weight_codes, weight_scale
from fn3.nn.slot import Selection
from fn3.spec import Space, Spec

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


def _take(t: torch.Tensor, sels: Sels) -> torch.Tensor:
    for dim, sel in enumerate(sels):
        if sel is not None:
            t = sel.take(t, dim)
    return t


def _tiles(t: torch.Tensor, rec: Record, space: Space) -> list[torch.Tensor]:
    """The tiles of ``t`` (shape ``rec.shape``) in storage order."""
    grid = rec.blocks(space)
    out = []
    for tile in rec.tiles(space):
        part = t
        for d, b in enumerate(tile):
            r = grid[d][b]
            part = part.narrow(d, r.start, len(r))
        out.append(part.reshape(-1))
    return out


class ModelSource:
    """Reads tensors from a nested model's parameters and buffers (codes computed as in training)."""

    def __init__(self, model: nn.Module):
        self.tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def floats(self, key: str, sels: Sels) -> torch.Tensor:
        return _take(self.tensors[key].detach(), sels).clone()

    def codes(self, key: str, sels: Sels, planes: tuple[int, ...], total_bits: int) -> torch.Tensor:
        w = self.tensors[key].detach()
        full = weight_codes(w, weight_scale(w, total_bits), total_bits)  # (out, ...) B-bit codes
        return keep_planes(_take(full, sels), total_bits, planes)

    def scale(self, key: str, out: Selection | None, total_bits: int) -> torch.Tensor:
        return _take(weight_scale(self.tensors[key].detach(), total_bits), (out,)).clone()



@torch.no_grad()
def export_tree(model: nn.Module, spec: Spec | None = None, *, meta: Mapping | None = None) -> ExportedModel:
    """The sub-model in fn3's version-1/2 module vocabulary (:class:`ExportedModel`), for built-ins.

    What :func:`export` returned before the layer protocol: kept for the ONNX writer's
    ``compact=True`` / ``integer=True`` graphs, which walk that vocabulary.
    """
    arch = describe(model)
    sp = space(model)
    spec = sp.largest() if spec is None else sp.validate(spec)
    with active(model, spec):  # validates and leaves the model as it was
        net = build(arch, ModelSource(model), spec, sp)
    layers = list(net) if type(net) is nn.Sequential else [net]
    return ExportedModel(*layers, meta=export_meta(model, spec, meta)).eval().requires_grad_(False)


def save_nested_v2(model: nn.Module, path: str | Path, *, meta: dict | None = None) -> Path:
    """The version-2 writer (a built-in model's module tree), kept to test that such files load."""
    arch = describe(model)
    path = Path(path)
    path = path / "nested.safetensors" if path.is_dir() else path
    space = model_space(model)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    bits_of = {r.key: r.bits for r in records(arch) if r.kind == "planes"}
    chunks = []
    for rec in records(arch):
        if rec.key.endswith(".weight.scale"):  # the B-bit step of the full weight, per output channel
            weight = rec.key[: -len(".scale")]
            t = weight_scale(tensors[weight].detach(), bits_of[weight])
        else:
            t = tensors[rec.key].detach()
        if tuple(t.shape) != rec.shape:
            raise ValueError(f"{rec.key}: shape {tuple(t.shape)} does not match {rec.shape}")
        if rec.kind == "f32":
            flat = torch.cat(_tiles(t, rec, space)) if rec.shape else t.reshape(1)
            chunks.append(flat.to(torch.float32).numpy().astype("<f4").tobytes())
        else:
            codes = weight_codes(t, weight_scale(t, rec.bits), rec.bits)  # (out, ...) B-bit
            planes = torch.from_numpy(to_planes(codes, rec.bits))  # (B, *shape) 0/1
            for p in range(rec.bits):
                chunks.append(np.packbits(torch.cat(_tiles(planes[p], rec, space)).numpy()).tobytes())
    data = b"".join(chunks)
    header = {"arch": arch, "space": space.to_dict(), "meta": export_meta(model, space.largest(), meta)}
    header["meta"].pop("spec", None)
    blob_m = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    tensors_out = [("meta", "U8", [len(blob_m)], blob_m), ("data", "U8", [len(data)], data)]
    crc = json.dumps({"meta": f"{zlib.crc32(blob_m):08x}"})
    container.write(path, tensors_out, {"format": "fn3.nested", "version": "2", "crc32": crc})
    return path


