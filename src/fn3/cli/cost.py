"""``fn3 latency-table``: measure a latency table of a model on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fn3.cli._app import app, console
from fn3.errors import ConfigError


def _shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input-shape {text!r}: expected C,H,W with positive integers, e.g. 3,32,32")
    return shape  # type: ignore[return-value]


@app.command("latency-table")
def latency_table(
    run: Annotated[
        Path | None, typer.Argument(help="Run directory written by `fn3 train` (or use --model).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the table (JSON).")] = Path("latency.json"),
    backend: Annotated[str, typer.Option(help="torch or onnxruntime (CPU).")] = "torch",
    batch_size: Annotated[int, typer.Option(help="Batch size of every measurement.")] = 1,
    repeats: Annotated[int, typer.Option(help="Interleaved rounds; entries are medians.")] = 30,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads (default: torch's current count).")
    ] = None,
    clock: Annotated[
        str, typer.Option(help="wall, or cpu (thread CPU time, needs --threads 1) on a busy machine.")
    ] = "wall",
    optimization: Annotated[
        str, typer.Option(help="ONNX Runtime graph optimization: disable, basic, extended, all.")
    ] = "all",
    seed: Annotated[int, typer.Option(help="Seeds the unit weights and the visiting order.")] = 0,
    check: Annotated[
        int, typer.Option(help="Also time this many whole sub-models to check the predictions.")
    ] = 8,
    model: Annotated[
        str | None, typer.Option(help="Model name, to measure without a run (see `fn3 info`).")
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W of one sample (default: the model's own).")
    ] = None,
) -> None:
    """Time every layer of a model at every kept size on this machine; write a latency table.

    The table predicts any sub-model's latency: fn3.cost(model, spec, "latency", table=...). With
    --check N it also times N whole sub-models in the same rounds and reports how well it predicts.
    """
    from fn3.cost.latency import measure_latency_table, prediction_quality
    from fn3.cost.plan import cost_plan
    from fn3.nest import space

    shape = _shape(input_shape)
    if (run is None) == (model is None):
        raise ConfigError("give either a run directory or --model NAME (not both)")
    if run is not None:
        from fn3.run import load_run

        net = load_run(run).model
    else:
        from fn3.models import create_model

        kwargs = {} if shape is None else {"in_channels": shape[0], "input_size": shape[1:]}
        net = create_model(model, **kwargs)  # weights do not matter for timing
    plan = cost_plan(net, shape)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "building units" if stage == "build" else "timing (interleaved)"
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done)

        table = measure_latency_table(net, plan.input_shape, backend=backend, batch_size=batch_size,
                                      repeats=repeats, seed=seed, threads=threads, clock=clock,
                                      optimization=optimization, references=check,
                                      progress=progress)
    path = table.save(out)
    sp = space(net)
    full, small = table.predict(net, sp.largest(), shape), table.predict(net, sp.smallest(), shape)
    console.print(f"{len(table.entries)} entries ({table.backend}, batch {table.batch_size}, "
                  f"{table.threads} thread(s), overhead {table.overhead_us:.1f} us) -> {path}")
    console.print(f"predicted latency: full model {full:.3f} ms, smallest sub-model {small:.3f} ms")
    rows = table.check(net, shape)
    if len(rows) >= 2:
        rho, err = prediction_quality(rows)
        console.print(f"check on {len(rows)} measured sub-models: rank correlation {rho:.3f}, "
                      f"median error {err:.1%} (predicted vs measured)")
