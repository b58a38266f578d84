"""How well does a latency table predict a sub-model's real latency on this machine?

For ResNet-20 (CIFAR, 32x32) and each back-end (PyTorch, ONNX Runtime; CPU), this script

1. measures a latency table with :func:`fn3.cost.latency.measure_latency_table`;
2. draws ``--specs`` random sub-models (spread from small to full; the smallest and the largest are
   always in) and has the table time each one *physically sliced* (plain ``nn.Conv2d`` /
   ``nn.BatchNorm2d`` / ``nn.Linear`` holding the active weight slices, dropped residual blocks
   removed; ONNX Runtime runs its ``torch.onnx.export``) as a *reference*, in the same interleaved
   rounds as the units, so that the machine's load cannot differ between the two sides;
3. compares predicted with measured: Spearman rank correlation and median absolute percentage error,
   against the targets rho >= 0.9 and median error <= 15%, side by side with the baseline proxy
   "latency proportional to FLOPs" (the full model's measured latency times the FLOPs ratio).

It prints a table and writes ``docs/benchmarks/latency.md`` and ``docs/benchmarks/latency.png``.

    python benchmarks/latency.py                 # full run (a few minutes)
    python benchmarks/latency.py --quick         # smoke test in seconds
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import fn3
from fn3.cost import cost, measure_latency_table
from fn3.cost._plain import spread_specs
from fn3.spec import Spec

ROOT = Path(__file__).resolve().parents[1]
TARGET_RHO, TARGET_ERR = 0.9, 0.15


# -- how fast is an analytic cost? -----------------------------------------------------------------


def cost_speed(model: nn.Module, n: int, seed: int) -> dict[str, float]:
    """Microseconds per ``cost()`` call over ``n`` fresh random specs (median of 5 passes, CPU time)."""
    space = fn3.space(model)
    gen = torch.Generator().manual_seed(seed)
    specs = [space.sample(gen) for _ in range(n)]
    cost(model, specs[0], "flops")  # builds the plan once (one traced forward)
    out = {}
    for metric in ("params", "bits", "flops", "bitops", "memory"):
        passes = []
        for _ in range(5):
            fresh = [Spec(s.keep) for s in specs]  # new objects: no per-spec cache hit
            t0 = time.process_time()
            for s in fresh:
                cost(model, s, metric)
            passes.append((time.process_time() - t0) / n * 1e6)
        out[metric] = float(np.median(passes))
    for s in specs:
        cost(model, s, "flops")
    t0 = time.process_time()
    for s in specs:
        cost(model, s, "flops")  # the same objects again: resolved sizes and results are cached
    out["flops (same spec object again)"] = (time.process_time() - t0) / n * 1e6
    return out


# -- statistics -----------------------------------------------------------------------------------


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        idx = x == v
        r[idx] = r[idx].mean()
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def median_ape(pred: np.ndarray, real: np.ndarray) -> float:
    return float(np.median(np.abs(pred - real) / real))


# -- the run ----------------------------------------------------------------------------------------


def run_backend(model: nn.Module, specs: list[Spec], backend: str, clock: str,
                args: argparse.Namespace, seed: int) -> dict:
    """One table, with the evaluation sub-models timed as its references in the same rounds as its
    units (so a change of the machine's load between phases cannot bias the comparison)."""
    t0 = time.perf_counter()
    table = measure_latency_table(model, backend=backend, batch_size=args.batch_size, repeats=args.repeats,
                                  seed=seed, threads=args.threads, clock=clock, references=specs,
                                  specs=specs if args.quick else None)
    t_table = time.perf_counter() - t0
    checked = table.check(model)
    assert [s for s, _, _ in checked] == specs
    pred = np.array([p for _, p, _ in checked])
    real = np.array([m for _, _, m in checked])
    flops = np.array([cost(model, s, "flops") for s in specs])
    proxy = real[1] * flops / flops[1]  # specs[1] is the largest: its measured latency, scaled by FLOPs
    return {"backend": backend, "clock": clock, "entries": len(table.entries),
            "overhead_us": table.overhead_us, "t_table": t_table, "pred": pred, "real": real,
            "proxy": proxy, "rho": spearman(pred, real), "err": median_ape(pred, real),
            "rho_proxy": spearman(proxy, real), "err_proxy": median_ape(proxy[2:], real[2:])}


def _span(values: list[float], fmt: str) -> str:
    """``median [min - max]`` of a metric over trials (just the value for one trial)."""
    med = float(np.median(values))
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)} - {format(max(values), fmt)}]"


def report(trials: list[list[dict]], args: argparse.Namespace, n_specs: int,
           speed: dict[str, float], load: str) -> str:
    n = len(trials)
    lines = [
        "# Latency tables: predicted vs measured sub-model latency",
        "",
        f"ResNet-20, input 3x32x32, batch {args.batch_size}, {args.threads} thread(s), {n_specs} sub-models "
        f"(physically sliced float models, timed as the table's references: in the same {args.repeats} "
        "interleaved rounds as the table's units, medians). "
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, shared with other jobs "
        f"(load average {load}); torch {torch.__version__}. "
        + (f"The whole protocol ran {n} times (fresh tables, fresh measurements): each cell is the "
           "median over trials [min - max]." if n > 1 else ""),
        "",
        f"Targets: Spearman rho >= {TARGET_RHO}, median absolute error <= {TARGET_ERR:.0%}. "
        "Baseline: latency proportional to FLOPs, scaled from the full model's measured latency "
        "(its error excludes the smallest and largest specs, the second of which it is fitted on).",
        "",
        "Clock `wall` is latency as a user sees it; `cpu` is the timing thread's CPU time (one thread, "
        "so it equals the latency with the core to itself): on a machine shared with other jobs it is "
        "immune to preemption, which otherwise inflates long runs (whole models) more than short ones "
        "(table entries).",
        "",
        "| back-end | clock | table entries | table time (s) | rho (table) | median error (table) "
        "| rho (FLOPs proxy) | median error (FLOPs proxy) | targets met (trials) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for i, r in enumerate(trials[0]):
        runs = [t[i] for t in trials]
        met = sum(x["rho"] >= TARGET_RHO and x["err"] <= TARGET_ERR for x in runs)
        lines.append(
            f"| {r['backend']} | {r['clock']} | {r['entries']} "
            f"| {np.median([x['t_table'] for x in runs]):.1f} "
            f"| {_span([x['rho'] for x in runs], '.3f')} | {_span([100 * x['err'] for x in runs], '.1f')}% "
            f"| {_span([x['rho_proxy'] for x in runs], '.3f')} "
            f"| {_span([100 * x['err_proxy'] for x in runs], '.1f')}% | {met}/{n} |")
    last = trials[-1]
    lines += ["", "Latency range measured (ms, last trial): " + "; ".join(
        f"{r['backend']}/{r['clock']} {r['real'].min():.3f} - {r['real'].max():.3f}" for r in last), "",
        "![predicted vs measured](latency.png)", "",
        "Scatter plot: the last trial.", "",
        "Notes:", "",
        "- What is predicted: the latency of the physically sliced *float* sub-model (what a float "
        "back-end runs). Bits do not enter: on PyTorch and ONNX Runtime CPU, quantized weights are "
        "still float tensors.",
        "- Prediction = the empty model's time (`nn.Identity`, or a one-node ONNX graph) + the sum, "
        "over the sub-model's kept units, of (entry - empty model). Every entry is one call timed "
        "right after a call of another unit (random order per round), so it starts with the caches "
        "another layer left, as inside a model; timing back-to-back calls of one unit keeps it hot and "
        "underestimated ResNet-20 sub-models by 10-15% in our first attempt.",
        "- ONNX Runtime entries are single-unit graphs (`Conv` with its batch norm folded and `Relu` "
        "fused, as the whole-model graph gets them), exported with `torch.onnx.export(dynamo=False)` "
        "(about 10 ms per graph; the dynamo exporter takes seconds per graph) and run with all graph "
        "optimizations, one intra-op thread, sequential execution.",
        "- Wall clock on this shared machine: runs of a few milliseconds are often preempted by other "
        "jobs, short unit runs rarely, so the largest models' wall-clock medians can be far above their "
        "CPU time (the torch/wall outliers in the plot); the `cpu` clock is the same measurement "
        "without that artefact. On a quiet device the two agree.",
        "- The FLOPs proxy ranks sub-models nearly as well but misses the fixed per-layer and per-call "
        "costs that dominate small sub-models at batch 1, hence its large errors.", "",
        "## Analytic cost speed", "",
        "Microseconds per `fn3.cost(model, spec, metric)` call for ResNet-20 (55 axes), fresh random "
        "specs, CPU time (the first call of a model builds its cost plan, one traced forward):", "",
        "| metric | us / call |", "| --- | ---: |",
        *[f"| {k} | {v:.1f} |" for k, v in speed.items()], "",
        "Command: `" + " ".join(["python benchmarks/latency.py", *sys.argv[1:]]) + "`", ""]
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        lo, hi = min(r["real"].min(), r["pred"].min()), max(r["real"].max(), r["pred"].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        ax.scatter(r["real"], r["pred"], s=18, label=f"table (rho {r['rho']:.2f}, err {r['err']:.0%})")
        ax.scatter(r["real"], r["proxy"], s=12, marker="x", alpha=0.7,
                   label=f"FLOPs proxy (rho {r['rho_proxy']:.2f}, err {r['err_proxy']:.0%})")
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(f"ResNet-20 sub-models, {r['backend']} ({r['clock']} clock)", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="torch,onnxruntime")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--specs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clocks", default="wall,cpu",
                   help="wall and/or cpu (the thread's CPU time, threads=1: robust on a shared machine)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default docs/benchmarks; a temp directory with --quick)")
    p.add_argument("--trials", type=int, default=3, help="repeat the whole protocol (fresh tables)")
    p.add_argument("--quick", action="store_true", help="6 specs, 3 rounds, 1 trial, only needed units")
    args = p.parse_args(argv)
    if args.quick:
        args.specs, args.repeats, args.trials = 6, 3, 1
    if args.out is None:
        quick_dir = Path(tempfile.mkdtemp(prefix="fn3-latency-")) if args.quick else None
        args.out = quick_dir or ROOT / "docs" / "benchmarks"
    model = fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=32)
    specs = spread_specs(fn3.space(model), args.specs, args.seed)
    speed = cost_speed(model, 200 if args.quick else 2000, args.seed)
    print("cost() us/call: " + ", ".join(f"{k} {v:.1f}" for k, v in speed.items()), flush=True)
    trials = []
    for trial in range(args.trials):
        results = []
        for backend, clock in itertools.product(args.backends.split(","), args.clocks.split(",")):
            r = run_backend(model, specs, backend, clock, args, seed=args.seed + 100 * trial)
            results.append(r)
            print(f"trial {trial} {backend:12s} {clock:4s} entries {r['entries']:4d}  "
                  f"table {r['t_table']:6.1f}s  "
                  f"rho {r['rho']:.3f}  err {r['err']:6.1%}  |  FLOPs proxy rho {r['rho_proxy']:.3f}  "
                  f"err {r['err_proxy']:6.1%}", flush=True)
        trials.append(results)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "latency.png")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    md = report(trials, args, len(specs), speed, load)
    (args.out / "latency.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
