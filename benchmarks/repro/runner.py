"""Shared runner of the reproduction experiments (issue 5): same data, model, epochs, seed per arm.

An :class:`Experiment` is a base :class:`~fn3.config.TrainConfig` (model, data, subset, epochs,
optimizer, seed), a list of :class:`Budget` s (the sub-models of interest) and a list of
:class:`Arm` s (how to train: ordered dropout, one independent model per budget, sandwich, joint
bit-widths, or an evaluation-only ablation of another arm's model). :func:`run_experiment` trains
every arm into its own run directory, evaluates each budget on the TEST set (with and without BN
re-estimation when the model has BatchNorm) and writes one JSON per experiment.

Resumable: the JSON is rewritten atomically after every finished arm and finished arms are skipped
on a rerun; an arm killed mid-training continues from its run directory's checkpoint. Arms run
side by side go to scratch directories (``--results-dir``, ``--runs-dir``); ``merge.py`` then adds
them, with their models, to the page's file.

    python benchmarks/repro/exp1_neurons.py --quick     # seconds, results in benchmarks/results/quick
    python benchmarks/repro/exp1_neurons.py             # the full run, benchmarks/results/exp1_*.json

Example (the quick MNIST experiment, in-process):
    >>> import runner, exp1_neurons                                    # doctest: +SKIP
    >>> runner.main([exp1_neurons.experiment()], ["--quick"])           # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from targets import arm_mode

from fn3.config import TrainConfig
from fn3.data import ImageDataset, channel_stats, load_dataset, train_val_split
from fn3.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data"
RESULT_FORMAT, RESULT_VERSION = "fn3.repro-result", 1
#: Arm kinds: one nested run; one run per budget (rule=fixed); every budget in every step (AdaBits);
#: the model of another arm with blocks removed in random order; a searched front (experiment 6).
#: ``--quick`` overrides of the ResNet experiments: 5 images per class, 1 epoch (2 steps), a 4-wide
#: ResNet, one calibration batch. Only to prove the harness runs end to end.
CIFAR_QUICK: Mapping[str, Any] = {"limit": 5, "epochs": 1, "batch_size": 25,
                                  "model_kwargs": {"width": 4}, "recalibrate_batches": 1}
QUICK_DRAWS, QUICK_MAX_EVALS = 2, 12  # random-order draws and search evaluations in --quick
KINDS = ("nested", "independent", "joint", "random-order", "search")


@dataclass(frozen=True)
class Budget:
    """One sub-model of interest: ``spec`` is ``fn3.parse_spec`` text (also the ``fixed_spec``)."""

    label: str  # "50%", "4 bits", "2/3 blocks"
    x: float  # plotted value: kept fraction, bits, blocks per stage
    spec: str  # "neurons=0.5", "bits=4", "layers=0.6666666666666666"

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.label).strip("_")


@dataclass(frozen=True)
class Arm:
    """One way of getting the family of sub-models.

    Args:
        name: shown in tables and plots.
        kind: one of :data:`KINDS`.
        train: :class:`TrainConfig` overrides of this arm (``rule``, ``dist``, ``distill``, ``levels``).
        budgets: this arm's budgets (default: the experiment's).
        source: for ``random-order``: the arm whose trained model is ablated.
        draws: for ``random-order``: random kept sets drawn per budget.
        options: kind-specific settings (``search``: metric, beam, candidates, max_evals).
    """

    name: str
    kind: str = "nested"
    train: Mapping[str, Any] = field(default_factory=dict)
    budgets: tuple[Budget, ...] | None = None
    source: str | None = None
    draws: int = 5
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"arm {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "random-order" and not self.source:
            raise ConfigError(f"arm {self.name!r}: a random-order arm needs source=<arm name>")

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name.lower()).strip("_")


#: The arms every experiment of one level shares (same names in every result file).
ODO_GEOMETRIC = Arm("fn3 ODO (geometric)", train={"rule": "odo", "dist": "geometric"})
ODO_UNIFORM = Arm("fn3 ODO (uniform)", train={"rule": "odo", "dist": "uniform"})
SANDWICH = Arm("US-Nets sandwich + distillation",
               train={"rule": "sandwich", "distill": True, "spec_loss": "sum"})
RANDOM_ORDER = Arm("fn3 ODO, random-order removal", kind="random-order", source=ODO_GEOMETRIC.name)

#: An fn3 option beyond the paper, added to experiments 2-5 after their first runs: one
#: ordered-dropout draw per kind (``tie="kind"``), so every axis of a level keeps the same fraction
#: each step, where the paper draws every axis (layer, block, tensor) alone.
TIED = Arm("fn3 ODO (geometric), one draw per kind",
           train={"rule": "odo", "dist": "geometric", "tie": "kind"})


#: The draws of the rules that train the largest sub-model every step (issue 11): uniform, one draw per
#: kind; each arm below adds how the step combines the losses and what else it changes.
_FULL_ODO = {"rule": "full+odo", "dist": "uniform", "tie": "kind", "draws": 1}
_TIED_SANDWICH = {"rule": "sandwich", "dist": "uniform", "tie": "kind", "sandwich_n": 1, "distill": False}

#: fn3's default rule since issue 11: the largest sub-model every step beside one ordered-dropout
#: draw (uniform, one draw per kind), the step on the mean of the two losses; and the same model with
#: blocks removed in random order.
DEFAULT = Arm("fn3 default (full+odo, mean loss)", train={**_FULL_ODO, "spec_loss": "mean"})
#: The default before issue 11's second change: the same draws, the step on the SUM of the losses
#: (for SGD, twice the learning rate on the shared weights). Kept as the record of that change.
SUMMED = Arm("fn3 full+odo, summed losses (default before)", train={**_FULL_ODO, "spec_loss": "sum"})
#: A candidate for the default measured in issue 11: US-Nets' sandwich (the largest, the smallest and
#: one tied draw every step) without distillation, losses summed as US-Nets does.
SANDWICH_TIED = Arm("fn3 sandwich, tied (largest + smallest + 1 draw)",
                    train={**_TIED_SANDWICH, "spec_loss": "sum"})
#: The summed rule with half the learning rate: for SGD like averaging the two per-spec losses of a
#: step, with half the weight decay (the measurement that led to ``spec_loss="mean"``).
SUMMED_HALF_LR = Arm("fn3 full+odo summed, half learning rate (lr 0.05)",
                     train={**_FULL_ODO, "lr": 0.05, "spec_loss": "sum"})
#: Candidates measured beside the mean-loss default (issue 11): the default with every residual block
#: starting as its shortcut, with in-place distillation from 30% of the steps, and the tied sandwich
#: (largest + smallest + 1 draw) on the mean of its three losses.
DEFAULT_ZERO_INIT = Arm("fn3 default + zero-init residual",
                        train={**DEFAULT.train, "zero_init_residual": True})
DEFAULT_DISTILL = Arm("fn3 default + distillation from 30%",
                      train={**DEFAULT.train, "distill": True, "distill_start": 0.3})
SANDWICH_MEAN = Arm("fn3 sandwich, tied, mean loss", train={**_TIED_SANDWICH, "spec_loss": "mean"})
#: The same with each weight's gradient averaged over the specs that use it (``spec_loss="shared"``).
SANDWICH_SHARED = Arm("fn3 sandwich, tied, per-weight mean", train={**_TIED_SANDWICH, "spec_loss": "shared"})
#: The tied sandwich without its random draw: the largest and the smallest sub-model every step, two
#: passes like the default (for bits, where every member costs a full pass in training, 2/3 of the
#: sandwich's time). Intermediate members are never trained as such.
SANDWICH_CORNERS = Arm("fn3 sandwich, tied, corners only (largest + smallest)",
                       train={**_TIED_SANDWICH, "sandwich_n": 0, "spec_loss": "mean"})
#: Once-for-All's order (issue 11): the largest sub-model alone for the first half of the steps, then
#: the rule; for the default and for the tied sandwich.
DEFAULT_FULL_FIRST = Arm("fn3 default, full model alone first 50%",
                         train={**DEFAULT.train, "full_first": 0.5})
SANDWICH_FULL_FIRST = Arm("fn3 sandwich, tied, mean loss, full model alone first 50%",
                          train={**SANDWICH_MEAN.train, "full_first": 0.5})
SUMMED_RANDOM_ORDER = Arm("fn3 full+odo summed, random-order removal", kind="random-order",
                          source=SUMMED.name)
DEFAULT_RANDOM_ORDER = Arm("fn3 default, random-order removal", kind="random-order", source=DEFAULT.name)
#: What ``fn3 train``'s default (``rule="auto"``) trained a family nested in one level with before config
#: version 3: its tail-vs-random-order ablation.
SANDWICH_RANDOM_ORDER = Arm("fn3 sandwich, tied, random-order removal", kind="random-order",
                            source=SANDWICH_MEAN.name)


#: ``fn3 train``'s default from config version 3 to 4 (issue 11): ``rule="auto"`` trained a family nested
#: in one level on the tied grid (every axis at 100, 75, 50 and 25% of its units; bits 8, 6, 4, 2) every
#: step, each weight's gradient averaged over the grid members that use it; and its tail-vs-random
#: ablation. Its results were trained with ``spec_loss="auto"`` of version 3, which is ``"shared"``.
AUTO = Arm("fn3 auto (tied grid 100/75/50/25%, per-weight mean)",
           train={"rule": "auto", "dist": None, "tie": None, "spec_loss": "shared"})
AUTO_RANDOM_ORDER = Arm("fn3 auto, random-order removal", kind="random-order", source=AUTO.name)
#: ``fn3 train``'s default since config version 4 (issue 11): the same grid, the step along the members'
#: summed gradient at the length of the longest member's (``spec_loss="norm"``); and its ablation.
AUTO_NORM = Arm("fn3 auto grid, norm-matched sum", train={**AUTO.train, "spec_loss": "norm"})
#: The default with one activation clipping level per bit-width (``act_clip="per-bits"``, AdaBits'
#: switchable clipping; issue 11's 2-bit drop). Only bits experiments differ from AUTO_NORM.
AUTO_NORM_CLIP = Arm("fn3 auto grid, norm-matched sum, clip per bit-width",
                     train={**AUTO_NORM.train, "act_clip": "per-bits"})
#: The default at two specs a step (``specs_per_step=2``: the largest and the grid's other members in
#: turn): about half the passes of the grid on bits, where every member costs as much as the largest
#: (issue 11: the family's cost against the independent twins).
AUTO_NORM_HALF = Arm("fn3 auto grid, norm-matched sum, 2 specs a step",
                     train={**AUTO_NORM.train, "specs_per_step": 2})
AUTO_NORM_CLIP_HALF = Arm("fn3 auto grid, norm-matched sum, clip per bit-width, 2 specs a step",
                          train={**AUTO_NORM_CLIP.train, "specs_per_step": 2})
#: Three specs a step (the largest and two of the four other bit-widths in turn, each on half the
#: steps): 3 passes a step against the twins' 5, between the grid's 2-bit drop and two specs' cost.
AUTO_NORM_CLIP_THIRD = Arm("fn3 auto grid, norm-matched sum, clip per bit-width, 3 specs a step",
                           train={**AUTO_NORM_CLIP.train, "specs_per_step": 3})
#: 8 and 2 bits every step, 6 or 4 bits in turn on every other step (``specs_rotation="corners"``,
#: ``specs_per_step=3``): the grid's 2 bits every step and the corners sandwich's cost, with the middle
#: members trained on a quarter of the steps each; 2.5 passes a step against the twins' 5.
AUTO_NORM_CLIP_CORNERS = Arm("fn3 auto grid, norm-matched sum, clip per bit-width, corners every step, "
                             "middle every other", train={**AUTO_NORM_CLIP.train, "specs_per_step": 3,
                                                          "specs_rotation": "corners"})
#: The same with the smallest grid member (2 bits) on every other step and 6 and 4 bits in turn in the
#: other slots (``specs_rotation="smallest"``): the 2-bit drop at the two-specs cost.
AUTO_NORM_CLIP_HALF_SMALL = Arm("fn3 auto grid, norm-matched sum, clip per bit-width, 2 specs a step, "
                                "smallest every other", train={**AUTO_NORM_CLIP_HALF.train,
                                                               "specs_rotation": "smallest"})
#: The default at twice the experiments' learning rate (0.2): the norm-matched step is about as long
#: as one member's, and on the 18-epoch layers family the mean loss gained 3.6 pt at 1/3 blocks from
#: lr 0.2 ('fn3 every budget each step, lr 0.2, mean loss').
AUTO_NORM_LR2 = Arm("fn3 auto grid, norm-matched sum, lr 0.2", train={**AUTO_NORM.train, "lr": 0.2})
#: The default with in-place distillation (issue 11): once 30% of the steps are done, every grid member
#: but the largest learns the largest's soft predictions of the same batch (US-Nets, BigNAS).
AUTO_NORM_DISTILL = Arm("fn3 auto grid, norm-matched sum, distillation from 30%",
                        train={**AUTO_NORM.train, "distill": True, "distill_start": 0.3})
#: The paths default (the tied grid on the per-weight mean) with the same distillation: its smaller
#: members trail their own networks by 3.1-3.4 pt on held-out images at two of four seeds (18 epochs).
AUTO_DISTILL = Arm("fn3 auto (tied grid 100/75/50/25%, per-weight mean), distillation from 30%",
                   train={**AUTO.train, "distill": True, "distill_start": 0.3})
AUTO_NORM_CLIP_DISTILL = Arm("fn3 auto grid, norm-matched sum, clip per bit-width, distillation from 30%",
                             train={**AUTO_NORM_CLIP.train, "distill": True, "distill_start": 0.3})
#: The same, but only the smallest (2 bits) learns the 8-bit model's soft predictions; the members above
#: it keep the labels (``--distill-to smallest``): does the drop shrink without the cost above 2 bits?
#: Not here (Dec 5): it lands on the default within the noise.
AUTO_NORM_CLIP_DISTILL_SMALLEST = Arm(
    "fn3 auto grid, norm-matched sum, clip per bit-width, distillation to the smallest from 30%",
    train={**AUTO_NORM_CLIP_DISTILL.train, "distill_to": "smallest"})
AUTO_NORM_RANDOM_ORDER = Arm("fn3 auto norm, random-order removal", kind="random-order",
                             source=AUTO_NORM.name)
#: The grid with each weight's summed gradient divided by the square root of the number of members that
#: use it (``spec_loss="shared-sqrt"``): the weights only the full model uses learn at one network's
#: step (the norm-matched sum shortens them with the tensor they sit in), the weights every member
#: shares at about the norm-matched step. Asks whether the full model's lag on paths is that shortening.
AUTO_SQRT = Arm("fn3 auto grid, per-weight sum over sqrt(users)",
                train={**AUTO.train, "spec_loss": "shared-sqrt"})
#: ``fn3 train``'s default since config version 6 for a family nested in depth alone: the same grid on
#: the mean of the members' losses at twice the rate (``spec_loss="auto"``, ``lr=None``:
#: :func:`fn3.train.resolved_lr`), the rule 'fn3 every budget each step, lr 0.2, mean loss' measured
#: best at three seeds; and its ablation. Elsewhere it trains what AUTO_NORM trains.
AUTO_DEPTH = Arm("fn3 auto grid, mean loss at lr 0.2 (depth alone)",
                 train={**AUTO.train, "spec_loss": "auto", "lr": None})
#: The depth default's rule (the grid on the mean of the members' losses at twice the rate) on any
#: family, and ``fn3 train``'s default for a family nested in channels alone since config version 9:
#: on channels at 18 epochs the norm-matched sum's full model lagged its network alone by 1.3-1.7 pt
#: on held-out images (issue 11); and its random-order ablation.
AUTO_MEAN_LR2 = Arm("fn3 auto grid, mean loss at lr 0.2",
                    train={**AUTO.train, "spec_loss": "mean", "lr": 0.2})
AUTO_MEAN_LR2_RANDOM_ORDER = Arm("fn3 auto mean lr 0.2, random-order removal", kind="random-order",
                                 source=AUTO_MEAN_LR2.name)
AUTO_DEPTH_RANDOM_ORDER = Arm("fn3 auto mean, random-order removal", kind="random-order",
                              source=AUTO_DEPTH.name)


def paths_lr(lr: float) -> Arm:
    """The paths default (:data:`AUTO`: the grid on the per-weight mean) at a peak rate of ``lr``
    instead of 0.1. Issue 11: at 18 epochs its full model trails its own network by 2.35 / 2.91 pt
    at seeds 2 / 3 and is level at 36: is the nested family slower only because each shared weight
    steps along the mean of its users' gradients, shorter than any one of them? (The mean loss at lr
    0.2 doubled the step on the shared weights but cut it on the full model's own paths.)"""
    return Arm(f"{AUTO.name} at lr {lr:g}", train={**AUTO.train, "lr": lr})


def weight_range(k: float, rule: Arm | None = None) -> Arm:
    """``rule`` (the bits grid with a clipping level per bit-width, :data:`AUTO_NORM_CLIP`, unless
    given) with each weight channel quantized on the range ``min(max|w|, k * rms)`` (``weight_clip=k``,
    :func:`fn3.nn.base.set_weight_clip`): at ``max|w|`` the 2-bit cells split at half the largest
    weight, and nearly every weight falls in the two inner cells (issue 11's 2-bit drop). With
    :data:`AUTO_NORM_CLIP_CORNERS` or :data:`AUTO_NORM_CLIP_HALF`: does the range carry the cheaper
    rotations to the grid's accuracy at half the twins' cost (issue 11's cost target)?"""
    rule = rule or AUTO_NORM_CLIP
    return Arm(f"{rule.name}, weight range {k:g} rms", train={**rule.train, "weight_clip": k})


def weight_range_twins(k: float, label: str = "bit-width") -> Arm:
    """The networks trained alone (one per budget, rule ``fixed``) on the weight range of
    :func:`weight_range`: does the range help a network trained alone too? (Issue 11: not on
    experiment 5, so the twins every arm is held against stay those on the largest magnitude.)"""
    return Arm(f"independent (one per {label}), weight range {k:g} rms", kind="independent",
               train={"weight_clip": k})


def every_budget(budgets: tuple[Budget, ...], spec_loss: str = "mean", lr: float | None = None,
                 distill_start: float | None = None, per_step: int = 0, rotation: str = "even",
                 distill_to: str = "all") -> Arm:
    """``rule="specs"``: the largest and each of the experiment's budgets at every step (Slimmable
    Networks, Any-Precision), on the mean or the sum of their losses (issue 11); ``lr`` other than the
    experiment's 0.1 when given; in-place distillation from the largest after ``distill_start`` of
    the steps when given (Any-Precision's soft labels). ``per_step`` and ``rotation``: fewer
    members a step (``specs_per_step``, ``specs_rotation``), for about half the twins' cost on a
    depth family: ``per_step=2`` the largest and one other in turn (every member on a quarter of the
    steps of a five-depth family), ``per_step=3, rotation="corners"`` the largest and the smallest
    every step, the others in turn on every other step (2.5 passes a step); ``per_step=4,
    rotation="ends"`` the largest and the smallest every step and two others in turn (on five
    depths: each of 4/3/2 blocks on two steps of three, as many blocks a step as the grid 5/4/2/1)."""
    loss = {"mean": "mean loss", "sum": "summed losses", "shared": "per-weight mean"}[spec_loss]
    train = {"rule": "specs", "train_specs": tuple(b.spec for b in budgets), "spec_loss": spec_loss}
    name = "fn3 every budget each step"
    if per_step:
        train |= {"specs_per_step": per_step, "specs_rotation": rotation}
        name = {"corners": "fn3 every budget, corners every step, middle every other",
                "ends": f"fn3 every budget, corners and {per_step - 2} in turn every step"}.get(
                    rotation, f"fn3 every budget, {per_step} specs a step")
        if rotation not in ("even", "corners", "ends"):
            name += f", {rotation}"
    if lr is not None:
        train["lr"] = lr
        name += f", lr {lr:g}"
    if distill_start is not None:
        train |= {"distill": True, "distill_start": distill_start}
        to = "" if distill_to == "all" else f" to the {distill_to}"
        if to:
            train["distill_to"] = distill_to
        name += f", distillation{to} from {distill_start:.0%}"
    return Arm(f"{name}, {loss}", train=train)


#: The other steps the 18-epoch ResNet-32 run tries the ends rotation at (the mean loss's lr 0.2 was
#: set on ResNet-20 at 6 epochs): exp3_layers.py trains them, heldout.py scores them.
LR_CANDIDATES = (0.3, 0.4, 0.15, 0.1)


def ends_rotation(budgets: tuple[Budget, ...], lr: float = 0.2, distill_start: float | None = None,
                  distill_to: str = "all", per_step: int = 4) -> Arm:
    """:func:`every_budget` in the ends rotation at ``per_step`` specs a step (4 at lr 0.2: fn3 train's
    default for a family nested in depth alone whose grid leaves depths out in config version 10; 3 at
    lr 0.15, the largest, the smallest and one other in turn, since version 11), on the mean loss at
    ``lr``, and its variants (another ``lr``, in-place distillation) where an experiment runs them."""
    return every_budget(budgets, lr=lr, per_step=per_step, rotation="ends", distill_start=distill_start,
                        distill_to=distill_to)


@dataclass(frozen=True)
class Experiment:
    """Everything every arm shares, plus the arms.

    ``base`` is the full-mode config; ``quick`` its overrides for ``--quick`` (tiny subset, 1 epoch).
    ``test_limit`` caps the test images per class (``None``: the whole test split).
    """

    key: str  # file name of the JSON: "exp1_neurons"
    title: str
    level: str  # the nesting level(s) studied, e.g. "neurons"
    x_label: str
    budgets: tuple[Budget, ...]
    arms: tuple[Arm, ...]
    base: TrainConfig
    quick: Mapping[str, Any] = field(default_factory=dict)
    test_limit: int | None = None
    quick_test_limit: int = 5
    notes: str = ""

    def __post_init__(self) -> None:
        # Every arm names what it trains. fn3 train's rotation "auto" (config version 10-11) lists every
        # depth of a ResNet-32 in the ends rotation, which would turn the "fn3 auto grid" arms into
        # the arm that names that rotation: pinned to the grid they measured ("even").
        if self.base.specs_rotation == "auto":
            object.__setattr__(self, "base", self.base.replace(specs_rotation="even"))
        # fn3 train's unset weight range is 3 rms on a family nested in bits alone since config version
        # 12: pinned to the largest magnitude every arm before it trained on (the weight-range arms
        # name theirs).
        if self.base.weight_clip is None:
            object.__setattr__(self, "base", self.base.replace(weight_clip=0.0))

    def config(self, quick: bool) -> TrainConfig:
        cfg = self.base.replace(eval_specs=())  # the runner evaluates; no per-epoch validation
        return cfg.replace(**self.quick) if quick else cfg


@dataclass
class Context:
    """What the arms of one experiment share at run time (data, batches, paths)."""

    exp: Experiment
    cfg: TrainConfig  # the resolved base config (mean/std filled)
    train: ImageDataset
    val: ImageDataset | None
    test: ImageDataset
    runs_dir: Path
    quick: bool
    results: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict)  # test / calibration batches, built once


def main(experiments: Sequence[Experiment], argv: Sequence[str] | None = None, *,
         script: str | None = None) -> list[Path]:
    """Command-line entry of every experiment script; returns the JSON files written.

    ``argv`` defaults to ``sys.argv[1:]``; ``script`` (the experiment script's ``__file__``) names the
    command recorded in the results.
    """
    p = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seconds: tiny subset, 1 epoch, tiny model")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where the JSON goes (default benchmarks/results, or .../quick with --quick)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="run directories with checkpoints (default <results-dir>/runs)")
    p.add_argument("--only", nargs="*", default=None, help="run only these experiment keys")
    p.add_argument("--arms", nargs="*", default=None,
                   help="run only the arms whose name starts with one of these (the others are skipped)")
    p.add_argument("--seed", type=int, default=None,
                   help="train every arm at this seed instead of the experiment's (0): a second seed's "
                        "results go to benchmarks/results/seed<N> unless --results-dir says otherwise, "
                        "never into the page's")
    p.add_argument("--rerun", action="store_true",
                   help="evaluate the selected arms again even when the results hold them (training "
                        "only where their run directory has no final model), e.g. to add a BN "
                        "protocol; the training seeds make a retrained arm the same model")
    args = p.parse_args(list(argv) if argv is not None else None)
    keys = [exp.key for exp in experiments]
    unknown = [k for k in args.only or () if k not in keys]
    if unknown:
        p.error(f"--only {unknown[0]!r} is not an experiment of this script; expected one of "
                f"{', '.join(keys)}")
    wanted = set(args.only or keys)
    chosen = [exp for exp in experiments if exp.key in wanted]
    names = sorted({arm.name for exp in chosen for arm in exp.arms})
    for a in args.arms or ():  # a filter that matches nothing would silently run nothing
        if not any(n.startswith(a) for n in names):
            p.error(f"--arms {a!r} names no arm of {', '.join(exp.key for exp in chosen)}; its arms are: "
                    + "; ".join(names))
    experiments, default_dir = at_seed(experiments, args.seed, args.quick)
    results_dir = args.results_dir or default_dir
    runs_dir = args.runs_dir or results_dir / "runs"
    cmd = _command(Path(script or sys.argv[0]), list(argv) if argv is not None else sys.argv[1:])
    threads = torch.get_num_threads()
    # One thread unless OMP_NUM_THREADS says otherwise: wall times comparable between arms and runs.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        return [run_experiment(exp, results_dir, runs_dir, quick=args.quick, command=cmd,
                               arms=args.arms, rerun=args.rerun)
                for exp in experiments if exp.key in wanted]
    finally:
        torch.set_num_threads(threads)


def _command(script: Path, argv: list[str]) -> str:
    try:
        rel = script.resolve().relative_to(ROOT)
    except ValueError:
        rel = script
    return "python " + " ".join(shlex.quote(a) for a in [str(rel), *argv])


def experiment_data(
    exp: Experiment, quick: bool
) -> tuple[TrainConfig, ImageDataset, ImageDataset | None, ImageDataset]:
    """``(cfg, train, val, test)`` every arm of ``exp`` shares: the config with the training split's
    normalisation filled in, the training and validation splits (``val`` is ``None`` without one) and
    the test subset."""
    cfg = exp.config(quick)
    full = load_dataset(cfg.data, "train", cfg.data_dir, limit=cfg.limit)
    if cfg.val_fraction > 0:
        train, val = train_val_split(full, cfg.val_fraction, cfg.seed)
    else:
        train, val = full, None
    mean, std = channel_stats(train)
    cfg = cfg.replace(mean=mean, std=std)
    test_limit = exp.quick_test_limit if quick else exp.test_limit
    return cfg, train, val, load_dataset(cfg.data, "test", cfg.data_dir, limit=test_limit)


def run_experiment(exp: Experiment, results_dir: Path, runs_dir: Path, *, quick: bool,
                   command: str, arms: Sequence[str] | None = None, rerun: bool = False) -> Path:
    """Train and evaluate every arm not yet in ``results_dir/<key>.json`` (only those whose name
    is, or else starts with, one of ``arms`` when given; with ``rerun`` also those it holds,
    replaced); returns that path."""
    import arms as arm_impl  # the training/evaluation of each kind (same folder)

    cfg, train, val, test = experiment_data(exp, quick)
    test_limit = exp.quick_test_limit if quick else exp.test_limit
    path = results_dir / f"{exp.key}.json"
    settings = {
        "train": cfg.to_dict(),
        "train_images": len(train),
        "val_images": len(val) if val is not None else 0,
        "test_images": len(test),
        "test_limit_per_class": test_limit,
        "image_shape": list(train.image_shape),
    }
    results = _load_or_new(path, exp, settings, quick, command)
    ctx = Context(exp, cfg, train, val, test, runs_dir / exp.key, quick, results)
    mine: set[str] = set()  # arms this process (re)ran: the file's version of any other wins
    # A given name that is an arm's whole name selects that arm alone (one arm's name can be the
    # start of another's); any other is a prefix.
    exact = {a for a in arms or () if a in {arm.name for arm in exp.arms}}
    prefixes = tuple(a for a in arms or () if a not in exact)
    for arm in exp.arms:
        if arms is not None and not (arm.name in exact or arm.name.startswith(prefixes)):
            continue
        if arm.name in results["arms"] and not rerun:
            print(f"[{exp.key}] {arm.name}: done already (in {path.name}), skipped", flush=True)
            continue
        print(f"[{exp.key}] {arm.name}: training/evaluating", flush=True)
        entry = arm_impl.run_arm(ctx, arm)
        entry.update(kind=arm.kind, train=dict(arm.train), commit=git_commit(),
                     finished_at=_now())
        if arm.name in results["arms"]:
            old = results["arms"][arm.name]
            _report_changes(exp.key, arm.name, old, entry)
            entry["earlier_runs"] = earlier_runs(old)
        if path.is_file():  # another process may have added or re-run arms since we read it
            for name, other in json.loads(path.read_text())["arms"].items():
                if name not in mine:
                    results["arms"][name] = other
        mine.add(arm.name)
        results["arms"][arm.name] = entry
        results["updated_at"] = _now()
        write_json(path, results)
        print(f"[{exp.key}] {arm.name}: {_summary(entry)}", flush=True)
    return path


def earlier_runs(old: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The timings of an arm's earlier runs and of ``old`` itself, kept when the arm is re-run: its
    training cost is then the smallest CPU time measured (a busier machine only adds time)."""
    keep = ("cpu_time_s", "wall_time_s", "commit", "finished_at")
    mine = [{k: old[k] for k in keep if k in old}] if old.get("cpu_time_s") else []
    return [*old.get("earlier_runs", []), *mine]


def _report_changes(key: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Print the accuracies a re-run arm changed (a retrained arm should be the same model)."""
    for mode, accs in old.get("accuracy", {}).items():
        for label, v in accs.items():
            w = new.get("accuracy", {}).get(mode, {}).get(label)
            if w is not None and abs(w - v) > 1e-9:
                print(f"[{key}] {name}: {mode} {label} was {v * 100:.2f}, now {w * 100:.2f}", flush=True)


def _summary(entry: Mapping[str, Any]) -> str:
    acc = entry.get("accuracy", {})
    mode = arm_mode(entry)
    parts = [f"{k} {v * 100:.2f}" for k, v in acc.get(mode, {}).items()]
    return f"{entry.get('wall_time_s', 0):.0f} s train; test % ({mode}): " + ", ".join(parts)


def cifar_config(model: str, levels: tuple[str, ...], limit: int = 500) -> TrainConfig:
    """The CIFAR-10 (JPEG copy) setup of experiments 2-5: ``limit`` images per class, 6 epochs, SGD."""
    # rule/dist/tie as they were when the first results were written (fn3's defaults then): every
    # arm names its own rule, and the stored settings of earlier runs still match.
    return TrainConfig(model=model, levels=levels, data="cifar10", data_dir=str(DATA / "cifar10-jpeg"),
                       limit=limit, val_fraction=0.0, epochs=6, batch_size=128, optimizer="sgd", lr=0.1,
                       weight_decay=5e-4, seed=0, recalibrate_batches=10, rule="odo",
                       dist="geometric", tie="none", spec_loss="mean")


#: Defaults of fields that changed since they were added (``tie`` was ``"none"`` before issue 11 made
#: it depend on the rule, ``spec_loss`` ``"mean"`` before config version 3): a result file written
#: before such a field existed matches either value.
_FORMER: dict[str, Any] = {"tie": "none", "spec_loss": "mean", "specs_rotation": "even"}


def at_seed(experiments: Sequence[Experiment], seed: int | None,
            quick: bool = False) -> tuple[list[Experiment], Path]:
    """``experiments`` with every arm trained at ``seed`` (``None``: their own), and where their
    results go by default: ``benchmarks/results``, ``.../seed<N>`` for another seed, ``quick`` below
    either for ``--quick`` runs (the runner's ``--seed``; ``heldout.py --seed`` reads the same)."""
    if seed is not None:
        experiments = [dataclasses.replace(e, base=e.base.replace(seed=seed)) for e in experiments]
    folder = RESULTS / f"seed{seed}" if seed is not None else RESULTS
    return list(experiments), folder / "quick" if quick else folder


def _as_old(settings: dict[str, Any], old: Any) -> dict[str, Any]:
    """``settings`` without the train-config fields added to fn3 after ``old`` was written, when they
    hold their default (so an older result file still matches and can be resumed or extended)."""
    if not (isinstance(old, dict) and isinstance(old.get("train"), dict)):
        return settings
    defaults = TrainConfig().to_dict()
    train = {k: v for k, v in settings["train"].items()
             if k in old["train"] or k not in defaults or v not in (defaults[k], _FORMER.get(k))}
    # versions 2-4 only added or changed spec_loss and grid, version 5 added act_clip, version 6 let
    # lr be None and auto's loss depend on the levels (every arm names the loss and rate it changes),
    # version 7 gave AdamW its own unset rate (every arm here trains with SGD), version 8 changed what
    # spec_loss="auto" trains on a family nested in paths alone (every paths arm names its loss:
    # tests/benchmarks check), version 9 what "auto", and "mean" at an unset rate, train on a family
    # nested in channels alone (arms there leave both unset: a channels file of 7 or 8 stays apart),
    # version 10 added specs_rotation="auto" (every experiment pins "even", what version 9 trained),
    # version 11 changed what "auto" trains (pinned all the same), version 12 what an unset weight_clip
    # trains on bits alone (every experiment pins 0, what version 11 read an unset one as)
    version = old["train"].get("version")
    levels = tuple(settings["train"].get("levels") or ())
    if version in (1, 2, 3, 4, 5, 6, 9, 10, 11) or (version in (7, 8) and levels != ("channels",)):
        train["version"] = version
    if version in range(1, 12) and old["train"].get("weight_clip") is None and train.get("weight_clip") == 0:
        if "weight_clip" in old["train"]:  # written when unset meant the largest magnitude everywhere
            train["weight_clip"] = None
        else:  # written before the field
            train.pop("weight_clip", None)
    return {**settings, "train": train}


def setting_difference(ours: Any, theirs: Any, labels: tuple[str, str] = ("here", "in the file"),
                       where: str = "") -> str:
    """The first setting where ``ours`` and ``theirs`` (nested dicts of JSON values) differ, as text:
    ``train.seed: 2 here, 1 in the file`` (``None`` for a key one side lacks; ``labels`` name the
    two sides)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            if ours.get(key) != theirs.get(key):
                return setting_difference(ours.get(key), theirs.get(key), labels,
                                          f"{where}.{key}" if where else key)
    return f"{where or 'settings'}: {ours!r} {labels[0]}, {theirs!r} {labels[1]}"


def _load_or_new(path: Path, exp: Experiment, settings: dict[str, Any], quick: bool,
                 command: str) -> dict[str, Any]:
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("format") != RESULT_FORMAT or data.get("version") != RESULT_VERSION:
            raise ConfigError(f"{path} is not a {RESULT_FORMAT} v{RESULT_VERSION} file; move it away")
        ours = _as_old(json.loads(json.dumps(settings)), data.get("settings"))
        if data.get("settings") != ours:
            theirs = data.get("settings")
            raise ConfigError(f"{path} was run with other settings ({setting_difference(ours, theirs)}); "
                              "delete it (and its runs) to rerun, or give another --results-dir")
        if command not in data["commands"]:
            data["commands"].append(command)  # a resumed run may be started by another command
        # The notes are the script's commentary on the results, edited as arms are added: the file
        # takes the script's current text whenever it is written again.
        data["notes"] = exp.notes
        return data
    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "experiment": exp.key,
        "title": exp.title,
        "level": exp.level,
        "x_label": exp.x_label,
        "notes": exp.notes,
        "quick": quick,
        "commands": [command],
        "commit": git_commit(),
        "machine": machine_info(),
        "started_at": _now(),
        "updated_at": _now(),
        "settings": settings,
        "budgets": [{"label": b.label, "x": b.x, "spec": b.spec} for b in exp.budgets],
        "arms": {},
    }


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, torch version, threads and load: enough to judge wall times."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_start": load,
    }


def git_commit() -> str:
    """``git rev-parse HEAD`` of the repository (``+dirty`` is not tracked: others edit the tree)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic write: a temp file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
