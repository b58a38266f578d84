"""`ModelInfo`: the typed record of how a nested model was built, read in one place.

Every nested model fn3 builds carries a JSON-ready record of its recipe, ``model.fn3_config``: what a
run directory and an exported file store so that the model can be built again. A built-in model's
(:func:`fn3.create_model`) holds its registry name and arguments; a model of your own
(:func:`fn3.convert.user.build_user_model`, ``fn3 train --model pkg.mod:factory``) its factory
reference, arguments and input shape. :func:`model_info` reads that record into a
:class:`ModelInfo`, so cost, export and latency code ask typed questions (``info.input_shape``,
``info.source``) instead of each parsing the dict its own way. The dict itself stays the stored
form (runs and files written before keep loading).

Example:
    >>> import fn3
    >>> from fn3.models.info import model_info
    >>> info = model_info(fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=32))
    >>> info.source, info.name, info.input_shape
    ('registry', 'resnet20', (3, 32, 32))
    >>> model_info(fn3.nn.NestedLinear(4, 2)) is None       # built by hand: no recipe
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["ModelInfo", "model_info"]

#: ``fn3_config["format"]`` of a model of your own (``fn3.convert.user.FORMAT``).
USER_FORMAT = "fn3.user-model"


@dataclass(frozen=True)
class ModelInfo:
    """How a nested model was built.

    Attributes:
        source: ``"registry"`` (:func:`fn3.create_model`) or ``"factory"`` (a model of your own).
        name: the registry name, or the ``package.module:factory`` reference.
        input_shape: one sample's shape, ``(C, H, W)`` for images, when the recipe records it.
        config: the stored record (``model.fn3_config``), JSON-ready.
    """

    source: str
    name: str
    input_shape: tuple[int, ...] | None
    config: Mapping[str, Any] = field(repr=False)

    @property
    def is_user_model(self) -> bool:
        return self.source == "factory"


def _shape(cfg: Mapping[str, Any]) -> tuple[int, ...] | None:
    shape = cfg.get("input_shape")
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, int) for s in shape):
        return tuple(shape)
    size, c = cfg.get("input_size"), cfg.get("in_channels")
    if isinstance(c, int) and isinstance(size, (list, tuple)) and len(size) == 2:
        return (c, int(size[0]), int(size[1]))
    return None


def model_info(model: nn.Module) -> ModelInfo | None:
    """The :class:`ModelInfo` of ``model``, or ``None`` when it records no recipe (built by hand)."""
    cfg = getattr(model, "fn3_config", None)
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("name"), str):
        return None
    source = "factory" if cfg.get("format") == USER_FORMAT else "registry"
    return ModelInfo(source, cfg["name"], _shape(cfg), cfg)
