"""The ``fn3 demo``: two nested models trained once each on the bundled digits, then sliced.

An MLP nests neurons and bits; a small ResNeXt nests channels, paths, layers and bits: together the
five FN3 levels. Each is trained once with ordered dropout; the demo then evaluates, on the test
split, sub-models that keep 100/75/50/25% of one level's blocks (bits: 8/6/4/2), and of all levels
at once, with BatchNorm statistics re-estimated per sub-model.

Example:
    >>> import tempfile
    >>> from fn3.demo import run_demo
    >>> tables = list(run_demo(tempfile.mkdtemp(), epochs=1, models=("mlp",), progress=False))
    >>> [level for level, _ in tables[0][1]]
    ['bits', 'neurons', 'all levels']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from fn3.config import TrainConfig
from fn3.run import load_run, train_run
from fn3.spec import Space, Spec
from fn3.train import evaluate_specs

__all__ = ["FRACTIONS", "level_specs", "run_demo"]

FRACTIONS = (1.0, 0.75, 0.5, 0.25)

DEMO_CONFIGS = {
    "mlp": TrainConfig(
        model="mlp",
        data="digits",
        model_kwargs={"hidden": [256, 256]},
        lr=0.05,
        batch_size=64,
        epochs=30,
        eval_specs=("largest",),
    ),
    "resnext_tiny": TrainConfig(
        model="resnext_tiny", data="digits", lr=0.1, batch_size=64, epochs=30, eval_specs=("largest",)
    ),
}


def _value(kind: str, frac: float, size: int) -> float:
    return max(2, round(8 * frac)) if kind == "bits" else frac


def level_specs(space: Space, kind: str | None) -> dict[str, Spec]:
    """Specs keeping each fraction of ``kind``'s blocks (``None``: of every kind at once)."""
    kinds = space.kinds() if kind is None else (kind,)
    out = {}
    for frac in FRACTIONS:
        label = f"{frac:.0%}"
        out[label] = space.uniform({k: _value(k, frac, 8) for k in kinds})
    return out


def run_demo(
    root: str | Path,
    *,
    epochs: int = 30,
    seed: int = 0,
    models: Sequence[str] = ("mlp", "resnext_tiny"),
    progress: bool = True,
) -> Iterator[tuple[str, list[tuple[str, dict[str, float]]]]]:
    """Train each demo model into ``root/<model>`` and yield ``(title, rows)`` accuracy tables.

    ``epochs`` overrides each model's default (30).
    """
    # 8x8 images make every op tiny: thread hand-offs cost more than they save, and on a busy machine
    # OpenMP's spinning threads can slow a step down 20-fold. One thread is faster and predictable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield from _run(root, models, epochs, seed, progress)
    finally:
        torch.set_num_threads(threads)


def _run(
    root: str | Path, models: Sequence[str], epochs: int | None, seed: int, progress: bool
) -> Iterator[tuple[str, list[tuple[str, dict[str, float]]]]]:
    for name in models:
        cfg = DEMO_CONFIGS[name].replace(epochs=epochs or DEMO_CONFIGS[name].epochs, seed=seed)
        out = Path(root) / name
        train_run(cfg, out, progress=progress)
        run = load_run(out)
        train, _, test = run.datasets()
        rows = []
        for kind in [*run.space.kinds(), None]:
            specs = level_specs(run.space, kind)
            accs = evaluate_specs(run.model, specs, test, run.config, train)
            rows.append((kind or "all levels", accs))
        yield (
            f"{name} on digits: test accuracy when keeping a fraction of each level (bits: 8/6/4/2)",
            rows,
        )
