"""``fn3 nest package.module:factory``: nest a user's model and print the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fn3.cli._app import app, console
from fn3.cli.cost import _shape
from fn3.cli.train import _model_args
from fn3.errors import ConfigError


@app.command()
def nest(
    model: Annotated[str, typer.Argument(help="package.module:factory returning an nn.Module.")],
    model_arg: Annotated[list[str] | None, typer.Option(help="Factory argument key=value (repeat).")] = None,
    input_shape: Annotated[str, typer.Option(help="C,H,W of one example input.")] = "3,32,32",
    levels: Annotated[
        str | None, typer.Option(help="Levels to nest, e.g. channels,layers (default: all).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Fail if a hidden width must stay frozen.")] = False,
    plan: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Trace the model, nest what can be nested and print a table of its channel groups."""
    import torch

    from fn3._io import atomic_write_text
    from fn3.convert import nest_
    from fn3.convert.factory import build_factory

    shape = _shape(input_shape)
    if shape is None:
        raise ConfigError("--input-shape is required, e.g. 3,32,32")
    net = build_factory(model, _model_args(model_arg))
    report = nest_(net, torch.zeros(1, *shape), levels=levels, strict=strict, verbose=False)
    console.print(str(report), markup=False)
    if plan is not None:
        atomic_write_text(
            plan, json.dumps({"model": model, "input_shape": list(shape), **report.to_dict()}, indent=1)
        )
