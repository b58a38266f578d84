"""Trace a plain model into ``torch.fx`` graphs with tensor shapes: the input of :mod:`fn3.convert.groups`.

``torch.fx`` records the model's forward as a graph of calls (modules, functions, tensor methods). A
model whose forward cannot be traced (data-dependent control flow, ...) is split: the submodule that
failed becomes an opaque leaf of its parent's graph, and its own children are traced on their own as
separate *regions* (their inputs and outputs are then fixed widths, since nothing outside the region
is known). A model whose forward fails before any region can be traced is a
:class:`~fn3.errors.NestingError` naming the module.

Every node of a region's graph gets ``node.meta["fn3_shape"]``: the shape of the tensor it produced
on the example inputs (``None`` for non-tensors), from one forward pass in eval mode.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 4))
    >>> regions = trace_regions(net, (torch.zeros(1, 3, 5, 5),))
    >>> [(n.op, n.meta["fn3_shape"]) for n in regions[0].graph.nodes][:2]
    [('placeholder', (1, 3, 5, 5)), ('call_module', (1, 8, 3, 3))]
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from fn3.errors import NestingError
from fn3.nn.base import eval_mode

__all__ = ["Region", "trace_regions"]


@dataclass
class Region:
    """One traced module: its qualified name, its graph, and the submodules left opaque."""

    prefix: str
    module: nn.Module
    graph: fx.Graph
    opaque: set[str] = field(default_factory=set)  # names relative to ``module``
    notes: list[str] = field(default_factory=list)

    def qualify(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix and name else (self.prefix or name)


def _is_torch_leaf(m: nn.Module) -> bool:
    """A torch layer, or a type registered with :func:`fn3.convert.rules.register_conversion`."""
    from fn3.convert.rules import conversion_for

    mod = type(m).__module__
    torch_layer = (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")) and not isinstance(
        m, nn.Sequential
    )
    return torch_layer or conversion_for(m) is not None


class _Tracer(fx.Tracer):
    def __init__(self, opaque: set[str]):
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_torch_leaf(m) or module_qualified_name in self.opaque


def _culprit(err: BaseException, root: nn.Module) -> str:
    """The deepest submodule of ``root`` whose code raised ``err`` ("" for ``root`` itself)."""
    names = {id(m): n for n, m in root.named_modules()}
    found = ""
    for frame, _ in traceback.walk_tb(err.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            found = names[id(owner)]
    return found


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


class _Examples:
    """The positional arguments each module received on its first call of one example forward."""

    def __init__(self, model: nn.Module, inputs: Sequence[Any]):
        self.args: dict[int, tuple] = {}

        def hook(module: nn.Module, args: tuple) -> None:
            self.args.setdefault(id(module), args)

        handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
        try:
            model(*inputs)
        finally:
            for h in handles:
                h.remove()


def _shapes(module: nn.Module, graph: fx.Graph, args: tuple) -> None:
    gm = fx.GraphModule(module, graph)
    ShapeProp(gm).propagate(*args)
    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        node.meta["fn3_shape"] = tuple(meta.shape) if hasattr(meta, "shape") else None


def _trace(module: nn.Module, prefix: str, ex: _Examples, out: list[Region]) -> str | None:
    """Append the regions of ``module`` to ``out``; return why ``module`` itself failed, if it did."""
    if _is_torch_leaf(module) or id(module) not in ex.args:
        return None  # a torch layer is analysed by its parent; a module never called holds nothing
    opaque: set[str] = set()
    notes: list[str] = []
    while True:
        try:
            graph = _Tracer(opaque).trace(module)
            _shapes(module, graph, ex.args[id(module)])
            break
        except Exception as err:  # fx raises many kinds; every one of them means "not traceable here"
            culprit = _culprit(err, module)
            why = _one_line(err)
            if culprit == "" or culprit in opaque:
                for name, child in module.named_children():
                    _trace(child, f"{prefix}.{name}" if prefix else name, ex, out)
                return why
            opaque.add(culprit)
            notes.append(f"{prefix + '.' if prefix else ''}{culprit} could not be traced ({why}); "
                         "it is kept as it is and its children are nested on their own")
    out.append(Region(prefix, module, graph, opaque, notes))
    for name in sorted(opaque):
        sub = module.get_submodule(name)
        full = f"{prefix}.{name}" if prefix else name
        for child_name, child in sub.named_children():
            _trace(child, f"{full}.{child_name}", ex, out)
    return None


@torch.no_grad()
def trace_regions(model: nn.Module, example_inputs: Sequence[Any]) -> list[Region]:
    """Trace ``model`` (eval mode, restored after) into regions; see the module docstring."""
    with eval_mode(model):
        try:
            ex = _Examples(model, example_inputs)
        except Exception as err:
            raise NestingError(f"the model fails on the example inputs ({_one_line(err)}); give inputs "
                               "the model accepts, e.g. torch.zeros(1, 3, 224, 224)") from None
        regions: list[Region] = []
        why = _trace(model, "", ex, regions)
        if why is not None:
            if not regions:
                raise NestingError(f"{type(model).__name__}.forward cannot be traced by torch.fx ({why}) "
                                   "and none of its submodules can either; nothing to nest")
            regions[0].notes.insert(0, f"{type(model).__name__}.forward could not be traced ({why}); "
                                    "its submodules are nested on their own")
        return regions
