"""Residual blocks in a sequence become a ``layers`` axis.

A child of an ``nn.Sequential`` is a *droppable block* when, in the traced graph, it reads one tensor
``x``, returns one tensor of the same shape, and adds ``x`` itself to something inside it (the
identity shortcut of ``x + f(x)``, possibly followed by an activation). Dropping such a block leaves
``x``, a tensor of the right shape. Each run of consecutive droppable blocks becomes one axis:
unit 0 is the block before the run (the one with the projection shortcut, always kept) or, for a run
that starts the sequence, its first block. The ``nn.Sequential`` becomes a
:class:`~fn3.nn.gate.NestedSequential` with the same children (the ``state_dict`` keeps its keys),
and a forward pass at minimum depth checks the result; a failure restores the sequence.

An ``nn.ModuleList`` whose forward iterates it (``for block in self.blocks: x = block(x)``) is gated
the same way, as a :class:`~fn3.nn.gate.NestedModuleList` (iteration skips the dropped blocks); the
check also makes sure no dropped block is called (a forward that indexes the list keeps it as it is).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fn3.convert.trace import trace_regions
    >>> class Res(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 4)
    ...     def forward(self, x):
    ...         return x + self.fc(x)
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(Res(), Res(), Res()))
    >>> x = torch.zeros(1, 4)
    >>> [(seq, gates) for seq, gates in droppable_runs(net, trace_regions(net, (x,)))]
    [('1', [[0, 1, 2]])]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from fn3.convert.groups import _PASS_FNS, _PASS_MODULES, _fn_name, _nodes
from fn3.convert.trace import Region
from fn3.nn.base import eval_mode
from fn3.nn.gate import NestedModuleList, NestedSequential
from fn3.nn.slot import AxisSlot
from fn3.spec import Axis

__all__ = ["droppable_runs", "nest_layers"]


def _inside(node: fx.Node) -> set[str]:
    return {v[0] for v in node.meta.get("nn_module_stack", {}).values()}


def _is_block(graph: fx.Graph, rel: str, root: nn.Module) -> bool:
    inside = [n for n in graph.nodes if rel in _inside(n)]
    members = set(inside)
    ext = {a for n in inside for a in _nodes((n.args, n.kwargs)) if a not in members and a.op != "get_attr"}
    outs = [n for n in inside if any(u not in members for u in n.users)]
    if len(ext) != 1 or len(outs) != 1:
        return False
    (x,), y = tuple(ext), outs[0]
    if x.meta.get("fn3_shape") is None or x.meta.get("fn3_shape") != y.meta.get("fn3_shape"):
        return False
    # Walk back from the output through single-input activations to an add that reads x itself,
    # directly or through earlier adds of the block (x + f(x) + g(x + f(x)), as a transformer block).
    def reaches_x(node: fx.Node) -> bool:
        if node is x:
            return True
        if node not in members or _fn_name(node) not in ("add", "add_", "iadd"):
            return False
        return any(reaches_x(a) for a in _nodes(node.args))

    node = y
    while node.op in ("call_function", "call_method", "call_module") and node in members:
        name = _fn_name(node)
        if name in ("add", "add_", "iadd"):
            return reaches_x(node)
        args = [a for a in _nodes(node.args) if a.meta.get("fn3_shape") is not None]
        passes = (
            isinstance(root.get_submodule(str(node.target)), _PASS_MODULES)
            if node.op == "call_module"
            else name in _PASS_FNS
        )
        if not passes or len(args) != 1:
            return False
        node = args[0]
    return False


def droppable_runs(model: nn.Module, regions: Sequence[Region]) -> list[tuple[str, list[list[int]]]]:
    """``(sequence name, runs of consecutive droppable child positions)`` of every ``nn.Sequential``."""
    found = []
    for region in regions:
        for rel, seq in region.module.named_modules():
            if type(seq) not in (nn.Sequential, nn.ModuleList) or not rel or any(
                rel == o or rel.startswith(o + ".") for o in region.opaque
            ):
                continue
            names = [f"{rel}.{name}" for name, _ in seq.named_children()]
            flags = [_is_block(region.graph, name, region.module) for name in names]
            runs: list[list[int]] = []
            for i, ok in enumerate(flags):
                if ok and runs and runs[-1][-1] == i - 1:
                    runs[-1].append(i)
                elif ok:
                    runs.append([i])
            runs = [r for r in runs if r[0] > 0 or len(r) > 1]  # an axis needs two units
            if runs:
                found.append((region.qualify(rel), runs))
    return found


@torch.no_grad()
def nest_layers(
    model: nn.Module, regions: Sequence[Region], inputs: Sequence[Any]
) -> tuple[list[Axis], list[str]]:
    """Gate the droppable blocks of ``model`` (in place); returns the new axes and notes."""
    axes: list[Axis] = []
    notes: list[str] = []
    for name, runs in droppable_runs(model, regions):
        seq = model.get_submodule(name)
        gates: dict[int, tuple[AxisSlot, int]] = {}
        slots = []
        for r, run in enumerate(runs):
            first = run[0] - 1 if run[0] > 0 else run[0]  # unit 0 is always kept
            axis_name = f"{name}.depth" + (str(r + 1) if len(runs) > 1 else "")
            axis = Axis(axis_name, "layers", run[-1] - first + 1)
            slot = AxisSlot(axis)
            slots.append(slot)
            gates.update({i: (slot, i - first) for i in run if i != first})
        if type(seq) is nn.ModuleList:  # gated by iteration: the forward must iterate it
            gated: nn.Module = NestedModuleList(list(seq), gates=gates).train(seq.training)
        else:
            gated = NestedSequential(OrderedDict(seq.named_children()), gates=gates).train(seq.training)
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, gated)
        called: list[int] = []
        hooks = [seq[i].register_forward_pre_hook(lambda m, a, seen=called: seen.append(1)) for i in gates]
        try:  # the check: the model runs with every block of these axes dropped, and none is called
            for slot in slots:
                slot.set(tuple(range(slot.axis.min_blocks)))
            with eval_mode(model):
                model(*inputs)
            if called:
                raise RuntimeError("the forward calls its blocks by index, not by iterating the list")
            axes += [s.axis for s in slots]
        except Exception as err:  # any failure means the blocks are not droppable as they are
            setattr(owner, leaf, seq)
            notes.append(f"{name}: its residual blocks cannot be dropped ({type(err).__name__}: {err})")
        finally:
            for h in hooks:
                h.remove()
            for slot in slots:
                slot.set(None)
    return axes, notes
