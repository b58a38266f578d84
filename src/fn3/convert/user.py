"""A user's model in a run: built from its factory, optionally pretrained, nested, and rebuilt later.

:class:`UserModel` is the typed description a run stores (in the checkpoint metadata and as
``nesting.json`` beside it): the factory reference and its arguments, the input shape of one sample,
the levels, the seed, the pretrained weights it started from, and which layers quantize signed inputs.
:func:`build_user_model` builds the nested model from it; rebuilding from the stored description
gives the same structure, into which the run's weights load (no pickle: JSON and safetensors only).

Example:
    >>> import torch
    >>> desc = UserModel("torch.nn:Sequential", input_shape=(4,), levels=("neurons",))
    >>> UserModel.from_dict(desc.to_dict()) == desc
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fn3.convert.convert import nest_
from fn3.convert.factory import build_factory, split_reference
from fn3.convert.report import NestingReport
from fn3.errors import ConfigError, FileFormatError
from fn3.models.info import USER_FORMAT

__all__ = ["UserModel", "build_user_model", "is_factory", "load_init"]

FORMAT = USER_FORMAT  # fn3.models.info reads it too
VERSION = 1


def is_factory(name: str) -> bool:
    """True for a ``package.module:factory`` reference (registered model names have no colon)."""
    return ":" in name


@dataclass(frozen=True)
class UserModel:
    """How to rebuild a nested user model (see the module docstring)."""

    factory: str
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    levels: tuple[str, ...] | None = None
    seed: int = 0
    init: str | None = None
    signed: tuple[str, ...] | None = None  # None: decided from the example inputs

    def __post_init__(self) -> None:
        split_reference(self.factory)
        if not all(isinstance(d, int) and d > 0 for d in self.input_shape):
            raise ConfigError(f"input_shape={list(self.input_shape)} is invalid; expected positive sizes")
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        if isinstance(self.levels, str):  # "channels,bits", as a config may hold it
            object.__setattr__(self, "levels", tuple(v.strip() for v in self.levels.split(",") if v.strip()))
        elif self.levels is not None:
            object.__setattr__(self, "levels", tuple(self.levels))
        if self.signed is not None:
            object.__setattr__(self, "signed", tuple(self.signed))

    def __hash__(self) -> int:
        return hash((self.factory, self.input_shape, self.levels, self.seed, self.init, self.signed))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.factory,
                "model_kwargs": dict(self.model_kwargs), "input_shape": list(self.input_shape),
                "levels": None if self.levels is None else list(self.levels), "seed": self.seed,
                "init": self.init, "signed": None if self.signed is None else list(self.signed)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserModel:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise FileFormatError(f"not an fn3 user-model description (expected {FORMAT} {VERSION})")
        try:
            return cls(data["name"], data.get("model_kwargs") or {}, tuple(data["input_shape"]),
                       data.get("levels"), int(data.get("seed", 0)), data.get("init"), data.get("signed"))
        except (KeyError, TypeError, ValueError) as err:
            raise FileFormatError(f"invalid user-model description ({err})") from None


def load_init(model: nn.Module, path: str | Path) -> None:
    """Load pretrained weights (a safetensors file of the plain model's ``state_dict``) into ``model``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise ConfigError(f"--init {path}: cannot read the weights ({err})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ConfigError(f"--init {path}: the weights do not fit the model ({what})")


def build_user_model(
    desc: UserModel, example: torch.Tensor | None = None, *, fresh: bool = True
) -> tuple[nn.Module, NestingReport, UserModel]:
    """Build, (pretrain-)load and nest the model ``desc`` describes.

    ``example``: a batch of real inputs to set the activation quantizers from (zeros otherwise).
    ``fresh=False`` rebuilds a stored model to load its weights into: the pretrained weights are
    neither read nor reordered. Returns the model, the report, and ``desc`` with its signed layers.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(desc.seed)
        model = build_factory(desc.factory, desc.model_kwargs)
    pretrained = fresh and desc.init is not None
    if pretrained:
        load_init(model, desc.init)
    x = example if example is not None else torch.zeros(1, *desc.input_shape)
    report = nest_(model, x, levels=desc.levels, verbose=False, reorder=pretrained,
                   signed_inputs=desc.signed)
    desc = UserModel(desc.factory, desc.model_kwargs, desc.input_shape, desc.levels, desc.seed, desc.init,
                     report.signed)
    model.fn3_config = {**desc.to_dict(), "in_channels": desc.input_shape[0],  # type: ignore[assignment]
                        "input_size": list(desc.input_shape[1:])}
    return model, report, desc
