"""Experiment 4, FN3-path: CIFAR-10 (JPEG copy), small ResNeXt (3 stages x 2 blocks, 8 paths each).

Budgets: 100/75/50/25/12.5% of the parallel paths of every block. Arms (same data subset, model,
epochs, optimizer, seed): fn3 ODO geometric and uniform; one independently trained ResNeXt per path
count (rule ``fixed``); the ODO (geometric) model with paths removed in random order. With and
without BN re-estimation.

CPU budget: 500 training images per class (5,000), 6 epochs, 200 test images per class (2,000).

    python benchmarks/repro/exp4_paths.py --only exp4_paths        # full
    python benchmarks/repro/exp4_paths.py --only exp4_paths_18ep   # the same for 18 epochs
    python benchmarks/repro/exp4_paths.py --only exp4_paths_36ep   # 36 epochs: twins and two losses
    python benchmarks/repro/exp4_paths.py --quick    # seconds
"""

from __future__ import annotations

from runner import (
    AUTO,
    AUTO_DISTILL,
    AUTO_MEAN_LR2,
    AUTO_MEAN_LR2_RANDOM_ORDER,
    AUTO_NORM,
    AUTO_NORM_HALF,
    AUTO_NORM_RANDOM_ORDER,
    AUTO_RANDOM_ORDER,
    AUTO_SQRT,
    CIFAR_QUICK,
    DEFAULT,
    DEFAULT_RANDOM_ORDER,
    ODO_GEOMETRIC,
    ODO_UNIFORM,
    RANDOM_ORDER,
    SANDWICH_MEAN,
    SANDWICH_RANDOM_ORDER,
    TIED,
    Arm,
    Budget,
    Experiment,
    cifar_config,
    every_budget,
    main,
    paths_lr,
)

FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.125)


def experiment() -> Experiment:
    budgets = tuple(Budget(f"{f * 100:g}%", f, f"paths={f}") for f in FRACTIONS)
    base = cifar_config("resnext_tiny", ("paths",))
    arms = (
        ODO_GEOMETRIC,
        ODO_UNIFORM,
        Arm("independent (one per path count)", kind="independent"),
        RANDOM_ORDER,
        TIED,  # one draw per kind (an fn3 option; the paper draws each axis alone)
        DEFAULT,  # fn3 train's default: full+odo, the step on the mean of the two losses
        DEFAULT_RANDOM_ORDER,
        SANDWICH_MEAN,  # a candidate: the fewest paths trained at every step too (issue 11)
        SANDWICH_RANDOM_ORDER,  # the default (rule auto) on one level: tail vs random order
        every_budget(budgets),  # every budget each step (Slimmable Networks, Any-Precision)
        every_budget(budgets, "sum"),
        every_budget(budgets, lr=0.2),  # the mean of the losses at twice the step
        every_budget(budgets, "shared"),  # each weight's gradient averaged over the specs using it
        AUTO,  # fn3 train's default in config version 3: the tied grid, per-weight mean
        AUTO_RANDOM_ORDER,
        AUTO_NORM,  # fn3 train's default since config version 4: the grid, norm-matched sum
        AUTO_NORM_RANDOM_ORDER,
    )
    quick = {**CIFAR_QUICK, "model_kwargs": {"widths": [16, 32, 64]}}
    return Experiment(
        key="exp4_paths", title="FN3-path: CIFAR-10, ResNeXt (tiny)", level="paths",
        x_label="paths kept (fraction of every block)", budgets=budgets, arms=arms, base=base,
        quick=quick, test_limit=200,
        notes="Every block keeps the same fraction of its 8 paths. At a second seed (Dec 7, the "
              "table of other seeds) fn3's default (the per-weight mean, config version 8) and its "
              "networks alone: 42.35 / 41.15 / 42.00 / 40.10 / 36.75% against 45.30 / 43.90 / 43.85 / "
              "42.60 / 38.90%, on the held-out images (`heldout.py --seed 1`) -2.17 / -1.30 / -3.06 / "
              "-2.49 / -1.53 pt: both targets missed at 6 epochs at both seeds.")


def longer(epochs: int = 18) -> Experiment:
    """The gap to independent training against the training length: the same setup for ``epochs``
    (18 or 36) instead of 6, with the independent networks and fn3's default on one level in config
    versions 3 (per-weight mean) and 4 (norm-matched sum); at 18 epochs also each with its
    random-order ablation, two specs a step, the per-weight sum over sqrt(users), and the channels and
    depth default (the mean loss at lr 0.2) with its random-order ablation.

    Run with ``--only exp4_paths_18ep`` (about 100 minutes on 2 cores, two arms at a time) or
    ``--only exp4_paths_36ep`` (about 75 minutes an arm, three at a time on 2 cores).
    """
    short = experiment()
    names = ["independent (one per path count)", AUTO.name, AUTO_NORM.name]
    extra: tuple[Arm, ...] = ()
    if epochs == 18:  # the two losses against the twins, and the candidates tried beside them
        names += [AUTO_RANDOM_ORDER.name, AUTO_NORM_RANDOM_ORDER.name]
        # AUTO_NORM_HALF: 0.38x of the twins' cost; AUTO_MEAN_LR2: the channels and depth default
        # AUTO_DISTILL: soft labels from the full model once 30% is done, for the smaller members
        extra = (AUTO_NORM_HALF, AUTO_SQRT, AUTO_MEAN_LR2, AUTO_MEAN_LR2_RANDOM_ORDER, AUTO_DISTILL)
        extra += (paths_lr(0.15), paths_lr(0.2))  # the per-weight mean at a longer step
    arms = tuple(a for a in short.arms if a.name in names) + extra
    return Experiment(
        key=f"exp4_paths_{epochs}ep", title=f"FN3-path, {epochs} epochs: CIFAR-10, ResNeXt (tiny)",
        level="paths", x_label=short.x_label, budgets=short.budgets, arms=arms,
        base=short.base.replace(epochs=epochs), quick=short.quick, test_limit=200,
        notes=NOTES.get(epochs, ""))


#: Each longer experiment's commentary on its results (rendered on the reproduction page), by epochs.
NOTES: dict[int, str] = {
    18: ("Experiment 4 with 18 epochs instead of 6: does the gap shrink with training length? "
         "The arm '2 specs a step' (--specs-per-step 2, Dec 4: the full model and one other grid "
         "member in turn) costs 0.38-0.49x of the twins' CPU time (benchmarks/family_cost.py) but "
         "trails them by 1.1-5.25 pt, and the grid by 0.35-5.0 pt: on paths, half the cost does not "
         "come free. The norm-matched sum (the default until config version 8) trails the "
         "networks trained alone at every seed run (Dec 5: seeds 1-3, twins retrained at each): its "
         "worst gap here is 3.15 / 2.55 / 3.60 / 4.25 pt at seeds 0 / 1 / 2 / 3 (the full model "
         "3.15 / 2.55 / 2.20 / 4.25), and on the 8,000 test images this page does not use 0.26 / "
         "1.54 / 4.63 / 4.30 pt (2 s.e. about 1 pt; benchmarks/heldout.md, heldout_seed1.md to "
         "heldout_seed3.md, `python benchmarks/repro/heldout.py --seed N`). The arm 'per-weight sum "
         "over sqrt(users)' (--spec-loss shared-sqrt, Dec 5, seed 1) asked whether the full model's "
         "lag is the norm-matched sum shortening the weights only it uses: it gives them one "
         "network's step, and every member ends 3.6-5.95 pt below the norm-matched sum (50.70 / "
         "51.10 / 49.80 / 47.60 / 45.00%): no. The per-weight mean (--spec-loss shared; the default "
         "of config version 3, and for a family nested in paths alone again since version 8): worst "
         "gap here 1.20 / 2.00 / 3.40 / 4.20 pt at seeds 0-3, full model 1.15 / 0.45 / 1.30 / 2.10 "
         "below, nearer its own networks than the norm-matched sum at every seed (at seed 3 by 0.05 "
         "pt); on the held-out images worst 0.27 / 1.79 / 3.12 / 3.35, its full model ahead of the "
         "norm-matched sum's at every seed (by 0.74 / 0.52 / 0.76 / 1.39 pt; at seed 3 beyond 2 "
         "s.e.). Seed 3 was run after the choice, as its check. Neither loss meets issue 11's "
         "targets at seeds 2 and 3 at 18 epochs; at 36 epochs the per-weight mean does on the page "
         "at seeds 0-2 (below). "
         "The arm 'mean loss at lr 0.2' (Dec 5, seeds 2 and 3, where the per-weight mean misses) "
         "asked whether the rule that closed the gap on channels and depth closes it here: it "
         "does not. Every member but 12.5% ends below the per-weight mean, its full model by 4.15 / "
         "1.75 pt (53.35 / 56.55% against 57.50 / 58.30%), its worst gap 6.45 / 4.25 pt (25%) "
         "against 3.40 / 4.20; on the held-out images at seed 3 its worst gap is -3.81 pt (the "
         "full model, 57.50 against 58.40% for the per-weight mean; heldout_seed3.md) against "
         "-3.35. A step twice as long on the weights every member shares does not help on paths, "
         "as at 6 epochs. The arm 'distillation from 30%' (--distill --distill-start 0.3 on the "
         "per-weight mean, Dec 5, seeds 2 and 3: every member but the full model learns the full "
         "model's soft predictions once 30% of the steps are done, as US-Nets do) asked whether "
         "soft labels close the smaller members' gap: they widen every gap. Every member ends 2.1-"
         "5.7 pt below the per-weight mean (52.80 / 51.40 / 49.65 / 49.10 / 46.90% and 54.10 / "
         "53.15 / 51.65 / 47.70 / 45.90% at seeds 2 / 3), the full model too (by 4.7 / 4.2 pt, "
         "though it keeps the labels): its worst gap to its own networks is 9.0 / 7.85 pt; on the "
         "held-out images at seed 3 every member is 2.8-4.3 pt below the per-weight mean (2 s.e. "
         "about 0.85; heldout_seed3.md; seed 2's per-weight mean and twins were not kept). "
         "The arms 'at lr 0.15' and 'at lr 0.2' (Dec 7, seed 3, the twins retrained beside them, "
         "bit-identically) asked whether the per-weight mean only lags because each shared weight "
         "steps along the mean of its users' gradients, shorter than any one of them, so that a "
         "longer step on every weight would catch the twins up by 18 epochs as 36 epochs do: it "
         "does not. On the page 58.30 / 57.30 / 55.15 / 51.95 / 48.10% at lr 0.15 and 58.80 / "
         "56.50 / 56.40 / 51.70 / 48.45% at lr 0.2, against the per-weight mean's 58.30 / 58.85 / "
         "56.70 / 51.35 / 48.65%; on the held-out images the gap to the twins is -3.35 / -1.68 / "
         "-3.26 / -2.64 / -1.96 pt at lr 0.15 and -2.61 / -1.29 / -2.50 / -4.01 / -0.35 at lr 0.2, "
         "against the per-weight mean's -2.91 / -1.35 / -3.35 / -2.30 / -0.19 (2 s.e. about 1 pt; "
         "heldout_seed3.md): the same misses within the noise, neither target met."),
    36: ("Experiment 4 with 36 epochs instead of 6 (twice the 18-epoch budget): does the default's "
         "gap to the networks trained alone, missed at 18 epochs at every seed, shrink with "
         "training length? Three arms, one seed (Dec 5): the twins, the norm-matched sum (the "
         "default until config version 8) and the per-weight mean (the lead of the 18-epoch runs). "
         "It does: the norm-matched sum ends within 2.35 pt of the "
         "twins here (its full model; +1.30 to -1.80 pt at the others) and within 1.34 pt on the "
         "8,000 test images this page does not use (the full model; the others 0.19-0.59 pt above "
         "their twins; 2 s.e. about 0.95 pt; benchmarks/heldout.md), against 3.15 and 0.26-4.63 pt "
         "at 18 epochs. The per-weight mean (--spec-loss shared) meets both of issue 11's targets "
         "here (worst -0.95 pt, full model -0.15) and on the held-out images (worst -0.76 pt, its "
         "full model). Its full model is ahead of the norm-matched sum's on the held-out images in "
         "all five paths runs (18 epochs seeds 0-3, 36 epochs: 0.74 / 0.52 / 0.76 / 1.39 / 0.58 "
         "pt), while the smaller members go either way (the norm-matched sum 1.95 pt ahead at 12.5% "
         "at 18 epochs seed 0, 1.5 pt behind at 50% at seed 2): since config version 8 the "
         "per-weight mean is fn3's default for a family nested in paths alone, and its rows here "
         "are marked as the default's. At a second seed (Dec 5, seed 1, trained after that choice: "
         "the twins and the per-weight mean only) it meets both targets again: worst gap -1.00 pt "
         "(25%), full model +0.20 (65.05 against 64.85%); on the held-out images worst -1.69 "
         "(25%), full model +0.19 (heldout_seed1.md). At seed 2, where the 18-epoch per-weight mean "
         "missed by 1.4 pt (Dec 5, the twins and the per-weight mean): worst gap -1.75 pt (75%), full "
         "model -0.10 on the page, both targets met; on the held-out images the full model is "
         "within 0.79 pt but the 25% member trails by 2.66 (2 s.e. 1.03; heldout_seed2.md), the "
         "2 pt target missed there."),
}


def experiments() -> list[Experiment]:
    """Every experiment this script runs (its ``--only`` choices)."""
    return [experiment(), longer(), longer(36)]


if __name__ == "__main__":
    main(experiments(), script=__file__)
