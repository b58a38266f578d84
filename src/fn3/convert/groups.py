"""Channel groups by union-find over the traced graphs: which widths must shrink together.

Every tensor the graph follows carries a :class:`Feat`: its channel (or feature) dimension and the
*group* those channels belong to. A group is one width that ordered dropout may truncate; everything
that must agree on it joins it:

* convolutions and linear layers *consume* the group of their input and *produce* a new group;
* norms, activations, pooling and dropout pass the group through (a norm is a member: it is sliced);
* ``add`` / ``sub`` / ``mul`` join the groups of their operands (residual streams, squeeze-excite);
* a depthwise or grouped convolution ties its input and output (one group; a grouped convolution
  with ``1 < groups < channels`` makes it a ``paths`` group of whole convolution groups);
* ``flatten`` maps ``C`` channels of ``H x W`` to ``C * H * W`` features (``per_unit = H * W``);
* the model's inputs and outputs, channel concatenation, parameters used directly, and any op not
  understood here **freeze** the groups they touch (the reason is kept for the report).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fn3.convert.trace import trace_regions
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    >>> groups = analyse(trace_regions(net, (torch.zeros(1, 3, 5, 5),)), dict(net.named_modules()))
    >>> [(g.size, g.frozen, [m.module for m in g.members]) for g in groups.infos()]
    [(3, 'the model input', ['0']), (8, None, ['0', '1', '3']), (4, 'the model output', ['3'])]
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

from fn3.convert.rules import conversion_for
from fn3.convert.trace import Region

__all__ = ["Feat", "GroupInfo", "Groups", "Member", "analyse"]


@dataclass(frozen=True)
class Member:
    """A module dimension that holds the group's channels: ``per_unit`` entries per channel.

    ``role``: ``conv_in``, ``conv_out``, ``conv_tied`` (a depthwise / grouped conv's whole groups),
    ``linear_in``, ``linear_out``, ``bn``, ``ln``.
    """

    module: str
    role: str
    per_unit: int = 1


@dataclass(frozen=True)
class Feat:
    """The channels of a tensor: group ``gid`` at dimension ``dim``, ``per_unit`` entries each."""

    gid: int
    dim: int
    per_unit: int = 1


@dataclass
class GroupInfo:
    """One group after the analysis: its width, members, grouped-conv counts and freeze reason."""

    gid: int
    size: int
    members: list[Member] = field(default_factory=list)
    groups: set[int] = field(default_factory=set)  # ``groups`` of the grouped convs tying it
    frozen: str | None = None
    hint: str = ""


class Groups:
    """Union-find over channel groups; a root holds the merged :class:`GroupInfo`."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.info: list[GroupInfo] = []
        self.called: dict[str, str] = {}  # conv / linear / norm module name -> its torch type name
        self.unconvertible: set[str] = set()  # modules that stay as they are

    def new(self, size: int, hint: str) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.info.append(GroupInfo(gid, int(size), hint=hint))
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def root(self, gid: int) -> GroupInfo:
        return self.info[self.find(gid)]

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        ia, ib = self.info[ra], self.info[rb]
        if ia.size != ib.size:
            self.freeze(ra, f"joins widths {ia.size} and {ib.size}")
            self.freeze(rb, f"joins widths {ia.size} and {ib.size}")
        self.parent[rb] = ra
        ia.members += ib.members
        ia.groups |= ib.groups
        ia.frozen = ia.frozen or ib.frozen
        return ra

    def freeze(self, gid: int, reason: str) -> None:
        info = self.root(gid)
        info.frozen = info.frozen or reason

    def add(self, gid: int, member: Member) -> None:
        self.root(gid).members.append(member)

    def infos(self) -> list[GroupInfo]:
        """Every root group, in creation order."""
        return [self.info[i] for i in range(len(self.parent)) if self.find(i) == i]


_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU,
    nn.ELU, nn.Mish, nn.Softplus, nn.Hardtanh, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_PASS_FNS = {
    "relu", "relu_", "relu6", "gelu", "silu", "hardswish", "hardsigmoid", "sigmoid", "sigmoid_", "tanh",
    "dropout", "leaky_relu", "elu", "hardtanh", "hardtanh_", "mish", "softplus", "contiguous", "clone",
    "float", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "adaptive_max_pool2d", "clamp",
    "clamp_min", "clamp_max", "identity", "neg", "abs", "exp",
}  # fmt: skip
_JOIN_FNS = {"add", "add_", "iadd", "sub", "sub_", "isub", "mul", "mul_", "imul", "truediv", "div", "div_"}
_REDUCE_FNS = {"mean", "sum", "amax", "amin"}
_CAT_FNS = {"cat", "concat", "concatenate"}
_NO_TENSOR_FNS = {"size", "dim", "getattr", "numel"}


def _fn_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def _nodes(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, out.append)
    return out


class _Analyser:
    """Walks one region's graph and records groups, members and freezes into ``groups``."""

    def __init__(self, groups: Groups, region: Region, modules: dict[str, nn.Module]):
        self.g, self.region, self.modules = groups, region, modules
        self.env: dict[fx.Node, Feat | None] = {}
        self.calls: dict[str, tuple[Feat | None, Feat | None]] = {}

    # -- helpers ------------------------------------------------------------------------------
    def feat(self, arg: Any) -> Feat | None:
        return self.env.get(arg) if isinstance(arg, fx.Node) else None

    @staticmethod
    def shape(arg: Any) -> tuple[int, ...] | None:
        return arg.meta.get("fn3_shape") if isinstance(arg, fx.Node) else None

    def freeze_inputs(self, node: fx.Node, reason: str) -> None:
        for n in _nodes((node.args, node.kwargs)):
            f = self.env.get(n)
            if f is not None:
                self.g.freeze(f.gid, reason)

    def fresh(self, node: fx.Node, dim: int, hint: str, frozen: str | None = None) -> Feat | None:
        shape = self.shape(node)
        if shape is None or len(shape) <= dim:
            return None
        gid = self.g.new(shape[dim], hint)
        if frozen:
            self.g.freeze(gid, frozen)
        return Feat(gid, dim)

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> None:
        where = f" of {self.region.prefix}" if self.region.prefix else ""
        for node in self.region.graph.nodes:
            if node.op == "placeholder":
                shape = self.shape(node)
                dim = 1 if shape is not None and len(shape) == 4 else (len(shape) - 1 if shape else 0)
                self.env[node] = self.fresh(node, dim, "input", f"the model input{where}") if shape else None
            elif node.op == "output":
                for n in _nodes(node.args):
                    f = self.env.get(n)
                    if f is not None:
                        self.g.freeze(f.gid, f"the model output{where}")
            elif node.op == "get_attr":
                self.env[node] = None
            elif node.op == "call_module":
                self.env[node] = self.module(node)
            else:
                self.env[node] = self.function(node)

    def module(self, node: fx.Node) -> Feat | None:
        name = self.region.qualify(str(node.target))
        mod = self.modules[name]
        x, shape = node.args[0] if node.args else None, self.shape(node.args[0] if node.args else None)
        f = self.feat(x)
        last = len(shape) - 1 if shape else -1
        rule = conversion_for(mod)
        if rule is not None or type(mod) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm):
            self.g.called[name] = type(mod).__name__
        if rule is not None:  # a registered type (fn3.convert.rules) maps its channels itself
            out = rule.analyse(self, node, name, mod, f)
        elif type(mod) is nn.Conv2d:
            out = self.conv(node, mod, name, f)
        elif type(mod) is nn.Linear:
            out = self.fresh(node, last, name)
            if out is not None:
                self.g.add(out.gid, Member(name, "linear_out"))
            if f is not None and f.dim == last:
                self.g.add(f.gid, Member(name, "linear_in", f.per_unit))
            elif f is not None:
                self.g.freeze(f.gid, f"{name} reads these channels along another dimension")
        elif type(mod) is nn.BatchNorm2d and mod.affine and mod.track_running_stats and last == 3:
            if _plain(f, 1):
                self.g.add(f.gid, Member(name, "bn"))
            elif f is not None:
                self.g.freeze(f.gid, f"{name} normalises another dimension")
            out = f if _plain(f, 1) else None
        elif type(mod) is nn.LayerNorm and len(mod.normalized_shape) == 1:
            if _plain(f, last):
                self.g.add(f.gid, Member(name, "ln"))
            elif f is not None:
                self.g.freeze(f.gid, f"{name} normalises another dimension")
            out = f if _plain(f, last) else None
        elif isinstance(mod, _PASS_MODULES):
            out = f
        elif isinstance(mod, nn.Flatten):
            out = _flatten(f, shape, mod.start_dim, mod.end_dim)
            if out is None and f is not None:
                self.g.freeze(f.gid, f"{name} flattens the channels with a dimension before them")
        else:
            opaque = str(node.target) in self.region.opaque
            why = "an opaque module" if opaque else "a module fn3 does not nest"
            self.freeze_inputs(node, f"{name} ({type(mod).__name__}) is {why}")
            self.g.unconvertible.add(name)
            return None
        prev = self.calls.get(name)
        if name not in self.g.called:
            pass  # a weightless module (a shared nn.ReLU) joins nothing across its calls
        elif prev is None:
            self.calls[name] = (f, out)
        else:  # a module called twice has one weight: its inputs (and outputs) share one group
            for a, b in zip(prev, (f, out), strict=True):
                if a is not None and b is not None:
                    self.g.union(a.gid, b.gid)
        return out

    def conv(self, node: fx.Node, mod: nn.Conv2d, name: str, f: Feat | None) -> Feat | None:
        out = self.fresh(node, 1, name)
        if mod.padding_mode != "zeros":
            self.g.unconvertible.add(name)
            for feat in (f, out):
                if feat is not None:
                    self.g.freeze(feat.gid, f"{name} pads with padding_mode={mod.padding_mode!r}")
            return out
        if mod.groups == 1:
            self.g.add(out.gid, Member(name, "conv_out"))
            if _plain(f, 1):
                self.g.add(f.gid, Member(name, "conv_in"))
            elif f is not None:
                self.g.freeze(f.gid, f"{name} reads these channels in an unsupported layout")
            return out
        if _plain(f, 1) and mod.in_channels == mod.out_channels:
            root = self.g.union(f.gid, out.gid)  # depthwise / grouped: channel i of the input feeds group i
            self.g.add(root, Member(name, "conv_tied"))
            self.g.root(root).groups.add(mod.groups)
            return Feat(root, 1)
        for feat in (f, out):
            if feat is not None:
                self.g.freeze(feat.gid, f"{name} is a grouped convolution that changes the width")
        return out

    def function(self, node: fx.Node) -> Feat | None:
        name = _fn_name(node)
        inputs = [n for n in _nodes((node.args, node.kwargs)) if self.shape(n) is not None]
        feats = [self.env.get(n) for n in inputs]
        if self.shape(node) is None or name in _NO_TENSOR_FNS:
            return None  # a size, a tuple, ...: not a tensor the groups follow
        if node.target is operator.getitem:
            return self.getitem(node)
        if name in _PASS_FNS and len(inputs) == 1:
            return feats[0]
        if name in _JOIN_FNS:
            return self.join(node, inputs, feats)
        if name in _REDUCE_FNS and len(inputs) == 1:
            return self.reduce(node, feats[0])
        if name == "flatten" and len(inputs) == 1:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            out = _flatten(feats[0], self.shape(inputs[0]), start, end)
            if out is not None or feats[0] is None:
                return out
        elif name in ("view", "reshape") and len(inputs) == 1:
            out = _as_flatten(feats[0], self.shape(inputs[0]), self.shape(node))
            if out is not None or feats[0] is None:
                return out
        elif name in ("permute", "transpose") and len(inputs) == 1 and feats[0] is not None:
            return self.permute(node, name, feats[0])
        elif name in _CAT_FNS:
            return self.cat(node, inputs, feats)
        self.freeze_inputs(node, f"{name!r} is an operation fn3 does not nest through")
        return None

    def join(self, node: fx.Node, inputs: list[fx.Node], feats: list[Feat | None]) -> Feat | None:
        out_shape = self.shape(node)
        known = [(n, f) for n, f in zip(inputs, feats, strict=True) if f is not None]
        if not known:
            return None
        dim = known[0][1].dim + len(out_shape) - len(self.shape(known[0][0]))
        ok = True
        for n, f in zip(inputs, feats, strict=True):
            shape = self.shape(n)
            at = dim - (len(out_shape) - len(shape))  # broadcast aligns trailing dimensions
            width = shape[at] if 0 <= at < len(shape) else 1
            if f is None:
                ok = ok and width == 1  # a plain tensor broadcast over the channels is fine
            else:
                ok = ok and f.dim == at and f.per_unit == known[0][1].per_unit and width == out_shape[dim]
        if not ok:
            why = f"{_fn_name(node)!r} mixes these channels with a tensor fn3 cannot slice"
            self.freeze_inputs(node, why)
            return None
        root = known[0][1].gid
        for _, f in known[1:]:
            root = self.g.union(root, f.gid)
        return Feat(self.g.find(root), dim, known[0][1].per_unit)

    def reduce(self, node: fx.Node, f: Feat | None) -> Feat | None:
        if f is None:
            return None
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        n_in = len(self.shape(node.args[0]))
        if dims is None:
            self.g.freeze(f.gid, f"{_fn_name(node)!r} reduces over the channels")
            return None
        dims = {d % n_in for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}
        if f.dim in dims:
            self.g.freeze(f.gid, f"{_fn_name(node)!r} reduces over the channels")
            return None
        return Feat(f.gid, f.dim if keep else f.dim - sum(d < f.dim for d in dims), f.per_unit)

    def permute(self, node: fx.Node, name: str, f: Feat) -> Feat:
        n = len(self.shape(node))
        rest = [a for a in node.args[1:]]
        if name == "transpose":
            a, b = (int(rest[0]) % n, int(rest[1]) % n)
            return Feat(f.gid, b if f.dim == a else a if f.dim == b else f.dim, f.per_unit)
        order = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else list(rest)
        return Feat(f.gid, [int(d) % n for d in order].index(f.dim), f.per_unit)

    def getitem(self, node: fx.Node) -> Feat | None:
        f = self.feat(node.args[0])
        if f is None:
            return None
        index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        kept = 0  # dimensions before the channels that survive the indexing
        for dim, entry in enumerate(index):
            if entry is Ellipsis or isinstance(entry, fx.Node) or entry is None:
                break
            if dim == f.dim:
                if entry == slice(None):
                    return Feat(f.gid, kept, f.per_unit)
                break
            kept += isinstance(entry, slice)
        else:
            if f.dim >= len(index):
                return Feat(f.gid, f.dim - (len(index) - kept), f.per_unit)
        self.g.freeze(f.gid, "indexing selects some of the channels")
        return None

    def cat(self, node: fx.Node, inputs: list[fx.Node], feats: list[Feat | None]) -> Feat | None:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        n = len(self.shape(node))
        known = [f for f in feats if f is not None]
        if known and all(f is not None and f.dim != dim % n for f in feats):
            root = known[0].gid  # concatenating tokens (or rows) keeps one channel group
            for f in known[1:]:
                root = self.g.union(root, f.gid)
            return Feat(self.g.find(root), known[0].dim, known[0].per_unit)
        self.freeze_inputs(node, "channel concatenation (a first version freezes it)")
        return None


def _plain(f: Feat | None, dim: int) -> bool:
    return f is not None and f.dim == dim and f.per_unit == 1


def _flatten(f: Feat | None, shape: tuple[int, ...] | None, start: int, end: int) -> Feat | None:
    if f is None or shape is None:
        return None
    n = len(shape)
    start, end = start % n, end % n
    if f.dim < start:
        return f
    if f.dim > end:
        return Feat(f.gid, f.dim - (end - start), f.per_unit)
    if f.dim == start:
        inner = 1
        for d in shape[start + 1 : end + 1]:
            inner *= int(d)
        return Feat(f.gid, start, f.per_unit * inner)  # channel c covers features [c*inner, (c+1)*inner)
    return None


def _as_flatten(f: Feat | None, shape: tuple | None, out: tuple | None) -> Feat | None:
    """A ``view`` / ``reshape`` that is a flatten of trailing dimensions, as ``_flatten`` sees it."""
    if f is None or shape is None or out is None:
        return None
    for start in range(len(shape)):
        inner = 1
        for d in shape[start:]:
            inner *= int(d)
        if tuple(out) == (*shape[:start], inner):
            return _flatten(f, shape, start, len(shape) - 1)
    return None


def analyse(regions: list[Region], modules: dict[str, nn.Module]) -> Groups:
    """The channel groups of all ``regions`` (``modules``: the model's named modules)."""
    groups = Groups()
    for region in regions:
        _Analyser(groups, region, modules).run()
    return groups
