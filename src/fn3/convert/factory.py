"""Build a user's model from a ``package.module:factory`` reference (what ``fn3 nest`` and runs store).

The reference names a callable that returns an ``nn.Module``; keyword arguments come from
``--model-arg key=value``. ``torchvision:resnet18`` is short for ``torchvision.models:resnet18``
(torchvision stays optional: it is imported only when such a reference is used).

Example:
    >>> model = build_factory("torch.nn:Linear", {"in_features": 4, "out_features": 2})
    >>> type(model).__name__
    'Linear'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from torch import nn

from fn3.errors import ConfigError

__all__ = ["build_factory", "split_reference"]

_ALIASES = {"torchvision": "torchvision.models"}


def split_reference(ref: str) -> tuple[str, str]:
    """``("package.module", "factory")`` of ``"package.module:factory"``."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"model {ref!r}: expected package.module:factory, e.g. mypkg.nets:make_net")
    return _ALIASES.get(module, module), attr


def build_factory(ref: str, kwargs: Mapping[str, object] | None = None) -> nn.Module:
    """Import ``ref`` and call it with ``kwargs``; the result must be an ``nn.Module``."""
    module_name, attr = split_reference(ref)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"model {ref!r}: cannot import {module_name!r} ({err})") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ConfigError(f"model {ref!r}: {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise ConfigError(f"model {ref!r}: {attr!r} is not callable")
    try:
        model = factory(**dict(kwargs or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {ref!r}: {err}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {ref!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
