"""What fn3 remembers about a model (its axes, its cost plans), kept beside the model, not on it.

fn3 caches per model the things that follow from its structure: the slots and :class:`~fn3.Space`
of :func:`fn3.space` and the traced cost plans of :func:`fn3.cost.cost_plan`. They live in a
:class:`weakref.WeakKeyDictionary` keyed by the model object rather than as attributes of the model,
so a model's ``__dict__`` holds only what its author put there, a ``copy.deepcopy`` of it starts with
no cache (a copy may be changed afterwards: it traces its own plan when asked), and a model that is
garbage-collected takes its cache with it. Code that changes a model's structure in place
(:func:`fn3.nest_`, :func:`fn3.export.extract_submodel`) calls :func:`forget`.

Example:
    >>> import fn3, copy
    >>> from fn3._cache import model_cache
    >>> net = fn3.create_model("mlp", num_classes=10)
    >>> _ = fn3.space(net)
    >>> "space" in model_cache(net), "space" in model_cache(copy.deepcopy(net))
    (True, False)
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn

__all__ = ["forget", "model_cache"]

_CACHES: weakref.WeakKeyDictionary[nn.Module, dict[str, Any]] = weakref.WeakKeyDictionary()


def model_cache(model: nn.Module) -> dict[str, Any]:
    """The cache dict of ``model`` (created empty on first use)."""
    cache = _CACHES.get(model)
    if cache is None:
        cache = _CACHES[model] = {}
    return cache


def forget(model: nn.Module) -> None:
    """Drop everything cached about ``model`` (after its structure changed)."""
    _CACHES.pop(model, None)
