"""The ``fn3 demo``: the whole product on scikit-learn's bundled digits, in about a minute.

One nested ResNeXt (channels, paths, layers and bits) is trained **once** with ordered dropout into an
ordinary run directory (the layout ``fn3 train --out`` writes), then:

1. searched: the same kept fraction of every level's blocks over a grid (``fn3 search --strategy
   uniform``: 60 sub-models span the whole FLOPs range in seconds, where the paper's heuristic, the
   default of ``fn3 search``, needs hundreds of scores for this model's 300 blocks), each scored on
   the validation split; the Pareto front of validation accuracy against FLOPs is saved as
   ``RUN/search/front.json|csv|png``, where ``fn3 search RUN`` writes it;
2. priced: for each front point its MFLOPs and the bytes of its bit-packed export file;
3. deployed: the best sub-model under a FLOPs budget is exported bit-packed to ``RUN/export`` and the
   exported file is evaluated on the test split, next to the same sub-model inside the nested model;
4. checked at low precision: the whole model at 8 and at 2 bits.

Every step is a library call (:func:`fn3.run.train_run`, :func:`fn3.search`, :func:`fn3.cost`,
:func:`fn3.export.export_run`, :func:`fn3.export.evaluate_exported`), so ``fn3 search``,
``fn3 export``, ``fn3 eval`` and ``fn3 bench`` work on the run it leaves behind.

Example:
    >>> from fn3.demo import run_demo
    >>> result = run_demo("fn3-demo", epochs=1, limit=20, max_evals=8)  # doctest: +SKIP
    >>> result.exported_accuracy == result.model_accuracy  # doctest: +SKIP
    True
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fn3.config import TrainConfig
from fn3.spec import Space, Spec

__all__ = ["DEMO_CONFIG", "DemoResult", "FrontRow", "default_out", "run_demo"]

# A small ResNeXt (16/32/64 channels, 8 paths per block, 2 blocks per stage) nested in all four of its
# levels. Eight epochs of 22 steps (the default rule) reach about 98% at 8 bits on the 8x8 digits.
# BatchNorm statistics are re-estimated per sub-model on 5 batches (320 images; the default 20 would make
# every score 4x slower).
DEMO_CONFIG = TrainConfig(
    model="resnext_tiny",
    data="digits",
    model_kwargs={"widths": [16, 32, 64], "group_widths": [1, 2, 4]},
    lr=0.2,  # a short run; the step is on the mean of the two losses (spec_loss), measured best here
    batch_size=64,
    epochs=8,
    eval_specs=("largest",),
    recalibrate_batches=5,
)
STRATEGY = "uniform"
LOW_BITS_GAP = 0.03  # a 2-bit model more than 3 points below the 8-bit one gets a note


@dataclass(frozen=True)
class FrontRow:
    """One point of the front: a sub-model, its accuracies, its cost and its exported size."""

    spec: Spec
    val_accuracy: float
    test_accuracy: float
    mflops: float
    params: float
    file_bytes: int


@dataclass
class DemoResult:
    """What :func:`run_demo` did and where it put it."""

    run_dir: Path
    space: Space  # the model's axes (to print a spec compactly)
    front: list[FrontRow]
    budget: str  # e.g. "flops=0.17M", as fn3 search/export take it
    budget_flops: float
    full_mflops: float
    full_bytes: int  # the bit-packed file of the full (8-bit) model
    chosen: FrontRow
    export_dir: Path
    export_bytes: int
    model_accuracy: float  # the chosen sub-model inside the nested model (test split)
    exported_accuracy: float  # the same, read back from the exported file
    test_size: int  # images in the test split
    bits_accuracy: dict[int, float]  # the whole model at 8 and at 2 bits (test split)
    plot: Path
    evals: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def export_matches(self) -> bool:
        """The exported file classifies as many test images correctly as the nested model."""
        n = self.test_size
        return round(self.exported_accuracy * n) == round(self.model_accuracy * n)

    @property
    def low_bits_gap(self) -> float:
        """8-bit minus 2-bit test accuracy (a fraction)."""
        return self.bits_accuracy[8] - self.bits_accuracy[2]

    def next_commands(self) -> list[str]:
        """Commands to try on the run the demo left (each one works on it as printed)."""
        run, limit = self.run_dir, self.budget
        return [
            f"fn3 info {run}",
            f"fn3 eval {run} --spec largest --spec bits=4 --spec channels=0.5",
            # Bounded: unbounded, the paper's heuristic scores about 10,000 sub-models of this one.
            f"fn3 search {run} --metric flops --strategy uniform --strategy heuristic --max-evals 60 "
            f"--budget {limit}",
            f"fn3 export {run} --budget {limit} --format onnx --out {run.parent / 'export-onnx'}",
            f"fn3 bench {self.export_dir}",
        ]


def default_out(base: str | Path = "fn3-demo") -> Path:
    """``fn3-demo`` in the current folder, or ``fn3-demo-2``, ``-3``, ... if it is taken."""
    base = Path(base)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def run_demo(
    out: str | Path,
    *,
    epochs: int | None = None,
    budget: float = 0.5,
    max_evals: int = 60,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Train, search, price, export and check one nested model; write everything under ``out``.

    Args:
        out: the demo folder; the run goes to ``out/run`` (it must not hold a run yet).
        epochs: training epochs (default: :data:`DEMO_CONFIG`'s 8).
        budget: the FLOPs budget as a fraction of the full model's FLOPs (rounded to two digits).
        max_evals: at most this many sub-models scored by the search.
        limit: at most this many training images per class (``None``: all; tests use a few).
        seed: seeds training and search.
        progress: show the training progress bar.
        step: called with a one-line description as each stage starts.
    """
    # 8x8 images make every op tiny: thread hand-offs cost more than they save, and on a busy machine
    # OpenMP's spinning threads can slow a step down 20-fold. One thread is faster and predictable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(Path(out), epochs, budget, max_evals, limit, seed, progress, step or (lambda s: None))
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, epochs: int | None, budget: float, max_evals: int, limit: int | None, seed: int,
         progress: bool, step: Callable[[str], None]) -> DemoResult:
    from fn3.run import load_run, train_run

    cfg = DEMO_CONFIG.replace(epochs=epochs or DEMO_CONFIG.epochs, seed=seed, limit=limit)
    run_dir = out / "run"
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    step(f"training one nested {cfg.model} on digits: {cfg.epochs} epoch(s), run directory {run_dir}")
    train_run(cfg, run_dir, progress=progress)
    run = load_run(run_dir)
    data = run.datasets()
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step(f"searching its sub-models: {STRATEGY} grid over its levels, at most {max_evals} scored on the "
         "validation split")
    result, budget_text, limit_flops = _search(run, data, budget, max_evals, seed)
    seconds["search"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step(f"exporting: each front point (to measure its file), then the best under {budget_text}")
    best = result.best_under({"flops": limit_flops})
    largest = next(p for p in result.points if p.spec == run.space.largest())  # scored first (anchor)
    rows = _price(run, [*result.front, best, largest])
    front, chosen, full_bytes = rows[:-2], rows[-2], rows[-1].file_bytes
    deployed = _deploy(run, data, chosen.spec)
    bits = _bits(run, data)
    seconds["export"] = time.perf_counter() - t0
    return DemoResult(
        run_dir=run_dir, space=run.space, front=front, budget=budget_text, budget_flops=limit_flops,
        full_mflops=result.max_costs["flops"] / 1e6, full_bytes=full_bytes, chosen=chosen,
        bits_accuracy=bits, plot=run_dir / "search" / "front.png", evals=len(result.points),
        seconds=seconds, **deployed,
    )


def _search(run, data, budget: float, max_evals: int, seed: int):  # noqa: ANN001, ANN202
    """The heuristic search of ``fn3 search RUN --budget ...``, written where that command writes it."""
    from fn3.cost import cost
    from fn3.search import parse_budget, search
    from fn3.search.plot import plot_fronts
    from fn3.search.result import rows_to_csv, save_results

    train, val, test = data
    shape = train.image_shape
    full = cost(run.model, run.space.largest(), "flops", input_shape=shape)
    smallest = cost(run.model, run.space.smallest(), "flops", input_shape=shape)
    text = f"flops={max(budget * full, smallest) / 1e6:.2g}M"  # a number a user can type back
    limit = max(parse_budget(text)[1], smallest)
    result = search(run.model, _evaluator(run, train, val), "flops", STRATEGY, budgets={"flops": limit},
                    input_shape=shape, seed=seed, max_evals=max_evals, metrics=["params", "bits"])
    # Test accuracy of the front points and of the chosen one, reported only, never used to choose.
    specs = list(dict.fromkeys([p.spec for p in result.front] + [result.best_under({"flops": limit}).spec]))
    scores = _evaluator(run, train, test).evaluate_many(specs)
    result = result.with_test_accuracy(dict(zip(specs, scores, strict=True)))
    out = run.path / "search"
    out.mkdir(parents=True, exist_ok=True)
    save_results([result], out / "front.json", run=str(run.path))
    rows_to_csv([result], out / "front.csv", front_only=True)
    plot_fronts([result], out / "front.png", title=f"{run.path.name}: accuracy vs flops",
                budgets={"flops": limit})
    return result, text, limit


def _evaluator(run, train, ds):  # noqa: ANN001, ANN202
    """Accuracy on ``ds`` with BatchNorm re-estimated per sub-model, as ``fn3 search`` scores."""
    from fn3.search import Evaluator
    from fn3.train import calibration_batches

    cfg = run.config
    calib = None
    if cfg.recalibrate_batches > 0:
        calib = calibration_batches(train, cfg)
    n = max(1, cfg.recalibrate_batches)
    return Evaluator(run.model, run.batches(ds), recalibrate=calib, num_batches=n)


def _price(run, points) -> list[FrontRow]:  # noqa: ANN001
    """Each point's MFLOPs, params and the size of its bit-packed export file (written, then measured)."""
    from fn3.export import export, save
    from fn3.export.runs import run_meta

    # The metadata `fn3 export` writes too, so the sizes are those of the files a user gets.
    meta = {**run_meta(run), "bn_recalibrated": run.config.recalibrate_batches}
    rows = []
    with tempfile.TemporaryDirectory(prefix="fn3-demo-") as tmp:
        for p in points:
            size = save(export(run.model, p.spec, meta=meta), Path(tmp) / "model.safetensors").stat().st_size
            rows.append(FrontRow(p.spec, p.accuracy, p.test_accuracy, p.costs["flops"] / 1e6,
                                 p.costs["params"], size))
    return rows


def _deploy(run, data, spec: Spec) -> dict:  # noqa: ANN001
    """Export ``spec`` bit-packed as ``fn3 export`` does; its accuracy from the file and in the model."""
    from fn3.export import evaluate_exported, export_run
    from fn3.train import evaluate_specs

    export_dir = run.path / "export"
    files = export_run(run, spec, export_dir)
    train, _, test = data
    in_model = evaluate_specs(run.model, {"chosen": spec}, test, run.config, train)["chosen"]
    return {
        "export_dir": export_dir,
        "export_bytes": files[0].stat().st_size,
        "model_accuracy": in_model,
        "exported_accuracy": evaluate_exported(export_dir),
        "test_size": len(test),
    }


def _bits(run, data) -> dict[int, float]:  # noqa: ANN001
    """Test accuracy of the whole model (every other level full) at 8 and at 2 bits."""
    from fn3.train import evaluate_specs

    train, _, test = data
    specs = {str(b): run.space.uniform({"bits": b}) for b in (8, 2)}
    accs = evaluate_specs(run.model, specs, test, run.config, train)
    return {int(b): a for b, a in accs.items()}
