"""Experiment 2, FN3-channel: CIFAR-10 (JPEG copy), ResNet-20, nested channels (100/75/50/25%).

Arms (same data subset, model, epochs, optimizer, seed): fn3 ODO geometric and uniform; one
independently trained ResNet-20 per width (rule ``fixed``); US-Nets-style sandwich rule with in-place
distillation; the ODO (geometric) model with channels removed in random order instead of from the
tail; and an fn3 option beyond the paper, one ordered-dropout draw per kind (``tie="kind"``), run
after the others to test where the gap to the independent models comes from. Every budget is evaluated
with the shared BatchNorm statistics and with statistics re-estimated for that sub-model.

CPU budget: 1,000 training images per class (10,000), 6 epochs, 200 test images per class (2,000).

    python benchmarks/repro/exp2_channels.py            # full (~1 h on 2 busy cores)
    python benchmarks/repro/exp2_channels.py --quick    # seconds
"""

from __future__ import annotations

from runner import (
    AUTO,
    AUTO_MEAN_LR2,
    AUTO_MEAN_LR2_RANDOM_ORDER,
    AUTO_NORM,
    AUTO_NORM_RANDOM_ORDER,
    AUTO_RANDOM_ORDER,
    AUTO_SQRT,
    CIFAR_QUICK,
    DEFAULT,
    DEFAULT_DISTILL,
    DEFAULT_FULL_FIRST,
    DEFAULT_RANDOM_ORDER,
    DEFAULT_ZERO_INIT,
    ODO_GEOMETRIC,
    ODO_UNIFORM,
    RANDOM_ORDER,
    SANDWICH,
    SANDWICH_FULL_FIRST,
    SANDWICH_MEAN,
    SANDWICH_RANDOM_ORDER,
    SANDWICH_SHARED,
    SANDWICH_TIED,
    SUMMED,
    SUMMED_HALF_LR,
    SUMMED_RANDOM_ORDER,
    TIED,
    Arm,
    Budget,
    Experiment,
    cifar_config,
    every_budget,
    main,
)

WIDTHS = (1.0, 0.75, 0.5, 0.25)


def experiment() -> Experiment:
    budgets = tuple(Budget(f"{w * 100:g}%", w, f"channels={w}") for w in WIDTHS)
    base = cifar_config("resnet20", ("channels",), limit=1000)
    arms = (
        ODO_GEOMETRIC,
        ODO_UNIFORM,
        Arm("independent (one per width)", kind="independent"),
        SANDWICH,
        RANDOM_ORDER,
        TIED,  # every channel axis keeps the same fraction each step (the paper: each of 12 alone)
        SUMMED,  # fn3 train's default before spec_loss="mean" (issue 11)
        SUMMED_RANDOM_ORDER,
        SANDWICH_TIED,  # a candidate default: the smallest every step too (issue 11)
        SUMMED_HALF_LR,  # the summed default at half the step: what led to spec_loss="mean"
        DEFAULT,  # fn3 train's default: full+odo, the step on the mean of the two losses
        DEFAULT_RANDOM_ORDER,
        DEFAULT_ZERO_INIT,  # candidates beside the mean-loss default (issue 11)
        SANDWICH_MEAN,
        SANDWICH_SHARED,
        DEFAULT_DISTILL,  # in-place distillation from the full model after 30% of the steps
        DEFAULT_FULL_FIRST,  # the full model alone for half the steps, then the rule
        SANDWICH_FULL_FIRST,
        SANDWICH_RANDOM_ORDER,  # the default (rule auto) on one level: tail vs random order
        every_budget(budgets),  # every budget each step (Slimmable Networks, Any-Precision)
        every_budget(budgets, "sum"),
        every_budget(budgets, lr=0.2),  # between the two: the mean of four losses at twice the step
        every_budget(budgets, "shared"),  # each weight's gradient averaged over the specs using it
        AUTO,  # fn3 train's default in config version 3: the tied grid, per-weight mean
        AUTO_RANDOM_ORDER,
        AUTO_NORM,  # fn3 train's default since config version 4: the grid, norm-matched sum
        AUTO_NORM_RANDOM_ORDER,
        AUTO_MEAN_LR2,  # fn3 train's default since config version 9: the grid, mean loss at lr 0.2
        AUTO_MEAN_LR2_RANDOM_ORDER,
        # The grid with each weight's summed gradient over sqrt(its users): on four widths the shared
        # core steps as under the default (the mean at lr 0.2: sum / 4 * 0.2 = sum / 2 * 0.1) and the
        # channels only the full width uses at the network-alone step (the default: half of it). Asks
        # whether that half step is why the full width trails at 6 epochs at seeds 1 and 2 (run at
        # seeds 0 and 2, Dec 7: it is not; the notes below).
        AUTO_SQRT,
    )
    return Experiment(
        key="exp2_channels", title="FN3-channel: CIFAR-10, ResNet-20", level="channels",
        x_label="channels kept (fraction of every layer)", budgets=budgets, arms=arms, base=base,
        quick=CIFAR_QUICK, test_limit=200,
        notes="Every channel axis (stage streams and block inner widths) keeps the same fraction; "
              "crop+flip augmentation. Since config version 9 `fn3 train`'s default on this family is "
              "the arm 'fn3 auto grid, mean loss at lr 0.2' (Dec 5): within 1.05 pt of the networks "
              "trained alone at every width, its full model 0.80 pt below, where the norm-matched sum "
              "(the default in versions 4-8) trailed by up to 3.80 pt. At a second seed (Dec 5, the "
              "table of other seeds) it misses: full model 3.60 pt below its network alone on the page, "
              "every width 1.4-3.1 pt below on the 8,000 held-out images (`heldout.py --seed 1`), where "
              "it is 1.7-3.3 pt above the norm-matched sum at every width. At a third seed (Dec 7, beside "
              "its networks alone) the full model misses again: 58.35% against 62.20% on the page, -4.21 "
              "pt on the held-out images (`heldout.py --seed 2`), while the narrower widths are within "
              "0.35 pt or above (-0.29 / +1.99 / -0.35): at 6 epochs the grid on the mean loss leaves the "
              "full width behind at two seeds of three; at 18 epochs it met both targets at all three. Is "
              "that the half step the mean at lr 0.2 gives the channels only the full width uses? The arm "
              "'per-weight sum over sqrt(users)' (Dec 7) keeps the default's step on the shared core and "
              "gives those channels the network-alone step: 58.85 / 58.95 / 55.40 / 49.80% at seed 0 and "
              "58.50 / 57.05 / 54.65 / 48.35% at seed 2, the full width +0.15 to -1.20 pt from the "
              "default's; on the held-out images at seed 2 level with it (-0.18 / -0.99 / +0.15 / -0.08 "
              "pt, 2 s.e. about 1), the full width still 4.4 pt below its network alone: no. The "
              "per-weight mean (the arm 'fn3 auto (tied grid ...)', config version 3's default) lifts "
              "the full width at seed 2 (59.85% on the page; held-out +1.57 pt over the default, still "
              "-2.64 against its network alone) for 1.6-1.65 pt at 50 and 25% (held-out), as at seed 0.")


def longer(epochs: int = 18) -> Experiment:
    """The gap to independent training against the training length: the same setup for 3x the
    epochs, fewer arms (paper's rule, one draw per kind, independent, fn3's default and the tied
    sandwich on the mean loss) and budgets (100/50/25%).

    Run with ``--only exp2_channels_18ep`` (about an hour on 2 busy cores).
    """
    short = experiment()
    budgets = tuple(b for b in short.budgets if b.x in (1.0, 0.5, 0.25))
    arms = tuple(a for a in short.arms if a.name in (
        "fn3 ODO (geometric)", "fn3 ODO (geometric), one draw per kind", "independent (one per width)",
        DEFAULT.name, SANDWICH_MEAN.name, AUTO.name, AUTO_NORM.name, AUTO_NORM_RANDOM_ORDER.name,
        AUTO_MEAN_LR2.name, AUTO_MEAN_LR2_RANDOM_ORDER.name))
    # its own three budgets each step
    arms += (every_budget(budgets), every_budget(budgets, lr=0.2), every_budget(budgets, "shared"))
    return Experiment(
        key=f"exp2_channels_{epochs}ep", title=f"FN3-channel, {epochs} epochs: CIFAR-10, ResNet-20",
        level="channels", x_label=short.x_label, budgets=budgets, arms=arms,
        base=short.base.replace(epochs=epochs), quick=CIFAR_QUICK, test_limit=200,
        notes=f"Experiment 2 with {epochs} epochs instead of 6: does the gap shrink with training length? "
              "At a second training seed (Dec 4; the table of other seeds) the network trained alone "
              "reaches 74.85 / 69.05 / 61.25%: the default's full model is 3.30 pt below it (71.55%; "
              "seed 0: +0.15), the mean loss at lr 0.2 2.90 pt (71.95%; seed 0: +0.65); at 50 and 25% "
              "both are within 0.80 pt of their own networks or above them. At a third seed (Dec 4) the "
              "networks alone reach 73.45 / 68.30 / 60.95%, the default 72.30 / 69.40 / 61.40%: its "
              "full model 1.15 pt below (the 1 pt target missed by 0.15), the others above. On the "
              "8,000 test images this page does not use (Dec 5: the twins and the default retrained at "
              "seeds 1 and 2 with their models kept, the page's accuracies reproduced exactly; "
              "`heldout.py --seed N`, 2 s.e. of a gap 0.9 pt) the default's full model is 1.72 and "
              "1.33 pt below the network alone, its 50% member 1.41 and 0.47 pt, its 25% member 0.34 "
              "pt below and 1.48 above: every member within 2 pt at both seeds, the full model's 1 pt "
              "missed by 0.7 and 0.3 pt. The seed-0 twins were not kept (no held-out reading there). "
              "Since config version 9 the default on this family is the grid on the mean loss at lr "
              "0.2 (the arm 'fn3 auto grid, mean loss at lr 0.2', Dec 5): at seed 0 every member is "
              "above its network alone (74.65 / 70.85 / 62.90%); at seeds 1 and 2 its full "
              "model is 0.90 pt below / 0.45 pt above the network alone on the page (73.95 / 69.75 / "
              "61.60% and 73.90 / 70.00 / 62.85%) and +0.25 / +0.72 pt on the held-out images, every "
              "other member within 0.2 pt of its own network or above, 2.0 pt above the norm-matched "
              "sum's full model at both seeds there.")


def experiments() -> list[Experiment]:
    """Every experiment this script runs (its ``--only`` choices)."""
    return [experiment(), longer()]


if __name__ == "__main__":
    main(experiments(), script=__file__)
