"""Score many sub-models at once, sharing the layers they have in common (a prefix tree of specs).

A model's forward pass is cut into *segments* run in order. A segment reads a few axes (the slots of
the nested leaves it calls), so its output depends only on the kept blocks of the axes read by it
*and by every segment before it*. Specs that agree on those share that output. :func:`score_tree`
groups the specs level by level (a trie keyed by each segment's axes) and runs every distinct prefix
once: the heuristic's candidates, which differ from their parent in one block, recompute only the
layers from the first segment reading that block's axis onwards.

Where the cuts come from (:func:`segments_of`, the same for every model, built-in or nested by
:func:`fn3.nest_`): the forward is traced once with ``torch.fx`` under the full spec, keeping whole
what the layer protocol (:mod:`fn3.nn.protocol`) describes: every nested leaf (``is_leaf``), every
module that reads a slot in Python, torch's own layers. Fn3's chain gates (``NestedStage``,
``NestedSequential``, ``NestedModuleList``: ``x = child(x)`` over the children that run) are traced
through; each gated child, found as :mod:`fn3.cost._trace` finds it (``fn3_skipped()`` under specs
dropping one block), stays one call run behind ``child(x) if its blocks are kept else x``. Any other
gate is one call, its depth axis read like a width. A cut goes after a node where exactly one value
is live (every later node reads earlier ones only through it: an articulation point), so a segment
is a ``GraphModule`` from one tensor to the next. Then spans are joined where finer cuts gain nothing:
a span reading only axes that earlier ungated spans already read has one output per group of specs,
so it joins the one before (the MLP's last layer, a ReLU, a pooling). A span that is a gated child
alone keeps its ``gate``: a spec dropping that block skips it whatever the child's own axes, which
the trie shares. For the built-in models this gives the cuts written by hand before (the MLP's
layers; a ResNet's stem, each residual block, the classifier), so there is one path for all.

Exactness needs three more rules. A segment's input is shared by all the groups run from it, so no
cut goes on a value that a later in-place op (``relu_``, ``+=``, a module with ``inplace=True``, a
child that writes into its input) may write through, views included (decided conservatively). A
BatchNorm called in two spans joins them (re-estimating it per span would reset what the first call
accumulated). And the graph must not depend on the mode: traced in train and eval mode, the two must
be the same. Models fx cannot trace, that write into their input or their parameters, or with no cut
point get ``None`` and are scored spec by spec (:class:`~fn3.search.Evaluator` also checks once that
the segments reproduce ``model(x)`` for the full and the smallest sub-model, and falls back if not).

BatchNorm re-estimation fits the same scheme: a segment's recalibrated statistics depend only on its
train-mode inputs, which the trie shares too. The statistics are computed exactly as
:func:`fn3.evaluate.recalibrate_bn` computes them (reset, cumulative average over the calibration
batches, train mode), so the scores are bit-identical to the plain per-spec evaluation. (Dropout
running before a BatchNorm would draw its masks in another order: :func:`random_before_bn`, and the
Evaluator then scores spec by spec.)

Memory: the trie is walked depth-first with all validation batches at once, so it holds one output
of the validation set per segment on the current path (at most one per segment), never one per spec;
inside a segment, the ``GraphModule`` frees each intermediate after its last use, as the forward does.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from fn3.nest import active, gated_children, slots, space
from fn3.nn.base import NestedModule
from fn3.nn.protocol import is_gate, is_leaf
from fn3.nn.slot import AxisSlot
from fn3.spec import Spec

__all__ = ["Segment", "random_before_bn", "score_tree", "segments_of", "shared_fraction"]


@dataclass(frozen=True)
class Segment:
    """One piece of the forward pass: ``run(x)``, the axes it reads, the modules it runs."""

    run: Callable[[torch.Tensor], torch.Tensor]
    axes: tuple[str, ...]  # axes whose kept blocks change this segment's output
    modules: tuple[nn.Module, ...]  # for train/eval switching and BatchNorm statistics
    gate: tuple[str, int] | None = None  # (depth axis, block): the segment runs iff block is kept

    def key(self, keep: dict[str, tuple[int, ...]]) -> tuple:
        if self.gate is not None and self.gate[1] not in keep[self.gate[0]]:
            return ("skip",)  # a dropped residual block is the identity: its own axes do not matter
        return tuple(keep[a] for a in self.axes)

    def set_axes(self) -> tuple[str, ...]:
        return self.axes if self.gate is None else (*self.axes, self.gate[0])

    def bns(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for mod in self.modules for m in mod.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _axes(*modules: nn.Module) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, NestedModule):
                for s in m.fn3_slots():
                    names.setdefault(s.axis.name, None)
    return tuple(names)


def segments_of(model: nn.Module) -> list[Segment] | None:
    """The segments of any nested model's forward, or ``None`` (then specs are scored one by one).

    ``None`` when ``torch.fx`` cannot trace the forward, when the traced graph depends on the
    train/eval mode, mutates the model's input or its own tensors in place, or has no cut point (a
    single segment would share nothing). See the module docstring for how the cuts are chosen.

    Example:
        >>> import torch, fn3
        >>> from fn3.export.user import example_net
        >>> net = example_net()  # conv-bn-relu, conv-bn-relu, pool, flatten, linear
        >>> _ = fn3.nest_(net, torch.zeros(1, 1, 8, 8), levels=("channels",), verbose=False)
        >>> [seg.axes for seg in segments_of(net)]  # the head reads no new axis: joined to conv 2
        [('0.width',), ('0.width', '3.width')]
    """
    try:
        return _traced_segments(model)
    except Exception:  # any failure to trace or to cut only means: score spec by spec
        return None


# -- tracing --------------------------------------------------------------------------------------


def _chain_gates() -> tuple[type, ...]:
    """Block gates whose forward, under the full spec, is the chain ``x = child(x)`` over their
    children, a skipped child passing its input through (fn3's own three gates)."""
    from fn3.nn.blocks import NestedStage
    from fn3.nn.gate import NestedModuleList, NestedSequential

    return (NestedSequential, NestedStage, NestedModuleList)


class _Tracer(fx.Tracer):
    """Keeps whole (one ``call_module`` node): nested leaves, other gates, any module reading a slot
    itself, the gated children of chain gates, torch's own layers. Traces through the rest."""

    def __init__(self, gated: Mapping[int, Gates]):
        super().__init__()
        self.gated = gated
        self.chain = _chain_gates()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if id(m) in self.gated:
            return True
        if isinstance(m, self.chain):
            return False  # traced through: the graph calls each of its children
        if is_leaf(m) or is_gate(m) or (isinstance(m, NestedModule) and next(m.fn3_slots(), None)):
            return True  # it reads slots in Python: traced through, the graph would freeze them
        return super().is_leaf_module(m, module_qualified_name)


Gates = tuple[tuple[str, int], ...]  # (axis, block) pairs: a child runs iff all these blocks are kept


def _gated_children(model: nn.Module) -> dict[int, Gates]:
    """``{id(child): ((axis, block), ...)}``: the blocks whose dropping skips each child of a chain
    gate (:func:`fn3.nest.gated_children`, as :mod:`fn3.cost._trace` reads them)."""
    gates = [m for m in model.modules() if isinstance(m, _chain_gates())]
    return gated_children(model, gates, {a.name: a for a in space(model)})


def _trace(model: nn.Module, gated: Mapping[int, Gates], train: bool) -> fx.Graph:
    """The graph of ``model``'s forward under the full spec, in train or eval mode."""
    flags = {m: m.training for m in model.modules()}
    model.train(train)
    try:
        with active(model, None):
            return _Tracer(gated).trace(model)
    finally:
        for m, mode in flags.items():
            m.training = mode


class _Gated(nn.Module):
    """A gated child as its chain gate runs it: ``child(x)`` if all its blocks are kept, else ``x``."""

    def __init__(self, child: nn.Module, gates: Sequence[tuple[AxisSlot, int]]):
        super().__init__()
        self.child = child
        self.gates = tuple(gates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for slot, block in self.gates:
            if block not in slot.blocks:
                return x
        return self.child(x)


# -- in-place mutation ----------------------------------------------------------------------------
# A segment's input is shared by every group of specs run from it: if a later op wrote into it (or
# into a view of it), the next group would read the written values. So no cut is placed on a value
# an in-place op later writes through; what may be a view of what is decided conservatively.

_INPLACE_FUNCS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
                  operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor,
                  operator.ilshift, operator.irshift, operator.imatmul, operator.setitem}
#: Functions and tensor methods whose result is a new tensor (never a view of an argument).
_FRESH_FUNCS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
                operator.matmul, operator.neg, operator.pow, operator.mod, getattr,
                torch.add, torch.sub, torch.mul, torch.div, torch.matmul, torch.cat, torch.stack,
                torch.relu, torch.sigmoid, torch.tanh, torch.mean, torch.sum, torch.softmax,
                F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu,
                F.conv2d, F.linear, F.batch_norm, F.layer_norm, F.softmax, F.max_pool2d, F.avg_pool2d,
                F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_FRESH_METHODS = {"add", "sub", "mul", "div", "matmul", "sum", "mean", "relu", "sigmoid", "tanh",
                  "softmax", "clone", "size", "dim", "numel", "pow", "exp", "log", "abs", "norm"}
_ALIAS_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Sequential, nn.modules.dropout._DropoutNd)


def _is_torch_layer(m: nn.Module) -> bool:
    mod = type(m).__module__
    return (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")) and not isinstance(m, nn.Sequential)


def _inplace_flag(node: fx.Node) -> bool:
    """``inplace=True`` given to a function (``F.relu(x, True)``, ``F.relu(x, inplace=True)``)."""
    if node.kwargs.get("inplace") is True:
        return True
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    except (TypeError, ValueError):
        return False
    return bound.arguments.get("inplace") is True


def _nodes_in(value: object) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(value, out.append)
    return out


class _Graph:
    """The nodes of one traced forward, which depend on the input, and what may write into what."""

    def __init__(self, graph: fx.Graph, root: nn.Module, gated: Mapping[int, Gates],
                 memo: dict[int, bool]):
        self.root, self.gated, self.memo = root, gated, memo
        self.nodes = list(graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.dependent: set[fx.Node] = set(self.placeholders)
        for n in self.nodes:
            if any(a in self.dependent for a in n.all_input_nodes):
                self.dependent.add(n)
        # (node, values it may write into): values reachable backwards through possible views
        self.writes: list[tuple[fx.Node, set[fx.Node]]] = []
        for n in self.nodes:
            targets = self._written(n)
            if targets:
                self.writes.append((n, self._aliases(targets)))

    def module(self, node: fx.Node) -> nn.Module:
        return self.root.get_submodule(node.target)

    def _written(self, n: fx.Node) -> list[fx.Node]:
        """The arguments ``n`` writes into (empty for an op without side effects)."""
        first = _nodes_in(n.args[:1])
        if n.op == "call_function":
            name = getattr(n.target, "__name__", "")
            if n.target in _INPLACE_FUNCS or (name.endswith("_") and not name.startswith("_")) \
                    or _inplace_flag(n):
                return first
            return _nodes_in(n.kwargs.get("out"))
        if n.op == "call_method":
            name = str(n.target)
            if (name.endswith("_") and not name.startswith("_")) or name in ("__setitem__", "__iadd__"):
                return first
            return []
        if n.op == "call_module" and _mutates_input(self.module(n), self.gated, self.memo):
            return _nodes_in((n.args, n.kwargs))
        return []

    def _may_alias(self, n: fx.Node) -> bool:
        """Whether the value of ``n`` may be (a view of) one of its inputs."""
        if n.op == "call_module":
            m = self.module(n)
            if id(m) in self.gated:
                return True  # a dropped gated child returns its input
            if is_leaf(m):
                return False
            return isinstance(m, _ALIAS_MODULES) or getattr(m, "inplace", False) is True \
                or not _is_torch_layer(m)
        if n.op == "call_function":
            return n.target not in _FRESH_FUNCS or _inplace_flag(n)
        if n.op == "call_method":
            return n.target not in _FRESH_METHODS
        return False

    def _aliases(self, start: list[fx.Node]) -> set[fx.Node]:
        seen: set[fx.Node] = set()
        stack = list(start)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if self._may_alias(n):
                stack.extend(n.all_input_nodes)
        return seen


def _mutates_input(module: nn.Module, gated: Mapping[int, Gates], memo: dict[int, bool]) -> bool:
    """Whether calling ``module`` may write into its inputs (True when unsure)."""
    if id(module) in memo:
        return memo[id(module)]
    memo[id(module)] = True  # while analysing it (recursion): unsure
    if is_leaf(module):
        result = False  # fn3's leaves compute new tensors
    elif getattr(module, "inplace", False) is True:
        result = True
    elif _is_torch_layer(module):
        result = False
    else:
        try:
            g = _Graph(_Tracer(gated).trace(module), module, gated, memo)
            result = any(set(g.placeholders) & hit for _, hit in g.writes)
        except Exception:
            result = True
    memo[id(module)] = result
    return result


# -- cutting --------------------------------------------------------------------------------------


@dataclass
class _Span:
    """Consecutive input-dependent nodes between two cuts: ``inp -> ... -> out``."""

    inp: fx.Node  # the one value live at the cut before
    out: fx.Node  # the one value live at the cut after (the model output for the last span)
    nodes: list[fx.Node]
    modules: list[nn.Module]  # the modules it calls (a gated child: the child), in call order
    axes: tuple[str, ...]
    gate: tuple[str, int] | None  # the span is one gated child, skipped iff this block is dropped

    def set_axes(self) -> set[str]:
        return {*self.axes, *(self.gate[:1] if self.gate else ())}


def _traced_segments(model: nn.Module) -> list[Segment] | None:
    gated = _gated_children(model)
    graph = _trace(model, gated, train=False)
    if str(graph) != str(_trace(model, gated, train=True)):
        return None  # the forward reads self.training in Python: calibration would run another graph
    g = _Graph(graph, model, gated, {})
    output = g.nodes[-1]
    if len(g.placeholders) != 1 or output.op != "output" or not isinstance(output.args[0], fx.Node):
        return None
    for _, hit in g.writes:
        if g.placeholders[0] in hit or any(n not in g.dependent for n in hit):
            return None  # writes into the model's input, or into a parameter or buffer
    cuts = _cuts(g, output)
    bounds = [(0, g.placeholders[0]), *cuts, (len(g.nodes) - 1, output.args[0])]
    spans = [_span(g, a, b, v, w) for (a, v), (b, w) in zip(bounds, bounds[1:], strict=False)]
    spans = _merge(spans)
    if len(spans) < 2:
        return None
    table = slots(model)
    return [_segment(g, s, table) for s in spans]


def _cuts(g: _Graph, output: fx.Node) -> list[tuple[int, fx.Node]]:
    """``(i, v)``: after node ``i`` only ``v`` is live, and nothing later writes into ``v``.

    A value is live from the node computing it to its last reader; one sweep keeps the live set.
    """
    last_use: dict[fx.Node, int] = {}
    for n in g.dependent:
        last_use[n] = max((g.index[u] for u in n.users), default=g.index[n])
    last_write: dict[fx.Node, int] = {}
    for op, hit in g.writes:
        for v in hit:
            last_write[v] = max(last_write.get(v, -1), g.index[op])
    ends: dict[int, list[fx.Node]] = {}
    live: set[fx.Node] = set()
    cuts = []
    final = g.index[output] - 1  # no cut after the last node: the span after it would be empty
    for i, n in enumerate(g.nodes[:final]):
        if n not in g.dependent:
            continue
        if last_use[n] > i:
            live.add(n)
            ends.setdefault(last_use[n], []).append(n)
        for m in ends.pop(i, []):
            live.discard(m)
        if i > 0 and len(live) == 1:
            (v,) = live
            if last_write.get(v, -1) <= i:
                cuts.append((i, v))
    return cuts


def _span(g: _Graph, start: int, end: int, inp: fx.Node, out: fx.Node) -> _Span:
    """The span of the dependent nodes after ``start`` up to ``end``, with its modules and axes."""
    nodes = [n for n in g.nodes[start + 1:end + 1] if n in g.dependent and n.op != "output"]
    modules: list[nn.Module] = []
    names: dict[str, None] = {}
    for n in nodes:
        if n.op != "call_module":
            continue
        m = g.module(n)
        modules.append(m)
        for axis, _ in g.gated.get(id(m), ()):
            names.setdefault(axis, None)
        names.update(dict.fromkeys(_axes(m)))
    gate = None
    if len(nodes) == 1 and nodes[0].op == "call_module" and len(g.gated.get(id(modules[0]), ())) == 1:
        # one gated child alone: a spec dropping its block skips it, whatever the child's own axes
        gate = g.gated[id(modules[0])][0]
        names = dict.fromkeys(_axes(modules[0]))
    return _Span(inp, out, nodes, modules, tuple(names), gate)


def _join(a: _Span, b: _Span) -> _Span:
    """One span running ``a`` then ``b``; a gate's axis becomes an ordinary axis of the joined span."""
    axes = (*a.axes, *(a.gate[:1] if a.gate else ()), *b.axes, *(b.gate[:1] if b.gate else ()))
    return _Span(a.inp, b.out, a.nodes + b.nodes, a.modules + b.modules, tuple(dict.fromkeys(axes)), None)


def _bn_ids(span: _Span) -> set[int]:
    return {id(m) for mod in span.modules for m in mod.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def _merge(spans: list[_Span]) -> list[_Span]:
    """Join spans that must run together, then spans that a finer cut would gain nothing from.

    * A BatchNorm called in two spans (a module run twice): re-estimating its statistics per span
      would reset what the first call accumulated, so everything from the first to the last is one.
    * A span reading no axis beyond those of the earlier ungated spans has, for every group of
      specs reaching it, a single output: joined to the span before it (if neither is gated), the
      trie does the same work with one level less.
    """
    changed = True
    while changed:
        changed = False
        owner: dict[int, int] = {}
        for k, span in enumerate(spans):
            for b in _bn_ids(span):
                first = owner.setdefault(b, k)
                if first != k:
                    joined = spans[first]
                    for s in spans[first + 1:k + 1]:
                        joined = _join(joined, s)
                    spans = [*spans[:first], joined, *spans[k + 1:]]
                    changed = True
                    break
            if changed:
                break
    out = [spans[0]]
    known = set(spans[0].axes) if spans[0].gate is None else set()
    for span in spans[1:]:
        if span.gate is None and out[-1].gate is None and set(span.axes) <= known:
            out[-1] = _join(out[-1], span)
        else:
            out.append(span)
        if span.gate is None:
            known |= set(span.axes)
    return out


def _segment(g: _Graph, span: _Span, table: Mapping[str, AxisSlot]) -> Segment:
    """The span as a Segment: a ``GraphModule`` of its nodes (copies of the constant nodes they read)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {span.inp: graph.placeholder("x")}
    attrs: dict[str, object] = {}  # the GraphModule's targets: modules, parameters, gated children
    inside = set(span.nodes)

    def copy(n: fx.Node) -> fx.Node:
        # A node of the span, or one computed without the input (a parameter, a constant): copied
        # on first use, so each segment recomputes the constants it reads.
        if n not in env:
            if n in g.dependent and n not in inside:
                raise RuntimeError(f"{n} is read across a cut")  # cannot happen at a valid cut
            new = graph.node_copy(n, lambda a: copy(a))
            if n.op == "call_module" and id(g.module(n)) in g.gated:
                new.target = f"fn3_gated_{len(attrs)}"
                child = g.module(n)
                attrs[new.target] = _Gated(child, [(table[a], b) for a, b in g.gated[id(child)]])
            elif n.op in ("call_module", "get_attr"):
                attrs[n.target] = _attr(g.root, n.target)
            env[n] = new
        return env[n]

    for n in span.nodes:
        copy(n)
    graph.output(copy(span.out))
    run = fx.GraphModule(attrs, graph)
    modules = tuple({id(m): m for m in span.modules}.values())
    return Segment(run, span.axes, modules, span.gate)


def _attr(root: nn.Module, target: str) -> object:
    obj: object = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def random_before_bn(segments: Sequence[Segment]) -> bool:
    """Whether a dropout module may run before a BatchNorm (modules in call order).

    BatchNorm re-estimation runs the segments in train mode, where dropout draws random masks: the
    trie draws them in another order than one forward per spec, so the statistics would differ. A
    called module holding both counts as dropout first.
    """
    called = [m for seg in segments for m in seg.modules]
    has_bn = [any(isinstance(s, nn.modules.batchnorm._BatchNorm) for s in m.modules()) for m in called]
    last = max((i for i, b in enumerate(has_bn) if b), default=-1)
    return any(isinstance(s, nn.modules.dropout._DropoutNd) for m in called[:last + 1] for s in m.modules())


def shared_fraction(segments: Sequence[Segment], specs: Sequence[Spec]) -> float:
    """The share of segment runs the trie saves on ``specs``: ``1 - distinct prefixes / (specs x
    segments)``. Near 0 when the specs share nothing (random ones): then the trie's per-segment calls
    are pure overhead (measured up to ~12% slower than one whole forward per spec), and the caller
    scores spec by spec instead."""
    if not specs or not segments:
        return 0.0
    keys = [[seg.key(sp.as_dict()) for seg in segments] for sp in specs]
    runs = sum(len({tuple(k[: level + 1]) for k in keys}) for level in range(len(segments)))
    return 1.0 - runs / (len(specs) * len(segments))


@torch.no_grad()
def score_tree(segments: Sequence[Segment], slots: dict[str, AxisSlot], specs: Sequence[Spec],
               val: Sequence[tuple[torch.Tensor, torch.Tensor]],
               calib: Sequence[torch.Tensor] | None) -> list[float]:
    """Top-1 accuracy of every spec over ``val`` (batches), sharing common prefixes.

    With ``calib`` (input batches), each segment's BatchNorm statistics are re-estimated for the
    spec's prefix before the validation pass, as :func:`fn3.evaluate.recalibrate_bn` does. The
    caller puts the model in eval mode, restores slots and BatchNorm statistics afterwards, and sets
    every BatchNorm's momentum to ``None`` (cumulative average) when ``calib`` is given.
    """
    keeps = [s.as_dict() for s in specs]
    keys = [[seg.key(k) for seg in segments] for k in keeps]
    labels = torch.cat([y for _, y in val])  # (N,)
    scores: list[float] = [0.0] * len(specs)
    bns = [seg.bns() for seg in segments]
    # Calibration activations are needed only while some later segment still has a BatchNorm.
    need_calib = [any(bns[j] for j in range(i, len(segments))) for i in range(len(segments))]

    def visit(level: int, members: list[int], xs: list[torch.Tensor],
              cs: list[torch.Tensor] | None) -> None:
        if level == len(segments):
            pred = torch.cat([x.argmax(dim=1) for x in xs])  # (N,) predicted classes
            acc = float((pred == labels).float().mean()) if len(labels) else 0.0
            for i in members:
                scores[i] = acc
            return
        groups: dict[tuple, list[int]] = {}
        for i in members:
            groups.setdefault(keys[i][level], []).append(i)
        seg = segments[level]
        for group in groups.values():
            keep = keeps[group[0]]
            for name in seg.set_axes():
                slots[name].set(keep[name])
            out_c = None
            if cs is not None and need_calib[level]:
                for bn in bns[level]:
                    bn.reset_running_stats()
                for m in seg.modules:
                    m.train()
                out_c = [seg.run(x) for x in cs]  # train mode: batch statistics, running ones updated
                for m in seg.modules:
                    m.eval()
            out = [seg.run(x) for x in xs]
            visit(level + 1, group, out, out_c)

    visit(0, list(range(len(specs))), [x for x, _ in val], None if calib is None else list(calib))
    return scores
