"""Experiment 1, FN3-neuron: MNIST, MLP 784-512-256-10, nested neurons (100/50/25/12.5/6.25%).

Arms (same data, model, epochs, optimizer, seed): fn3 ODO geometric and uniform; one independently
trained MLP per width (rule ``fixed``); US-Nets-style sandwich rule with in-place distillation; the
ODO (geometric) model with neurons removed in random order instead of from the tail. The MLP has no
BatchNorm, so there is no BN re-estimation here.

    python benchmarks/repro/exp1_neurons.py            # full: 60,000 images, 20 epochs (~20 min)
    python benchmarks/repro/exp1_neurons.py --quick    # seconds
"""

from __future__ import annotations

from runner import DATA, ODO_GEOMETRIC, ODO_UNIFORM, RANDOM_ORDER, SANDWICH, Arm, Budget, Experiment, main

from fn3.config import TrainConfig

WIDTHS = (1.0, 0.5, 0.25, 0.125, 0.0625)


def experiment() -> Experiment:
    budgets = tuple(Budget(f"{w * 100:g}%", w, f"neurons={w}") for w in WIDTHS)
    base = TrainConfig(model="mlp", levels=("neurons",), model_kwargs={"hidden": [512, 256]},
                       data="mnist", data_dir=str(DATA / "mnist"), val_fraction=0.0, epochs=20,
                       batch_size=128, optimizer="sgd", lr=0.05, weight_decay=5e-4, seed=0,
                       recalibrate_batches=0, rule="odo", dist="geometric", tie="none")
    arms = (
        ODO_GEOMETRIC,
        ODO_UNIFORM,
        Arm("independent (one per width)", kind="independent"),
        SANDWICH,
        RANDOM_ORDER,
    )
    return Experiment(
        key="exp1_neurons", title="FN3-neuron: MNIST, MLP 784-512-256-10", level="neurons",
        x_label="hidden neurons kept (fraction)", budgets=budgets, arms=arms, base=base,
        quick={"limit": 20, "epochs": 1, "batch_size": 64, "model_kwargs": {"hidden": [64, 32]}},
        test_limit=None,
        notes="Both hidden layers keep the same fraction. Full MNIST training set, full test set.")


def experiments() -> list[Experiment]:
    """Every experiment this script runs (its ``--only`` choices)."""
    return [experiment()]


if __name__ == "__main__":
    main(experiments(), script=__file__)
