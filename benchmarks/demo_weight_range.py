"""Does the weight range lift the low bits of a family nested in several levels?

Since config version 12 an unset ``weight_clip`` quantizes each weight channel of a family nested in
**bits alone** on ``min(max|w|, 3 rms)`` (:data:`fn3.run.AUTO_WEIGHT_CLIP`), measured on a CIFAR-10
ResNet-20 (issue 11, experiment 5). A family nested in several levels kept each channel's largest
magnitude, where the range had not been measured. This script trains the ``fn3 demo`` network (a
small ResNeXt nested in channels, paths, layers and bits, on scikit-learn's bundled 8x8 digits,
``fn3 train``'s default rule ``full+odo``) at each seed twice, on the largest magnitude
(``--weight-clip 0``) and on 3 rms (``--weight-clip 3``), and scores the same sub-models of both
on the test split (BatchNorm re-estimated per sub-model, as ``fn3 eval`` does): the whole network at
8, 4, 3 and 2 bits, half of every other level at 4 and 2 bits, and the smallest sub-model.
``benchmarks/repro/exp6_all_levels.py`` asks the same on Fashion-MNIST (a ResNet-20 nested in bits,
channels and layers; its two ``fn3 default all levels`` arms).

    python benchmarks/demo_weight_range.py              # seeds 0-2, about 3 minutes
    python benchmarks/demo_weight_range.py --quick      # one epoch, one seed: a smoke test

Writes ``docs/benchmarks/demo_weight_range.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from fn3._io import atomic_write_text
from fn3.demo import DEMO_CONFIG
from fn3.run import load_run, resolved_weight_clip, train_run
from fn3.spec import Space, Spec
from fn3.train import evaluate_specs

ROOT = Path(__file__).resolve().parents[1]
#: The two weight ranges compared: each channel's largest magnitude, and at most 3 times its rms.
RANGES = (0.0, 3.0)


def specs_of(space: Space) -> dict[str, Spec]:
    """The sub-models scored, by label: the whole network at 8/4/3/2 bits, half of every other
    level at 4 and 2 bits, and the smallest."""
    half = {k: 0.5 for k in space.kinds() if k != "bits"}
    out = {f"{b} bits": space.uniform({"bits": b}) for b in (8, 4, 3, 2)}
    out.update({f"half, {b} bits": space.uniform({**half, "bits": b}) for b in (4, 2)})
    out["smallest"] = space.smallest()
    return out


def measure(seed: int, clip: float, epochs: int, root: Path) -> tuple[dict[str, float], int, float]:
    """Train the demo network at ``seed`` on weight range ``clip``; its sub-models' test accuracy,
    the test split's size and the training seconds."""
    cfg = DEMO_CONFIG.replace(epochs=epochs, seed=seed, weight_clip=clip)
    run_dir = root / f"s{seed}_w{clip:g}"
    t0 = time.perf_counter()
    train_run(cfg, run_dir, progress=False)
    seconds = time.perf_counter() - t0
    run = load_run(run_dir)
    trained = resolved_weight_clip(run.model, run.config)
    if trained != clip:  # the arm must train what it names
        raise RuntimeError(f"the run trained on weight range {trained}, not {clip}")
    train, _, test = run.datasets()
    return evaluate_specs(run.model, specs_of(run.space), test, run.config, train), len(test), seconds


def render(rows: dict[int, dict[float, dict[str, float]]], n_test: int, command: str, seconds: float) -> str:
    """The page: per seed and sub-model, both ranges and their difference; then the mean."""
    labels = list(next(iter(next(iter(rows.values())).values())))
    se = 2 * math.sqrt(2 * 0.9 * 0.1 / n_test) * 100  # 2 s.e. of two independent models near 90%
    lines = ["# The weight range on a family nested in several levels", "",
             f"`{command}` ({seconds:.0f} s): the `fn3 demo` network (ResNeXt nested in channels, paths, "
             "layers and bits; scikit-learn's 8x8 digits; `fn3 train`'s default rule) trained at each "
             f"seed on each weight channel's largest magnitude (`--weight-clip 0`) and on 3 rms "
             f"(`--weight-clip 3`); test accuracy of the same sub-models ({n_test} test images, BatchNorm "
             f"re-estimated per sub-model; 2 s.e. of a difference of two models near 90%: about "
             f"{se:.1f} pt).", "",
             "| seed | sub-model | largest magnitude | 3 rms | 3 rms - largest |",
             "| ---: | --- | ---: | ---: | ---: |"]
    for seed, by in rows.items():
        for lb in labels:
            a, b = by[RANGES[0]][lb], by[RANGES[1]][lb]
            lines.append(f"| {seed} | {lb} | {a:.2%} | {b:.2%} | {100 * (b - a):+.2f} pt |")
    lines += ["", "Mean over the seeds:", "", "| sub-model | largest magnitude | 3 rms | 3 rms - largest |",
              "| --- | ---: | ---: | ---: |"]
    for lb in labels:
        a = sum(by[RANGES[0]][lb] for by in rows.values()) / len(rows)
        b = sum(by[RANGES[1]][lb] for by in rows.values()) / len(rows)
        lines.append(f"| {lb} | {a:.2%} | {b:.2%} | {100 * (b - a):+.2f} pt |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one epoch, one seed: a smoke test")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "demo_weight_range.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # 8x8 inputs: one thread is the fastest and steadiest
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epochs = 1 if args.quick else DEMO_CONFIG.epochs
    command = "python benchmarks/demo_weight_range.py" + (" --quick" if args.quick else "") + (
        f" --seeds {' '.join(map(str, seeds))}" if args.seeds else "")
    t0 = time.perf_counter()
    rows: dict[int, dict[float, dict[str, float]]] = {}
    n_test = 0
    with tempfile.TemporaryDirectory() as d:
        for seed in seeds:
            rows[seed] = {}
            for clip in RANGES:
                rows[seed][clip], n_test, secs = measure(seed, clip, epochs, Path(d))
                print(f"seed {seed}, weight range {clip:g}: {secs:.0f} s train; "
                      + ", ".join(f"{k} {v:.2%}" for k, v in rows[seed][clip].items()), flush=True)
    text = render(rows, n_test, command, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
