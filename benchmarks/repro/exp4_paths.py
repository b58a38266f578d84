"""Experiment 4, FN3-path: CIFAR-10 (JPEG copy), small ResNeXt (3 stages x 2 blocks, 8 paths each).

Budgets: 100/75/50/25/12.5% of the parallel paths of every block. Arms (same data subset, model,
epochs, optimizer, seed): fn3 ODO geometric and uniform; one independently trained ResNeXt per path
count (rule ``fixed``); the ODO (geometric) model with paths removed in random order. With and
without BN re-estimation.

CPU budget: 500 training images per class (5,000), 6 epochs, 200 test images per class (2,000).

    python benchmarks/repro/exp4_paths.py            # full
    python benchmarks/repro/exp4_paths.py --quick    # seconds
"""

from __future__ import annotations

from runner import (
    AUTO,
    AUTO_NORM,
    AUTO_NORM_RANDOM_ORDER,
    AUTO_RANDOM_ORDER,
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
        quick=quick, test_limit=200, notes="Every block keeps the same fraction of its 8 paths.")


def experiments() -> list[Experiment]:
    """Every experiment this script runs (its ``--only`` choices)."""
    return [experiment()]


if __name__ == "__main__":
    main(experiments(), script=__file__)
