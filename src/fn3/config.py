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
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fn3._io import one_line, or_list
from fn3.errors import ConfigError
from fn3.sampling import DISTRIBUTIONS, ROTATIONS, TIES

__all__ = [
    "ACT_CLIP_CHOICES",
    "AUTO_ROTATIONS",
    "LEGACY_ROTATIONS",
    "LEGACY_SPEC_LOSSES",
    "RULES",
    "RULE_DEFAULTS",
    "SPEC_LOSSES",
    "SPECS_ROTATIONS",
    "TrainConfig",
    "load_config_file",
]

CONFIG_FORMAT = "fn3.train-config"
# 2: spec_loss (a version-1 config, which had none, summed its specs' losses); 3: grid, and rule=auto
# trains it on one level (a version-1 or -2 config, which had none, trained the tied sandwich there);
# 4: spec_loss="auto" is "norm" under rule=specs (a version 1-3 config's "auto" meant "shared" there:
# it is read as "auto-v3", so a run directory written before resumes with the loss it was trained on);
# 5: act_clip (a version 1-4 config, which had none, clipped activations at one shared level);
# 6: lr may be None (the measured rate: fn3.train.resolved_lr) and spec_loss="auto" is "mean" for a
# family nested in depth alone (a version 4-5 config's "auto" is read as "auto-v5": "norm" there);
# 7: an unset lr under AdamW is fn3.train.ADAMW_LR (a version-6 AdamW config without one ran at 0.1);
# 8: spec_loss="auto" is "shared" for a family nested in paths alone (a version 6-7 config's "auto" is
# read as "auto-v7": "norm" there);
# 9: spec_loss="auto" is "mean" (at twice the rate, as for depth) for a family nested in channels
# alone (a version-8 config's "auto" is read as "auto-v8": "norm" there; its "mean" with lr unset as
# "mean-v8", the mean at 0.1 on channels);
# 10: specs_rotation="auto", the default: on a family nested in depth alone whose grid leaves depths
# out, every depth is listed and trained in the ends rotation at the grid's members a step (a version
# 1-9 config, whose default was "even", keeps "even");
# 11: specs_rotation="auto" trains that listing one fewer a step than the grid has members (3 of the
# default's 4: the largest, the smallest and one other in turn) at lr 0.15 when lr is unset (a
# version-10 config's "auto" is read as "auto-v10": the grid's members a step at the mean's 0.2).
# (weight_clip came without a version: unset, it was each weight channel's largest magnitude)
# 12: an unset weight_clip is fn3.run.AUTO_WEIGHT_CLIP (3 rms) for a family nested in bits alone with
# the centred scheme, trained by any rule but fixed (a version 1-11 config without one, or the model
# option, is read as 0: the largest magnitude, what it trained on).
CONFIG_VERSION = 12

#: Training rules: ``auto`` (the default: the rule measured best for the model's family,
#: :func:`fn3.sampling.auto_rule`), the largest sub-model plus ordered-dropout draws every step, the
#: paper's ordered dropout alone, the US-Nets sandwich rule, plain training of the full model, and
#: training one fixed sub-model (the "independently trained" baseline of a budget), and ``specs``: the
#: largest sub-model and every listed one (``train_specs``, the deployment budgets) at every step
#: (Slimmable Networks' and Any-Precision's training, for a family whose budgets are known before
#: training).
RULES = ("auto", "full+odo", "odo", "sandwich", "specs", "full", "fixed")
#: ``(dist, tie)`` of each rule when the config leaves them unset: the paper's ordered dropout draws
#: every axis alone from the truncated geometric; beside the largest model, uniform draws tied per kind
#: train the small members (measured: docs/reproduction.md).
RULE_DEFAULTS = {"auto": ("uniform", "kind"), "full+odo": ("uniform", "kind"), "odo": ("geometric", "none"),
                 "sandwich": ("uniform", "none"), "specs": ("uniform", "kind"),
                 "full": ("geometric", "none"), "fixed": ("geometric", "none")}
OPTIMIZERS = ("sgd", "adamw")
#: How a step that trains several sub-models combines their losses: ``auto`` (the default) is ``shared``
#: when the rule trains listed specs or a grid (``rule="specs"``, what ``auto`` picks on one level) and
#: ``mean`` for the rules that draw (``shared`` measured mixed under the sandwich); ``mean`` keeps the
#: step size of one model whatever the number of specs; ``sum`` is US-Nets' and AdaBits' accumulation,
#: which for SGD multiplies the learning rate of the shared weights by the number of specs
#: (measured in issue 11: docs/reproduction.md); ``shared`` averages each weight's gradient over the
#: specs that use it, so weights only the largest model has step as in the network trained alone;
#: ``norm`` steps along the summed gradient shortened per tensor to the longest spec's gradient
#: (:func:`fn3.train.norm_matched_`): the ``mean`` step where the specs agree, up to ``sqrt(n)`` times
#: it where they pull apart. Since config version 4 ``auto`` is ``norm`` under ``rule="specs"``
#: (measured in issue 11 on 8,000 held-out CIFAR-10 test images against ``shared``: the smallest member
#: 1.1-3.8 pt better on channels, paths and bits, layers the same, the full model 0.6-1.7 pt lower
#: except on bits; benchmarks/repro/heldout.py, docs/benchmarks/heldout.md); since version 6 it is
#: ``mean`` (at twice the rate, :func:`fn3.train.resolved_lr`) for a family nested in depth alone,
#: whose smallest member trailed its own network by 2.5-3.4 pt under ``norm`` at three seeds and by
#: at most 1.45 pt under the mean at lr 0.2 (18 epochs, docs/reproduction.md); since version 8 it is
#: ``shared`` for a family nested in paths alone: in every run of 18 epochs or more its worst gap to
#: the networks trained alone was smaller than ``norm``'s on the page and its full model ahead of
#: ``norm``'s on the held-out images; since version 9 it is ``mean`` at twice the rate for a family
#: nested in channels alone too, whose full model lagged its own network by 1.3-1.7 pt under ``norm``
#: on the held-out images and is 0.25-0.72 pt above it under the mean at lr 0.2
#: (:func:`fn3.train.resolved_spec_loss` has the numbers).
SPEC_LOSSES = ("auto", "mean", "sum", "shared", "shared-sqrt", "norm")
#: ``act_clip`` choices: ``auto`` (:func:`fn3.run.resolved_act_clip`) or a rule of
#: :func:`fn3.nn.base.set_act_clip`.
ACT_CLIP_CHOICES = ("auto", "shared", "per-bits")
#: ``distill_to`` choices: with ``distill``, every spec of a step but the largest learns the largest's
#: soft predictions (``all``, US-Nets' in-place distillation), or only the smallest sub-model the rule
#: trains does and the others keep the labels (``smallest``; :func:`fn3.train.distill_students`).
#: Measured on a family nested in bits (``benchmarks/repro/exp5_bits.py``, 18 epochs): ``all`` shrinks
#: the 2-bit drop at a cost to every bit-width above 2; ``smallest`` lands on training without
#: distillation, within the noise.
DISTILL_TO = ("all", "smallest")
#: Values only read from older configs: ``auto-v3`` is ``auto`` as config versions 1-3 resolved it
#: (``shared`` under ``rule="specs"``, ``mean`` otherwise), ``auto-v5`` as versions 4-5 did (``norm``
#: under ``rule="specs"`` whatever the levels), ``auto-v7`` as versions 6-7 did (``norm`` there but
#: ``mean`` for depth alone), ``auto-v8`` as version 8 did (``shared`` for paths alone, ``norm`` for
#: channels alone), and ``mean-v8`` is a version 6-8 config's ``mean`` with ``lr`` unset (twice the
#: rate for depth alone only, not for channels alone), so their runs resume unchanged.
LEGACY_SPEC_LOSSES = ("auto-v3", "auto-v5", "auto-v7", "auto-v8", "mean-v8")
#: ``specs_rotation`` choices: ``auto`` (the default since config version 10) or one of
#: :data:`fn3.sampling.ROTATIONS`. ``auto`` is ``even`` (every member every step, or in turn with
#: ``specs_per_step``) except on a family nested in depth alone whose grid leaves depths out (the
#: default grid on 5-block stages: 5/4/2/1 blocks, never 3) and no ``specs_per_step`` is given: there
#: every depth is listed and a step trains one fewer than the grid has members (3 of the default's 4),
#: the largest and the smallest every step and the others in turn (``ends``), at lr 0.15 when ``lr`` is
#: unset (config version 11; version 10 trained the grid's 4 a step at 0.2). Measured on the CIFAR-10
#: ResNet-32 family nested in depth (issue 11): ahead of version 10's rule and of the grid at every
#: depth at 6 epochs (two seeds), ahead of version 10's by 0.5-2.1 pt on average at 18 (three seeds,
#: held-out images), level with it at 36, where both keep every depth within 1.5 pt of its network
#: trained alone and the grid leaves 3 blocks 3.3 / 4.7 pt behind; at 0.63-0.68x the networks' cost
#: (:func:`fn3.train._every_depth_listing` has the numbers).
SPECS_ROTATIONS = ("auto", *ROTATIONS)
#: ``auto-v10``: ``auto`` as config version 10 resolved it (every depth, the grid's members a step, at
#: the mean's 0.2), only read from a version-10 config so that its run resumes unchanged.
LEGACY_ROTATIONS = ("auto-v10",)
#: The rotations that resolve per family (``auto``, and ``auto`` as an older config version meant it).
AUTO_ROTATIONS = ("auto", *LEGACY_ROTATIONS)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (see ``fn3 train --help`` for the flag of each field)."""

    # model
    model: str = "mlp"
    levels: tuple[str, ...] | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None  # pretrained weights (safetensors) of a package.module:factory model
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
    # None: the measured rate (fn3.train.resolved_lr): 0.1, SGD's usual rate for one network, and 0.2
    # for a family nested in depth alone trained on the mean loss, 0.003 under AdamW; with
    # spec_loss="mean" it is the step
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    # what each step trains
    rule: str = "auto"  # auto: specs (train_specs, else the grid) on one level, full+odo on several
    dist: str | None = None  # geometric | uniform; None: the rule's own (RULE_DEFAULTS)
    rho: float = 0.9
    tie: str | None = None  # none: each axis drawn alone (paper) | kind: one draw per kind; None: rule's
    draws: int = 1  # ordered-dropout specs per step beside the largest (full+odo) or the corners (auto)
    sandwich_n: int = 2
    distill: bool = False
    distill_start: float = 0.0  # fraction of the training steps before in-place distillation starts
    # who learns the largest's soft predictions: all (every other spec of the step, US-Nets) |
    # smallest (only the smallest sub-model the rule trains; the others keep the labels)
    distill_to: str = "all"
    full_first: float = 0.0  # fraction of the training steps that train only the largest sub-model
    spec_loss: str = "auto"  # auto | mean | sum | shared | norm: how a step combines its specs' losses
    # rule=auto (or specs) without train_specs: kept fractions trained every step, every axis tied,
    # and the smallest (fn3.sampling.grid_specs); () makes auto train the tied sandwich on one level
    grid: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    zero_init_residual: bool = False  # every residual block starts as its shortcut (last BN scale 0)
    # activation clipping of a model nested in bits: auto | shared | per-bits (fn3.nn.base.set_act_clip)
    act_clip: str = "auto"
    # range of each quantized weight channel: None (the model option, else 3 rms for a family nested in
    # bits alone and 0 elsewhere: fn3.run.resolved_weight_clip) | 0, its largest magnitude | k > 0, at
    # most k times its root mean square (fn3.nn.base.set_weight_clip)
    weight_clip: float | None = None
    fixed_spec: str | None = None  # for rule="fixed": "channels=0.5", "largest", a JSON file
    train_specs: tuple[str, ...] = ()  # rule="specs" (or auto): trained every step beside the largest
    # rule="specs" (or auto on one level): specs a step trains, the largest and the others in turn; 0: all
    specs_per_step: int = 0
    # auto (SPECS_ROTATIONS: ends over every depth where a depth-alone grid leaves depths out, else
    # even) | with specs_per_step: even (every member in turn) | smallest (the smallest every other
    # step) | corners (largest and smallest every step, the others every other step)
    # | ends (largest and smallest every step, the others in turn in the further slots of every step)
    specs_rotation: str = "auto"
    # evaluation and checkpoints
    eval_specs: tuple[str, ...] = ("largest", "smallest")
    recalibrate_batches: int = 20
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at the end of each epoch
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, value: object, want: str) -> ConfigError:
            return ConfigError(f"{name}={one_line(repr(value), 80)} is invalid; expected {want}")

        _check_types(self, bad)
        if self.epochs < 1:
            raise bad("epochs", self.epochs, "a whole number >= 1")
        if self.batch_size < 1:
            raise bad("batch_size", self.batch_size, "a whole number >= 1")
        if self.lr is not None and not self.lr > 0:
            raise bad("lr", self.lr, "a positive number")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val_fraction", self.val_fraction, "a fraction in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, " or ".join(OPTIMIZERS))
        if self.rule not in RULES:
            raise bad("rule", self.rule, "one of " + ", ".join(RULES))
        if self.dist is not None and self.dist not in DISTRIBUTIONS:
            raise bad("dist", self.dist, "one of " + ", ".join(DISTRIBUTIONS))
        if not 0.0 < self.rho <= 1.0:
            raise bad("rho", self.rho, "a keep rate in (0, 1]")
        if self.tie is not None and self.tie not in TIES:
            raise bad("tie", self.tie, "one of " + ", ".join(TIES))
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", self.label_smoothing, "a value in [0, 1)")
        if self.augment not in ("auto", "none", "crop", "crop+flip"):
            raise bad("augment", self.augment, "auto, none, crop or crop+flip")
        if self.init is not None and ":" not in self.model:
            raise ConfigError("init (pretrained weights) needs a model given as package.module:factory")
        if self.zero_init_residual and ":" in self.model:
            raise ConfigError("zero_init_residual applies to fn3's resnet and resnext models, not to a "
                              "package.module:factory model (initialise yours in its factory)")
        if self.distill_to not in DISTILL_TO:
            raise bad("distill_to", self.distill_to, " or ".join(DISTILL_TO))
        if self.act_clip not in ACT_CLIP_CHOICES:
            raise bad("act_clip", self.act_clip, "auto, shared or per-bits")
        if self.weight_clip is not None and not 0 <= self.weight_clip <= 1e6:
            raise bad("weight_clip", self.weight_clip, "0 (each channel's largest magnitude) or a multiple "
                      "of its root mean square such as 3")
        if self.spec_loss not in SPEC_LOSSES + LEGACY_SPEC_LOSSES:
            raise bad("spec_loss", self.spec_loss, or_list(SPEC_LOSSES))
        if self.train_specs and self.rule not in ("auto", "specs"):
            raise ConfigError(f"train_specs are trained by rule=specs (or auto), not rule={self.rule}: "
                              "drop --train-spec or --rule")
        if self.rule == "specs" and not (self.train_specs or self.grid):
            raise ConfigError("rule=specs needs the sub-models to train, e.g. --train-spec channels=0.5 "
                              "--train-spec channels=0.25, or a --grid such as 1,0.5,0.25 (the largest "
                              "sub-model is always trained)")
        if self.specs_per_step == 1 or self.specs_per_step < 0:
            raise bad("specs_per_step", self.specs_per_step,
                      "0 (every listed spec or grid member each step) or a whole number >= 2")
        if self.specs_per_step and self.rule not in ("auto", "specs"):
            raise ConfigError(f"specs_per_step applies to rule=specs (or auto), not rule={self.rule}: "
                              "drop --specs-per-step or --rule")
        if self.specs_rotation not in SPECS_ROTATIONS + LEGACY_ROTATIONS:
            raise bad("specs_rotation", self.specs_rotation, or_list(SPECS_ROTATIONS))
        if self.specs_rotation not in (*AUTO_ROTATIONS, "even") and not self.specs_per_step:
            least = 3 if self.specs_rotation in ("corners", "ends") else 2
            raise ConfigError(f"specs_rotation={self.specs_rotation} shares the slots of --specs-per-step, "
                              f"which is 0 (every member every step): add --specs-per-step {least} or drop "
                              "--specs-rotation")
        if self.specs_rotation in ("corners", "ends") and 0 < self.specs_per_step < 3:
            raise ConfigError(f"specs_rotation={self.specs_rotation} trains the largest and the smallest "
                              f"every step and the others in the further slots; --specs-per-step "
                              f"{self.specs_per_step} "
                              "leaves none: use --specs-per-step 3 or more")
        if self.rule == "fixed" and not self.fixed_spec:
            raise ConfigError("rule=fixed needs fixed_spec (e.g. --fixed-spec channels=0.5)")
        if self.limit is not None and self.limit < 1:
            raise bad("limit", self.limit, "a whole number >= 1")
        if self.checkpoint_every < 0 or self.warmup_steps < 0 or self.sandwich_n < 0:
            raise ConfigError("checkpoint_every, warmup_steps and sandwich_n must be >= 0")
        if self.draws < 1:
            raise bad("draws", self.draws, "a whole number >= 1")
        for name in ("distill_start", "full_first"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, getattr(self, name), "a fraction of the training in [0, 1)")
        for name in ("momentum", "weight_decay", "recalibrate_batches", "seed"):
            if getattr(self, name) < 0:  # torch would reject these later, far from the config
                raise bad(name, getattr(self, name), "a value >= 0")
        if self.std is not None and not all(s > 0 for s in self.std):
            raise bad("std", self.std, "positive standard deviations")
        # Normalise sequences to tuples so that equal configs compare equal.
        for name in ("levels", "eval_specs", "train_specs", "mean", "std", "grid"):
            value = getattr(self, name)
            if isinstance(value, str) and name == "levels":  # "channels,bits", as a flag gives it
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))

    @property
    def sampler(self) -> tuple[str, str]:
        """``(dist, tie)`` the rule draws with: the config's, or the rule's defaults where unset."""
        dist, tie = RULE_DEFAULTS[self.rule]
        return (self.dist or dist, self.tie or tie)

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
        if not isinstance(data, Mapping):
            raise ConfigError(f"a train config must be a table of settings, not {type(data).__name__}")
        data = dict(data)
        fmt, ver = data.pop("format", None), data.pop("version", None)
        if not partial and (fmt != CONFIG_FORMAT or ver not in range(1, CONFIG_VERSION + 1)):
            raise ConfigError(
                f"not an fn3 train config (expected format {CONFIG_FORMAT}, version {CONFIG_VERSION})"
            )
        if not partial and ver == 1:  # written before spec_loss: its runs summed the losses
            data.setdefault("spec_loss", "sum")
        if not partial and ver in (1, 2):  # written before grid: auto trained the tied sandwich
            data.setdefault("grid", ())
            data.setdefault("spec_loss", "mean")
        if not partial and ver in (1, 2, 3) and data.get("spec_loss", "auto") == "auto":
            data["spec_loss"] = "auto-v3"  # before version 4, auto was "shared" under rule=specs
        if not partial and ver in (4, 5) and data.get("spec_loss", "auto") == "auto":
            data["spec_loss"] = "auto-v5"  # before version 6, auto was "norm" under rule=specs
        if not partial and ver in (6, 7) and data.get("spec_loss", "auto") == "auto":
            data["spec_loss"] = "auto-v7"  # before version 8, auto was "norm" for paths alone too
        if not partial and ver == 8 and data.get("spec_loss", "auto") == "auto":
            data["spec_loss"] = "auto-v8"  # before version 9, auto was "norm" for channels alone
        if not partial and ver in (6, 7, 8) and data.get("spec_loss") == "mean" and data.get("lr") is None:
            data["spec_loss"] = "mean-v8"  # before version 9, an unset rate doubled for depth alone only
        if not partial and ver in (1, 2, 3, 4):  # written before act_clip: one shared level
            data.setdefault("act_clip", "shared")
        if not partial and ver in (1, 2, 3, 4, 5):  # written before lr=None: the rate was always given
            data.setdefault("lr", 0.1)
        if not partial and ver in range(1, 10):  # before version 10 the rotation's default was even
            data.setdefault("specs_rotation", "even")
        if not partial and ver == 10 and data.get("specs_rotation", "auto") == "auto":
            data["specs_rotation"] = "auto-v10"  # before version 11, auto's listing took 4 a step at 0.2
        if not partial and ver in range(1, 12) and data.get("weight_clip") is None and (
                ":" in str(data.get("model", "")) or "weight_clip" not in (data.get("model_kwargs") or {})):
            data["weight_clip"] = 0.0  # before version 12, unset was the largest magnitude everywhere
        if not partial and ver == 6 and data.get("optimizer") == "adamw" and data.get("lr") is None:
            data["lr"] = 0.1  # version 6 resolved an unset rate to SGD's 0.1 under AdamW too
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
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"config overrides must be a table, not {type(overrides).__name__}")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known - {"format", "version"})
        if unknown:
            raise ConfigError(
                f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        clean = {k: v for k, v in overrides.items() if k in known}
        return self.replace(**clean)


# The type of every field, checked before any comparison so that a string for ``epochs`` in a config
# file is a ConfigError, not a TypeError. Integers are accepted where a float is expected.
_INT, _FLOAT, _STR, _BOOL = "int", "float", "str", "bool"
_FIELD_TYPES: dict[str, tuple[str, bool]] = {  # name -> (kind, may be None)
    **{n: (_INT, False) for n in ("epochs", "batch_size", "warmup_steps", "sandwich_n", "draws",
                                 "specs_per_step", "recalibrate_batches", "checkpoint_every", "seed")},
    "limit": (_INT, True),
    "lr": (_FLOAT, True),
    "weight_clip": (_FLOAT, True),
    **{n: (_FLOAT, False) for n in ("val_fraction", "momentum", "weight_decay",
                                   "label_smoothing", "rho", "distill_start", "full_first")},
    **{n: (_STR, False) for n in ("model", "data", "augment", "optimizer", "rule", "spec_loss",
                                 "act_clip", "specs_rotation", "distill_to")},
    "dist": (_STR, True),
    "tie": (_STR, True),
    "data_dir": (_STR, True),
    "fixed_spec": (_STR, True),
    "init": (_STR, True),
    "distill": (_BOOL, False),
    "zero_init_residual": (_BOOL, False),
}
_INT_LIMIT = 2**63  # seeds and counts go to torch as int64


def _is_kind(value: object, kind: str) -> bool:
    if kind == _INT:
        return type(value) is int and -_INT_LIMIT < value < _INT_LIMIT
    if kind == _FLOAT:
        return type(value) in (int, float) and math.isfinite(value)
    return type(value) is {_STR: str, _BOOL: bool}[kind]


def _check_types(cfg: TrainConfig, bad: Any) -> None:
    """Raise ``bad(name, value, want)`` for the first field whose value has the wrong type."""
    want = {_INT: "a whole number", _FLOAT: "a finite number", _STR: "a string", _BOOL: "true/false"}
    for name, (kind, optional) in _FIELD_TYPES.items():
        value = getattr(cfg, name)
        if not (_is_kind(value, kind) or (optional and value is None)):
            raise bad(name, value, want[kind] + (" or null" if optional else ""))
    levels = cfg.levels
    if not (
        levels is None
        or isinstance(levels, str)
        or (isinstance(levels, list | tuple) and all(isinstance(v, str) for v in levels))
    ):
        raise bad("levels", levels, 'a list of levels such as ["channels", "bits"], or null')
    for name, example in (("eval_specs", '["largest", "smallest"]'), ("train_specs", '["channels=0.5"]')):
        specs = getattr(cfg, name)
        if not (isinstance(specs, list | tuple) and all(isinstance(v, str) for v in specs)):
            raise bad(name, specs, f"a list of specs such as {example}")
    grid = cfg.grid
    if not (isinstance(grid, list | tuple) and all(_is_kind(v, _FLOAT) and 0 < v <= 1 for v in grid)):
        raise bad("grid", grid, "a list of kept fractions in (0, 1] such as [1, 0.75, 0.5, 0.25], or []")
    for name in ("mean", "std"):
        value = getattr(cfg, name)
        if value is not None and not (
            isinstance(value, list | tuple) and value and all(_is_kind(v, _FLOAT) for v in value)
        ):
            raise bad(name, value, "a list of finite numbers (one per channel), or null")
    kwargs = cfg.model_kwargs
    if not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
        raise bad("model_kwargs", kwargs, "a table of model arguments {name: value}")


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
            f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: "
            f"{one_line(err)}"
        ) from None
    except RecursionError:  # both parsers recurse once per nesting level
        raise ConfigError(f"config file {p} nests too deeply; expected a flat table") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a table of settings")
    return data
