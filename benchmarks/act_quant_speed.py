"""Training-step time of a network nested in bits: fn3's one-pass activation quantizer against the
same quantizer written with autograd.

Every activation quantizer of a model nested in bits runs in every training step; with a clipping
level per bit-width (``act_clip="per-bits"``, LSQ's gradient, the default on bits) its autograd form
(:func:`fn3.nn.functional.fake_quant_act_autograd`: clamps, straight-through rounding, a surrogate
for the level's gradient) took ~19 passes over each feature map, and a step was 1.33x a step with
the shared level (``benchmarks/family_cost.py``, 2026-12-04). fn3 now runs the quantizer as one
autograd function (``fake_quant_act``). This benchmark times one training step of experiment 5's
ResNet-20 (CIFAR-sized input, batch 128, one thread) with each, interleaved in one process (median
thread CPU time over repeats), for the shared level (PACT) and a level per bit-width (LSQ), at 8, 4
and 2 bits, and reports

    fn3 step / autograd-form step

Both give the same values and gradients (``tests/nn/test_act_clip.py``).

    python benchmarks/act_quant_speed.py            # about two minutes on one core
    python benchmarks/act_quant_speed.py --quick    # seconds

Writes ``docs/benchmarks/act_quant_speed.md`` and ``docs/benchmarks/act_quant_speed.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import fn3
import fn3.nn.base as nested_base
from fn3._io import atomic_path, atomic_write_text
from fn3.nn.base import set_act_clip
from fn3.nn.functional import fake_quant_act, fake_quant_act_autograd

ROOT = Path(__file__).resolve().parents[1]


def _autograd_form(x, alpha, total_bits, keep, signed, mask=None, scheme="centred", learn="pact"):
    """``fake_quant_act``'s signature on the autograd form (the benchmarked models are centred)."""
    return fake_quant_act_autograd(x, alpha, total_bits, keep, signed, mask, learn)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          spec: fn3.Spec) -> None:
    with fn3.active(model, spec):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(clip: str, bits: int, batch: int, repeats: int, steps: int) -> dict[str, float]:
    """``{"autograd": ms, "fn3": ms}``: median thread CPU ms per training step at ``bits`` bits."""
    model = fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=(32, 32),
                             levels=("bits",), quant_scheme="centred")
    set_act_clip(model, clip)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen)  # (B, 3, 32, 32): the step's cost, not its data
    y = torch.randint(0, 10, (batch,), generator=gen)
    spec = fn3.space(model).uniform({"bits": bits})
    forms: dict[str, Callable] = {"autograd": _autograd_form, "fn3": fake_quant_act}
    times: dict[str, list[float]] = {k: [] for k in forms}
    try:
        for r in range(repeats + 1):  # the first round warms up (oneDNN primitives, allocator)
            for name, fn in forms.items():
                nested_base.fake_quant_act = fn
                t0 = time.thread_time()
                for _ in range(steps):
                    _step(model, opt, x, y, spec)
                if r:
                    times[name].append((time.thread_time() - t0) / steps * 1e3)
    finally:
        nested_base.fake_quant_act = fake_quant_act
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seconds: small batch, one repeat")
    ap.add_argument("--batch", type=int, default=128, help="experiment 5's batch size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="steps per repeat and form")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.steps = 8, 1, 1
    torch.manual_seed(0)
    torch.set_num_threads(1)  # thread CPU time of one thread: stable on a shared 2-core machine
    rows: list[tuple[str, int, float, float]] = []
    for clip, label in (("shared", "shared level (PACT)"), ("per-bits", "level per bit-width (LSQ)")):
        for bits in (8, 4, 2):
            ms = measure(clip, bits, args.batch, args.repeats, args.steps)
            rows.append((label, bits, ms["autograd"], ms["fn3"]))
            print(f"{label:28s} {bits} bits  autograd {ms['autograd']:7.1f} ms  fn3 {ms['fn3']:7.1f} ms  "
                  f"{ms['fn3'] / ms['autograd']:.2f}x", flush=True)
    cmd = "python benchmarks/act_quant_speed.py" + (" --quick" if args.quick else "")
    lines = ["| activation clipping | bits | autograd form (ms / step) | fn3 (ms / step) | fn3 / autograd |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c} | {b} | {a:.1f} | {f:.1f} | {f / a:.2f}x |" for c, b, a, f in rows]
    md = (f"### Training step of a ResNet-20 nested in bits: one-pass quantizer vs autograd form "
          f"(batch {args.batch}, 1 thread)\n\nCommand: `{cmd}` ({args.repeats} interleaved repeats x "
          f"{args.steps} steps, median thread CPU time). Same values and gradients "
          "(`tests/nn/test_act_clip.py`).\n\n" + "\n".join(lines)
          + "\n\n![training step time, autograd form vs fn3](act_quant_speed.png)\n")
    atomic_write_text(args.out / "act_quant_speed.md", md)
    _plot(rows, args.out / "act_quant_speed.png")


def _plot(rows: list[tuple[str, int, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    pos = range(len(rows))
    ax.bar([p - 0.2 for p in pos], [r[2] for r in rows], 0.4, label="autograd form", color="tab:gray")
    ax.bar([p + 0.2 for p in pos], [r[3] for r in rows], 0.4, label="fn3 (one pass)", color="tab:blue")
    ax.set_xticks(list(pos), [f"{r[0].split(' (')[1][:-1]}\n{r[1]} bits" for r in rows], fontsize=7)
    ax.set_ylabel("ms per training step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


if __name__ == "__main__":
    main()
