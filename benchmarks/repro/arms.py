"""How each kind of arm trains and is evaluated (used by ``runner.run_experiment``).

* ``nested``       one :func:`fn3.run.train_run` (ordered dropout, sandwich, ...), every budget sliced;
* ``independent``  one ``rule="fixed"`` run per budget, each evaluated at its own budget only;
* ``joint``        AdaBits-style: every budget's sub-model trained in every step (a short loop on
                   ``fn3.train`` pieces; its own checkpoints, resumable);
* ``random-order`` the model of another arm with blocks removed in a random order instead of from
                   the tail: per budget, ``draws`` kept sets of the same size (seeded generator);
* ``search``       a nested run, then ``fn3.search`` (heuristic, on the held-out validation split)
                   and the test accuracy of its Pareto front (experiment 6).

Accuracies are on the TEST set, as ``{"plain": {budget: acc}, "bn_recal": {budget: acc},
"bn_aug": {budget: acc}}``; the last two only when the model has BatchNorm: statistics re-estimated
per sub-model on clean training batches (``bn_recal``, the page's protocol until 2026-12) and on
training batches augmented as in training (``bn_aug``, what ``fn3 eval`` / ``search`` / ``export``
do since: :func:`fn3.train.calibration_batches`). Arms run before ``bn_aug`` existed lack it.
"""

from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from runner import QUICK_DRAWS, QUICK_MAX_EVALS, Arm, Budget, Context, write_json
from torch import nn

import fn3
import fn3.cost
from fn3.checkpoint import load_checkpoint, save_checkpoint
from fn3.config import TrainConfig
from fn3.data import batches, num_batches
from fn3.errors import ConfigError
from fn3.evaluate import accuracy, bn_recalibrated
from fn3.run import CONFIG_NAME, MODEL_NAME, build_model, load_run, read_config
from fn3.spec import Spec, parse_spec
from fn3.train import (
    CHECKPOINT_NAME,
    augment_mode,
    calibration_batches,
    fit,
    lr_at,
    make_optimizer,
    train_step,
)

TIME_NAME = "repro_time.json"  # training seconds summed over the segments of a resumed run
COST_METRICS = ("flops", "bitops", "params")


def run_arm(ctx: Context, arm: Arm) -> dict[str, Any]:
    """Train (or resume) and evaluate one arm; returns its JSON entry."""
    budgets = arm.budgets or ctx.exp.budgets
    cfg = ctx.cfg.replace(**arm.train)
    home = ctx.runs_dir / arm.slug
    if arm.kind == "independent":
        runs, acc, costs = {}, {}, {}
        for b in budgets:
            run = _train(ctx, cfg.replace(rule="fixed", fixed_spec=b.spec), home / b.slug)
            model = load_run(run["run_dir"]).model
            specs = {b.label: parse_spec(b.spec, fn3.space(model))}
            _merge(acc, evaluate(ctx, model, specs))
            costs.update(spec_costs(ctx, model, specs))
            runs[b.label] = run
        return {"runs": runs, "wall_time_s": sum(r["wall_time_s"] for r in runs.values()),
                "cpu_time_s": sum(r["cpu_time_s"] for r in runs.values()), "accuracy": acc,
                "costs": costs}
    if arm.kind == "random-order":
        return _random_order(ctx, arm, budgets)
    joint = [b.spec for b in budgets] if arm.kind == "joint" else None
    run = _train(ctx, cfg, home / "model", joint=joint)
    model = load_run(run["run_dir"]).model
    specs = {b.label: parse_spec(b.spec, fn3.space(model)) for b in budgets}
    entry = {"runs": {"model": run}, "wall_time_s": run["wall_time_s"], "cpu_time_s": run["cpu_time_s"],
             "accuracy": evaluate(ctx, model, specs), "costs": spec_costs(ctx, model, specs)}
    if arm.kind == "search":
        entry["search"] = _search(ctx, arm, model)
    return entry


def _merge(into: dict[str, dict[str, float]], new: dict[str, dict[str, float]]) -> None:
    for mode, accs in new.items():
        into.setdefault(mode, {}).update(accs)


def _train(ctx: Context, cfg: TrainConfig, run_dir: Path, joint: list[str] | None = None) -> dict:
    """Train into ``run_dir`` unless finished there; resume a run that was stopped."""
    timing = run_dir / TIME_NAME
    seconds = (json.loads(timing.read_text()) if timing.is_file()
               else {"seconds": 0.0, "cpu_seconds": 0.0, "segments": 0})
    saved_cfg = cfg.replace(rule="full") if joint else cfg
    if not (run_dir / MODEL_NAME).is_file():
        resume = (run_dir / CONFIG_NAME).is_file()
        if resume and _canon(read_config(run_dir)) != _canon(saved_cfg):
            raise ConfigError(f"{run_dir} holds a run with other settings; delete it to rerun")
        cpu = time.process_time()
        wall, interrupted = _fit_run(ctx, saved_cfg, run_dir, resume, joint)
        seconds = {"seconds": seconds["seconds"] + wall,
                   "cpu_seconds": seconds["cpu_seconds"] + time.process_time() - cpu,
                   "segments": seconds["segments"] + 1}
        write_json(timing, seconds)
        if interrupted:
            raise SystemExit(f"interrupted; rerun the same command to resume {run_dir}")
    return {"run_dir": str(run_dir), "wall_time_s": seconds["seconds"],
            "cpu_time_s": seconds["cpu_seconds"], "segments": seconds["segments"],
            "threads": torch.get_num_threads()}


def _fit_run(ctx: Context, cfg: TrainConfig, run_dir: Path, resume: bool,
             joint: list[str] | None) -> tuple[float, bool]:
    """What :func:`fn3.run.train_run` does, on the data already in memory (every arm the same)."""
    model = build_model(cfg, ctx.train)
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_NAME, cfg.to_dict())
    if joint:
        wall = _train_joint(ctx, model, cfg, run_dir, joint, resume)
        step, interrupted = -1, False
    else:
        res = fit(model, ctx.train, cfg, run_dir=run_dir, resume=resume, progress=False)
        wall, step, interrupted = res.wall_time, res.step, res.interrupted
    if not interrupted:  # the final weights: load_run(run_dir) reads them
        save_checkpoint(run_dir / MODEL_NAME, model, None,
                        {"config": cfg.to_dict(), "step": step, "model": model.fn3_config})
    return wall, interrupted


def _canon(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def _train_joint(ctx: Context, model: nn.Module, cfg: TrainConfig, run_dir: Path,
                 spec_texts: list[str], resume: bool) -> float:
    """AdaBits-style joint training: every spec of ``spec_texts`` in every step, one optimizer step.

    Same data order, augmentation, optimizer and schedule as :func:`fn3.train.fit`; checkpoints at
    the end of each epoch (resume restarts the interrupted epoch from its first batch: the batch
    order is a pure function of (seed, epoch)).
    """
    train = ctx.train
    specs = [parse_spec(s, fn3.space(model)) for s in spec_texts]
    opt = make_optimizer(model, cfg)
    drop_last = len(train) >= cfg.batch_size
    per_epoch = num_batches(len(train), cfg.batch_size, drop_last)
    total = per_epoch * cfg.epochs
    step, ckpt = 0, run_dir / CHECKPOINT_NAME
    if resume and ckpt.is_file():
        step = int(load_checkpoint(ckpt, model, opt)["step"])
    meta = lambda: {"step": step, "config": cfg.to_dict(), "model": model.fn3_config}  # noqa: E731
    start = time.perf_counter()
    model.train()
    step -= step % per_epoch  # restart an epoch cut short
    while step < total:
        epoch = step // per_epoch
        for x, y in batches(train, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
                            augment=augment_mode(cfg, train), mean=cfg.mean, std=cfg.std,
                            drop_last=drop_last):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg.lr, cfg.warmup_steps)
            # AdaBits sums the losses of its bit-widths (each at the full step size)
            train_step(model, opt, x, y, specs, label_smoothing=cfg.label_smoothing, reduction="sum")
            step += 1
        save_checkpoint(ckpt, model, opt, meta())
    return time.perf_counter() - start


def _cached(ctx: Context, key: str, make: Any) -> Any:
    if key not in ctx.cache:
        ctx.cache[key] = make()
    return ctx.cache[key]


def _test_batches(ctx: Context) -> list:
    cfg = ctx.cfg
    return _cached(ctx, "test", lambda: list(batches(ctx.test, 256, shuffle=False, mean=cfg.mean,
                                                     std=cfg.std)))


def _calib_batches(ctx: Context, augmented: bool = False) -> list:
    """Training batches for BN re-estimation, the same for every arm: clean, or augmented as in
    training (fn3's own re-estimation, :func:`fn3.train.calibration_batches`)."""
    cfg = ctx.cfg
    if augmented:
        make = lambda: list(islice(calibration_batches(ctx.train, cfg), cfg.recalibrate_batches))  # noqa: E731
    else:
        make = lambda: list(islice(batches(ctx.train, cfg.batch_size, shuffle=True,  # noqa: E731
                                           seed=cfg.seed + 1, mean=cfg.mean, std=cfg.std),
                                   cfg.recalibrate_batches))
    return _cached(ctx, "calib_aug" if augmented else "calib", make)


def has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def evaluate(ctx: Context, model: nn.Module, specs: dict[str, Spec]) -> dict[str, dict[str, float]]:
    """Test accuracy of each spec: ``plain`` (shared BN statistics), ``bn_recal`` and ``bn_aug``
    (re-estimated on clean / augmented training batches)."""
    test = _test_batches(ctx)
    out: dict[str, dict[str, float]] = {"plain": {n: accuracy(model, test, s) for n, s in specs.items()}}
    if has_bn(model) and ctx.cfg.recalibrate_batches > 0:
        for mode, augmented in (("bn_recal", False), ("bn_aug", True)):
            calib, recal = _calib_batches(ctx, augmented), {}
            for name, spec in specs.items():
                with bn_recalibrated(model, spec, calib, len(calib)):
                    recal[name] = accuracy(model, test, spec)
            out[mode] = recal
    return out


def spec_costs(ctx: Context, model: nn.Module, specs: dict[str, Spec]) -> dict[str, dict[str, float]]:
    shape = tuple(ctx.train.image_shape)
    return {n: fn3.cost.costs(model, s, COST_METRICS, input_shape=shape) for n, s in specs.items()}


def random_kept(spec: Spec, space: fn3.Space, kinds: tuple[str, ...], gen: torch.Generator) -> Spec:
    """``spec`` with every truncated axis of ``kinds`` keeping as many blocks, chosen at random.

    The mandatory first blocks stay (a sub-model needs them); the others are a random draw, so the
    blocks removed are not the tail but any of them: the paper's random-order ablation.
    """
    keep = spec.as_dict()
    for ax in space:
        k = len(keep[ax.name])
        if ax.kind not in kinds or k >= ax.num_blocks:
            continue
        m0 = ax.min_blocks
        rest = (torch.randperm(ax.num_blocks - m0, generator=gen)[: k - m0] + m0).tolist()
        keep[ax.name] = (*range(m0), *rest)
    return space.validate(Spec(keep))


def _random_order(ctx: Context, arm: Arm, budgets: tuple[Budget, ...]) -> dict[str, Any]:
    source = ctx.results["arms"].get(arm.source)
    if source is None:
        raise ConfigError(f"arm {arm.name!r} needs arm {arm.source!r} to run first")
    model = load_run(source["runs"]["model"]["run_dir"]).model
    space = fn3.space(model)
    kinds = tuple(arm.options.get("kinds", ctx.exp.level.split(",")))
    gen = torch.Generator().manual_seed(ctx.cfg.seed + 7919)
    acc: dict[str, dict[str, float]] = {}
    draws: dict[str, dict[str, list[float]]] = {}
    for b in budgets:
        prefix = parse_spec(b.spec, space)
        n = min(arm.draws, QUICK_DRAWS) if ctx.quick else arm.draws
        specs = {f"{b.label}#{i}": random_kept(prefix, space, kinds, gen) for i in range(n)}
        if all(s == prefix for s in specs.values()):
            specs = {f"{b.label}#0": prefix}  # nothing to remove: the full model
        for mode, values in evaluate(ctx, model, specs).items():
            vals = list(values.values())
            draws.setdefault(mode, {})[b.label] = vals
            acc.setdefault(mode, {})[b.label] = sum(vals) / len(vals)
    return {"runs": {}, "wall_time_s": 0.0, "cpu_time_s": 0.0, "accuracy": acc, "draws": draws,
            "costs": spec_costs(ctx, model, {b.label: parse_spec(b.spec, space) for b in budgets})}


def _search(ctx: Context, arm: Arm, model: nn.Module) -> dict[str, Any]:
    """Heuristic search on the validation split, then the test accuracy of the front."""
    from fn3.search import Evaluator, search

    if ctx.val is None:
        raise ConfigError("a search arm needs a validation split (val_fraction > 0)")
    cfg, opts = ctx.cfg, dict(arm.options)
    val = list(batches(ctx.val, 256, shuffle=False, mean=cfg.mean, std=cfg.std))
    calib = _calib_batches(ctx, augmented=True) if cfg.recalibrate_batches > 0 else None
    ev = Evaluator(model, val, recalibrate=calib, num_batches=max(1, cfg.recalibrate_batches))
    metric = opts.pop("metric", "bitops")
    if ctx.quick:
        opts["max_evals"] = QUICK_MAX_EVALS
    res = search(model, ev, metric, opts.pop("strategy", "heuristic"),
                 input_shape=tuple(ctx.train.image_shape), seed=cfg.seed,
                 metrics=[m for m in COST_METRICS if m != metric], **opts)
    front = res.pareto_front()
    space = fn3.space(model)
    test = evaluate(ctx, model, {str(i): p.spec for i, p in enumerate(front)})
    points = [{"costs": dict(p.costs), "val_accuracy": p.accuracy,
               "test_accuracy": {mode: test[mode][str(i)] for mode in test},
               "spec": p.spec.to_dict(space)} for i, p in enumerate(front)]
    return {"metric": metric, "evals": res.evals, "wall_time_s": res.wall_time,
            "strategy": res.strategy, "options": dict(res.options), "front": points}
