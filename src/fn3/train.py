"""Training a nested model: small pieces (`make_optimizer`, `lr_at`, `train_step`) and `fit`.

``fit`` is a short, readable loop over those pieces; a user who wants another loop can build it from
the same parts. Each step trains the sub-model(s) a *rule* picks (:class:`fn3.OrderedDropout` by
default), with one shared BatchNorm and plain cross-entropy, as the paper does.

Determinism and resume: the data order, augmentation and ordered-dropout draw of step ``t`` depend
only on ``(seed, t)``, the learning rate is a pure function of ``t``, and checkpoints hold the model
and optimizer tensors. A run stopped at any checkpoint and resumed ends with bit-identical weights
on CPU.

Example:
    >>> import fn3
    >>> from fn3.config import TrainConfig
    >>> from fn3.data import load_dataset
    >>> from fn3.train import fit
    >>> train = load_dataset("digits", "train")
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32,))
    >>> result = fit(model, train, TrainConfig(epochs=1, batch_size=64), progress=False)
    >>> result.step
    22
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fn3._io import atomic_write_text
from fn3.checkpoint import load_checkpoint, save_checkpoint
from fn3.config import AUTO_ROTATIONS, TrainConfig
from fn3.data import ImageDataset, batches, num_batches
from fn3.distributed import (
    all_reduce_max_,
    all_reduce_sum,
    average_gradients,
    average_tensors_,
    barrier,
    broadcast_state,
    check_same,
    is_main,
    shard,
)
from fn3.distributed import setup as dist_setup
from fn3.errors import ConfigError, Fn3Error, SpecError
from fn3.evaluate import accuracy, bn_recalibrated
from fn3.nest import active, space
from fn3.sampling import (
    FullPlusODO,
    ListedSpecs,
    OrderedDropout,
    Sandwich,
    auto_rule,
    grid_specs,
    untrained_depths,
)
from fn3.spec import Space, Spec, parse_spec

__all__ = [
    "FitResult",
    "TrainingError",
    "augment_mode",
    "calibration_batches",
    "fit",
    "lr_at",
    "make_optimizer",
    "make_rule",
    "resolved_lr",
    "resolved_rule",
    "resolved_spec_loss",
    "step_plan",
    "norm_matched_",
    "train_step",
    "untrained_note",
    "untrained_of",
    "untrained_pick",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"


class TrainingError(Fn3Error):
    """Training cannot go on (a non-finite loss); the message names the step, spec and checkpoint."""


@dataclass
class FitResult:
    """What :func:`fit` did: final step, per-epoch history, wall time (seconds), the rule it trained
    with (``cfg.rule``, or what ``"auto"`` resolved to: :func:`resolved_rule`) and how its steps
    combined their specs' losses (:func:`resolved_spec_loss`) at which peak rate (:func:`resolved_lr`),
    and a note on depths it never trained (:func:`untrained_note`)."""

    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0
    interrupted: bool = False
    rule: str = ""
    spec_loss: str = ""
    lr: float = 0.0
    note: str = ""  # for the user: depths the rule never trains (untrained_note), else empty
    # rule "specs" with cfg.specs_per_step: "4 of 5 specs a step, rotation ends"; else empty
    per_step: str = ""


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; no weight decay on 1-D parameters (BN, biases, clip levels)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = resolved_lr(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0) -> float:
    """Linear warm-up, then cosine decay to zero over ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, t)))


def resolved_rule(model: nn.Module, cfg: TrainConfig) -> str:
    """The rule ``cfg`` trains ``model`` with: ``cfg.rule``; for ``"auto"``, ``"specs"`` when the
    config lists the sub-models to deploy (``--train-spec``: each is then trained every step), else what
    :func:`fn3.sampling.auto_rule` picks for the model's nested levels and ``cfg.grid``."""
    if cfg.rule != "auto":
        return cfg.rule
    return "specs" if cfg.train_specs else auto_rule(space(model), cfg.grid)


def resolved_spec_loss(model: nn.Module, cfg: TrainConfig) -> str:
    """How ``cfg``'s steps combine their specs' losses: ``cfg.spec_loss``; for ``"auto"``, ``"norm"``
    under ``rule="specs"`` (listed specs or the grid: on held-out CIFAR-10 test images its smallest
    member is 1.1-3.8 pt better than ``"shared"``'s on channels, paths and bits, its full model up
    to 1.7 pt lower: ``docs/benchmarks/heldout.md``) and
    ``"mean"`` under the rules that draw; ``"mean"`` (at twice the rate, :func:`resolved_lr`) for a
    family nested in depth alone, where ``"norm"``'s smallest member trailed its own network by 2.5-3.4
    pt at three seeds (18 epochs, ``docs/reproduction.md``), and (config version 9) for a family
    nested in channels alone, where ``"norm"``'s full model trailed its own network by 1.72 and 1.34
    pt on the 8,000 held-out CIFAR-10 test images (ResNet-20, 18 epochs, seeds 1 and 2) and the mean
    at lr 0.2 puts every member within 0.2 pt of its own network or above it (full model +0.25 and
    +0.72 pt, 2 s.e. 0.9; ``docs/benchmarks/heldout_seed1.md``, ``heldout_seed2.md``); and
    ``"shared"`` for a family nested in paths alone (config version 8): on the CIFAR-10 ResNeXt family
    its worst gap to the networks trained alone was smaller than ``"norm"``'s in every run of 18
    epochs or more on the page (seeds 0-3 at 18 epochs: 1.20 / 2.00 / 3.40 / 4.20 pt against 3.15 /
    2.55 / 3.60 / 4.25; 36 epochs: 0.95 against 2.35), and on the 8,000 held-out test images its full
    model was ahead of ``"norm"``'s in each (0.5-1.4 pt) with worst gaps of 0.27 / 1.79 / 3.12 / 3.35
    and 0.76 pt against 0.26 / 1.54 / 4.63 / 4.30 and 1.34 (``docs/benchmarks/heldout*.md``; seed 3
    trained after the choice). At 6 epochs ``"norm"`` measured better on paths (worst gap 2.55 against
    4.80 pt on the page): give a run that short ``--spec-loss norm``. For ``"auto-v8"``, ``"auto-v7"``,
    ``"auto-v5"`` and ``"auto-v3"`` (``"auto"`` read from a config of version 8, 6-7, 4-5 or 1-3) what
    those versions trained: ``"norm"`` for channels, ``"norm"`` for channels and paths, ``"norm"``
    whatever the levels, ``"shared"`` under ``rule="specs"``.

    Example:
        >>> import fn3
        >>> from fn3.config import TrainConfig
        >>> m = fn3.create_model("resnet20", num_classes=10, levels=("channels",))
        >>> [resolved_spec_loss(m, TrainConfig(spec_loss=s)) for s in ("auto", "auto-v8", "norm")]
        ['mean', 'norm', 'norm']
        >>> resolved_spec_loss(m, TrainConfig(rule="odo"))
        'mean'
        >>> deep = fn3.create_model("resnet20", num_classes=10, levels=("layers",))
        >>> resolved_spec_loss(deep, TrainConfig())
        'mean'
        >>> paths = fn3.create_model("resnext_tiny", num_classes=10, levels=("paths",))
        >>> [resolved_spec_loss(paths, TrainConfig(spec_loss=s)) for s in ("auto", "auto-v7")]
        ['shared', 'norm']
    """
    if cfg.spec_loss == "mean-v8":
        return "mean"
    if cfg.spec_loss not in ("auto", "auto-v3", "auto-v5", "auto-v7", "auto-v8"):
        return cfg.spec_loss
    if resolved_rule(model, cfg) != "specs":
        return "mean"
    if cfg.spec_loss == "auto-v3":
        return "shared"
    if cfg.spec_loss == "auto-v5":
        return "norm"
    kinds = space(model).kinds()
    if kinds == ("layers",) or (kinds == ("channels",) and cfg.spec_loss == "auto"):
        return "mean"
    return "shared" if kinds == ("paths",) and cfg.spec_loss in ("auto", "auto-v8") else "norm"


def _mean_at_double_rate(model: nn.Module, cfg: TrainConfig) -> bool:
    """Whether ``model``'s family is one whose mean loss was measured best at twice the rate: nested in
    depth (``layers``) alone, or in channels alone (since config version 9; ``"mean-v8"``, a version
    6-8 config's mean, kept version 8's rate there)."""
    kinds = space(model).kinds()
    return kinds == ("layers",) or (kinds == ("channels",) and cfg.spec_loss != "mean-v8")


#: The peak learning rate ``lr=None`` gives a step on one network's (or the mean of several) losses.
BASE_LR = 0.1
#: The peak rate of AdamW when the config leaves ``lr`` unset (config version 7; before, it took SGD's
#: 0.1 and a ResNet-20 stayed at chance). Measured with ``fn3 train --optimizer adamw --lr R`` on one
#: seed: Fashion-MNIST MLP in neurons, 8 epochs, largest/smallest 89.41/86.23% at 3e-3, 89.00/84.10% at
#: 1e-3 (SGD at 0.1: 89.19/87.51%); CIFAR-10 ResNet-20 in channels (300 images a class, 5 epochs)
#: 40.30/28.27% at 3e-3, 36.70/22.58% at 1e-3, 10.10/9.98% at 0.1 (SGD at 0.1: 37.17/32.46%).
ADAMW_LR = 3e-3


#: The peak rate of every depth listed, 3 a step in the ends rotation, when ``specs_rotation="auto"``
#: picks it and ``lr`` is unset (config version 11; :func:`_every_depth_listing` has the numbers).
EVERY_DEPTH_LR = 0.15


def resolved_lr(model: nn.Module, cfg: TrainConfig) -> float:
    """The peak learning rate ``cfg`` trains ``model`` at: ``cfg.lr`` when set; for ``None``,
    :data:`BASE_LR` (0.1, SGD's usual rate for one ResNet), and twice that when a family nested in depth
    alone trains several specs a step (``rule="specs"``, the grid) on the mean of their losses: measured
    on the 18-epoch CIFAR-10 ResNet-20 family at three seeds, the mean at 0.2 keeps every member within
    1.45 pt of its own network where the mean at 0.1 and the norm-matched sum at 0.1 leave the 1-block
    member 2.5-3.6 pt behind, and the norm-matched sum at 0.2 loses 0.7-4.45 pt
    (``docs/reproduction.md``); and the same for a family nested in channels alone (config version 9:
    :func:`resolved_spec_loss` has the numbers). The same rate cost 4-12 pt on paths and bits at 6
    epochs, and on the 18-epoch paths family (seeds 2 and 3) the mean at 0.2 ended 1.75-4.15 pt below
    the per-weight mean at 0.1 at full width, so it is not used there. Every depth listed in the ends
    rotation, where ``specs_rotation="auto"`` picks it (:func:`_every_depth_listing`, config version
    11), trains at :data:`EVERY_DEPTH_LR` (0.15). Under AdamW (``optimizer="adamw"``, since config
    version 7) an unset rate is :data:`ADAMW_LR`.

    Example:
        >>> import fn3
        >>> from fn3.config import TrainConfig
        >>> deep = fn3.create_model("resnet20", num_classes=10, levels=("layers",))
        >>> wide = fn3.create_model("resnet20", num_classes=10, levels=("channels",))
        >>> [resolved_lr(m, TrainConfig(spec_loss=s)) for m in (deep, wide) for s in ("auto", "norm")]
        [0.2, 0.1, 0.2, 0.1]
        >>> resolved_lr(deep, TrainConfig(lr=0.05))
        0.05
        >>> deeper = fn3.create_model("resnet32", num_classes=10, levels=("layers",))  # 5-block stages
        >>> [resolved_lr(deeper, TrainConfig(specs_rotation=r)) for r in ("auto", "even", "auto-v10")]
        [0.15, 0.2, 0.2]
        >>> resolved_lr(wide, TrainConfig(optimizer="adamw"))
        0.003
    """
    if cfg.lr is not None:
        return cfg.lr
    if cfg.optimizer == "adamw":
        return ADAMW_LR
    several = resolved_rule(model, cfg) == "specs"
    if several and cfg.specs_rotation == "auto" and not cfg.train_specs:
        sp = space(model)
        if _every_depth_listing(sp, grid_specs(sp, cfg.grid), cfg):
            return EVERY_DEPTH_LR
    if several and resolved_spec_loss(model, cfg) == "mean" and _mean_at_double_rate(model, cfg):
        return 2 * BASE_LR
    return BASE_LR


def make_rule(model: nn.Module, cfg: TrainConfig) -> Callable[[int], list[Spec]]:
    """``rule(step) -> specs to train at that step``, from ``cfg.rule``.

    ``"auto"`` resolves through :func:`resolved_rule`; when it picks the sandwich (one level, empty
    ``cfg.grid``), ``cfg.draws`` (not ``sandwich_n``) random specs join the largest and the smallest,
    drawn as ``cfg.sampler`` says (uniform, tied per kind unless set): the tied sandwich of the
    measurements. ``"specs"`` without ``cfg.train_specs`` trains ``cfg.grid``
    (:func:`fn3.sampling.grid_specs`); ``cfg.specs_per_step`` (when not 0) makes each step train the
    largest and that many minus one of the others in turn, or the smallest on every other step
    (``cfg.specs_rotation="smallest"``), or the smallest every step and the others in turn on every
    other step (``"corners"``) or in the further slots of every step (``"ends"``;
    :class:`fn3.sampling.ListedSpecs`). ``cfg.specs_rotation="auto"`` (the default) is ``"even"``,
    except on a family nested in depth alone whose grid leaves depths out: every depth is listed and
    trained in the ends rotation, one fewer a step than the grid has members (3 for the default
    grid), at lr 0.15 when ``lr`` is unset (:func:`_every_depth_listing`).

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
        >>> rule = make_rule(net, TrainConfig())
        >>> [[len(s.kept("stage1.depth")) for s in rule(t)] for t in range(3)]
        [[5, 1, 4], [5, 1, 3], [5, 1, 2]]
        >>> [len(s.kept("stage1.depth")) for s in make_rule(net, TrainConfig(specs_rotation="even"))(0)]
        [5, 4, 2, 1]
    """
    sp = space(model)
    dist, tie = cfg.sampler
    rule = resolved_rule(model, cfg)
    if cfg.specs_per_step and rule != "specs":
        raise ConfigError(f"specs_per_step applies to rule=specs, which auto picks on a model nested in "
                          f"one level; this model trains with {rule}: drop --specs-per-step")
    if rule == "odo":
        return OrderedDropout(sp, dist, cfg.rho, cfg.seed, tie).step_specs
    if rule == "full+odo":
        return FullPlusODO(sp, cfg.draws, dist, cfg.rho, cfg.seed, tie).step_specs
    if rule == "sandwich":
        n = cfg.draws if cfg.rule == "auto" else cfg.sandwich_n
        return Sandwich(sp, n, dist=dist, rho=cfg.rho, seed=cfg.seed, tie=tie).step_specs
    if rule == "specs":  # the listed sub-models, else the grid (every axis tied)
        return _listed(sp, cfg).step_specs
    fixed = sp.largest() if rule == "full" else _flag_spec("fixed-spec", cfg.fixed_spec or "", sp)
    return lambda step: [fixed]


def _listed(sp: Space, cfg: TrainConfig) -> ListedSpecs:
    """``rule="specs"``'s members and how a step shares them: ``cfg.train_specs``, else ``cfg.grid``
    (every axis tied), or every depth in the ends rotation where ``specs_rotation="auto"`` picks it
    (:func:`_every_depth_listing`); ``auto`` is ``even`` everywhere else."""
    listed = [_flag_spec("train-spec", text, sp) for text in cfg.train_specs]
    members = listed or grid_specs(sp, cfg.grid)
    rotation = "even" if cfg.specs_rotation in AUTO_ROTATIONS else cfg.specs_rotation
    return (None if listed else _every_depth_listing(sp, members, cfg)) or ListedSpecs(
        sp, members, cfg.specs_per_step, rotation)


def _every_depth_listing(sp: Space, grid: list[Spec], cfg: TrainConfig) -> ListedSpecs | None:
    """What ``specs_rotation="auto"`` trains on a family nested in depth alone whose ``grid`` leaves
    depths out, when no ``specs_per_step`` is given: every depth listed (:func:`_every_depth_grid`),
    the largest and the smallest every step and the others in turn, one fewer a step than the grid has
    members (:func:`_every_depth_per_step`: 3 for the default grid's 4), at lr 0.15 when ``lr`` is unset
    (:data:`EVERY_DEPTH_LR`; config version 11); ``None`` elsewhere (and where the grid has fewer than 3
    members, which leave no slot between the ends). ``"auto-v10"`` (``auto`` read from a version-10
    config) trains as many a step as the grid has members, at the mean's 0.2.

    Why (issue 11, CIFAR-10 ResNet-32 nested in depth, 5,000 training images; docs/reproduction.md):
    the default grid keeps 5/4/2/1 blocks of each 5-block stage and never trains 3, which trailed its
    network trained alone by 3.3 / 4.7 pt at 36 epochs (seeds 0 / 1, 8,000 held-out test images).
    Version 10 listed every depth at the grid's 4 a step (lr 0.2): every depth within 1.5 pt at both
    seeds at 36 epochs, but at 18 epochs worst gaps -5.1 / -4.1 / -4.25 (seeds 0-2) and at 6 epochs
    2-4 pt below the grid itself. Three a step at lr 0.15, at about three quarters of the passes, is
    ahead of that at every length: at 6 epochs (page, 2,000 images, 2 s.e. about 3) 49.10 / 48.35 /
    47.35 / 45.45 / 43.85% at 5..1 blocks against version 10's 39.45 / 39.40 / 40.10 / 39.55 / 37.15
    (seed 0) and 45.00 / 44.30 / 43.90 / 43.45 / 39.80 against 39.95 / 39.45 / 39.15 / 38.25 / 36.55
    (seed 1), above the grid at every depth; at 18 epochs +1.3 / +1.1 / +0.8 / +0.5 / +2.1 pt on
    average over three seeds (held-out), worst gap -3.2 / -2.5 / -3.85; at 36 epochs level with version
    10, both targets met (held-out worst gap -1.16 / -1.44 pt at seeds 0 / 1). Step for step it costs
    0.63-0.68x of training the networks alone (version 10: 0.80-0.81x; two measurements,
    ``benchmarks/family_cost.py``). It still misses the 2-pt target at 6 and 18 epochs.
    """
    if cfg.specs_rotation not in AUTO_ROTATIONS or cfg.specs_per_step or sp.kinds() != ("layers",):
        return None
    if not untrained_depths(sp, grid):
        return None
    every = grid_specs(sp, _every_depth_fractions(sp, [ax.name for ax in sp]))
    if not 3 <= len(grid) < len(every):
        return None
    per_step = len(grid) if cfg.specs_rotation == "auto-v10" else _every_depth_per_step(len(grid))
    return ListedSpecs(sp, every, per_step, "ends")


def _every_depth_per_step(members: int) -> int:
    """Specs a step of every depth listed in the ends rotation, for a grid of ``members``: one fewer
    than the grid (the measured rule on the default grid's 4: 3 a step, the largest, the smallest and
    one other in turn), and never under 3 (no slot left between the ends)."""
    return max(3, members - 1)


def untrained_note(model: nn.Module, cfg: TrainConfig) -> str | None:
    """One line for the user when the rule trains a grid that leaves depths of a ``layers`` axis out
    (:func:`fn3.sampling.untrained_depths`: on 5-block stages the default grid's 5/4/2/1 blocks, with
    ``--specs-rotation even``), with the flags that train every depth as the default does (every depth
    listed, in the ``ends`` rotation, :func:`_every_depth_flags`); ``None`` otherwise (listed
    ``train_specs`` are the user's choice of depths, and the rules that draw reach every depth).

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
        >>> print(untrained_note(net, TrainConfig(specs_rotation="even")))  # doctest: +ELLIPSIS
        note: the grid never trains 3 blocks of stage1.depth, stage2.depth, stage3.depth as such; ...
        >>> untrained_note(net, TrainConfig()) is None  # the default lists every depth (ends rotation)
        True
    """
    missing, trained = untrained_of(model, cfg)
    if cfg.train_specs or not missing:
        return None
    sp = space(model)
    return (f"note: the grid never trains {_blocks_of(missing)} as such; a search or export that picks "
            f"that depth gets a weaker sub-model (ResNet-32, 36 epochs: 3.3 and 4.7 pt below its network "
            f"alone at two seeds). To train every depth for fewer passes than the grid, as --specs-rotation "
            f"auto (the default) does (ResNet-32: above the grid at every depth at 6 epochs, two seeds; "
            f"every depth within 1.2 pt of its network alone at 36; README, 'Which training rule'): "
            f"{_every_depth_flags(sp, missing, trained)}")


def _blocks_of(depths: dict[str, list[int]]) -> str:
    """``{axis: depths}`` as text, axes grouped by their depths (stages of different lengths differ):
    ``3 blocks of stage1.depth, stage2.depth; 3, 5 blocks of stage3.depth``."""
    groups: dict[tuple[int, ...], list[str]] = {}  # the depths -> the axes that have them
    for name, ds in depths.items():
        groups.setdefault(tuple(ds), []).append(name)
    return "; ".join(f"{', '.join(map(str, d))} blocks of {', '.join(names)}"
                     for d, names in groups.items())


def _every_depth_flags(sp: Space, axes: Iterable[str], trained: str) -> str:
    """The ``fn3 train`` flags that train every depth of ``axes`` as ``specs_rotation="auto"`` does
    where the grid ``trained`` names (``"grid 1,0.75,0.5,0.25"``) leaves depths out
    (:func:`_every_depth_listing`): every depth listed (``--grid``), the largest and the smallest every
    step and the others in turn, one fewer a step than the grid has members (at least 3:
    ``--specs-per-step 3 --specs-rotation ends``), at its rate (``--lr 0.15``). Listed sub-models (no
    grid): 3 a step. The ``--grid`` alone where that many a step is every depth."""
    axes = list(axes)
    flags = f"--grid {_every_depth_grid(sp, axes)}"
    every = max(sp[name].num_blocks for name in axes)  # sub-models of the every-depth grid
    members = 0
    if trained.startswith("grid "):
        try:
            members = len(grid_specs(sp, tuple(float(f) for f in trained[5:].split(","))))
        except (ValueError, ConfigError):  # metadata written by hand: 3 a step
            members = 0
    per_step = _every_depth_per_step(members)
    if per_step < every:
        flags += f" --specs-per-step {per_step} --specs-rotation ends --lr {EVERY_DEPTH_LR:g}"
    return flags


def _every_depth_grid(sp: Space, axes: Iterable[str]) -> str:
    """The ``--grid`` that trains every depth of ``axes`` (:func:`_every_depth_fractions`), as text."""
    return ",".join(f"{f:.3g}" for f in _every_depth_fractions(sp, axes))


def _every_depth_fractions(sp: Space, axes: Iterable[str]) -> tuple[float, ...]:
    """The grid that trains every depth of ``axes``: ``k/n`` for every k of the longest stage (k/n
    rounds to k blocks, and covers every depth of a shorter stage too)."""
    n = max(sp[name].num_blocks for name in axes)
    return tuple(k / n for k in range(n, 0, -1))


def untrained_of(model: nn.Module, cfg: TrainConfig) -> tuple[dict[str, list[int]], str]:
    """What ``cfg``'s rule never trains of ``model``'s depths, and what it trains instead: the
    :func:`fn3.sampling.untrained_depths` of its listed sub-models or grid under ``rule="specs"``
    (``({}, "")`` for the rules that draw, which reach every depth). Stored with every export of a run
    (:func:`fn3.export.runs.run_meta`), so that a sub-model read from a nested file is warned about
    too (:func:`untrained_pick`).

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
        >>> untrained_of(net, TrainConfig(specs_rotation="even"))
        ({'stage1.depth': [3], 'stage2.depth': [3], 'stage3.depth': [3]}, 'grid 1,0.75,0.5,0.25')
        >>> untrained_of(net, TrainConfig())  # rotation auto: every depth, 3 a step
        ({}, 'every depth (grid 1,0.8,0.6,0.4,0.2), 3 a step in the ends rotation')
    """
    if resolved_rule(model, cfg) != "specs":
        return {}, ""
    sp = space(model)
    listing = _listed(sp, cfg)
    trained = "listed sub-models" if cfg.train_specs else "grid " + ",".join(f"{g:g}" for g in cfg.grid)
    if not cfg.train_specs and cfg.specs_rotation in AUTO_ROTATIONS and listing.rotation == "ends":
        every = _every_depth_grid(sp, [ax.name for ax in sp])
        trained = f"every depth (grid {every}), {listing.per_step} a step in the ends rotation"
    return untrained_depths(sp, listing.specs), trained


def untrained_pick(
    sp: Space, spec: Spec, missing: dict[str, list[int]], trained: str = "grid"
) -> str | None:
    """One line for the user when ``spec`` keeps a depth of a ``layers`` axis that its run never
    trained as such (``missing``, ``trained``: :func:`untrained_of` of the run), else ``None``: what
    ``fn3 search`` says of a sub-model it chose and ``fn3 export`` of the one it writes (from a run
    or from its nested file), so the warning :func:`untrained_note` gave at training time reaches
    the person deploying.

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
        >>> sp, (missing, trained) = fn3.space(net), untrained_of(net, TrainConfig(specs_rotation="even"))
        >>> print(untrained_pick(sp, fn3.parse_spec("layers=0.6", sp), missing, trained))
        ... # doctest: +ELLIPSIS
        note: this sub-model keeps 3 blocks of stage1.depth, stage2.depth, stage3.depth, a depth its run ...
        >>> untrained_pick(sp, fn3.parse_spec("layers=0.8", sp), missing, trained) is None
        True
    """
    picked = {name: [len(spec.kept(name))] for name, depths in missing.items()
              if name in sp and len(spec.kept(name)) in depths}
    if not picked:
        return None
    return (f"note: this sub-model keeps {_blocks_of(picked)}, a depth its run never trained as such (it "
            f"trained the {trained}); it may trail its network trained alone (ResNet-32, 36 epochs: 3.3 "
            f"and 4.7 pt at two seeds). Compare its score with a trained depth's, or retrain with "
            f"{_every_depth_flags(sp, picked, trained)}")


def untrained_summary(sp: Space, missing: dict[str, list[int]], trained: str = "grid") -> str | None:
    """One line on what a run never trained as such (``missing``, ``trained``: :func:`untrained_of`,
    from the run or from the metadata an export stored), else ``None``: what ``fn3 info`` says of a
    run directory or a nested file, before anyone picks a sub-model (:func:`untrained_pick` says it
    of one sub-model).

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
        >>> even = TrainConfig(specs_rotation="even")  # the grid alone: 5/4/2/1 blocks
        >>> print(untrained_summary(fn3.space(net), *untrained_of(net, even)))
        ... # doctest: +ELLIPSIS
        never trained as such: 3 blocks of stage1.depth, stage2.depth, stage3.depth (it trained the grid ...
    """
    known = {name: depths for name, depths in missing.items() if name in sp and depths}
    if not known:
        return None
    return (f"never trained as such: {_blocks_of(known)} (it trained the {trained}); a sub-model that "
            f"keeps one may trail its network trained alone; {_every_depth_flags(sp, known, trained)} "
            f"trains every depth")


def distill_students(model: nn.Module, cfg: TrainConfig) -> frozenset[Spec] | None:
    """The specs that learn the largest's soft predictions under ``cfg.distill``: ``None`` for
    ``distill_to="all"`` (every spec of a step but the largest) or without ``distill``, else the
    smallest sub-model the rule trains.

    Under ``rule="specs"`` (and ``auto`` on one level) that is the smallest listed member, the one
    with the fewest kept units (the grid's smallest, or the smallest ``--train-spec``: not the
    space's smallest, which a listed family need not contain); under the sandwich, the space's
    smallest, trained every step. The rules that draw (``odo``, ``full+odo``) train the smallest on
    few steps and ``full``/``fixed`` train one spec, so ``distill_to="smallest"`` is refused there
    rather than silently distilling into nothing.

    Example:
        >>> import fn3
        >>> from fn3.config import TrainConfig
        >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8)
        >>> cfg = TrainConfig(distill=True, distill_to="smallest", train_specs=("neurons=0.5",))
        >>> distill_students(model, cfg) == {fn3.parse_spec("neurons=0.5", fn3.space(model))}
        True
    """
    if not cfg.distill or cfg.distill_to != "smallest":  # without --distill nobody learns soft labels
        return None
    sp = space(model)
    rule = resolved_rule(model, cfg)
    if rule == "specs":
        return frozenset({_listed(sp, cfg).smallest})
    if rule == "sandwich":
        return frozenset({sp.smallest()})
    raise ConfigError(f"distill_to=smallest distils into the smallest sub-model a rule trains at every "
                      f"step or in turn, which rule={rule} does not; expected rule specs or sandwich "
                      "(auto picks specs on a model nested in one level), or distill_to=all")


def _flag_spec(flag: str, text: str, sp: Space) -> Spec:
    """``parse_spec``, its error naming the flag that gave the spec."""
    try:
        return parse_spec(text, sp)
    except SpecError as err:
        raise SpecError(f"--{flag} {text}: {err}") from None


def eval_specs_of(model: nn.Module, cfg: TrainConfig) -> dict[str, Spec]:
    """``{text: spec}`` of ``cfg.eval_specs`` (``--eval-spec``), each checked against ``model``'s space.

    A spec that does not fit raises :class:`~fn3.SpecError` naming the flag, so ``fn3 train`` refuses
    it before it writes the run directory.
    """
    sp = space(model)
    return {name: _flag_spec("eval-spec", name, sp) for name in cfg.eval_specs}


def step_plan(cfg: TrainConfig, rule: Callable[[int], list[Spec]], largest: Spec, step: int,
              total: int) -> tuple[list[Spec], bool]:
    """``(specs, distill)`` of training step ``step`` of ``total``: ``cfg.full_first`` of the run trains
    the largest sub-model alone (progressive: full model first, then the family), and in-place
    distillation (when ``cfg.distill``) starts after ``cfg.distill_start`` of the run, once the
    largest model is a teacher worth learning from."""
    if step < cfg.full_first * total:
        return [largest], False
    return rule(step), cfg.distill and step >= cfg.distill_start * total


def norm_matched_(summed: torch.Tensor, longest: torch.Tensor) -> torch.Tensor:
    """Shorten the summed gradient ``summed`` in place to the norm ``longest`` (of the longest spec's
    gradient alone), ``spec_loss="norm"``'s step; returns it.

    Never lengthened: where the specs' gradients cancel (a clipping level one spec wants up and
    another down) the sum is short and stays so, not stretched to a full step along what is left.

    Example:
        >>> import torch
        >>> norm_matched_(torch.tensor([3.0, 4.0]), torch.tensor(1.0)).tolist()
        [0.6000000238418579, 0.800000011920929]
        >>> norm_matched_(torch.tensor([0.1]), torch.tensor(1.0)).tolist()
        [0.10000000149011612]
    """
    norm = torch.linalg.vector_norm(summed)
    if norm > longest:
        summed.mul_(longest / norm)
    return summed


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    specs: Sequence[Spec],
    *,
    label_smoothing: float = 0.0,
    distill: bool = False,
    reduction: str = "mean",
    students: Collection[Spec] | None = None,
) -> float:
    """One optimizer step on the sub-models ``specs``; returns the mean loss.

    Gradients of every spec accumulate before the single step (the sandwich rule trains several specs
    per step). ``reduction="mean"`` steps on the average of the specs' losses, so the step size of the
    shared weights does not grow with the number of specs; ``"sum"`` steps on their sum (US-Nets,
    AdaBits), which for SGD is a learning rate multiplied by ``len(specs)``. ``"shared"`` divides
    each weight's summed gradient by the number of specs that *use* it (a nonzero gradient in that
    spec's pass): a channel or block only the largest model has learns at the step of the network
    trained alone, where ``"mean"`` would give it ``1/len(specs)`` of it, and weights every spec
    shares (all of them, nested in bits alone) get exactly the ``"mean"`` step. ``"shared-sqrt"``
    divides by the square root of that number: a weight only the largest model uses still learns at
    one network's step, a weight all ``n`` specs share at ``sqrt(n)`` times the mean's, the step
    ``"norm"`` takes where the specs' gradients are orthogonal (measured in
    ``benchmarks/repro/exp4_paths.py``'s 18-epoch experiment and in ``exp2_channels.py``: below the
    defaults there). With ``distill=True`` the
    first spec (the largest, for the sandwich rule) is the teacher and the others learn its soft
    predictions (US-Nets' in-place distillation); ``students``, when given, are the only specs that
    do (``TrainConfig.distill_to="smallest"``: the smallest sub-model the rule trains,
    :func:`distill_students`), the others keep the labels.
    Under ``torchrun`` the gradients are averaged over the ranks once, after the last spec's backward
    (:func:`fn3.distributed.average_gradients`).

    ``"norm"`` steps along the *sum* of the specs' gradients, shortened per parameter tensor to the
    norm of the longest of the specs' gradients of that tensor (:func:`norm_matched_`): the step is
    as long as one network's step, in the direction the specs agree on. Where their gradients agree
    (nested bits: a 6-bit and an 8-bit model want nearly the same change) it is the ``"mean"`` step;
    where they are orthogonal (the shared core of nested channels) it is ``sqrt(len(specs))`` times
    the mean, the step the mean of the losses reaches only with a larger learning rate, which then
    breaks nested bits. Under ``torchrun`` the norms are those of the rank-averaged gradients, as in
    one process.
    """
    if reduction not in ("mean", "sum", "shared", "shared-sqrt", "norm"):  # "auto" is resolved by fit
        raise ConfigError(
            f"reduction={reduction!r} is invalid; expected mean, sum, shared, shared-sqrt or norm")
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    teacher: torch.Tensor | None = None
    # reduction="shared": per parameter, how many specs' passes gave each element a nonzero gradient
    # (int32, the parameter's shape); the summed gradient is divided by it after the last pass.
    uses = ({p: torch.zeros_like(p, dtype=torch.int32) for p in model.parameters() if p.requires_grad}
            if reduction in ("shared", "shared-sqrt") else {})
    # reduction="norm": per parameter, each spec's own gradient (rank-averaged before its norm is
    # taken, so that under torchrun the norm is the whole batch's, as in one process): the step holds
    # one extra gradient per spec
    own = ({p: [] for p in model.parameters() if p.requires_grad} if reduction == "norm" else {})
    tracked = uses or own
    for i, spec in enumerate(specs):
        with active(model, spec):
            logits = model(x)  # (B, classes)
        if distill and teacher is not None and (students is None or spec in students):
            loss = F.cross_entropy(logits, teacher)  # soft targets (B, classes)
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if distill and i == 0:
            teacher = logits.detach().softmax(dim=1)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(f"loss is {value} for spec {spec}")
        if reduction == "mean":
            loss = loss / len(specs)
        before = {p: p.grad.clone() for p in tracked if p.grad is not None}
        loss.backward()  # the graph recorded the sliced weights; no need to stay inside active()
        for p, count in uses.items():
            if p.grad is not None:
                count += p.grad != before[p] if p in before else p.grad != 0
        for p, kept in own.items():
            if p.grad is not None:  # this spec's gradient alone
                kept.append(p.grad - before[p] if p in before else p.grad.clone())
        total += value
    average_gradients(model)  # a no-op in one process
    if own:
        average_tensors_([g for kept in own.values() for g in kept])  # a no-op in one process
        for p, kept in own.items():
            if kept:
                norm_matched_(p.grad, torch.stack([torch.linalg.vector_norm(g) for g in kept]).max())
    if uses:  # divide the rank-averaged gradient by the count of the whole batch (max over ranks)
        used = [(p, count) for p, count in uses.items() if p.grad is not None]
        all_reduce_max_([count for _, count in used])
        for p, count in used:
            p.grad.div_(count.clamp_min(1) if reduction == "shared" else count.clamp_min(1).sqrt())
    optimizer.step()
    return total / len(specs)


def augment_mode(cfg: TrainConfig, ds: ImageDataset) -> bool | str:
    """``auto``: random crop + flip for colour images of 16 px or more, none otherwise."""
    if cfg.augment == "auto":
        c, h, _ = ds.image_shape
        return "crop+flip" if c == 3 and h >= 16 else False
    return False if cfg.augment == "none" else cfg.augment


def calibration_batches(ds: ImageDataset, cfg: TrainConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches on which a sub-model's BatchNorm statistics are re-estimated: shuffled
    with ``seed + 1``, and augmented as in training (:func:`augment_mode`).

    The weights were trained against batch statistics of augmented images, so statistics of clean
    images fit them worse: measured on the 18-epoch layers family (``python
    benchmarks/bn_calibration.py``), the networks trained alone lose 3-5 pt with clean-image
    statistics and nothing with augmented ones, and fn3's nested members gain 1.6-5.0 pt.
    """
    return batches(ds, cfg.batch_size, shuffle=True, seed=cfg.seed + 1, mean=cfg.mean, std=cfg.std,
                   augment=augment_mode(cfg, ds))


class _StopFlag:
    """SIGINT sets a flag; the loop stops after the current step and saves (a second ^C aborts)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def evaluate_specs(
    model: nn.Module,
    specs: dict[str, Spec],
    eval_data: ImageDataset,
    cfg: TrainConfig,
    calib_data: ImageDataset,
    batch_size: int = 256,
) -> dict[str, float]:
    """Accuracy of each named spec, after BN re-estimation on training batches when configured."""
    mean, std = cfg.mean, cfg.std
    out = {}
    for name, spec in specs.items():
        eval_batches = list(batches(eval_data, batch_size, shuffle=False, mean=mean, std=std))
        if cfg.recalibrate_batches > 0:
            calib = calibration_batches(calib_data, cfg)
            with bn_recalibrated(model, spec, calib, cfg.recalibrate_batches):
                out[name] = accuracy(model, eval_batches, spec)
        else:
            out[name] = accuracy(model, eval_batches, spec)
    return out


def fit(
    model: nn.Module,
    train: ImageDataset,
    cfg: TrainConfig,
    *,
    val: ImageDataset | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> FitResult:
    """Train ``model`` on ``train`` as ``cfg`` says; checkpoint to ``run_dir`` if given.

    Args:
        model: a nested model (``fn3.create_model``); trained in place.
        train: training images; ``cfg.mean``/``cfg.std`` normalise them (0.5/0.5 when unset).
        cfg: the run's settings.
        val: evaluated every epoch on ``cfg.eval_specs`` (skipped when ``None``).
        run_dir: where ``checkpoint.safetensors`` and ``metrics.jsonl`` go.
        resume: continue from ``run_dir``'s checkpoint (same config).
        progress: show a progress bar with the loss and throughput.
        max_steps: stop (and checkpoint) once the run reaches this global step, as if interrupted;
            the schedule still spans ``cfg.epochs``, so a later ``resume=True`` finishes the run.
    """
    run = Path(run_dir) if run_dir is not None else None
    distributed = dist_setup()
    main_rank = is_main()
    sp = space(model)
    optimizer = make_optimizer(model, cfg)
    rule = make_rule(model, cfg)
    eval_specs = eval_specs_of(model, cfg)
    drop_last = len(train) >= cfg.batch_size
    per_epoch = num_batches(len(train), cfg.batch_size, drop_last)
    total = per_epoch * cfg.epochs
    aug = augment_mode(cfg, train)
    spec_loss = resolved_spec_loss(model, cfg)
    base_lr = resolved_lr(model, cfg)
    # distill_to="smallest": only the smallest sub-model the rule trains learns the soft predictions
    students = distill_students(model, cfg)
    result = FitResult(step=0, rule=resolved_rule(model, cfg), spec_loss=spec_loss, lr=base_lr)
    if result.rule == "specs":
        listing = _listed(sp, cfg)
        if 0 < listing.per_step < len(listing.specs):
            result.per_step = (f"{listing.per_step} of {len(listing.specs)} specs a step, "
                               f"rotation {listing.rotation}")
    if resume and run is None:
        raise TrainingError("resume=True needs the run_dir to resume from")
    # A run killed before its first checkpoint restarts from step 0: the model's initial weights are a
    # function of the seed, so that is exactly where it was.
    if resume and (run / CHECKPOINT_NAME).is_file():
        info = load_checkpoint(run / CHECKPOINT_NAME, model, optimizer)
        result.step = int(info["step"])
        result.history = list(info.get("history", []))
    if run is not None and main_rank:
        run.mkdir(parents=True, exist_ok=True)
    if resume and main_rank:
        _truncate_metrics(run / METRICS_NAME, result.step)
    if distributed:
        broadcast_state(model)  # every rank starts from rank 0's weights
    start = time.perf_counter()
    bar = _Progress(total, enabled=progress and main_rank)
    model.train()
    result.note = untrained_note(model, cfg) or ""
    with _StopFlag() as flag, bar:
        if result.note:  # before the first step: the user can stop and change the grid
            bar.log(result.note)
        bar.advance_to(result.step)
        while result.step < total and not flag.stop:
            epoch, first = divmod(result.step, per_epoch)
            seen, t0, losses, lr = 0, time.perf_counter(), [], base_lr
            for x, y in batches(
                train,
                cfg.batch_size,
                shuffle=True,
                seed=cfg.seed,
                epoch=epoch,
                augment=aug,
                mean=cfg.mean,
                std=cfg.std,
                start=first,
                drop_last=drop_last,
            ):
                lr = lr_at(result.step, total, base_lr, cfg.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                specs, distill = step_plan(cfg, rule, sp.largest(), result.step, total)
                if distributed:  # every rank must train the same sub-model (and stop together)
                    flag.stop = check_same(json.dumps([s.to_dict() for s in specs]), flag.stop)
                xs, ys = shard(x, y)
                try:
                    loss = train_step(
                        model,
                        optimizer,
                        xs,
                        ys,
                        specs,
                        label_smoothing=cfg.label_smoothing,
                        distill=distill,
                        reduction=spec_loss,
                        students=students,
                    )
                except TrainingError as err:
                    raise _diverged(err, result.step, run) from None
                result.step += 1
                seen += len(y)
                losses.append(loss)
                rate = seen / max(1e-9, time.perf_counter() - t0)
                bar.update(result.step, f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.3f} {rate:,.0f} img/s")
                if max_steps is not None and result.step >= max_steps:
                    flag.stop = True
                if flag.stop:
                    break
                if (
                    run is not None
                    and cfg.checkpoint_every
                    and result.step % cfg.checkpoint_every == 0
                    and result.step % per_epoch
                ):
                    _save(run, model, optimizer, cfg, result)
            if flag.stop and result.step % per_epoch:
                result.interrupted = True
                if run is not None:
                    _save(run, model, optimizer, cfg, result)
                break
            (loss_sum, count) = all_reduce_sum([sum(losses), len(losses)])
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": result.step,
                "lr": lr,
                "loss": loss_sum / max(1, count),
                "images_per_s": seen / max(1e-9, time.perf_counter() - t0),
            }
            if val is not None and eval_specs:
                record["val_accuracy"] = evaluate_specs(model, eval_specs, val, cfg, train)
                model.train()
            result.history.append(record)
            if run is not None:
                # The metrics line goes first: if the run dies before the checkpoint lands, resuming
                # drops the line (its step is past the checkpoint) and the epoch writes it again.
                if main_rank:
                    with open(run / METRICS_NAME, "a") as f:
                        f.write(json.dumps(record) + "\n")
                _save(run, model, optimizer, cfg, result)
            bar.log(_format_record(record))
            result.interrupted = flag.stop
    result.wall_time = time.perf_counter() - start
    return result


def _diverged(err: TrainingError, step: int, run: Path | None) -> TrainingError:
    last = f"{run / CHECKPOINT_NAME}" if run and (run / CHECKPOINT_NAME).is_file() else "none"
    return TrainingError(
        f"training diverged at step {step}: {err}; weights were not saved; "
        f"last good checkpoint: {last} (try a lower --lr)"
    )


def _save(
    run: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, result: FitResult
) -> None:
    """Rank 0 writes the checkpoint; the others wait, so none runs ahead of a half-saved state."""
    if is_main():
        save_checkpoint(
            run / CHECKPOINT_NAME,
            model,
            optimizer,
            {
                "step": result.step,
                "history": result.history,
                "config": cfg.to_dict(),
                "model": getattr(model, "fn3_config", None),
            },
        )
    barrier()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (a crash between the two)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            break  # a torn last line
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def _format_record(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.4f}", f"{r['images_per_s']:,.0f} img/s"]
    parts += [f"{k} {v * 100:.2f}%" for k, v in r.get("val_accuracy", {}).items()]
    return "  ".join(parts)


class _Progress:
    """A rich progress bar (or nothing): steps done, loss and throughput."""

    def __init__(self, total: int, enabled: bool):
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("training", total=self.total)
        return self

    def advance_to(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step)

    def update(self, step: int, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, description=text)

    def log(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
