"""Cost of training a nested family against training each of its budgets alone (issue 11).

Issue 11 asks that training the whole family cost at most half the CPU time of training the
independent twins (one network per budget, same epochs). The reproduction page's cost rows compare
the CPU times of runs made hours or sessions apart, on shared machines where a process's CPU time
grows by up to 1.7x with what else runs (the same independent family: 724 s alone, 1208 s beside
four other runs) and on CPUs that differ between sessions. This benchmark measures the same ratio
without that noise: for each experiment of ``benchmarks/repro`` (its model, level, budgets and batch
size), it times one training step of every budget's network alone and one step of each family rule,
interleaved in one process (round-robin over repeats), on thread CPU time, and reports

    family step / (sum of the budgets' steps)

which is the CPU-time ratio of the two trainings at equal epochs (each budget's twin takes as many
steps as the family). The twins are the nested model at a fixed spec (``rule="fixed"``), as the
experiments train them; a physically smaller network costs the same convolutions.

    python benchmarks/family_cost.py            # a few minutes on 2 cores
    python benchmarks/family_cost.py --quick    # seconds
    python benchmarks/family_cost.py --only exp3_layers_resnet32   # one experiment (and its longer runs)

Writes ``docs/benchmarks/family_cost.md`` and ``docs/benchmarks/family_cost.png``, and the ratios to
``benchmarks/results/family_cost.json`` (``{experiment: {arm name: ratio}}``), which
``benchmarks/repro/render.py`` shows beside the runs' own CPU times. ``--only`` measures the
named experiments alone, writes their table to ``family_cost_<key>.md`` (and ``.png``) and replaces
their ratios in the JSON, leaving the other experiments' as they were measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import fn3
from fn3._io import atomic_path, atomic_write_text
from fn3.config import TrainConfig
from fn3.nn.base import set_act_clip, set_weight_clip
from fn3.spec import Spec, parse_spec
from fn3.train import make_optimizer, make_rule, resolved_spec_loss, train_step

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "family_cost.json"
sys.path.insert(0, str(ROOT / "benchmarks" / "repro"))  # the experiments' definitions (runner, expN)


def rules() -> list:
    """The family rules compared: arms of the reproduction (their ``train`` overrides), so that a
    ratio here names the arm whose accuracy the reproduction page shows."""
    from runner import (
        AUTO,
        AUTO_DEPTH,
        AUTO_MEAN_LR2,
        AUTO_NORM,
        AUTO_NORM_CLIP,
        AUTO_NORM_CLIP_CORNERS,
        AUTO_NORM_CLIP_DISTILL,
        AUTO_NORM_CLIP_HALF,
        AUTO_NORM_CLIP_HALF_SMALL,
        AUTO_NORM_CLIP_THIRD,
        AUTO_NORM_DISTILL,
        AUTO_NORM_HALF,
        DEFAULT,
        ODO_GEOMETRIC,
        weight_range,
    )

    # The bits rules on a weight range of 3 rms (the bits default since config version 12, and its
    # cheaper rotations): the range's per-channel root mean square is part of each step's cost.
    ranged = [weight_range(3.0, rule) for rule in (None, AUTO_NORM_CLIP_CORNERS, AUTO_NORM_CLIP_HALF)]
    return [AUTO, AUTO_NORM, AUTO_NORM_HALF, AUTO_NORM_CLIP, AUTO_NORM_CLIP_HALF, AUTO_NORM_CLIP_HALF_SMALL,
            AUTO_NORM_CLIP_THIRD, AUTO_NORM_CLIP_CORNERS, *ranged, AUTO_NORM_DISTILL, AUTO_NORM_CLIP_DISTILL,
            AUTO_DEPTH, AUTO_MEAN_LR2, DEFAULT, ODO_GEOMETRIC]


def _applies(arm, exp) -> bool:
    """Whether ``arm`` ran on ``exp``: a clipping level per bit-width only on a family nested in bits,
    distillation and a rate of its own (the depth default's ``lr=None``, the channels default's 0.2)
    only where the experiment has that arm (the layers, channels and bits families)."""
    if arm.train.get("distill") or "lr" in arm.train:
        return arm.name in {a.name for a in exp.arms}
    return arm.train.get("act_clip", "shared") != "per-bits" or exp.level == "bits"


def _timed_rules(exp, longer: list) -> list:
    """The rules timed on ``exp``'s model: those that ran on it or on one of its longer variants, and
    on ResNet-32 the longer runs' own listed-depth arms (every depth each step, and the rotations
    that train every depth for less: ``per_step`` and ``rotation`` of :func:`runner.every_budget`)."""
    timed = [arm for arm in rules() if any(_applies(arm, e) for e in (exp, *longer))]
    if exp.key == "exp3_layers_resnet32":
        for e in longer:
            timed += [a for a in e.arms if a.train.get("rule") == "specs" and a.name not in
                      {t.name for t in timed}]
    return timed


def experiments() -> list[tuple[object, list]]:
    """The experiments whose families are timed, channels, layers (ResNet-20 and -32), paths and bits
    (2-5), each with its longer variants: the same model and steps, so the same step times, but the
    18-epoch channels run has three budgets, not four, and so a smaller sum of twins."""
    import exp2_channels
    import exp3_layers
    import exp4_paths
    import exp5_bits

    return [(exp2_channels.experiment(), [exp2_channels.longer()]),
            (exp3_layers.experiment(20), [exp3_layers.longer()]),
            (exp3_layers.experiment(32), [exp3_layers.deeper(18), exp3_layers.deeper(36)]),
            (exp4_paths.experiment(), [exp4_paths.longer()]),
            (exp5_bits.experiment(), [exp5_bits.longer(), exp5_bits.longer(36)])]


def _model(cfg: TrainConfig) -> torch.nn.Module:
    return fn3.create_model(cfg.model, num_classes=10, in_channels=3, input_size=(32, 32),
                            levels=cfg.levels, seed=cfg.seed, **cfg.model_kwargs)


def _timed(step: Callable[[int], None], t: int, steps: int) -> float:
    """Thread CPU seconds per step of ``steps`` steps starting at step index ``t``."""
    t0 = time.thread_time()
    for s in range(steps):
        step(t + s)
    return (time.thread_time() - t0) / steps


def measure(exp, batch: int, repeats: int, steps: int,
            longer: list | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """``(twin ms per step by budget label, family ms per step by arm name)`` for one experiment (and
    the rules of its ``longer`` variants, which train the same model)."""
    base: TrainConfig = exp.base
    model = _model(base)
    space = fn3.space(model)
    opt = make_optimizer(model, base)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen)  # (B, 3, 32, 32): the step's cost, not its data
    y = torch.randint(0, 10, (batch,), generator=gen)

    def fixed(spec: Spec) -> Callable[[int], None]:
        return lambda t: train_step(model, opt, x, y, [spec])

    def family(cfg: TrainConfig) -> Callable[[int], None]:
        # a clipping level per bit-width is a model of its own (it has more parameters to step), and
        # so is a weight range (its own quantizer: each channel's root mean square, every pass)
        own = _model(cfg) if cfg.act_clip == "per-bits" or cfg.weight_clip else model
        if cfg.act_clip == "per-bits":
            set_act_clip(own, "per-bits")
        if cfg.weight_clip:
            set_weight_clip(own, cfg.weight_clip)
        own_opt = opt if own is model else make_optimizer(own, cfg)
        rule, loss = make_rule(own, cfg), resolved_spec_loss(own, cfg)
        # distillation as after its start (soft targets from the largest: the same passes)
        return lambda t: train_step(own, own_opt, x, y, rule(t), reduction=loss, distill=cfg.distill)

    twins = {b.label: fixed(parse_spec(b.spec, space)) for b in exp.budgets}
    rules_ = {arm.name: family(base.replace(**arm.train)) for arm in _timed_rules(exp, longer or [])}
    arms = {**{("twin", k): v for k, v in twins.items()}, **{("rule", k): v for k, v in rules_.items()}}
    for step in arms.values():  # warm-up (oneDNN primitives, allocator)
        step(0)
    times: dict = {k: [] for k in arms}
    for r in range(repeats):
        for key, step in arms.items():
            times[key].append(_timed(step, r * steps, steps))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {k: ms[("twin", k)] for k in twins}, {k: ms[("rule", k)] for k in rules_}


def rows_of(exp, twin_ms: dict[str, float], rule_ms: dict[str, float]) -> list[tuple[str, float, float]]:
    """``[(step, ms, ratio to the sum of exp's twins)]``: a row per budget twin of ``exp`` (its share),
    then one per family rule."""
    total = sum(twin_ms[b.label] for b in exp.budgets)
    rows = [(f"twin {b.label}", twin_ms[b.label], twin_ms[b.label] / total) for b in exp.budgets]
    ran = {arm.name for arm in rules() if _applies(arm, exp)} | {arm.name for arm in exp.arms}
    return rows + [(name, t, t / total) for name, t in rule_ms.items() if name in ran]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seconds: small batch, one repeat")
    ap.add_argument("--batch", type=int, default=128, help="the experiments' batch size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12,
                    help="steps per repeat: ODO draws vary per step, and two specs a step go round 3 or 4 "
                         "grid members (12 steps: each equally often)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where the ratios go as JSON for the reproduction page")
    ap.add_argument("--only", action="append", default=[], metavar="KEY",
                    help="measure only this experiment (and its longer runs), e.g. exp3_layers_resnet32; "
                         "repeatable. Its ratios replace its own in the JSON; the table goes to "
                         "family_cost_<KEY>.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.steps = 8, 1, 1
    chosen = experiments()
    if args.only:
        keys = {e.key for e, _ in chosen}
        unknown = sorted(set(args.only) - keys)
        if unknown:
            sys.exit(f"family_cost.py: --only {', '.join(unknown)}: no such experiment; expected one of "
                     f"{', '.join(sorted(keys))}")
        chosen = [(e, longer) for e, longer in chosen if e.key in args.only]
    torch.manual_seed(0)
    torch.set_num_threads(1)  # thread CPU time of one thread: stable on a shared 2-core machine
    table: list[tuple[str, str, float, float]] = []
    for exp, longer in chosen:
        twin_ms, rule_ms = measure(exp, args.batch, args.repeats, args.steps, longer)
        for variant in [exp, *longer]:
            for name, ms, ratio in rows_of(variant, twin_ms, rule_ms):
                table.append((variant.key, name, ms, ratio))
                print(f"{variant.key:26s} {name:52s} {ms:8.1f} ms {ratio:5.2f}x", flush=True)
    lines = ["| experiment | step | ms / step | vs the twins' summed steps |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {k} | {n} | {ms:.1f} | {r:.2f}x |" for k, n, ms, r in table]
    cmd = ("python benchmarks/family_cost.py" + (" --quick" if args.quick else "")
           + "".join(f" --only {k}" for k in args.only))
    md = (f"### Training the family vs training each budget alone (batch {args.batch}, 1 thread)\n\n"
          f"Command: `{cmd}` ({args.repeats} interleaved repeats x {args.steps} steps, median thread "
          "CPU time). A rule's ratio is its CPU time for the family against the independent twins' "
          "at equal epochs; a twin's is its share of theirs. The 18-epoch rows reuse the step times "
          "of their 6-epoch experiment over their own budgets. Issue 11's target: <= 0.50x.\n\n"
          + "\n".join(lines) + "\n")
    stem = "family_cost" + "".join(f"_{k}" for k in args.only)
    atomic_write_text(args.out / f"{stem}.md", md)
    ratios: dict[str, dict[str, float]] = {}
    for key, name, _, ratio in table:
        if not name.startswith("twin "):
            ratios.setdefault(key, {})[name] = round(ratio, 3)
    payload = {"command": cmd, "batch": args.batch, "repeats": args.repeats, "steps": args.steps,
               "ratios": ratios}
    if args.only and args.results.exists():  # the other experiments keep their measurement
        earlier = json.loads(args.results.read_text())
        payload = {**earlier, "ratios": {**earlier.get("ratios", {}), **ratios},
                   "commands": {**earlier.get("commands", {}), **{k: cmd for k in ratios}}}
    atomic_write_text(args.results, json.dumps(payload, indent=1) + "\n")
    _plot(table, args.out / f"{stem}.png")


def _plot(table: list[tuple[str, str, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table if not r[1].startswith("twin ")]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r[3] for r in rows], color="tab:blue")
    ax.axvline(0.5, color="tab:red", ls="--", lw=1, label="issue 11 target (0.5x)")
    ax.axvline(1.0, color="gray", ls=":", lw=1, label="the twins' cost")
    ax.set_yticks(range(len(rows)), [f"{n} [{k}]" for k, n, *_ in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("family training CPU time / independent twins' (equal epochs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


if __name__ == "__main__":
    main()
