"""Model registry: `register_model`, `create_model`, `list_models`.

Every registered builder takes ``num_classes``, ``in_channels``, ``input_size`` and ``levels`` (the
nesting levels to enable, a subset of the ones the model supports; default: all of them) plus its own
keyword arguments. Model initialisation is seeded by ``seed`` without touching the caller's global RNG.

Example:
    >>> import fn3
    >>> "resnet20" in fn3.list_models("resnet*")
    True
    >>> model = fn3.create_model("resnet20", num_classes=10, in_channels=3, levels=("channels",))
    >>> fn3.space(model).kinds()
    ('channels',)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

import torch
from torch import nn

from fn3.errors import ConfigError
from fn3.spec import KINDS

__all__ = ["create_model", "list_models", "model_levels", "register_model"]

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {}


def register_model(
    name: str, levels: Iterable[str]
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under ``name`` that supports the nesting ``levels``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = (fn, tuple(k for k in KINDS if k in set(levels)))
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_levels(name: str) -> tuple[str, ...]:
    """The nesting levels model ``name`` supports."""
    _entry(name)
    return _REGISTRY[name][1]


def _entry(name: str) -> tuple[Callable[..., nn.Module], tuple[str, ...]]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def parse_levels(
    levels: str | Iterable[str] | None, supported: tuple[str, ...], model: str
) -> tuple[str, ...]:
    """Normalise ``levels`` ("channels,bits", a list, or None for all supported ones)."""
    if levels is None:
        return supported
    if isinstance(levels, str):
        levels = [p.strip() for p in levels.split(",") if p.strip()]
    levels = tuple(levels)
    for lv in levels:
        if lv not in KINDS:
            raise ConfigError(f"unknown level {lv!r}; levels are {', '.join(KINDS)}")
        if lv not in supported:
            raise ConfigError(
                f"model {model!r} cannot nest {lv!r}; it supports {', '.join(supported)}"
            )
    return tuple(k for k in KINDS if k in levels)


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    levels: str | Iterable[str] | None = None,
    seed: int = 0,
    **kwargs: object,
) -> nn.Module:
    """Build a registered nested model.

    Args:
        name: a name from :func:`list_models`.
        num_classes, in_channels: output classes and input channels.
        input_size: input height/width (an int or ``(H, W)``); needed by the MLP, ignored by conv nets.
        levels: nesting levels to enable (default: every level the model supports).
        seed: seeds the initial weights (the caller's global RNG is left as it was).
        kwargs: model-specific options (e.g. ``hidden=(512, 256)``, ``total_bits=8``).
    """
    fn, supported = _entry(name)
    lv = parse_levels(levels, supported, name)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = fn(
                num_classes=num_classes,
                in_channels=in_channels,
                input_size=size,
                levels=lv,
                **kwargs,
            )
        except TypeError as err:
            raise ConfigError(f"model {name!r}: {err}") from None
    model.fn3_config = {
        "name": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": list(size),
        "levels": list(lv),
        "seed": seed,
        **kwargs,
    }
    return model
