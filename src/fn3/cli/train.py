"""``fn3 train``, ``fn3 eval`` and ``fn3 info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fn3.cli._app import app, console
from fn3.config import TrainConfig, load_config_file
from fn3.errors import ConfigError

RunArg = Annotated[Path, typer.Argument(help="Run directory written by `fn3 train --out`.")]


def _grid(text: str) -> tuple[float, ...]:
    """``--grid 1,0.5,0.25`` as fractions; ``none`` (or nothing) as the empty grid."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--grid {text}: expected kept fractions separated by commas, such as "
                          "1,0.75,0.5,0.25, or none") from None


def _model_args(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-arg {pair!r}: expected key=value, e.g. hidden=[256,128]")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
def train(
    model: Annotated[
        str | None,
        typer.Option(help="Model name (see `fn3 info --models`) or package.module:factory of your own."),
    ] = None,
    init: Annotated[
        str | None, typer.Option(help="Pretrained weights (safetensors) of a package.module:factory model.")
    ] = None,
    levels: Annotated[
        list[str] | None,
        typer.Option(help="Levels to nest, e.g. channels,bits or repeated (default: all)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="digits, mnist, fashion-mnist, cifar10, imagefolder.")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder or archive with the data ($FN3_DATA_DIR).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size.")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Peak learning rate (cosine schedule); default: 0.1, or 0.2 for a family nested in depth "
             "or in channels alone (trained on the mean loss), 0.15 where --specs-rotation auto lists "
             "every depth; 0.003 with --optimizer adamw.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adamw.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (not on 1-D parameters).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing in [0, 1).")] = None,
    rule: Annotated[
        str | None,
        typer.Option(help="auto (default: specs when the model nests one level, on the --train-spec "
                     "sub-models if given, else on the --grid; full+odo when it nests several), "
                     "full+odo (the largest sub-model + ordered-dropout draws each step), odo (the "
                     "paper), sandwich, specs (the largest and every --train-spec, or the --grid, each "
                     "step), full or fixed."),
    ] = None,
    dist: Annotated[
        str | None,
        typer.Option(help="Ordered-dropout distribution: geometric or uniform (default: the rule's; "
                     "uniform for auto and full+odo, geometric for odo)."),
    ] = None,
    rho: Annotated[float | None, typer.Option(help="Geometric keep rate, shared by all axes.")] = None,
    tie: Annotated[
        str | None,
        typer.Option(help="none (each axis drawn alone, the paper) or kind (one draw per kind); "
                     "default: kind for auto and full+odo, none for odo and sandwich."),
    ] = None,
    draws: Annotated[
        int | None, typer.Option(help="Ordered-dropout draws per step beside the largest (full+odo), or "
                                 "beside the largest and the smallest (auto's sandwich).")
    ] = None,
    sandwich_n: Annotated[int | None, typer.Option(help="Random specs per step for rule=sandwich.")] = None,
    distill: Annotated[
        bool | None, typer.Option("--distill/--no-distill", help="In-place distillation.")
    ] = None,
    distill_start: Annotated[
        float | None, typer.Option(help="Fraction of the steps before in-place distillation starts.")
    ] = None,
    distill_to: Annotated[
        str | None,
        typer.Option(help="With --distill: all (every sub-model of a step learns the largest's soft "
                     "predictions, the default) or smallest (only the smallest sub-model the rule trains "
                     "does, the others keep the labels; rule auto on one level, specs or sandwich)."),
    ] = None,
    full_first: Annotated[
        float | None, typer.Option(help="Fraction of the steps that train only the largest sub-model.")
    ] = None,
    spec_loss: Annotated[
        str | None,
        typer.Option(help="auto (default: norm for rule specs, but mean for a family nested in depth "
                     "or in channels alone and shared for one nested in paths alone; mean for the other "
                     "rules), mean, sum, "
                     "shared, shared-sqrt or norm: how a step combines the losses of its specs; sum "
                     "multiplies the step size of the shared weights by the number of specs, shared "
                     "averages each weight's gradient over the specs that use it (shared-sqrt divides "
                     "it by the square root of their number), norm steps along the summed "
                     "gradient at the length of the longest spec's gradient (per tensor)."),
    ] = None,
    act_clip: Annotated[
        str | None,
        typer.Option(help="auto (default: per-bits for a model nested in bits), shared or per-bits: "
                     "one learned activation clipping level for every bit-width, or one per bit-width."),
    ] = None,
    weight_clip: Annotated[
        float | None,
        typer.Option(help="Range of each quantized weight channel: 0, its largest magnitude, or k > 0, "
                     "at most k times its root mean square. Default: 3 for a family nested in bits "
                     "alone (measured level with 0 or above at every bit-width; see the README), 0 "
                     "elsewhere and under --rule fixed. Every bit-width keeps a prefix of the same "
                     "code."),
    ] = None,
    zero_init_residual: Annotated[
        bool | None,
        typer.Option("--zero-init-residual/--no-zero-init-residual",
                     help="Start every residual block as its shortcut (last BatchNorm scale 0)."),
    ] = None,
    fixed_spec: Annotated[str | None, typer.Option(help="Spec trained by rule=fixed.")] = None,
    train_spec: Annotated[
        list[str] | None,
        typer.Option(help="A sub-model to deploy, trained at every step (rule specs, which auto "
                     "picks when this is given), e.g. channels=0.5 (repeat; the largest is always trained)."),
    ] = None,
    specs_per_step: Annotated[
        int | None,
        typer.Option(help="Rule specs (auto on one level): sub-models a step trains, the largest and "
                     "the others in turn (0, the default: all of them); 2 halves the cost of a family "
                     "nested in bits at some accuracy (README: which rule when)."),
    ] = None,
    specs_rotation: Annotated[
        str | None,
        typer.Option(help="auto (the default): even, except on a model nested in depth alone whose grid "
                     "leaves depths out, where every depth is listed and a step trains one fewer than "
                     "the grid has (3), the largest and the smallest every step (ends), at lr 0.15. "
                     "With --specs-per-step: even (every member in turn) or smallest "
                     "(the smallest sub-model on every other step, the others in turn: 2 bits trained "
                     "on half the steps), corners (with 3 or more: the largest and the smallest every "
                     "step, the others in turn on every other step) or ends (with 3 or more: the largest "
                     "and the smallest every step, the others in turn in the further slots of every "
                     "step)."),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(help="Kept fractions trained every step by rule auto/specs without --train-spec, "
                     "every axis tied (bits: of 8), and the smallest sub-model; e.g. 1,0.75,0.5,0.25 "
                     "(the default); none: auto trains the tied sandwich instead. On a model nested in "
                     "depth alone whose grid leaves depths out, --specs-rotation auto (the default) "
                     "trains every depth, one fewer a step than the grid has; --specs-rotation even trains "
                     "the grid alone."),
    ] = None,
    eval_spec: Annotated[list[str] | None, typer.Option(help="Spec to evaluate each epoch (repeat).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many training images per class.")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Held-out share of the training set.")] = None,
    augment: Annotated[str | None, typer.Option(help="auto, none, crop or crop+flip.")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(help="Model option key=value (repeat).")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Steps between checkpoints (0: epoch end).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything random.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON config; flags override it.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory to create.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the stopped run in this directory.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop (with a checkpoint) at this global step; resume later.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train one nested model with ordered dropout and write a run directory."""
    from fn3.run import train_run

    if resume is not None:
        if out is not None and out != resume:
            raise ConfigError("give either --resume RUN or --out DIR, not both")
        result = train_run(TrainConfig(), resume, resume=True, progress=progress, max_steps=max_steps)
        _report(result, resume)
        return
    if out is None:
        raise ConfigError("missing --out DIR: where to write the run (or --resume RUN to continue one)")
    overrides: dict[str, Any] = load_config_file(config) if config else {}
    flags = dict(
        model=model,
        init=init,
        # `--levels channels --levels bits` and `--levels channels,bits` mean the same.
        levels=",".join(levels) if levels else None,
        data=data,
        data_dir=data_dir,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        rule=rule,
        dist=dist,
        rho=rho,
        tie=tie,
        draws=draws,
        specs_per_step=specs_per_step,
        specs_rotation=specs_rotation,
        sandwich_n=sandwich_n,
        distill=distill,
        distill_start=distill_start,
        distill_to=distill_to,
        full_first=full_first,
        spec_loss=spec_loss,
        act_clip=act_clip,
        weight_clip=weight_clip,
        zero_init_residual=zero_init_residual,
        fixed_spec=fixed_spec,
        limit=limit,
        val_fraction=val_fraction,
        augment=augment,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if eval_spec:
        overrides["eval_specs"] = tuple(eval_spec)
    if train_spec:
        overrides["train_specs"] = tuple(train_spec)
    if grid is not None:
        overrides["grid"] = _grid(grid)
    if model_arg:
        base = overrides.get("model_kwargs", {})
        if not isinstance(base, dict):
            raise ConfigError(f"model_kwargs in {config} must be a table of options, got {base!r}")
        overrides["model_kwargs"] = {**base, **_model_args(model_arg)}
    if overrides.get("data_dir") is None:
        from fn3.run import default_data_dir

        overrides["data_dir"] = default_data_dir()
    cfg = TrainConfig().merged(overrides)
    result = train_run(cfg, out, progress=progress, max_steps=max_steps)
    _report(result, out)


def _rule_text(result: Any) -> str:
    """``rule specs, spec loss norm, lr 0.1``: what a run trained with (a resumed run: what it started
    with), the rate included because ``lr`` unset resolves per family (:func:`fn3.train.resolved_lr`)."""
    text = f"rule {result.rule}, spec loss {result.spec_loss}" if result.spec_loss else f"rule {result.rule}"
    if result.per_step:  # fewer specs a step than members: how many, in what rotation
        text += f", {result.per_step}"
    return f"{text}, lr {result.lr:g}" if result.lr else text


def _report(result: Any, out: Path) -> None:
    from fn3 import distributed

    if not distributed.is_main():
        return
    if result.interrupted:
        # One unwrapped line: the command is copied as it is (a wrapped path breaks the copy).
        console.print(f"stopped at step {result.step} ({_rule_text(result)}); continue with: "
                      f"fn3 train --resume {out}", soft_wrap=True)
    else:
        final = result.history[-1].get("test_accuracy", {}) if result.history else {}
        table = Table(title=f"test accuracy ({out})")
        table.add_column("spec")
        table.add_column("accuracy", justify="right")
        for name, acc in final.items():
            table.add_row(name, f"{acc * 100:.2f}%")
        console.print(table)
        console.print(f"{result.step} steps in {result.wall_time:.1f} s ({_rule_text(result)}); "
                      f"run directory: {out}", soft_wrap=True)
    if result.note:  # stopped or finished: the depths its grid never trained
        console.print(result.note, soft_wrap=True, markup=False)


@app.command("eval")
def eval_(
    run: RunArg,
    spec: Annotated[
        list[str] | None,
        typer.Option(
            help="largest, smallest, kind=value pairs (channels=0.5,bits=4; wbits= / abits= set the "
            "weights' / activations' bits alone: bits=2,abits=4), axis=units, or a spec JSON file."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    recalibrate: Annotated[
        bool,
        typer.Option("--recalibrate/--no-recalibrate", help="Re-estimate BatchNorm statistics per spec."),
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 256,
) -> None:
    """Accuracy of one or more sub-models of a trained run."""
    from fn3.run import load_run
    from fn3.spec import parse_spec
    from fn3.train import evaluate_specs

    if split not in ("test", "val"):
        raise ConfigError(f"--split {split!r}: use test or val")
    if not (run / "config.json").exists() and (run.is_file() or (run / "model.safetensors").is_file()):
        _eval_exported(run, spec, split, batch_size)
        return
    r = load_run(run)
    specs = {name: parse_spec(name, r.space) for name in (spec or ["largest", "smallest"])}
    train_ds, val_ds, test_ds = r.datasets()
    ds = test_ds if split == "test" else val_ds
    if ds is None:
        raise ConfigError(f"run {run} has no validation split (trained with --val-fraction 0)")
    cfg = r.config if recalibrate else r.config.replace(recalibrate_batches=0)
    accs = evaluate_specs(r.model, specs, ds, cfg, train_ds, batch_size)
    # The leaves' own costs: equal to the cost plan on built-in models, and defined for any nested one.
    import torch

    from fn3.cost import leaf_costs

    example = torch.zeros(1, *train_ds.image_shape)
    table = Table(title=f"{split} accuracy of {run}")
    for col in ("spec", "accuracy", "params", "MFLOPs"):
        table.add_column(col, justify="left" if col == "spec" else "right")
    for name, s in specs.items():
        c = leaf_costs(r.model, s, example)
        table.add_row(
            name,
            f"{accs[name] * 100:.2f}%",
            f"{c.get('params', float('nan')):,.0f}",
            f"{c.get('flops', float('nan')) / 1e6:.2f}",
        )
    console.print(table)


def _eval_exported(path: Path, spec: list[str] | None, split: str, batch_size: int) -> None:
    """``fn3 eval DIR`` on an exported model: its accuracy on the dataset its metadata names."""
    from fn3.export import evaluate_exported, load

    if spec:
        raise ConfigError(
            "an exported model is one sub-model already; drop --spec (export another spec "
            "with `fn3 export RUN --spec ...`)"
        )
    if split == "val":
        raise ConfigError("an exported model has no validation split; use --split test")
    acc = evaluate_exported(load(path), split=split, batch_size=batch_size)
    table = Table(title=f"{split} accuracy of exported model {path}")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_row(str(path), f"{acc * 100:.2f}%")
    console.print(table)


@app.command()
def info(
    run: Annotated[
        Path | None,
        typer.Argument(help="Run directory, exported model or nested file (omit with --models)."),
    ] = None,
    models: Annotated[bool, typer.Option("--models", help="List the registered models.")] = False,
) -> None:
    """The space of a run (axes, kinds, sizes, steps, minimums), or what an exported file holds."""
    from fn3.models import list_models, model_levels
    from fn3.run import load_run

    if models or run is None:
        table = Table(title="registered models")
        table.add_column("model")
        table.add_column("levels")
        for name in list_models():
            table.add_row(name, ", ".join(model_levels(name)))
        console.print(table)
        if run is None:
            return
    if run.is_file() or (run.is_dir() and not (run / "config.json").exists() and _holds_export(run)):
        _info_file(run)
        return
    r = load_run(run)
    cfg = r.config
    console.print(
        f"run {run}: model {cfg.model}, data {cfg.data}, {r.step} steps, "
        f"levels {', '.join(r.space.kinds())}, {len(r.space)} axes"
    )
    _print_space(r.space)
    from fn3.train import untrained_of

    _print_untrained(r.space, *untrained_of(r.model, cfg))


def _print_untrained(space: Any, missing: Any, trained: str) -> None:
    """The depths a run never trained (from the run, or from the metadata of its nested file)."""
    from fn3.train import untrained_summary

    if isinstance(missing, dict) and all(isinstance(v, list) for v in missing.values()):
        line = untrained_summary(space, missing, trained or "grid")
        if line:
            console.print(f"depths {line}", soft_wrap=True, markup=False)


def _print_space(space: Any) -> None:
    table = Table()
    for col in ("axis", "kind", "size", "step", "min", "blocks"):
        table.add_column(col, justify="left" if col in ("axis", "kind") else "right")
    for a in space:
        table.add_row(a.name, a.kind, str(a.size), str(a.step), str(a.min_size), str(a.num_blocks))
    console.print(table)


def _holds_export(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("model.safetensors", "nested.safetensors"))


def _info_file(path: Path) -> None:
    """``fn3 info FILE``: what an exported model or a nested file holds (or what was expected)."""
    import os

    from fn3.errors import FileFormatError
    from fn3.export import container, load
    from fn3.export.bench import count_flops, count_params
    from fn3.export.io import ideal_size
    from fn3.export.loading import NESTED_FORMATS, file_format, resolve_file
    from fn3.export.nested import open_nested

    file = resolve_file(path)
    try:
        fmt = file_format(file)
    except FileFormatError as err:
        raise FileFormatError(
            f"fn3 info reads a run directory, an exported model or a nested file; {err}"
        ) from None
    size = os.path.getsize(file)
    if fmt in NESTED_FORMATS:
        with container.Reader(file) as r:
            from fn3.export.user import is_recipe_file, user_header

            if is_recipe_file(r):  # version 3, or a model of your own: its header holds the recipe
                model, space, meta = user_header(r)
            else:  # versions 1 and 2 of a built-in model
                header, space = open_nested(r)
                meta = header["meta"]
                model = meta.get("model", {})
        console.print(
            f"nested file {file}: {size:,} bytes, model {model.get('name', '?')}, every sub-model of "
            f"{len(space)} {'axis' if len(space) == 1 else 'axes'} (levels {', '.join(space.kinds())}); "
            f"read one with `fn3 export {file} --spec ... --out DIR`",
            markup=False,
        )
        _print_space(space)
        _print_untrained(space, meta.get("untrained_depths"), str(meta.get("trained_specs", "")))
        return
    exported = load(file, as_stored=True)  # as the file stores it (an --activations float export too)
    meta = exported.meta
    shape = meta.get("input_shape")
    flops = f", {count_flops(exported, shape) / 1e6:.3f} MFLOPs" if shape else ""
    console.print(
        f"exported model {file}: {size:,} bytes (ideal {ideal_size(exported):,}), one sub-model of "
        f"{meta.get('model', {}).get('name', '?')}; {count_params(exported):,} params{flops}"
        + (f" for input {tuple(shape)}" if shape else ""),
        markup=False,
    )
    axes = meta.get("spec", {}).get("axes", {})
    kept = ", ".join(f"{name}={_blocks(v)}" for name, v in sorted(axes.items()))
    console.print(f"spec (kept blocks per axis): {kept or 'largest'}", markup=False)
    if meta.get("dataset"):
        console.print(f"trained on {meta['dataset']} (run {meta.get('run', '?')}); "
                      f"`fn3 eval {path}` measures its accuracy", markup=False)
    drop = meta.get("activation_drop")
    if meta.get("activations") == "float" and drop:
        console.print(f"deployed without its activation quantizers (--activations float): "
                      f"{drop['float'] * 100:.2f}% on {drop['images']:,} {drop['split']} images, "
                      f"{drop['quantized'] * 100:.2f}% with them", markup=False)


def _blocks(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return str(value["prefix"])
    return json.dumps(value, separators=(",", ":"))
