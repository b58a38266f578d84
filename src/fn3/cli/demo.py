"""``fn3 demo``: one nested model trained, searched, priced, exported and checked, in about a minute."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fn3.cli._app import app, console


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option(help="Demo folder (default: ./fn3-demo, or fn3-demo-2, ... if taken).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default 8).")] = None,
    budget: Annotated[float, typer.Option(help="FLOPs budget as a fraction of the full model.")] = 0.5,
    max_evals: Annotated[int, typer.Option(help="At most this many sub-models scored by the search.")] = 60,
    limit: Annotated[int | None, typer.Option(hidden=True, help="Training images per class (tests).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train one nested model on the bundled digits, search it, export the best under a budget.

    No download: scikit-learn's 8x8 digits. Prints the Pareto front (accuracy, MFLOPs, bytes of each
    sub-model's bit-packed file), exports the best sub-model under the budget and checks that the
    exported file gives the accuracy of the nested model, and leaves a run directory (with the front's
    plot) that `fn3 search`, `fn3 export`, `fn3 eval` and `fn3 bench` work on.
    """
    from fn3.demo import LOW_BITS_GAP, default_out, run_demo
    from fn3.errors import ConfigError

    if not 0 < budget <= 1:
        raise ConfigError(f"--budget {budget}: a fraction of the full model's FLOPs in (0, 1]")
    root = out or default_out()
    t0 = time.perf_counter()
    steps = iter(range(1, 4))

    def step(text: str) -> None:
        say(f"[{next(steps)}/3] {text}")

    r = run_demo(root, epochs=epochs, budget=budget, max_evals=max_evals, limit=limit, seed=seed,
                 progress=progress, step=step)
    table = Table(title=f"Pareto front of {r.evals} scored sub-models (one training run)")
    for col in ("", "val", "test", "MFLOPs", "bytes", "kept (bits; channels, paths, layers)"):
        table.add_column(col, justify="right" if col in ("val", "test", "MFLOPs", "bytes") else "left")
    for row in r.front:
        mark = "*" if row.spec == r.chosen.spec else ""
        table.add_row(mark, f"{row.val_accuracy:.1%}", _pct(row.test_accuracy), f"{row.mflops:.3f}",
                      f"{row.file_bytes:,}", _kept(row.spec, r.space))
    console.print(table)  # a table wraps its cells; lines below never wrap
    c = r.chosen
    say(
        f"* best under {r.budget} ({budget:.0%} of the full {r.full_mflops:.3f} MFLOPs): "
        f"val {c.val_accuracy:.1%}, test {_pct(c.test_accuracy)}, {c.mflops:.3f} MFLOPs"
    )
    say(
        f"exported bit-packed to {r.export_dir / 'model.safetensors'}: {r.export_bytes:,} bytes "
        f"(the full 8-bit model: {r.full_bytes:,} bytes)"
    )
    same = "the same" if r.export_matches else "NOT the same (a bug: please report it)"
    say(
        f"test accuracy of the exported file {r.exported_accuracy:.2%}, of the sub-model inside the "
        f"nested model {r.model_accuracy:.2%}: {same}"
    )
    a8, a2 = r.bits_accuracy[8], r.bits_accuracy[2]
    say(f"whole model at 8 bits {a8:.1%}, at 2 bits {a2:.1%} (test split)")
    if r.low_bits_gap > LOW_BITS_GAP:
        say(
            f"note: 2 bits is {100 * r.low_bits_gap:.1f} points below 8 bits (more than "
            f"{100 * LOW_BITS_GAP:.0f}): the 2-bit sub-models of this short run are not yet as good as its "
            "8-bit ones (see Known limitations in the README)"
        )
    say(f"plot of the front: {r.plot}")
    say(f"run directory: {r.run_dir} (config.json, model.safetensors, metrics.jsonl, search/, export/)")
    say("next, try:")
    for cmd in r.next_commands():
        say(f"  {cmd}")
    say(f"demo done in {time.perf_counter() - t0:.0f} s")


def _kept(spec, space) -> str:  # noqa: ANN001
    """``2-8; 28/112 6/48 3/6``: the kept bits (range over layers), then kept units per kind."""
    parts = []
    for kind in space.kinds():
        axes = space.of_kind(kind)
        if kind == "bits":
            kept = sorted({spec.size(a.name, space) for a in axes})
            parts.append(f"{kept[0]}" + (f"-{kept[-1]}" if len(kept) > 1 else "") + ";")
        else:
            parts.append(f"{sum(spec.size(a.name, space) for a in axes)}/{sum(a.size for a in axes)}")
    return " ".join(parts)


def say(text: str) -> None:
    """One line, never wrapped (a wrapped command or path cannot be pasted), never read as markup."""
    console.print(text, markup=False, soft_wrap=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"
