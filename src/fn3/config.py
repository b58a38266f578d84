"""`TrainConfig`: every setting of a training run, frozen, validated, versioned.

A config is built from defaults, then a TOML/JSON file, then command-line flags (each overriding the
one before); the resolved config is saved as ``config.json`` in the run directory, so a run can be
reproduced or resumed from its directory alone. Unknown keys are errors.

Example:
    >>> from fn3.config import TrainConfig
    >>> cfg = TrainConfig(model="mlp", data="digits", epochs=2)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.replace(epochs=3).epochs
    3
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fn3.errors import ConfigError
from fn3.sampling import DISTRIBUTIONS

__all__ = ["RULES", "TrainConfig", "load_config_file"]

CONFIG_FORMAT = "fn3.train-config"
CONFIG_VERSION = 1

#: Training rules: ordered dropout, the US-Nets sandwich rule, plain training of the full model, and
#: training one fixed sub-model (the "independently trained" baseline of a budget).
RULES = ("odo", "sandwich", "full", "fixed")
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (see ``fn3 train --help`` for the flag of each field)."""

    # model
    model: str = "mlp"
    levels: tuple[str, ...] | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # data
    data: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.1
    limit: int | None = None  # at most this many training images per class (quick runs)
    augment: str = "auto"  # auto | none | crop | crop+flip
    mean: tuple[float, ...] | None = None  # filled from the training split when None
    std: tuple[float, ...] | None = None
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    # what each step trains
    rule: str = "odo"
    dist: str = "geometric"
    rho: float = 0.9
    sandwich_n: int = 2
    distill: bool = False
    fixed_spec: str | None = None  # for rule="fixed": "channels=0.5", "largest", a JSON file
    # evaluation and checkpoints
    eval_specs: tuple[str, ...] = ("largest", "smallest")
    recalibrate_batches: int = 20
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at the end of each epoch
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, value: object, want: str) -> ConfigError:
            return ConfigError(f"{name}={value!r} is invalid; expected {want}")

        if self.epochs < 1:
            raise bad("epochs", self.epochs, "a whole number >= 1")
        if self.batch_size < 1:
            raise bad("batch_size", self.batch_size, "a whole number >= 1")
        if not self.lr > 0:
            raise bad("lr", self.lr, "a positive number")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val_fraction", self.val_fraction, "a fraction in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, " or ".join(OPTIMIZERS))
        if self.rule not in RULES:
            raise bad("rule", self.rule, "one of " + ", ".join(RULES))
        if self.dist not in DISTRIBUTIONS:
            raise bad("dist", self.dist, "one of " + ", ".join(DISTRIBUTIONS))
        if not 0.0 < self.rho <= 1.0:
            raise bad("rho", self.rho, "a keep rate in (0, 1]")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", self.label_smoothing, "a value in [0, 1)")
        if self.augment not in ("auto", "none", "crop", "crop+flip"):
            raise bad("augment", self.augment, "auto, none, crop or crop+flip")
        if self.rule == "fixed" and not self.fixed_spec:
            raise ConfigError("rule=fixed needs fixed_spec (e.g. --fixed-spec channels=0.5)")
        if self.limit is not None and self.limit < 1:
            raise bad("limit", self.limit, "a whole number >= 1")
        if self.checkpoint_every < 0 or self.warmup_steps < 0 or self.sandwich_n < 0:
            raise ConfigError("checkpoint_every, warmup_steps and sandwich_n must be >= 0")
        # Normalise sequences to tuples so that equal configs compare equal.
        for name in ("levels", "eval_specs", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, str) and name == "levels":
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                list(value)
                if isinstance(value, tuple)
                else (dict(value) if isinstance(value, Mapping) else value)
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, partial: bool = False) -> TrainConfig:
        """Build from :meth:`to_dict` output (or, with ``partial=True``, any subset of the fields)."""
        data = dict(data)
        fmt, ver = data.pop("format", None), data.pop("version", None)
        if not partial and (fmt != CONFIG_FORMAT or ver != CONFIG_VERSION):
            raise ConfigError(
                f"not an fn3 train config (expected format {CONFIG_FORMAT}, version {CONFIG_VERSION})"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"bad config value: {err}") from None

    def merged(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """This config with ``overrides`` (a subset of the fields, e.g. from a file or flags)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known - {"format", "version"})
        if unknown:
            raise ConfigError(
                f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        clean = {k: v for k, v in overrides.items() if k in known}
        return self.replace(**clean)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict of fields (validated when merged)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config file {p}: {err.strerror}") from None
    try:
        data = json.loads(raw) if p.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {err}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a table of settings")
    return data
