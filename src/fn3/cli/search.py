"""``fn3 search RUN``: the accuracy/cost front of a trained run, and the best sub-model per budget.

Scores sub-models on the run's held-out validation split (never the test set), writes ``front.json``
(every scored point of every strategy, fronts marked), ``front.csv`` (the front points: costs,
validation and test accuracy, spec) and ``front.png`` (accuracy vs cost, one front per strategy), and
with ``--budget`` prints the chosen sub-model and writes its spec to ``best.json``.

Every score is journaled as it is made (``scores-val.jsonl``, ``scores-test.jsonl`` in the output
folder, fsynced per scored batch); ``fn3 search RUN --resume`` after a kill replays the search with
those scores and ends with the front an uninterrupted search would have written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fn3._io import atomic_write_text
from fn3.cli._app import app, console, err_console
from fn3.errors import ConfigError

__all__ = ["search_command"]

_TABLE_METRICS = ("params", "bits", "flops", "bitops")


@app.command("search")
def search_command(
    run: Annotated[Path, typer.Argument(help="Run directory written by `fn3 train --out`.")],
    metric: Annotated[str, typer.Option(help="Cost metric: params, bits, macs, flops, bitops, memory.")]
    = "flops",
    strategy: Annotated[
        list[str] | None,
        typer.Option(help="heuristic, greedy, uniform, random, evolutionary, exhaustive (repeat)."),
    ] = None,
    budget: Annotated[
        list[str] | None, typer.Option(help="METRIC=VALUE limit, e.g. flops=20M or bits=2e6 (repeat).")
    ] = None,
    recalibrate: Annotated[
        bool,
        typer.Option("--recalibrate/--no-recalibrate", help="Re-estimate BatchNorm statistics per candidate.")
    ] = True,
    max_evals: Annotated[int | None, typer.Option(help="At most this many sub-models scored per strategy.")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the strategies' generators.")] = 0,
    axes: Annotated[
        list[str] | None, typer.Option(help="Search only these axes (names, patterns or kinds; repeat).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/search).")] = None,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 256,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    resume: Annotated[
        bool, typer.Option("--resume", help="Reuse the scores of an earlier (killed) search in OUT.")
    ] = False,
) -> None:
    """Search a trained run for the best sub-models per cost and write the front."""
    from fn3.cost import cost, get_metric
    from fn3.search import Evaluator, make_strategy, restrict, search
    from fn3.search.budget import check_budgets, normalize_budgets

    # Cheap checks first: a typo should not wait for the data to load.
    get_metric(metric)
    limits = normalize_budgets(budget or [], metric)
    for m in limits:
        get_metric(m)
    strategies = [make_strategy(s) for s in (strategy or ["heuristic"])]
    if max_evals is not None and max_evals < 1:
        raise ConfigError(f"--max-evals must be >= 1, got {max_evals}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")

    from fn3 import distributed
    from fn3.run import load_run
    from fn3.train import calibration_batches

    # Under torchrun every rank runs the same search; each scores its share of every step's candidates.
    distributed.setup()
    progress = progress and distributed.is_main()

    r = load_run(run)
    model, cfg = r.model, r.config
    train_ds, val_ds, test_ds = r.datasets()
    if val_ds is None:
        raise ConfigError(f"run {run} has no validation split (trained with --val-fraction 0); the search "
                          "never scores on the test set")
    shape = train_ds.image_shape
    # An impossible budget fails here, before any data is scored or a progress bar is drawn.
    smallest = restrict(r.space, axes).smallest()
    check_budgets(limits, {m: cost(model, smallest, m, input_shape=shape) for m in limits})
    calib = None
    if recalibrate and cfg.recalibrate_batches > 0:
        calib = calibration_batches(train_ds, cfg)
    n_cal = max(1, cfg.recalibrate_batches)
    evaluator = Evaluator(model, r.batches(val_ds, batch_size), recalibrate=calib, num_batches=n_cal)
    # Every score is journaled as it is made, so a killed search loses nothing: `--resume` replays the
    # same (seeded, deterministic) strategies with those scores cached and scores only the rest.
    out_dir = out or Path(run) / "search"
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    reused = evaluator.attach_journal(out_dir / "scores-val.jsonl", resume=resume)
    if resume and distributed.is_main():
        console.print(f"resuming: {reused} validation scores from {out_dir / 'scores-val.jsonl'}")

    results = []
    try:
        for strat in strategies:
            with _progress_bar(strat.name, max_evals, progress) as report:
                results.append(search(model, evaluator, metric, strat, budgets=limits, input_shape=shape,
                                      seed=seed, max_evals=max_evals, axes=axes,
                                      metrics=[m for m in _TABLE_METRICS if m != metric], progress=report))
    except KeyboardInterrupt:
        if distributed.is_main():
            err_console.print(f"search stopped: {evaluator.resumed + evaluator.evals} scores are kept in "
                              f"{out_dir / 'scores-val.jsonl'}; continue with the same command and --resume",
                              markup=False)
        raise

    # Test accuracy of the front points (and the chosen ones), reported only, never used to choose.
    calib = calibration_batches(train_ds, cfg) if recalibrate and cfg.recalibrate_batches > 0 else None
    tester = Evaluator(model, r.batches(test_ds, batch_size), recalibrate=calib, num_batches=n_cal)
    tester.attach_journal(out_dir / "scores-test.jsonl", resume=resume)
    chosen = {res.strategy: res.best_under(limits) for res in results} if limits else {}
    wanted = list(dict.fromkeys([p.spec for res in results for p in res.front]
                                + [p.spec for p in chosen.values()]))
    scores = dict(zip(wanted, tester.evaluate_many(wanted), strict=True))
    evaluator.close()
    tester.close()
    results = [res.with_test_accuracy(scores) for res in results]
    chosen = {res.strategy: res.best_under(limits) for res in results} if limits else {}
    if not distributed.is_main():
        distributed.barrier()
        return
    _write(results, chosen, out_dir, run, limits)
    distributed.barrier()
    _print_fronts(results, metric)
    if chosen:
        _print_chosen(results, chosen, limits)
        _note_untrained(model, cfg, chosen)
    console.print(f"outputs in {out_dir}: front.json, front.csv, front.png"
                  + (", best.json" if chosen else ""))


class _progress_bar:  # noqa: N801  (used as a context manager like a function)
    """A rich progress bar of sub-models scored and the best accuracy so far (or nothing)."""

    def __init__(self, name: str, total: int | None, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled
        self.bar: Progress | None = None

    def __enter__(self):
        if not self.enabled:
            return None
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("scored  best {task.fields[best]}"), TimeElapsedColumn(),
                            console=console, transient=False)
        self.bar.__enter__()
        self.task = self.bar.add_task(self.name, total=self.total, best="-")
        return self._update

    def _update(self, p: Any) -> None:
        assert self.bar is not None
        self.bar.update(self.task, completed=p.evals, best=f"{100 * p.best_accuracy:.2f}%")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _write(results: list, chosen: dict, out: Path, run: Path, limits: dict[str, float]) -> None:
    from fn3.search.plot import plot_fronts
    from fn3.search.result import rows_to_csv, save_results

    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"run": str(run)}
    if chosen:
        best = max(chosen.values(), key=lambda p: p.accuracy)
        space = results[0].space
        extra["chosen"] = {name: {"spec": p.spec.to_dict(space), "accuracy": p.accuracy,
                                  "test_accuracy": p.test_accuracy, "costs": dict(p.costs)}
                           for name, p in chosen.items()}
        atomic_write_text(out / "best.json", json.dumps(best.spec.to_dict(space), indent=1) + "\n")
    save_results(results, out / "front.json", **extra)
    rows_to_csv(results, out / "front.csv", front_only=True)
    title = f"{run.name}: accuracy vs {results[0].metric}"
    plot_fronts(results, out / "front.png", title=title, budgets=limits)


def _fmt(x: float) -> str:
    from fn3.search import format_number

    return format_number(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _print_fronts(results: list, metric: str) -> None:
    table = Table(title=f"Pareto front: validation accuracy vs {metric}")
    for col in ("strategy", metric, "val acc", "test acc", "spec"):
        table.add_column(col, justify="left" if col in ("strategy", "spec") else "right",
                         no_wrap=col != "spec")
    for res in results:
        for p in res.front:
            table.add_row(res.strategy, _fmt(p.cost(metric)), _pct(p.accuracy), _pct(p.test_accuracy),
                          _short(p.spec, res.space))
        table.add_row(f"[dim]{res.evals} scored in {res.wall_time:.1f} s "
                      f"({res.evals_per_second:.1f}/s)[/dim]", "", "", "", "", end_section=True)
    console.print(table)


def _print_chosen(results: list, chosen: dict, limits: dict[str, float]) -> None:
    from fn3.search.budget import describe

    metrics = list(results[0].points[0].costs)
    table = Table(title=f"best sub-model under {describe(limits)}")
    for col in ("strategy", *metrics, "val acc", "test acc", "spec"):
        table.add_column(col, justify="left" if col in ("strategy", "spec") else "right",
                         no_wrap=col != "spec")
    for name, p in chosen.items():
        table.add_row(name, *(_fmt(p.cost(m)) for m in metrics), _pct(p.accuracy), _pct(p.test_accuracy),
                      _short(p.spec, results[0].space))
    console.print(table)


def _note_untrained(model: Any, cfg: Any, chosen: dict) -> None:
    """Say when a chosen sub-model keeps a depth the run's rule never trained (fn3.train.untrained_pick)."""
    from fn3.nest import space
    from fn3.train import untrained_of, untrained_pick

    sp, (missing, trained) = space(model), untrained_of(model, cfg)
    notes = {untrained_pick(sp, p.spec, missing, trained) for p in chosen.values()} - {None}
    for note in sorted(notes):
        console.print(note, soft_wrap=True, markup=False)


def _short(spec: Any, space: Any) -> str:
    """Kept units per kind, e.g. ``neurons 384/768, bits 4-8`` (the JSON files hold the full spec)."""
    parts = []
    for kind in space.kinds():
        axes = space.of_kind(kind)
        if kind == "bits":
            kept = sorted({spec.size(a.name, space) for a in axes})
            parts.append(f"bits {kept[0]}" + (f"-{kept[-1]}" if len(kept) > 1 else ""))
        else:
            kept = sum(spec.size(a.name, space) for a in axes)
            parts.append(f"{kind} {kept}/{sum(a.size for a in axes)}")
    text = ", ".join(parts) + ("" if spec.is_prefix else " (non-prefix)")
    return text
