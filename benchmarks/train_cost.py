"""Cost of one training step: ordered dropout vs the full-width model vs the sandwich rule.

For ResNet-20 on 32x32 inputs, runs the three kinds of step side by side in one process, interleaved
(round-robin over repeats, so machine noise hits every arm alike), and reports per-step time and the
bytes autograd saves for the backward pass (the activation memory a step needs), as ratios to the
full-width step. Targets (issue 2): ODO step <= 0.8x the full step's time, memory <= 1.2x.

    python benchmarks/train_cost.py            # full run (a few minutes on 2 cores)
    python benchmarks/train_cost.py --quick    # smoke test (seconds)

Writes ``docs/benchmarks/train_cost.md`` and ``docs/benchmarks/train_cost.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import fn3
from fn3.config import TrainConfig
from fn3.train import make_optimizer, train_step

ROOT = Path(__file__).resolve().parents[1]


class SavedBytes:
    """Counts the bytes of tensors autograd saves for backward (the step's activation memory)."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in self._seen:  # views of one storage count once
            self._seen.add(key)
            self.total += t.untyped_storage().nbytes()
        return t

    def __enter__(self) -> SavedBytes:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def step_memory(model, x, y, specs) -> int:
    """Peak saved bytes over the specs of one step (each spec's graph is freed after its backward)."""
    peak = 0
    for spec in specs:
        with SavedBytes() as counter, fn3.active(model, spec):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        peak = max(peak, counter.total)
    model.zero_grad(set_to_none=True)
    return peak


def run(levels: tuple[str, ...], batch: int, repeats: int, steps: int) -> dict[str, dict[str, float]]:
    model = fn3.create_model("resnet20", num_classes=10, in_channels=3, levels=levels)
    space = fn3.space(model)
    cfg = TrainConfig(model="resnet20", lr=0.01)
    opt = make_optimizer(model, cfg)
    odo = fn3.OrderedDropout(space, dist="geometric", rho=0.9, seed=0)
    sandwich = fn3.Sandwich(space, n=2, seed=0)
    arms = {
        "full width": lambda t: [space.largest()],
        "ODO (geometric, rho=0.9)": odo.step_specs,
        "ODO (uniform)": fn3.OrderedDropout(space, dist="uniform", seed=0).step_specs,
        "sandwich (4 widths)": sandwich.step_specs,
    }
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    times: dict[str, list[float]] = {k: [] for k in arms}
    for rule in arms.values():  # warm-up
        train_step(model, opt, x, y, rule(0))
    for r in range(repeats):
        for name, rule in arms.items():
            t0 = time.perf_counter()
            for s in range(steps):
                train_step(model, opt, x, y, rule(r * steps + s))
            times[name].append((time.perf_counter() - t0) / steps)
    out = {}
    for name, rule in arms.items():
        mem = statistics.mean(step_memory(model, x, y, rule(t)) for t in range(min(steps * 2, 16)))
        out[name] = {"time": statistics.median(times[name]), "memory": mem}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="steps per repeat (ODO varies per step)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 keeps timings stable on a shared 2-core machine",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.repeats, args.steps = 16, 2, 2
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    level_sets = [("channels", "layers"), ("bits", "channels", "layers")]
    rows = []
    for levels in level_sets:
        res = run(levels, args.batch, args.repeats, args.steps)
        base = res["full width"]
        for name, r in res.items():
            rows.append(
                (
                    ",".join(levels),
                    name,
                    r["time"] * 1e3,
                    r["time"] / base["time"],
                    r["memory"] / 2**20,
                    r["memory"] / base["memory"],
                )
            )
    header = "| levels | step | ms / step | time vs full | saved MiB | memory vs full |"
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c:.1f} | {d:.2f}x | {e:.1f} | {f:.2f}x |" for a, b, c, d, e, f in rows]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/train_cost.py" + (" --quick" if args.quick else "")
    md = (
        f"### Training step cost (ResNet-20, 32x32, batch {args.batch})\n\n"
        f"Command: `{cmd}` ({args.repeats} interleaved repeats x {args.steps} steps, median, "
        f"{args.threads} thread(s); "
        "memory = bytes autograd saves for backward, peak over a step's specs).\n"
        "Target: ODO step <= 0.80x the full-width step's time, memory <= 1.2x.\n\n" + table + "\n"
    )
    (args.out / "train_cost.md").write_text(md)
    _plot(rows, args.out / "train_cost.png")


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    labels = [f"{b}\n[{a}]" for a, b, *_ in rows]
    ax.barh(range(len(rows)), [r[3] for r in rows], color="tab:blue", label="time vs full")
    ax.barh(
        [i + 0.35 for i in range(len(rows))],
        [r[5] for r in rows],
        height=0.35,
        color="tab:orange",
        label="memory vs full",
    )
    ax.axvline(0.8, color="gray", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.set_xlabel("ratio to the full-width step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
