"""Experiment 5, FN3-bit: CIFAR-10 (JPEG copy), ResNet-20, nested bits of weights and activations.

Budgets: 8/6/4/3/2 bits for every quantized weight and activation (stem and classifier stay in
float, as in Any-Precision DNN and AdaBits). Arms (same data subset, model, epochs, optimizer,
seed): fn3 ODO geometric and uniform; one independently trained network per bit-width (rule
``fixed``); AdaBits-style joint training (every bit-width in every step, gradients summed; with
fn3's shared clipping levels, not AdaBits' switchable ones). With and without BN re-estimation.

CPU budget: 500 training images per class (5,000), 6 epochs, 200 test images per class (2,000).

    python benchmarks/repro/exp5_bits.py            # full
    python benchmarks/repro/exp5_bits.py --quick    # seconds
"""

from __future__ import annotations

from runner import (
    AUTO,
    AUTO_NORM,
    AUTO_NORM_CLIP,
    AUTO_NORM_CLIP_CORNERS,
    AUTO_NORM_CLIP_DISTILL,
    AUTO_NORM_CLIP_DISTILL_SMALLEST,
    AUTO_NORM_CLIP_HALF,
    AUTO_NORM_CLIP_HALF_SMALL,
    AUTO_NORM_CLIP_THIRD,
    CIFAR_QUICK,
    DEFAULT,
    ODO_GEOMETRIC,
    ODO_UNIFORM,
    SANDWICH_CORNERS,
    SANDWICH_MEAN,
    SUMMED,
    TIED,
    Arm,
    Budget,
    Experiment,
    cifar_config,
    every_budget,
    main,
    weight_range,
    weight_range_twins,
)

BITS = (8, 6, 4, 3, 2)


def experiment() -> Experiment:
    """The bits experiment with fn3's quantizer since file format 2 (``quant_scheme="centred"``)."""
    budgets = tuple(Budget(f"{b} bits", b, f"bits={b}") for b in BITS)
    base = cifar_config("resnet20", ("bits",)).replace(model_kwargs={"quant_scheme": "centred"})
    arms = (
        SUMMED,  # fn3 train's default before spec_loss="mean" (issue 11)
        DEFAULT,  # fn3 train's default: full+odo, the step on the mean of the two losses
        Arm("independent (one per bit-width)", kind="independent"),
        ODO_GEOMETRIC,
        SANDWICH_MEAN,  # a candidate: the 2-bit model trained at every step too (issue 11)
        SANDWICH_CORNERS,  # 8 and 2 bits only: the default's two passes a step
        every_budget(budgets),  # every budget each step (Slimmable Networks, Any-Precision)
        every_budget(budgets, "sum"),
        every_budget(budgets, lr=0.2),  # the mean of the losses at twice the step
        every_budget(budgets, distill_start=0.3),  # soft labels from the largest once it has learned
        AUTO,  # fn3 train's default in config version 3: the tied grid, per-weight mean
        AUTO_NORM,  # fn3 train's default since config version 4: the grid, norm-matched sum
        AUTO_NORM_CLIP,  # the default with a clipping level per bit-width (issue 11: the 2-bit drop)
        AUTO_NORM_CLIP_HALF,  # the default at two specs a step: the family's cost (issue 11)
        AUTO_NORM_CLIP_CORNERS,  # 8 and 2 bits every step, 6 or 4 every other: 2.5 passes a step
        AUTO_NORM_CLIP_DISTILL,  # the default, soft labels from 8 bits after 30% (18 epochs: the best drop)
        AUTO_NORM_CLIP_DISTILL_SMALLEST,  # soft labels for 2 bits alone: the drop without the cost above
        *(weight_range(k) for k in (3.0, 2.5)),  # the default on a weight range of k rms, not max|w|
        weight_range_twins(3.0),  # the networks alone on that range (not the twins: no gain there)
        weight_range(3.0, AUTO_NORM_CLIP_CORNERS),  # the range at half the twins' cost
        weight_range(3.0, AUTO_NORM_CLIP_HALF),  # the range at two specs a step
    )
    return Experiment(
        key="exp5_bits", title="FN3-bit: CIFAR-10, ResNet-20", level="bits",
        x_label="bits (weights and activations)", budgets=budgets, arms=arms, base=base,
        quick=CIFAR_QUICK, test_limit=200,
        notes="Nested 8-bit weight codes: c bits keep the c most significant bits of the 8-bit code, "
              "read at the centre of their cell; c-bit activations are rounded on the c-bit grid of "
              "the shared clipping level (quant_scheme centred). The arm 'clip per bit-width' gives "
              "each bit-width its own learned level instead (act_clip per-bits, LSQ's gradient): fn3 "
              "train's default since config version 5 (the target rows mark it so). On Dec 5 the "
              "independent networks and the default were trained again with the current code, at seeds "
              "0 and 1, to keep their models for a reading on the 8,000 test images this page does not "
              "use (benchmarks/heldout.md, heldout_seed1.md). At seed 1 both came back bit-identical. "
              "At seed 0 both changed: each network alone now learns its own clipping level (LSQ, as "
              "fn3 train --rule fixed does on a bits model since config version 5; first trained Dec 1 "
              "with the shared level: 50.65 / 52.80 / 49.30 / 46.80 / 43.50% at 8 / 6 / 4 / 3 / 2 bits, "
              "now 51.80 / 52.25 / 48.40 / 48.50 / 45.65), and the default, first trained Dec 4 "
              "(50.30 / 49.95 / 49.25 / 48.90 / 46.10%), moved by up to 2.9 pt with the one-pass "
              "activation quantizer's rounding (same values and gradients but for ties): a measure of "
              "how far one short run moves with its numerics. Against the new twins the default "
              "misses issue 11's targets at 6 epochs at both seeds, on the held-out images too: worst "
              "gap -5.10 / -2.14 pt, both at 8 bits, the full model (2 s.e. about 1), while its 2-bit "
              "drop is within 3 pt on the held-out images "
              "(2.96 / 2.71; on the page 3.95 / 2.50). The other arms were scored against the "
              "twins of Dec 1 when they ran; their gap rows here are against the new ones. "
              "The default's CPU time and the independent networks' were measured on different days: "
              "the ratio step against step in one process is 0.80x (benchmarks/family_cost.py), and "
              "the 0.17x of the arm '2 specs a step' (specs_per_step 2: the 8-bit model and one other "
              "grid member in turn each step) is 0.40x there. The arm 'corners every step, middle "
              "every other' (--specs-per-step 3 --specs-rotation corners, Dec 4) has the smallest 2-bit "
              "drop here (1.35 pt) but its middle bit-widths, trained on a quarter of the steps, trail "
              "their twins by up to 4.65 pt at this length (6 bits; seed 1: 3.10; at 18 epochs it is "
              "within 1.35 pt of them). Retrained bit-identically at seeds 0 and 1 (Dec 5) to keep "
              "its models, on the held-out images: 2-bit drop 1.13 / 1.86 pt (the default 2.96 / "
              "2.72), worst gap to its own networks -4.84 / -3.31 pt (8 bits; the default -5.10 / "
              "-2.14); against the default above 2 bits -0.39 to +0.39 pt at seed 0 but 1.2-1.5 pt "
              "below it at seed 1 (2 s.e. about 0.9). The arm 'distillation from 30%' (Dec 4; at 18 "
              "epochs the smallest 2-bit drop at two seeds) drops 1.90 pt here but leaves every "
              "bit-width above 2 2.7-3.7 pt below the default's first run. Retrained bit-identically "
              "(seed 0) and run at seed 1 (Dec 5; 50.35 / 50.45 / 50.65 / 50.00 / 48.45%, the default "
              "50.55 / 50.80 / 50.60 / 49.70 / 48.05), on the held-out images it sits 0.6-1.2 pt below "
              "the default above 2 bits at both seeds (2 s.e. about 0.6) and drops 1.53 / 2.55 pt; worst "
              "gap to its own networks -5.84 / -2.75 pt (the default: -5.10 / -2.14). The arm "
              "'distillation to the smallest from 30%' (--distill-to smallest, Dec 5, seed 0) is the "
              "default within the noise here too: held-out -0.01 to +0.50 pt against it, 2-bit drop "
              "2.99 pt, worst gap -4.90 pt (8 bits). The arm 'weight range 3 rms' (Dec 7, --weight-clip 3: "
              "each weight channel quantized on min(max|w|, 3 rms), so the 2-bit cells split nearer the "
              "weights than at half the largest one) ran at seeds 0, 1 and 2 beside the default trained with "
              "the same code (at seeds 0 and 1 bit-identical to the default's Dec 5 runs), paired on the "
              "8,000 held-out images: +2.50 / +2.70 / +2.76 / +3.06 / +3.51 pt at seed 0, +1.79 / +1.81 / "
              "+1.90 / +1.50 / +1.50 pt at seed 1, +0.41 / +0.46 / +0.59 / +1.36 / +1.44 pt at seed 2 (2 s.e."
              " 0.9-1.0): above the default at every bit-width and seed; 2-bit drop 1.95 against 2.96 at seed"
              " 0, 3.00 against 2.71 at seed 1, 2.23 against 3.25 at seed 2. The arm '2.5 rms' and a first "
              "pair of runs at seeds 0 and 1 (Dec 7: 3 rms +1.50 to +2.05 pt at seed 0, -1.25 to +0.25 at "
              "seed 1) came from a work-in-progress commit whose default was another model too (not "
              "reproduced by the landed code; the page's 3-rms rows are the landed code's). At 18 epochs the "
              "range is level with the default above 2 bits and lifts the 2-bit model at one seed of two (the"
              " notes there). It is fn3 train's default for a family nested in bits alone since config "
              "version 12 (Dec 7; the target rows mark it so). The arm 'independent (one per bit-width), "
              "weight range 3 rms' (Dec 7) trains the networks alone on the same range: against those on the "
              "largest magnitude (retrained bit-identically the same day to keep their models), on the "
              "held-out images, -1.61 / -2.10 / -1.46 / -0.79 / -2.70 pt at seed 0 and +0.69 / -1.84 / "
              "-0.25 / +1.10 / +0.91 pt at seed 1 and +0.60 / +0.79 / -0.89 / +1.24 / -0.18 pt at seed 2 "
              "(2 s.e. about 1; the seed-2 networks on the largest magnitude trained Dec 7): the range "
              "does not help a "
              "network trained alone, so --rule fixed keeps the largest magnitude and every arm stays held "
              "against the twins on it. Against them the default on 3 rms is -2.60 / -1.89 / +0.44 / +1.00 "
              "/ +2.51 pt on the held-out images at seed 0 (worst and full-model gap -2.60, against -5.10 "
              "on the largest magnitude; 2-bit drop 1.95 against 2.96): short of the 2-pt and 1-pt targets "
              "by half as much; at seed 1 -0.35 / -0.09 / +1.61 / +2.54 / +3.89 pt (both targets met; the "
              "largest magnitude -2.14 / -1.90 / -0.29 / +1.04 / +2.39), 2-bit drop 3.00 against 2.71; at "
              "seed 2 +0.65 / -0.29 / -0.15 / +1.88 / +4.52 pt (both targets met; the largest magnitude "
              "+0.23 / -0.75 / -0.74 / +0.52 / +3.08), 2-bit drop 2.23 against 3.25. "
              "The cheaper rotations on the same range (Dec 7, seeds 0 and 1; at 18 epochs too, the notes "
              "there): 'corners every step, middle every other, weight range 3 rms' 48.75 / 48.55 / 48.45 / "
              "47.20 / 46.35% on the page at seed 0, -4.36 / -3.99 / -1.77 / -0.93 / +0.90 pt against the "
              "networks alone on the held-out images (1.6-2.2 pt below the default on 3 rms), and at seed 1 "
              "-1.47 / -1.39 / -0.45 / +0.85 / +3.38 pt (0.5-2.1 below it; 2-bit drop 2.39); '2 specs a "
              "step, weight range 3 rms' 48.65 / 48.40 / 48.10 / 48.35 / 45.80% at seed 0, -3.43 / -2.79 / "
              "-0.76 / -0.15 / -0.10 pt (0.8-2.6 pt below it), and at seed 1 -2.36 / -2.34 / -0.68 / -0.19 / "
              "+0.80 pt (2.0-3.1 below it; drop 4.08): at this length fewer members a step costs accuracy.")


def truncated() -> Experiment:
    """The first run of this experiment, with the truncating quantizer (``quant_scheme="truncate"``):
    c-bit weights and activations read at the bottom of their cell. Kept as the record of why the
    quantizer changed."""
    new = experiment()
    arms = (
        ODO_GEOMETRIC,
        ODO_UNIFORM,
        Arm("independent (one per bit-width)", kind="independent"),
        Arm("AdaBits-style joint training", kind="joint"),
        TIED,  # one draw per kind (an fn3 option; the paper draws each axis alone)
    )
    return Experiment(
        key="exp5_bits_truncate", title="FN3-bit, truncating quantizer (before file format 2): "
        "CIFAR-10, ResNet-20", level="bits", x_label=new.x_label, budgets=new.budgets, arms=arms,
        base=new.base.replace(model_kwargs={"quant_scheme": "truncate"}), quick=CIFAR_QUICK,
        test_limit=200,
        notes="Nested 8-bit codes: c bits keep the c most significant bits of the 8-bit code, read at "
              "the bottom of their cell (weights and activations).")


def longer(epochs: int = 18) -> Experiment:
    """The bits experiment for 3x (``epochs=18``) or 6x (36) the epochs, the budgets of experiments
    2-4's longer runs. Does the 2-bit model close on the 8-bit one with training length (issue 11:
    within 3 pt)? At 18 epochs: fn3's default, the independent networks, the 8-and-2-bit sandwich
    (the smallest 2-bit drop at 6 epochs among arms whose 8-bit model stays within 2 pt of the
    default's) and the candidates tried beside them; at 36 epochs the default (on the weight range of
    3 rms, config version 12) and the networks alone.

    Run with ``--only exp5_bits_18ep`` (the default arm about 30-35 minutes of one core; the
    independent networks about 40) or ``--only exp5_bits_36ep`` (about twice that: one arm a core).
    """
    short = experiment()
    twins = "independent (one per bit-width)"
    if epochs != 18:  # the default (since config version 12: the range of 3 rms) and its own networks
        arms = (*(a for a in short.arms if a.name == twins), weight_range(3.0),
                weight_range(3.0, AUTO_NORM_CLIP_CORNERS))  # half the twins' cost: issue 11's cost target
    else:
        arms = tuple(a for a in short.arms if a.name in (
            twins, AUTO_NORM_CLIP.name, AUTO_NORM.name, SANDWICH_CORNERS.name, AUTO_NORM_CLIP_HALF.name)) + (
            AUTO_NORM_CLIP_HALF_SMALL,  # 2 bits on every other step
            AUTO_NORM_CLIP_THIRD,  # 3 passes a step
            AUTO_NORM_CLIP_CORNERS,  # 2.5 passes a step
            AUTO_NORM_CLIP_DISTILL,  # soft labels from 8 bits (layers: +1.75 at 1/3)
            AUTO_NORM_CLIP_DISTILL_SMALLEST,  # soft labels for 2 bits alone
            weight_range(3.0),  # weights on a range of 3 rms, not max|w|
            weight_range_twins(3.0),  # the networks alone on that range
            weight_range(3.0, AUTO_NORM_CLIP_CORNERS),  # the range at half the twins' cost
            weight_range(3.0, AUTO_NORM_CLIP_HALF))  # the range at two specs a step
    return Experiment(
        key=f"exp5_bits_{epochs}ep", title=f"FN3-bit, {epochs} epochs: CIFAR-10, ResNet-20", level="bits",
        x_label=short.x_label, budgets=short.budgets, arms=arms,
        base=short.base.replace(epochs=epochs), quick=CIFAR_QUICK, test_limit=200,
        notes=NOTES.get(epochs)  # the 18-epoch notes follow
        or f"Experiment 5 with {epochs} epochs instead of 6: does the 2-bit drop shrink with training "
              "length? The arm 'clip per bit-width' (act_clip per-bits, issue 11) asks whether a clipping "
              "level per bit-width shrinks it: fn3 train's default since config version 5 (the target rows "
              "mark it so; the shared level's held-out rows are in docs/benchmarks/heldout.md, the clip "
              "arm's against it in docs/benchmarks/heldout_act_clip.md). The arm '2 specs a step' "
              "(--specs-per-step 2, Dec 4) trains the 8-bit model and one other grid member in turn: "
              "every member at or above its twin for 0.51x of the twins' CPU time, but 2 bits trained "
              "on a third of the steps end 3.8 pt below 8 bits (the grid: 2.35). The arm 'smallest every "
              "other' (--specs-rotation smallest, Dec 4) gives 2 bits every other step at the same cost: "
              "its 2-bit drop is 3.1 pt, but every member ends 1.7-3 pt below the even rotation's "
              "(8 bits 61.95 against 64.35; one seed each, within 2 s.e. of a difference of two runs, "
              "~3 pt): no sign that more 2-bit steps pay. The arms '3 specs a step' (the 8-bit model and "
              "two of 6, 4 and 2 bits in turn; 0.57x of the twins step against step) and 'corners every "
              "step, middle every other' (--specs-per-step 3 --specs-rotation corners: 8 and 2 bits every "
              "step, 6 or 4 bits on every other, 2.5 passes a step; 0.49x step against step) sit between "
              "(Dec 4). One seed cannot rank these rules: the table of other training seeds (--seed 1 "
              "and 2; the independent networks ran at seed 0 only) shows one rule's 2-bit model moving "
              "3.4 pt with the seed alone (3 specs a step: 58.25 and 61.65%). Over seeds 0, 1 and 2 the "
              "default's 2-bit drop is 2.35 / 2.00 / 2.95 pt (mean 2.43) and its 8-bit model 63.45 / "
              "63.10 / 62.40%; the corners rule's drop 3.20 / 2.65 / 1.80 pt (mean 2.55), its 8-bit "
              "model 63.80 / 64.05 / 61.95%, for 0.49x of the twins' cost against the default's 0.78x: "
              "as good within the seed noise, at two thirds of the default's cost. At seed 1 the networks "
              "trained alone ran too: the default's worst gap to them is -0.60 pt, the corners rule's "
              "-1.35 (3 bits), their 8-bit models +0.20 and +1.15 pt. At 6 epochs (experiment 5) the "
              "corners rule trails at 6 bits (-5.05 and -3.10 pt at seeds 0 and 1): its middle members, "
              "trained on a quarter of the steps, need the longer schedule. The arm 'distillation from "
              "30%' (--distill --distill-start 0.3 on the default, Dec 4: every bit-width learns the "
              "8-bit model's soft predictions once 30% of the steps are done; the same passes, 0.79x of "
              "the twins step against step) has the smallest 2-bit drop measured here, 1.50 / 0.10 / 0.50 "
              "pt at seeds 0 / 1 / 2 (2-bit model 61.40 / 62.55 / 60.75%), every bit-width within 1.65 / "
              "1.30 pt of its own network and the 8-bit model 0.70 / 0.25 pt below it (seeds 0 / 1): "
              "every target of issue 11 at both seeds, the 2-bit stretch too, for 0.7 pt less at 8 bits "
              "than the default on average (62.90 / 62.65 / 61.25 against 63.45 / 63.10 / 62.40%). At 6 "
              "epochs (experiment 5, seed 0) it keeps the smallest drop "
              "(1.90 pt against the default's 4.20) but costs every member above 2 bits: 46.60 / 47.05 / "
              "46.55 / 45.65 / 44.70% against 50.30 / 49.95 / 49.25 / 48.90 / 46.10%, 8 bits 4.05 pt "
              "below its own network, 6 bits 5.75: on a short run the 8-bit teacher is not worth "
              "learning from yet, so it is not the default. On Dec 5 the default and the networks "
              "trained alone were trained again at seed 0 with the current code, to keep their models "
              "for a reading on the 8,000 test images this page does not use: each network alone now "
              "learns its own clipping level (as fn3 train --rule fixed does on a bits model since "
              "config version 5), and both runs moved. The default is 64.30 / 64.50 / 63.70 / 62.55 / "
              "60.90% (first run 63.45 / 62.85 / 63.70 / 62.95 / 61.10), the networks alone 65.85 / "
              "63.60 / 63.80 / 63.00 / 59.00% (first 63.40 / 63.35 / 64.40 / 60.95 / 57.15, a shared "
              "level each). On the page the full model now trails its network by 1.55 pt and the 2-bit "
              "drop is 3.40 pt, both missed (2 s.e. about 3 pt); on the held-out images (benchmarks/"
              "heldout.md) both parity targets are met (worst -0.64 pt, the 8-bit model; 2 s.e. 0.91) "
              "and the 2-bit drop is 3.50 pt (2 s.e. 0.83), missed by 0.5. At seed 1 (both retrained "
              "bit-identically, Dec 5) the held-out images give worst -1.09 pt (6 bits), full model "
              "+0.03, both met, and a 2-bit drop of 3.18 pt (2 s.e. 0.82; page 2.00): the drop misses "
              "by 0.2-0.5 pt on the held-out images at both seeds. The arm 'distillation from 30%', "
              "retrained bit-identically at seeds 0 and 1 (Dec 5) to keep its models, on the held-out "
              "images: 2-bit drop 1.80 / 1.43 pt (met, the stretch at seed 1), but every bit-width above "
              "2 is 0.9-1.7 pt below the default's, its 8-bit model 2.27 / 1.05 pt below its own network "
              "(the full-model target missed at both seeds) and its worst member -2.27 / -1.96 pt. "
              "The arm 'distillation to the smallest from 30%' (--distill-to smallest, Dec 5: only the "
              "2-bit model learns the 8-bit model's soft predictions, the others keep the labels) asks "
              "whether the drop can shrink without that cost: it cannot, here. It lands on the default "
              "within the noise (page 64.15 / 64.15 / 63.70 / 63.40 / 60.80% and 62.75 / 63.45 / 63.90 / "
              "63.10 / 60.30% at seeds 0 / 1); held-out 2-bit drop 2.55 / 3.25 pt (the default 3.50 / "
              "3.18), worst gap to its own networks -1.27 (8 bits) / -1.19 pt (6 bits), its 2-bit model "
              "+0.31 / -0.40 pt against the default's: the 2-bit gain of full distillation comes from "
              "every member learning the soft predictions, at their cost. "
              "The arm 'corners every step, middle every other', retrained bit-identically at seeds 0 "
              "and 1 (Dec 5) to keep its models, on the held-out images: 2-bit drop 2.61 / 1.72 pt (met "
              "at both seeds; the default 3.50 / 3.18), every bit-width above 2 0.4-1.1 pt below the "
              "default's (2 s.e. about 0.9), its worst gap to its own networks -1.68 (8 bits) / -1.51 "
              "pt (6 bits), its 8-bit model -1.68 / -0.49 pt: every target at seed 1, all but the full "
              "model's at seed 0, for 0.52x of the twins step against step (target 0.5x). It trades "
              "less of the members above 2 bits for its drop than full distillation does (-1.64 / "
              "-1.08 pt at 8 bits against the default), at two thirds of the default's passes; it is not "
              "the default, which it trails above 2 bits and at 6 epochs. "
              "The seed-0 comparisons above that name the networks alone are against their first run. "
              "The arm 'weight range 3 rms' (--weight-clip 3, Dec 7; experiment 5 has the 6-epoch "
              "readings) ran at seeds 0 and 1 beside the default retrained with the same code, the "
              "landed one (both defaults bit-identical to their Dec 5 runs, so its held-out rows pair "
              "with theirs): 63.75 / 63.60 / 62.75 / 61.90 / 61.05% here (seed 1: 63.90 / 64.05 / "
              "64.30 / 63.20 / 60.40%); on the held-out images against the default -0.04 / -0.31 / "
              "+0.39 / -0.30 / +1.60 pt at seed 0 and +0.10 / +0.12 / +0.11 / -0.01 / +0.00 pt at "
              "seed 1 (2 s.e. 0.9-1.0), a 2-bit drop of 1.86 / 3.27 pt against the default's 3.50 / "
              "3.18 (docs/benchmarks/heldout.md, heldout_seed1.md). Level above 2 bits at both seeds, "
              "the 2-bit model 1.6 pt up at one: the drop target met at seed 0 only. Its first seed-0 "
              "run (Dec 7, 64.45 / 64.75 / 65.05 / 63.85 / 61.70%, held-out drop 2.09) came from a "
              "work-in-progress commit whose default was another model too; the landed code does not "
              "reproduce it, and the page holds the landed code's run. It is fn3 train's default for a "
              "family nested in bits alone since config version 12 (the target rows mark it so), held "
              "against the networks alone on the largest magnitude. Those networks trained on 3 rms "
              "(Dec 7, seed 0; experiment 5 has the 6-epoch readings): 63.25 / 63.50 / 64.15 / 62.90 / "
              "59.60%, -2.60 / -0.10 / +0.35 / -0.10 / +0.60 pt against their runs on the largest "
              "magnitude on the page, -1.32 / -0.01 / +0.94 / -1.68 / +1.05 pt on the held-out images "
              "(those runs retrained bit-identically the same day to keep their models): no gain, as at 6 "
              "epochs. Against them the default on 3 rms is -0.68 / -0.39 / +0.22 / -0.69 / +3.34 pt on the "
              "held-out images (both parity targets met, 2-bit drop 1.86 within 3 pt; on the largest "
              "magnitude -0.64 / -0.08 / -0.16 / -0.39 / +1.74, drop 3.50). "
              "At seed 1 the networks alone were retrained (Dec 7, bit-identical to their Dec 5 run) to "
              "keep their models: the default on 3 rms is +0.12 / -0.96 / -0.36 / -0.60 / +0.67 pt against "
              "them on the held-out images (both parity targets met; the 2-bit drop 3.27, missed by 0.27), "
              "what the two paired readings summed to before. At seed 2 (Dec 7, the default on 3 rms and "
              "the networks alone trained together): 62.80 / 62.95 / 63.40 / 62.30 / 60.55% against "
              "66.30 / 64.60 / 62.75 / 62.85 / 57.65% here, and on the held-out images -1.46 / +0.11 / "
              "-0.80 / +0.36 / +1.54 pt: every bit-width within 2 pt, but the 8-bit model misses the 1-pt "
              "target, and the 2-bit drop is 3.35 pt (missed by 0.35; 2 s.e. 0.8). "
              "Does the range carry the cheaper rotations to the grid (issue 11's cost target)? The arms "
              "'corners every step, middle every other, weight range 3 rms' and '2 specs a step, weight "
              "range 3 rms' (Dec 7, seeds 0 and 1; what --specs-per-step 3 --specs-rotation corners and "
              "--specs-per-step 2 train on a bits family since config version 12) cost 0.48x and 0.39x of "
              "the twins step against step (benchmarks/family_cost.py; the default 0.76x). On the page "
              "63.00 / 63.10 / 63.05 / 61.65 / 60.90% and 63.50 / 63.70 / 62.90 / 62.10 / 60.05% at seed 0, "
              "64.00 / 64.00 / 63.65 / 62.90 / 60.00% and 63.80 / 64.15 / 63.40 / 62.40 / 59.05% at seed 1. "
              "On the held-out images against the networks alone: the corners rotation -2.24 / -1.73 / "
              "-1.36 / -1.83 / +1.38 pt at seed 0 (both parity targets missed, the 8-bit model by 1.24) and "
              "-0.10 / -1.06 / -0.57 / -1.10 / +0.87 at seed 1 (every target met: drop 2.85), drops 2.26 / "
              "2.85 pt; two specs a step -1.89 / -1.42 / -1.08 / -1.08 / +0.68 and +0.06 / -1.06 / -0.79 / "
              "-1.34 / -1.12, drops 3.31 / 5.00 (missed). Against the default on 3 rms the corners rotation "
              "is 1.2-2.0 pt below at every bit-width at seed 0 and level (-0.5 to +0.2) at seed 1; two "
              "specs a step 0.4-2.7 pt below at seed 0, its 2-bit model 1.8 below at seed 1. Neither is "
              "the default: at half the cost one seed in two still misses.")


#: The commentary of the runs longer than 18 epochs (rendered on the reproduction page), by epochs.
NOTES: dict[int, str] = {
    36: ("Experiment 5 with 36 epochs instead of 6 (twice the 18-epoch budget), as experiments 3 and 4 "
         "were run: does the 2-bit drop of fn3's default (1.86 / 3.27 / 3.35 pt on the held-out images at "
         "18 epochs, seeds 0-2; target 3) and its gap to the networks trained alone shrink with training "
         "length? The default and the networks alone (and, last, a rotation at half their cost). "
         "The default here is config "
         "version 12's (a clipping level per bit-width, weights on a range of 3 rms; Dec 7), held against "
         "the networks alone on each channel's largest magnitude, trained beside it. Both parity targets "
         "are met: every bit-width at or above its network alone on the page (+0.00 / +1.50 / +0.85 / "
         "+0.15 / +1.45 pt), and on the 8,000 test images this page does not use -0.14 / +0.51 / +0.56 "
         "/ -1.15 / +1.68 pt (2 s.e. about 1; benchmarks/heldout.md), the 8-bit model -0.14. The 2-bit "
         "drop does not shrink with the longer run: 3.80 pt here and 3.22 on the held-out images (2 s.e. "
         "0.83), missed by 0.2-0.8 pt, while the "
         "networks alone drop 5.25 / 5.03 pt: the 2-bit model is 1.7 pt above its own network, but the "
         "8- to 3-bit models gain more from the longer run (+6.9 to +8.1 pt over the 18-epoch run at seed 0 "
         "on the page) than the 2-bit one (+5.8). At seed 2 (Dec 7, the default and, after it, its networks "
         "alone) the drop is met: 68.00 / 68.00 / 68.20 / 67.65 / 65.95% on the page (drop 2.05 pt), "
         "69.24 / 69.41 / 69.34 / 68.27 / 66.45% on the held-out images (drop 2.79, 2 s.e. 0.81), against "
         "3.35 there at 18 epochs. Its networks alone: 70.50 / 69.95 / 71.60 / 68.25 / 66.50% on the page, "
         "so the page misses both parity targets there (worst -3.40 pt at 4 bits, the 8-bit model -2.50 "
         "here; "
         "2 s.e. of a difference about 2.9), while on the held-out images both are met: -0.47 / -0.82 / "
         "-0.30 / -0.76 / +0.64 pt (2 s.e. about 0.95; benchmarks/heldout_seed2.md). CPU time: the "
         "default 3511 s, the networks alone 6146 s, each run beside other jobs (not a cost reading). At "
         "seed 1 (Dec 7, the default alone): 69.65 / 69.85 / 69.65 / 69.00 / 66.15% on the page (drop 3.50 "
         "pt, missed), 70.39 / 70.39 / 70.32 / 68.94 / 67.54% on the held-out images (drop 2.85, 2 s.e. "
         "0.81; met); its networks alone (Dec 7, after it): 70.25 / 69.35 / 69.05 / 68.40 / 65.15% on the "
         "page, and the default against them on the held-out images -0.02 / +0.75 / -0.02 / -0.05 / +1.36 "
         "pt (2 s.e. about 0.95; benchmarks/heldout_seed1.md): both parity targets met, as at seeds 0 and 2 "
         "(on the page the full model misses by 0.05 pt at the better BN protocol). Over seeds 0-2 the "
         "held-out drop at 36 epochs is 3.22 / 2.85 / 2.79 pt (mean 2.95): at the target, not clearly "
         "below it. Where it comes from (docs/benchmarks/bit_split.md, `python "
         "benchmarks/repro/bit_split.py`): the same models read with 2-bit weights on 8-bit activations "
         "lose 1.26 / 0.76 / 0.64 pt on the held-out images, with 8-bit weights on 2-bit activations 2.68 / "
         "2.25 / 1.96 pt (2 s.e. about 0.7): most of the drop is the 2-bit activations, which no file "
         "stores; the 2-bit file on 4-bit activations (--spec bits=2,abits=4) is 1.07 / 0.96 / 0.73 pt "
         "below the 8-bit model. The learned 2-bit clipping levels are not what loses it: the levels that "
         "minimise each input's quantization error on training batches score 0.36 / 1.13 / 1.17 pt below "
         "them at seeds 0-2 (2 s.e. about 0.82; at 18 epochs 1.98 below at seed 0, bit_split.md). "
         "At half the twins' cost (issue 11's cost target; Dec 7, seeds 0-2, `python benchmarks/repro/"
         "exp5_bits.py --only exp5_bits_36ep [--seed N] --arms 'fn3 auto grid, norm-matched sum, clip per "
         "bit-width, corners every step, middle every other, weight range 3 rms'`): 8 and 2 bits every "
         "step, 6 or 4 bits on every other (`--specs-per-step 3 --specs-rotation corners`, 0.47-0.52x of "
         "the twins step against step over four measurements; its runs 2386 / 3052 / 2389 s of CPU beside "
         "other jobs). On the page 68.25 / 67.80 / 66.90 / 66.50 / 67.25%, 68.85 / 68.85 / 68.30 / 68.25 / "
         "67.30%, 69.15 / 68.90 / 69.25 / 67.40 / 66.05% at seeds 0 / 1 / 2; on the held-out images (the "
         "twins' models were gone, so against their earlier reading, unpaired, 2 s.e. about 1.45) "
         "-1.25 / -0.70 / -0.41 / -0.50 / +1.73, -1.23 / -0.60 / -1.35 / -1.19 / +1.04 and -1.31 / -1.73 / "
         "-0.99 / -1.34 / +0.66 pt: every bit-width within 2 pt at every seed, the 2-bit drop 2.06 / 1.98 "
         "/ 1.92 pt (the default's 3.22 / 2.85 / 2.79), but the 8-bit model 1.23-1.31 pt below its "
         "network at every seed, where the default is 0.03-0.47 below: the full-model target missed "
         "by about 0.3 pt at all three, so at 36 epochs the half-cost rule trades about 1 pt of the "
         "8-bit model for 1 pt less 2-bit drop. It is not the default (the full model's target)."),
}


def experiments() -> list[Experiment]:
    """Every experiment this script runs (its ``--only`` choices)."""
    return [experiment(), truncated(), longer(), longer(36)]


if __name__ == "__main__":
    main(experiments(), script=__file__)
