"""Find a model's axes and switch it between sub-models: `space`, `active`, `set_active`.

The active sub-model lives in the model's :class:`~fn3.nn.slot.AxisSlot` objects. :func:`active` is a
context manager that sets every slot from a :class:`~fn3.Spec` and restores the previous state on exit,
so nested uses compose and an exception never leaves the model half switched.

Example:
    >>> import torch, fn3
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    >>> space = fn3.space(model)
    >>> small = space.uniform({"neurons": 0.25, "bits": 4})
    >>> with fn3.active(model, small):
    ...     y = model(torch.randn(2, 1, 8, 8))
    >>> y.shape, fn3.current_spec(model) == space.largest()
    (torch.Size([2, 10]), True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from torch import nn

from fn3._cache import model_cache
from fn3.errors import SpecError
from fn3.nn.base import NestedModule
from fn3.nn.slot import AxisSlot
from fn3.spec import Axis, Space, Spec

__all__ = ["active", "current_spec", "gated_children", "set_active", "slots", "space"]


def slots(model: nn.Module) -> dict[str, AxisSlot]:
    """Every axis slot of ``model`` by axis name, in module order."""
    found: dict[str, AxisSlot] = {}
    for module in model.modules():
        if isinstance(module, NestedModule):
            for slot in module.fn3_slots():
                other = found.setdefault(slot.axis.name, slot)
                if other is not slot:
                    raise SpecError(
                        f"two different axes are named {slot.axis.name!r} in this model"
                    )
    return found


def space(model: nn.Module) -> Space:
    """The :class:`~fn3.Space` of a nested model: all its axes, in module order.

    The result is cached beside the model (:mod:`fn3._cache`; its axes never change after
    construction).
    """
    cache = model_cache(model)
    cached = cache.get("space")
    if cached is None:
        cached = cache["space"] = Space(s.axis for s in _slot_map(model).values())
    return cached


def _slot_map(model: nn.Module) -> dict[str, AxisSlot]:
    cache = model_cache(model)
    cached = cache.get("slots")
    if cached is None:
        cached = cache["slots"] = slots(model)
    return cached


def current_spec(model: nn.Module) -> Spec:
    """The sub-model the model computes now."""
    return Spec({name: s.blocks for name, s in _slot_map(model).items()})


def set_active(model: nn.Module, spec: Spec | None) -> Spec:
    """Switch ``model`` to ``spec`` (``None``: the full model) and return the previous spec.

    Prefer :func:`active`, which restores the previous sub-model for you.
    """
    previous = current_spec(model)
    table = _slot_map(model)
    if spec is None:
        for s in table.values():
            s.set(None)
        return previous
    space(model).validate(spec)
    for name, blocks in spec:
        table[name].set(blocks)
    return previous


@contextmanager
def active(model: nn.Module, spec: Spec | None) -> Iterator[nn.Module]:
    """Run ``model`` as the sub-model ``spec`` inside the ``with`` block; restore on exit."""
    previous = set_active(model, spec)
    try:
        yield model
    finally:
        set_active(model, previous)


def gated_children(
    model: nn.Module, gates: Iterable[nn.Module], axes: Mapping[str, Axis]
) -> dict[int, tuple[tuple[str, int], ...]]:
    """``{id(child): ((axis, block), ...)}``: the blocks whose dropping skips each child of ``gates``.

    Asked through the layer protocol only: each block gate answers ``fn3_skipped()`` once per
    droppable block of each of its axes (``axes``: the model's, by name), under the spec that keeps
    everything but that block. Mandatory blocks never drop, so the children they gate need no entry.
    The cost plan and the search segments both read a model's gates this way.
    """
    full = {n: tuple(range(a.num_blocks)) for n, a in axes.items()}
    found: dict[int, list[tuple[str, int]]] = {}
    for module in gates:
        for use in module.fn3_axes():
            ax = axes[use.axis]
            for b in range(ax.min_blocks, ax.num_blocks):
                spec = Spec({**full, use.axis: tuple(i for i in full[use.axis] if i != b)})
                with active(model, spec):
                    skipped = list(module.fn3_skipped())
                for child in skipped:
                    found.setdefault(id(child), []).append((use.axis, b))
    return {k: tuple(v) for k, v in found.items()}
