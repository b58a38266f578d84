"""Confirm the choice of ``fn3 train``'s default loss on test images the choice never saw.

Issue 11 chose ``spec_loss="norm"`` over ``"shared"`` as ``auto``'s loss on the grid from the
reproduction page, which scores every arm on the first 200 test images of each class (2,000
images): 2 s.e. of a gap there is about 3 pt, as large as most differences between the rules. The
CIFAR-10 test split has 1,000 images a class; the other 800 of each (8,000 images) were never looked
at (since config version 8 the default is ``"shared"`` again for a family nested in paths alone,
chosen on these held-out images too). This script scores the two arms' trained models (their run
directories; an experiment that ran only one of the two scores that one) on both parts, with
the page's protocol (BatchNorm re-estimated per sub-model on the same augmented training batches), and
reports the difference per budget with its paired standard error (both models see the same images,
so the noise of their difference is that of the images on which they disagree).

Where the experiment's independent twins (one network trained alone per budget, ``--rerun`` of the
``independent`` arm keeps their run directories) are on disk, each is scored the same way at its own
budget, and issue 11's parity targets are read again on the held-out images: every member's gap to
its twin, the full model's gap, and (experiment 5) the 2-bit drop from 8 bits, each with its paired
standard error (the nested member and its twin see the same images).

The 2,000-image column must equal the page (same models, same protocol): the script checks it.
Run directories are not kept forever: an arm whose model is gone is not scored again, and its
earlier reading of the same experiment stays in ``heldout.json`` beside the new ones, except its
differences to an arm whose page numbers changed since (retrained into another model:
``carried_over``). An arm scored after its twins' models are gone is set against their earlier
reading, unpaired, with the wider s.e. that makes (``unpaired_twin_gaps``). A rerun of an arm
(``--rerun``, one thread) trains its model again, bit-identically where the code it trains with has
not changed.

    python benchmarks/repro/heldout.py                 # every experiment the default ran (~10 min)
    python benchmarks/repro/heldout.py --only exp2_channels

Writes ``benchmarks/results/heldout.json`` and ``docs/benchmarks/heldout.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import arms  # the page's own calibration batches (same folder)
import torch
from runner import (
    AUTO,
    AUTO_DEPTH,
    AUTO_DISTILL,
    AUTO_MEAN_LR2,
    AUTO_NORM,
    AUTO_NORM_CLIP,
    AUTO_NORM_CLIP_CORNERS,
    AUTO_NORM_CLIP_DISTILL,
    AUTO_NORM_CLIP_DISTILL_SMALLEST,
    AUTO_NORM_CLIP_HALF,
    AUTO_SQRT,
    LR_CANDIDATES,
    ROOT,
    Context,
    Experiment,
    at_seed,
    ends_rotation,
    every_budget,
    experiment_data,
    paths_lr,
    weight_range,
    weight_range_twins,
)
from targets import BIT_DROP, INDEPENDENT, heldout_gaps, parity_verdict, twins_of

import fn3
from fn3._io import atomic_write_text, or_list
from fn3.data import batches, load_dataset
from fn3.data.registry import first_per_class_mask
from fn3.errors import ConfigError
from fn3.evaluate import bn_recalibrated, predict
from fn3.run import MODEL_NAME, load_run
from fn3.spec import parse_spec

#: The two losses compared: version 3's default on the grid (``shared``) and version 4's (``norm``).
ARMS = (AUTO.name, AUTO_NORM.name)
#: Variants of the grid scored beside it where they ran, each against ``norm`` (short name, arm): a
#: clipping level per bit-width (the default of a family nested in bits alone since config version 5)
#: and the mean loss at lr 0.2 (the default of a family nested in depth alone since version 6, and of
#: one nested in channels alone since version 9: two arms, the depth one named for its family), and the
#: bits default with in-place distillation from 30% of the steps (``--distill --distill-start 0.3``, the
#: README's pick for the smallest 2-bit drop), also with only the 2-bit model distilled (``--distill-to
#: smallest``), and the bits default at half its passes, 8 and 2 bits every step and 6 or 4 bits on
#: every other (``--specs-per-step 3 --specs-rotation corners``: about half the twins' cost), and the
#: paths default (``shared``) with the same distillation; on ResNet-32 at 36 epochs the depth
#: default's rule with every depth listed (the grid's 5/4/2/1 blocks leave 3 out), each step or at
#: about half the twins' cost (the corners rotation, or two specs a step), or at the grid's blocks a
#: step (the ends rotation: 5 and 1 blocks every step, two of 4/3/2 in turn; at 6 and 18 epochs too:
#: the default of a family nested in depth alone whose grid leaves depths out in config version 10),
#: and at 18 epochs that rotation with in-place distillation from 30% of the steps into every depth or
#: into 1 block alone, or at lr 0.1, 0.15, 0.3 or 0.4 instead of 0.2 (each paired against it), and at
#: lr 0.15 with one middle depth a step instead of two (paired against lr 0.15; the default there since
#: config version 11), and the bits default on a weight range of 3 rms (``--weight-clip 3``, paired
#: against the clip arm it varies; the bits default since config version 12), with the corners
#: rotation or two specs a step on that range beside it (paired against it: half the twins' cost),
#: and the paths default at a longer peak step (lr 0.15 or 0.2 instead of 0.1, paired against it), and
#: the grid on each weight's summed gradient over sqrt(its users) (paired against the channels default).
PATHS_LRS = (0.15, 0.2)
EXTRA = (("clip", AUTO_NORM_CLIP.name), ("depth", AUTO_DEPTH.name), ("mean-lr0.2", AUTO_MEAN_LR2.name),
         ("distill", AUTO_NORM_CLIP_DISTILL.name), ("distill-smallest", AUTO_NORM_CLIP_DISTILL_SMALLEST.name),
         ("corners", AUTO_NORM_CLIP_CORNERS.name), ("distill-paths", AUTO_DISTILL.name),
         ("every-budget", every_budget((), lr=0.2).name),
         ("every-corners", every_budget((), lr=0.2, per_step=3, rotation="corners").name),
         ("every-2", every_budget((), lr=0.2, per_step=2).name),
         ("every-ends", ends_rotation(()).name),
         ("ends-distill", ends_rotation((), distill_start=0.3).name),
         ("ends-distill-smallest", ends_rotation((), distill_start=0.3, distill_to="smallest").name),
         *((f"ends-lr{lr:g}", ends_rotation((), lr=lr).name) for lr in LR_CANDIDATES),
         ("ends3-lr0.15", ends_rotation((), lr=0.15, per_step=3).name),
         ("range3", weight_range(3.0).name),
         ("corners-range3", weight_range(3.0, AUTO_NORM_CLIP_CORNERS).name),
         ("half-range3", weight_range(3.0, AUTO_NORM_CLIP_HALF).name),
         *((f"shared-lr{lr:g}", paths_lr(lr).name) for lr in PATHS_LRS),
         ("sqrt", AUTO_SQRT.name))
#: The arm each variant is paired against where not ``norm``: the bits default's variants against it,
#: the paths default's distilled variant against the per-weight mean (the paths default), the depth
#: variants against the depth default.
AGAINST = {"distill": "clip", "distill-smallest": "clip", "corners": "clip", "distill-paths": "shared",
           "every-budget": "depth", "every-corners": "depth", "every-2": "depth", "every-ends": "depth",
           "ends-distill": "every-ends", "ends-distill-smallest": "every-ends",
           **{f"ends-lr{lr:g}": "every-ends" for lr in LR_CANDIDATES}, "ends3-lr0.15": "ends-lr0.15",
           "range3": "clip", "corners-range3": "range3", "half-range3": "range3",
           **{f"shared-lr{lr:g}": "shared" for lr in PATHS_LRS}, "sqrt": "mean-lr0.2"}
#: Every arm scored, by its short name (``<short>_minus_<short>`` and ``<short>_bit_drop`` keys): the two
#: losses, then the default's variants.
SHORT_NAMES: dict[str, str] = {"shared": ARMS[0], "norm": ARMS[1], **dict(EXTRA)}
#: Networks trained alone on a weight range, by short name: each paired with the twins on each
#: channel's largest magnitude (``<short>_minus_independent``), the twins every nested arm is held
#: against (the range lifted the nested family on experiment 5, not the networks alone).
TWIN_EXTRA = (("alone-range3", weight_range_twins(3.0).name),)
#: ``--quick`` (a test of the script) scores this many of the held-out images per class.
QUICK_HELDOUT_PER_CLASS = 50
#: Each page value must be reproduced this closely (same model, batches and order: exactly).
PAGE_TOLERANCE = 1e-9


def experiments() -> list[Experiment]:
    """The experiments on which both arms ran (one level each: where ``auto`` trains the grid)."""
    import exp2_channels
    import exp3_layers
    import exp4_paths
    import exp5_bits

    return [*exp2_channels.experiments(), exp3_layers.experiment(20), exp3_layers.experiment(32),
            exp3_layers.longer(),
            exp3_layers.deeper(), exp3_layers.deeper(36),
            *exp4_paths.experiments(), exp5_bits.experiment(), exp5_bits.longer(), exp5_bits.longer(36)]


def correct(model: torch.nn.Module, ctx: Context, spec_text: str, test: list) -> torch.Tensor:
    """Per-image correctness (N,) bool of ``spec_text`` on the normalised ``test`` batches, BatchNorm
    re-estimated for it on the page's augmented calibration batches (``bn_aug``)."""
    spec = parse_spec(spec_text, fn3.space(model))
    calib = arms._calib_batches(ctx, augmented=True)
    with bn_recalibrated(model, spec, calib, len(calib)):
        pred, y = predict(model, test, spec)
    return pred == y


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of ``b - a`` (accuracy difference, fraction) and its standard error over the images."""
    d = b.float() - a.float()  # (N,) in {-1, 0, 1}
    n = d.numel()
    return float(d.mean()), float(d.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0


def page_checked(exp: Experiment, name: str, label: str, recorded: float, hit_page: torch.Tensor) -> float:
    """The accuracy of ``hit_page`` (per-image correctness on the page's images), which must be the
    page's ``recorded`` reading of arm ``name`` at budget ``label``: otherwise the model on disk (or
    the protocol) is not the one the page scored, and a held-out reading of it would pair wrongly."""
    got = float(hit_page.float().mean())
    if abs(got - recorded) > PAGE_TOLERANCE:
        raise ConfigError(f"{exp.key} {name} {label}: {got:.4f} on the page's images, the "
                          f"page says {recorded:.4f}; not the model or protocol the page scored")
    return got


def independent_sets(results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``{arm name: {budget label: run dir}}`` of every arm of networks trained alone whose run
    directories are all on disk (those whose models were not kept are left out)."""
    out = {}
    for name, arm in results["arms"].items():
        if name.startswith(INDEPENDENT):
            dirs = {label: run["run_dir"] for label, run in arm.get("runs", {}).items()}
            if dirs and all((Path(d) / MODEL_NAME).is_file() for d in dirs.values()):
                out[name] = dirs
    return out


def independent_models(results: dict[str, Any], sets: dict[str, dict[str, str]] | None = None
                       ) -> tuple[str, dict[str, str]] | None:
    """``(arm name, {budget label: run dir})`` of the experiment's independent twins on each channel's
    largest weight magnitude when every one has its run directory on disk (``None`` otherwise: their
    models were not kept). ``sets``: :func:`independent_sets` of ``results`` when already read."""
    sets = independent_sets(results) if sets is None else sets
    found = twins_of({"arms": {name: results["arms"][name] for name in sets}})
    return (found[0], sets[found[0]]) if found else None


def _model_on_disk(results: dict[str, Any], name: str) -> bool:
    run = results["arms"].get(name, {}).get("runs", {}).get("model")
    return bool(run) and (Path(run["run_dir"]) / MODEL_NAME).is_file()


def scorable(results: dict[str, Any]) -> list[str]:
    """The arms scored (``SHORT_NAMES``) that ran and whose trained model is still on disk (run
    directories are not kept forever: a rerun of the arm with ``--rerun`` brings its model back)."""
    return [name for name in SHORT_NAMES.values() if _model_on_disk(results, name)]


def carried_over(new: dict[str, Any], earlier: dict[str, Any] | None,
                 results: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the readings of ``earlier`` (the same experiment scored by an earlier command) that
    ``new`` could not make again: those of the arms the results still hold but whose models are no
    longer on disk (their held-out numbers, the paired differences they are part of, their 2-bit
    drops). They stay valid beside the new ones only where every model scored again gave the
    earlier reading's page numbers too (it is the model scored before): a difference to an arm that
    was retrained into another model (the twins retrained with newer code) is dropped, as is the
    reading of an arm the results no longer hold. The earlier command is kept with its time
    (``earlier_commands``)."""
    if not earlier or (earlier["page_images"], earlier["heldout_images"]) != (
            new["page_images"], new["heldout_images"]):
        return new
    twins = independent_models(results)
    held = set(results["arms"])
    gone = held - set(scorable(results)) - ({twins[0]} if twins else set())
    names = {**SHORT_NAMES, "independent": earlier.get("independent", INDEPENDENT)}
    before = earlier["budgets"]
    changed = {name for label, row in new["budgets"].items() for name, v in row.items()
               if name in held and name in before.get(label, {}) and before[label][name]["page"] != v["page"]}

    def carried(key: str) -> bool:
        if key in held:  # an arm's own reading
            return key in gone
        parties = [names.get(p) for p in key.removesuffix("_bit_drop").split("_minus_")]
        return all(p in held and p not in changed for p in parties) and any(p in gone for p in parties)

    out = {**new, **{k: v for k, v in earlier.items() if k.endswith("_bit_drop") and carried(k)}}
    if "independent" not in new and earlier.get("independent") in gone:
        out["independent"] = earlier["independent"]
    out["budgets"] = {label: {**{k: v for k, v in earlier["budgets"].get(label, {}).items() if carried(k)},
                              **row} for label, row in new["budgets"].items()}
    commands = {**earlier.get("earlier_commands", {})}
    if earlier.get("command") and earlier["command"] != new.get("command"):
        commands[earlier["command"]] = earlier.get("command_seconds", 0.0)
    if commands:
        out["earlier_commands"] = commands
    return out


def unpaired_twin_gaps(res: dict[str, Any], scored: set[str]) -> dict[str, Any]:
    """``res`` (one experiment's record, after :func:`carried_over`) with a gap to the twins for every
    arm in ``scored`` (the arms this command scored; not the twins, whose models are gone but whose
    earlier held-out readings stayed) that has none: the arm's held-out accuracy minus theirs,
    ``"paired": False``, its s.e. that of two independent proportions, ``sqrt(a(1-a)/n + b(1-b)/n)``
    (about 0.72 pt at 70% on 8,000 images, against 0.4-0.5 pt paired: the images both models get
    right or wrong cancel only when both are scored together). Run directories are not kept across
    machines, so a new arm is often scored after its twins' models are gone; a paired gap already
    there is never replaced."""
    twins = res.get("independent")
    n = res["heldout_images"]
    for row in res["budgets"].values():
        if twins not in row:
            continue
        b = row[twins]["heldout"]
        for short, name in SHORT_NAMES.items():
            if name in scored and name in row and f"{short}_minus_independent" not in row:
                a = row[name]["heldout"]
                row[f"{short}_minus_independent"] = {
                    "heldout": a - b, "se": math.sqrt((a * (1 - a) + b * (1 - b)) / n), "paired": False}
    return res


def scoring_data(exp: Experiment, results: dict[str, Any], quick: bool = False) -> tuple[Context, list, list]:
    """The page's context of ``exp`` (its calibration batches come from it: :func:`correct`) and the
    normalised test batches of the page's images and of the held-out rest (``quick``: a few of them)."""
    cfg, train, val, _ = experiment_data(exp, quick=quick)
    full = load_dataset(cfg.data, "test", cfg.data_dir)
    page_mask = first_per_class_mask(full, exp.quick_test_limit if quick else exp.test_limit)
    page, rest = full.subset(page_mask), full.subset(~page_mask)
    if quick:  # a test of the script, not a measurement: a few held-out images per class
        rest = rest.subset(first_per_class_mask(rest, QUICK_HELDOUT_PER_CLASS))
    ctx = Context(exp, cfg, train, val, page, Path("."), quick, results)
    page_b, rest_b = (list(batches(d, 256, shuffle=False, mean=cfg.mean, std=cfg.std)) for d in (page, rest))
    return ctx, page_b, rest_b


def run_one(exp: Experiment, results: dict[str, Any], quick: bool = False) -> dict[str, Any]:
    """Both arms of ``exp`` (and its independent twins, when kept) on the page's test subset and on the
    held-out rest (``quick``: of the experiment's ``--quick`` run)."""
    ctx, page_b, rest_b = scoring_data(exp, results, quick)
    out: dict[str, Any] = {"page_images": len(ctx.test), "heldout_images": sum(len(y) for _, y in rest_b),
                           "budgets": {}}
    # both losses where both ran; an experiment that ran only one of them (the default of its family,
    # norm or, for paths alone since config version 8, shared) scores that one alone
    models = {name: load_run(results["arms"][name]["runs"]["model"]["run_dir"]).model
              for name in scorable(results)}
    sets = independent_sets(results)  # the twins, and the networks alone on a weight range (TWIN_EXTRA)
    twins = independent_models(results, sets)
    if twins:
        out["independent"] = twins[0]
    hits_of: dict[str, dict[str, torch.Tensor]] = {}  # budget -> arm -> (N,) held-out correctness
    for b in exp.budgets:
        row: dict[str, Any] = {}
        hits = hits_of[b.label] = {}
        twin_dir = twins[1].get(b.label) if twins else None
        scored = dict(models)
        for name, dirs in sets.items():
            if b.label in dirs:
                scored[name] = load_run(dirs[b.label]).model
        for name, model in scored.items():
            got = page_checked(exp, name, b.label, results["arms"][name]["accuracy"]["bn_aug"][b.label],
                                correct(model, ctx, b.spec, page_b))
            hit_rest = hits[name] = correct(model, ctx, b.spec, rest_b)
            row[name] = {"page": got, "heldout": float(hit_rest.float().mean())}
        text = f"[{exp.key}] {b.label}: " + ", ".join(
            f"{short} {row[name]['heldout'] * 100:.2f}%" for short, name in _losses(hits))
        text += f" on {out['heldout_images']:,} held-out images"
        if ARMS[0] in hits and ARMS[1] in hits:
            diff, se = paired(hits[ARMS[0]], hits[ARMS[1]])
            row["norm_minus_shared"] = {"heldout": diff, "se": se}
            text += f" (norm - shared {diff * 100:+.2f} pt, 2 s.e. {2 * se * 100:.2f})"
        for short, name in EXTRA:
            ref = AGAINST.get(short, "norm")
            if name in hits and SHORT_NAMES[ref] in hits:
                diff, se = paired(hits[SHORT_NAMES[ref]], hits[name])
                row[f"{short}_minus_{ref}"] = {"heldout": diff, "se": se}
                text += f" ({short} - {ref} {diff * 100:+.2f} pt)"
        if twin_dir:
            for short, name in _losses(hits):
                g, g_se = paired(hits[twins[0]], hits[name])
                row[f"{short}_minus_independent"] = {"heldout": g, "se": g_se}
            text += f"; alone {row[twins[0]]['heldout'] * 100:.2f}%"
            for short, name in TWIN_EXTRA:
                if name in hits:
                    d, se = paired(hits[twins[0]], hits[name])
                    row[f"{short}_minus_independent"] = {"heldout": d, "se": se}
                    text += f" ({short} {row[name]['heldout'] * 100:.2f}%, {d * 100:+.2f} pt)"
        out["budgets"][b.label] = row
        print(text, flush=True)
    if exp.key.startswith("exp5") and {"8 bits", "2 bits"} <= set(hits_of):
        for short, name in _losses(hits_of["8 bits"]):
            d, se = paired(hits_of["2 bits"][name], hits_of["8 bits"][name])
            out[f"{short}_bit_drop"] = {"heldout": d, "se": se}  # 8-bit minus 2-bit, same images
    return out


def _losses(hits: dict[str, Any]) -> list[tuple[str, str]]:
    """``(short name, arm name)`` of the two losses' arms (and the default's variants) that were scored."""
    return [(short, name) for short, name in SHORT_NAMES.items() if name in hits]


def render(measured: dict[str, Any], seed: int | None = None) -> str:
    """The markdown table of ``measured``, and the full model's and the smallest member's differences
    (the budgets issue 11's targets turn on); ``seed``: the runs of the runner's ``--seed``."""
    sizes = {(r["page_images"], r["heldout_images"]) for r in measured.values()}
    page_n, rest_n = (f"{n:,}" for n in sizes.pop()) if len(sizes) == 1 else ("its", "remaining")
    runs = {r["command"]: r["command_seconds"] for r in measured.values()}
    for r in measured.values():
        runs.update(r.get("earlier_commands", {}))
    commands, seconds = sorted(runs), sum(runs.values())
    title = "# The default loss on held-out test images" + (f", training seed {seed}" if seed else "")
    lines = [title, "",
             f"{', '.join(f'`{c}`' for c in commands)} ({seconds:.0f} s in all): the models the "
             "reproduction page trained with the grid "
             "(`fn3 train`'s default on one level) on the per-weight mean (`shared`, config version 3) "
             "and on the norm-matched sum (`norm`, version 4; since version 8 `shared` again for a "
             "family nested in paths alone), and where they ran the grid's variants that are the "
             "default of one family (a clipping level per bit-width for bits, the mean loss at lr 0.2 "
             "for depth and, since config version 9, for channels; on bits also the default with "
             "in-place distillation, `--distill --distill-start 0.3`, into every bit-width or into "
             "2 bits alone, `--distill-to smallest`, and at 8 and 2 bits every step, 6 or 4 bits on "
             "every other, `--specs-per-step 3 --specs-rotation corners`, or on a weight range of 3 rms, "
             "`--weight-clip 3`, the default since config version 12 (with the corners rotation or two "
             "specs a step on it too, paired against it), and the networks trained alone "
             "on that range paired with those on each channel's largest magnitude; on paths the default "
             "with the "
             "same distillation; on the 36-epoch ResNet-32 layers family the depth default with every "
             "depth listed, each step, with the corners rotation or at two specs a step, and at every "
             "length in the ends rotation, the depth default where the grid leaves depths out in "
             "config version 10, at 18 "
             "epochs also with in-place distillation from 30% of the steps into every depth or into 1 "
             f"block alone, or at lr {or_list([f'{lr:g}' for lr in sorted(LR_CANDIDATES)])} instead "
             "of 0.2, and at lr 0.15 with one middle depth a step instead of two, "
             "`--specs-per-step 3 --specs-rotation ends --lr 0.15`, the default there since version "
             "11), scored "
             "with BatchNorm re-estimated per "
             f"sub-model on augmented training batches, on the page's test subset ({page_n} images: "
             f"the first of each class) and on the other {rest_n} test images, which no choice was "
             "made on. "
             "'2 s.e.' is twice the paired standard error of the difference (the same images for "
             "both models).", "",
             "| experiment | budget | shared: page / held-out | norm: page / held-out | "
             "norm - shared, held-out | 2 s.e. |", "| --- | --- | --- | --- | --- | --- |"]
    for key, res in measured.items():
        if not any(name in row for row in res["budgets"].values() for name in ARMS):
            continue  # neither loss scored (a seed that ran only a default's variant): its rows are below
        for label, row in res["budgets"].items():
            n, s, d = row.get(ARMS[1]), row.get(ARMS[0]), row.get("norm_minus_shared")
            shared = f"{s['page'] * 100:.2f} / {s['heldout'] * 100:.2f}%" if s else "not run"
            diff = f"{d['heldout'] * 100:+.2f} pt | {2 * d['se'] * 100:.2f}" if d else "- | -"
            norm = f"{n['page'] * 100:.2f} / {n['heldout'] * 100:.2f}%" if n else "not run"
            lines.append(f"| {key} | {label} | {shared} | {norm} | {diff} |")
    both = {k: r for k, r in measured.items() if all("norm_minus_shared" in b for b in r["budgets"].values())}
    diffs = [r["norm_minus_shared"]["heldout"] for res in both.values() for r in res["budgets"].values()]
    if diffs:
        better = sum(d > 0 for d in diffs)
        lines += ["", f"`norm` scored higher than `shared` on held-out images at {better} of {len(diffs)} "
                      f"budgets; mean difference {sum(diffs) / len(diffs) * 100:+.2f} pt."]
        for which, pick in (("full model", 0), ("smallest member", -1)):
            ends = {k: list(r["budgets"].values())[pick]["norm_minus_shared"] for k, r in both.items()}
            clear = {k: d for k, d in ends.items() if abs(d["heldout"]) > 2 * d["se"]}
            lines.append(f"- The {which}: " + ", ".join(
                f"{k} {d['heldout'] * 100:+.2f}" for k, d in ends.items()) + f" pt; {len(clear)} of "
                f"{len(ends)} beyond 2 s.e. ({sum(d['heldout'] > 0 for d in clear.values())} of them for "
                "`norm`).")
    lines += _extra_lines(measured) + _parity_lines(measured)
    return "\n".join(lines + _lone_drop_lines(measured, lines)) + "\n"


def _lone_drop_lines(measured: dict[str, Any], shown: list[str]) -> list[str]:
    """The 2-bit drops no section above lists: an arm scored without its twins or a paired arm (a
    default trained alone at a seed, say) still has its drop in ``heldout.json``; it goes here so
    the page shows every drop it measured."""
    lines: list[str] = []
    for key, res in measured.items():
        for drop_key, drop in res.items():
            if not drop_key.endswith("_bit_drop") or not drop:
                continue
            short = drop_key.removesuffix("_bit_drop")
            if any(line.startswith(f"- {key}, {short}: 8 bits minus 2 bits") for line in shown):
                continue
            lines.append(f"- {key}, {short}: 8 bits minus 2 bits on the held-out images "
                         f"{drop['heldout'] * 100:.2f} pt (2 s.e. {2 * drop['se'] * 100:.2f}; "
                         f"target <= {BIT_DROP * 100:.0f}).")
    if not lines:
        return []
    return ["", "## 2-bit drops of arms scored without their twins", "",
            "Arms scored at this seed without their networks trained alone or a paired arm: "
            "8 bits minus 2 bits, same images, with 2 s.e. of the paired difference.", "", *lines]


def _extra_lines(measured: dict[str, Any]) -> list[str]:
    """The default's variants against the default on the held-out images (``norm``, or the arm
    ``AGAINST`` names), and each one's 2-bit drop."""
    lines: list[str] = []
    for short, name in EXTRA:
        ref = AGAINST.get(short, "norm")
        runs = {k: r for k, r in measured.items()
                if any(f"{short}_minus_{ref}" in b for b in r["budgets"].values())}
        if not runs:
            continue
        against = "the norm-matched sum" if ref == "norm" else SHORT_NAMES[ref]
        lines += ["", f"## {name} against {against}", "",
                  f"| experiment | budget | {short}: page / held-out | {short} - {ref}, held-out | 2 s.e. |",
                  "| --- | --- | --- | --- | --- |"]
        for key, res in runs.items():
            for label, row in res["budgets"].items():
                if f"{short}_minus_{ref}" not in row:
                    continue
                v, d = row[name], row[f"{short}_minus_{ref}"]
                lines.append(f"| {key} | {label} | {v['page'] * 100:.2f} / {v['heldout'] * 100:.2f}% | "
                             f"{d['heldout'] * 100:+.2f} pt | {2 * d['se'] * 100:.2f} |")
            for which in (ref, short):
                drop = res.get(f"{which}_bit_drop")
                if drop:
                    lines.append(f"- {key}, {which}: 8 bits minus 2 bits on the held-out images "
                                 f"{drop['heldout'] * 100:.2f} pt (2 s.e. {2 * drop['se'] * 100:.2f}).")
    return lines


def _parity_lines(measured: dict[str, Any]) -> list[str]:
    """Issue 11's parity targets read on the held-out images, where the independent twins were kept:
    per experiment and loss, the worst member's gap to its twin, the full model's, and the 2-bit drop."""
    kept = {k: r for k, r in measured.items() if r.get("independent")}
    if not kept:
        return []
    lines = ["", "## Against the networks trained alone, on the held-out images", "",
             "Issue 11's parity targets (every member within 2 pt of its twin trained alone, the full "
             "model within 1 pt, 2 bits within 3 pt of 8 bits) on the held-out images, for the "
             "experiments whose independent twins were kept (`--rerun` of the `independent` arm); "
             "gaps are nested minus alone, with 2 s.e. of the paired difference ('unpaired': the "
             "twins' models were gone when the arm was scored, so its held-out accuracy is set against "
             "their earlier reading, with the wider s.e. of two independent proportions). "
             f"Not kept: {', '.join(k for k in measured if k not in kept) or 'none'}.", "",
             "| experiment | loss | every budget: nested - alone, held-out (pt; 2 s.e.) | worst | "
             "full model | within 2 pt / full within 1 pt |", "| --- | --- | --- | --- | --- | --- |"]
    for key, res in kept.items():
        first = next(iter(res["budgets"]))
        for short in ("norm", "shared", *(s for s, _ in EXTRA)):
            gaps = heldout_gaps(res, short)
            if not gaps:
                continue
            worst = min(gaps, key=lambda lb: gaps[lb]["heldout"])
            cells = ", ".join(f"{lb} {g['heldout'] * 100:+.2f} ({2 * g['se'] * 100:.2f}"
                              f"{'' if g.get('paired', True) else ', unpaired'})" for lb, g in gaps.items())
            w, f = gaps[worst]["heldout"], gaps[first]["heldout"] if first in gaps else float("nan")
            lines.append(f"| {key} | {short} | {cells} | {w * 100:+.2f} ({worst}) | {f * 100:+.2f} | "
                         f"{parity_verdict(w, f)} |")
    for key, res in kept.items():
        for short, name in TWIN_EXTRA:
            cells = {lb: row[f"{short}_minus_independent"] for lb, row in res["budgets"].items()
                     if f"{short}_minus_independent" in row}
            if cells:
                lines.append(f"- {key}: `{name}` minus `{res['independent']}` on the held-out images: "
                             + ", ".join(f"{lb} {d['heldout'] * 100:+.2f} pt (2 s.e. {2 * d['se'] * 100:.2f})"
                                         for lb, d in cells.items()) + ".")
        for short in ("norm", "shared", *(s for s, _ in EXTRA)):
            drop = res.get(f"{short}_bit_drop")
            if drop:
                lines.append(f"- {key}, {short}: 8 bits minus 2 bits on the held-out images "
                             f"{drop['heldout'] * 100:.2f} pt (2 s.e. {2 * drop['se'] * 100:.2f}; "
                             f"target <= {BIT_DROP * 100:.0f}).")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=None, help="only these experiment keys")
    p.add_argument("--quick", action="store_true", help="the experiments' --quick runs (a test)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where the page's result JSONs are (default benchmarks/results, or .../quick)")
    p.add_argument("--seed", type=int, default=None,
                   help="score the runs of the experiments' --seed N (benchmarks/results/seed<N>), with "
                        "that seed's calibration batches")
    p.add_argument("--out", type=Path, default=None,
                   help="the page to write (default docs/benchmarks/heldout.md, or heldout_seed<N>.md)")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seeded = f"seed{args.seed}" if args.seed is not None else ""
    exps, default_dir = at_seed(experiments(), args.seed, args.quick)  # as the runner's --seed
    results_dir = args.results_dir or default_dir
    out = args.out or ROOT / "docs" / "benchmarks" / f"heldout{'_' + seeded if seeded else ''}.md"
    command = "python benchmarks/repro/heldout.py" + (" --quick" if args.quick else "") + (
        f" --seed {args.seed}" if seeded else "") + (f" --only {' '.join(args.only)}" if args.only else "")
    saved_path = results_dir / "heldout.json"
    # Experiments measured by an earlier command (``--only`` another key) stay, each with its command.
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    measured = saved.get("experiments", {}) if saved.get("arms") == list(ARMS) else {}
    start, mine = time.perf_counter(), []
    for exp in exps:
        if args.only and exp.key not in args.only:
            continue
        path = results_dir / f"{exp.key}.json"
        results = json.loads(path.read_text()) if path.is_file() else {"arms": {}}
        names = [n for n in SHORT_NAMES.values() if n in results["arms"]]
        on_disk = scorable(results)
        if not on_disk:
            why = "no model on disk for" if names else "none of the arms"
            print(f"[{exp.key}] skipped: {path.name} has {why} {', '.join(names or ARMS)}", flush=True)
            continue
        for name in sorted(set(names) - set(on_disk)):
            print(f"[{exp.key}] {name}: its model is not on disk; its earlier reading (if any) is kept",
                  flush=True)
        now = {**run_one(exp, results, args.quick), "command": command}
        measured[exp.key] = carried_over(now, measured.get(exp.key), results)
        if "independent" not in now:  # the twins' models are gone: their earlier reading, unpaired
            unpaired_twin_gaps(measured[exp.key], set(on_disk))
        mine.append(exp.key)
    for key in mine:  # the whole command's time, on every experiment it measured
        measured[key]["command_seconds"] = time.perf_counter() - start
    atomic_write_text(saved_path, json.dumps({"arms": list(ARMS), "experiments": measured}, indent=1))
    atomic_write_text(out, render(measured, args.seed))
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
