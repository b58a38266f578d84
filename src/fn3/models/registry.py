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

#: Largest class / channel count accepted (guards against absurd sizes from edited files).
MAX_WIDTH = 1 << 20


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(name: str, v: object, lo: int, hi: int) -> None:
    if not _is_int(v) or not lo <= v <= hi:  # type: ignore[operator]
        raise ConfigError(f"{name}={v!r} is invalid; expected a whole number in {lo}..{hi}")


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
            raise ConfigError(f"model {model!r} cannot nest {lv!r}; it supports {', '.join(supported)}")
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
        kwargs: model-specific options (e.g. ``hidden=(512, 256)``, ``total_bits=8``), and
            ``quant_scheme``: ``"centred"`` (default) or ``"truncate"`` (fn3's rule before file
            format 2; see :mod:`fn3.nn.functional`), and ``act_clip``: ``"shared"`` (default, one
            activation clipping level for every bit-width) or ``"per-bits"`` (one per bit-width; see
            :func:`fn3.nn.base.set_act_clip`), and ``weight_clip``: 0 (default, each quantized weight
            channel on its largest magnitude) or ``k > 0`` (at most ``k`` times its root mean square;
            see :func:`fn3.nn.base.set_weight_clip`; ``fn3 train`` gives a family nested in bits
            alone 3 when neither it nor this option sets one: :func:`fn3.run.resolved_weight_clip`).
    """
    from fn3.nn.base import set_act_clip, set_quant_scheme, set_weight_clip

    scheme = kwargs.pop("quant_scheme", "centred")
    clip = kwargs.pop("act_clip", "shared")
    wclip = kwargs.pop("weight_clip", 0.0)
    fn, supported = _entry(name)
    if not (levels is None or isinstance(levels, (str, list, tuple, set, frozenset))):
        raise ConfigError(f"levels={levels!r}: give a comma-separated string or a list of level names")
    lv = parse_levels(levels, supported, name)
    size = (input_size, input_size) if _is_int(input_size) else tuple(input_size)  # type: ignore[arg-type]
    _check_int("num_classes", num_classes, 1, MAX_WIDTH)
    _check_int("in_channels", in_channels, 1, MAX_WIDTH)
    _check_int("seed", seed, 0, 2**63 - 1)
    if len(size) != 2:
        raise ConfigError(f"input_size={input_size!r}: give one size or (height, width)")
    for v in size:
        _check_int("input_size", v, 1, 1 << 16)
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
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as err:
            raise ConfigError(f"model {name!r}: {err}") from None
        except RuntimeError as err:  # e.g. the allocator refusing an absurd width
            raise ConfigError(f"model {name!r} cannot be built with these options ({err})") from None
    try:
        set_quant_scheme(model, scheme)  # type: ignore[arg-type]
    except ConfigError as err:
        raise ConfigError(f"model {name!r}: {err}") from None
    model.fn3_config = {
        "name": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": list(size),
        "levels": list(lv),
        "seed": seed,
        **kwargs,
        "quant_scheme": scheme,
    }
    try:  # after fn3_config: set_act_clip records a level per bit-width there (the default is not)
        set_act_clip(model, clip)  # type: ignore[arg-type]
        set_weight_clip(model, wclip)  # type: ignore[arg-type]
    except ConfigError as err:
        raise ConfigError(f"model {name!r}: {err}") from None
    return model
