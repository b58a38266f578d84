"""``fn3 export`` and ``fn3 bench``: write a deployable sub-model, and measure one.

fn3 export RUN --spec channels=0.5,bits=4 --out DIR [--format onnx]
fn3 export RUN --budget flops=20M --front front.json --out DIR
fn3 export RUN --nested --out DIR            # one file, every sub-model
fn3 export DIR/nested.safetensors --spec smallest --out SMALL
fn3 bench DIR [--spec ...]                    # latency vs the float sub-model, ORT parity, size
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fn3.cli._app import app, console
from fn3.errors import ConfigError

SpecOpt = Annotated[
    str | None,
    typer.Option(
        help="largest, smallest, kind=value pairs (channels=0.5,bits=4; wbits= / abits= set the weights' / "
        "activations' bits alone: bits=2,abits=4), axis=units, or a spec JSON."
    ),
]


def _spec(text: str | None, budget: str | None, front: Path | None, space, run_dir: Path | None):
    """The spec from --spec or --budget (resolved through a search front)."""
    from fn3.spec import parse_spec

    if text and budget:
        raise ConfigError("give --spec or --budget, not both")
    if budget:
        from fn3.search import parse_budget
        from fn3.search.result import load_results

        if front is None and run_dir is not None:  # where `fn3 search RUN` writes it, or beside the run
            found = [f for f in (run_dir / "search" / "front.json", run_dir / "front.json") if f.is_file()]
            front = found[0] if found else None
        if front is None:
            raise ConfigError("--budget needs --front FRONT.json (written by `fn3 search`)")
        metric, value = parse_budget(budget)
        # `fn3 search` writes one result per strategy: the most accurate of their picks.
        picks = [res.best_under({metric: value}) for res in load_results(front)]
        return max(picks, key=lambda p: p.accuracy).spec
    return parse_spec("largest" if text is None else text, space)


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory, or a nested file to read a sub-model from.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    spec: SpecOpt = None,
    budget: Annotated[str | None, typer.Option(help="Best spec under a budget, e.g. flops=20M.")] = None,
    front: Annotated[Path | None, typer.Option(help="Search front JSON for --budget.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="fn3 (safetensors) or onnx (both files).")] = "fn3",
    nested: Annotated[bool, typer.Option(help="Write the nested file of the whole model.")] = False,
    recalibrate: Annotated[
        bool, typer.Option("--recalibrate/--no-recalibrate", help="Re-estimate BatchNorm for the spec.")
    ] = True,
    rounding: Annotated[
        str,
        typer.Option(
            help="ONNX quantizers: qdq (QuantizeLinear/DequantizeLinear) or float (fastest on ORT CPU)."
        ),
    ] = "qdq",
    activations: Annotated[
        str,
        typer.Option(
            help="quantized (the nested model's values) or float: drop the activation quantizers at "
            "deployment for the float sub-model's speed (weights stay c-bit); prints the accuracy cost."
        ),
    ] = "quantized",
) -> None:
    """Export a sub-model (or, with --nested, the whole nested model) of a trained run."""
    from fn3.export import io, load
    from fn3.export.loading import NESTED_FORMATS, file_format
    from fn3.export.runs import check_options, drop_activation_quantizers, export_run, write_model_files

    check_options(fmt, activations, nested)

    if run.is_file():  # a nested file: read the sub-model's bytes and write a dedicated export
        if nested:
            raise ConfigError(f"{run} is already a file; --nested exports a run directory")
        if file_format(run) not in NESTED_FORMATS:
            raise ConfigError(f"{run} is a dedicated export; export from its run or a nested file")
        from fn3.export import container
        from fn3.export.nested import load_nested, nested_space

        with container.Reader(run) as r:
            space = nested_space(r)
        read = load_nested(run, _spec(spec, budget, front, space, None))
        exported, picked = read.model, read.spec
        if activations == "float":
            exported = drop_activation_quantizers(exported, _recorded_test_split(exported, run))
        files = write_model_files(exported, out, fmt=fmt, rounding=rounding)
        console.print(f"read {read.bytes_read:,} of {read.file_size:,} bytes of {run}")
    else:
        from fn3.run import load_run

        r = load_run(run)
        space, picked = r.space, r.space.largest() if nested else _spec(spec, budget, front, r.space, run)
        files = export_run(r, picked, out, fmt=fmt, nested=nested, recalibrate=recalibrate, rounding=rounding,
                           activations=activations)
    for f in files:
        console.print(f"wrote {f} ({os.path.getsize(f):,} bytes)")
    if not nested:
        model = load(out / "model.safetensors", as_stored=True)  # its quantized layers: their sizes
        note = _note_from_meta(space, picked, model.meta)  # a depth its run never trained
        if note:
            console.print(note, soft_wrap=True, markup=False)
        console.print(f"ideal size {io.ideal_size(model):,} bytes (codes x bits / 8 + floats x 4)")
        drop = model.meta.get("activation_drop")
        if drop:
            change = (drop["float"] - drop["quantized"]) * 100
            console.print(
                f"activation quantizers dropped at deployment: test accuracy {drop['float'] * 100:.2f}% "
                f"without them, {drop['quantized'] * 100:.2f}% with them ({change:+.2f} pt, "
                f"{drop['images']:,} {drop['split']} images); `fn3 bench {out}` shows the speed"
            )


def _note_from_meta(space, spec, meta: dict) -> str | None:
    """The untrained-depth note for an exported sub-model, from what its run stored in the export's
    metadata (``untrained_depths``, ``trained_specs``: :func:`fn3.export.runs.run_meta`, carried from
    a run directory or a nested file; files written before them carry neither and get no note)."""
    from fn3.train import untrained_pick

    missing = meta.get("untrained_depths")
    if not isinstance(missing, dict) or not all(isinstance(v, list) for v in missing.values()):
        return None
    return untrained_pick(space, spec, missing, str(meta.get("trained_specs", "grid")))


def _recorded_test_split(model, file: Path):
    """The test split of the dataset an export records (to score it with and without quantizers)."""
    from fn3.data import load_dataset

    meta = getattr(model, "meta", {}) or {}
    if not meta.get("dataset"):
        raise ConfigError(f"{file} does not record its dataset, so --activations float cannot show its "
                          "accuracy cost; export from the run directory instead")
    return load_dataset(meta["dataset"], "test", meta.get("data_dir"))


@app.command("bench")
def bench_cmd(
    path: Annotated[Path, typer.Argument(help="An export directory or file (model or nested).")],
    spec: SpecOpt = None,
    repeats: Annotated[int, typer.Option(help="Timed runs per measurement (median).")] = 20,
    batches: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,64",
    threads: Annotated[int, typer.Option(help="Intra-op threads (0: the libraries' default).")] = 0,
    rounding: Annotated[
        str, typer.Option(help="ONNX quantizers: qdq (QuantizeLinear/DequantizeLinear) or float.")
    ] = "qdq",
    compile_: Annotated[
        bool, typer.Option("--compile", help="Also time both models under torch.compile "
                           "(fn3.export.compiled; needs a C++ compiler, compiles per batch size).")
    ] = False,
    integer: Annotated[
        bool, typer.Option("--integer", help="Also time the model on int8 kernels under torch.compile "
                           "(fn3.export.compiled(..., integer=True)) beside the compiled float sub-model.")
    ] = False,
) -> None:
    """Latency (PyTorch and ONNX Runtime) beside the float sub-model of the same spec, the ONNX
    Runtime parity of the outputs, size and FLOPs of an exported model."""
    import torch

    from fn3.export import load
    from fn3.export.bench import count_flops, count_params, interleaved_latency, ort_parity, ort_session
    from fn3.export.io import ideal_size
    from fn3.export.loading import NESTED_FORMATS, file_format, resolve_file
    from fn3.export.twin import float_twin

    file = resolve_file(path)
    parsed = None
    if spec is not None:
        if file_format(file) not in NESTED_FORMATS:
            raise ConfigError("--spec applies to a nested file; this export holds one sub-model")
        from fn3.export import container
        from fn3.export.nested import nested_space
        from fn3.spec import parse_spec

        with container.Reader(file) as r:
            parsed = parse_spec(spec, nested_space(r))
    model = load(file, parsed)
    shape = model.meta.get("input_shape")
    if shape is None:
        raise ConfigError(f"{file} does not record its input shape")
    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
        assert sizes and min(sizes) >= 1 and repeats >= 1
    except (ValueError, AssertionError):
        raise ConfigError(f"--batches {batches!r} / --repeats {repeats}: give positive integers") from None
    if threads > 0:
        torch.set_num_threads(threads)
    twin = float_twin(model)  # the float sub-model of the same spec, the baseline
    sessions = {
        "q": ort_session(model, shape, threads=threads, rounding=rounding),
        "f": ort_session(twin, shape, threads=threads),
    }
    # each run's model and the name of its float baseline; a baseline shared by two runs (the
    # compiled float sub-model, for --compile and --integer) is timed once
    runs, baselines = {"torch": (model, "torch")}, {"torch": twin}
    if compile_ or integer:
        from fn3.export.fast import compiled

        baselines["compiled"] = compiled(twin)
        if compile_:
            runs["compiled"] = (compiled(model), "compiled")
        if integer:
            runs["integer"] = (compiled(model, integer=True), "compiled")
    names = {"torch": "PyTorch", "compiled": "PyTorch, torch.compile", "integer": "PyTorch, int8 kernels",
             "ort": "ONNX Runtime"}
    table = Table(title=f"{file}: exported model beside the float sub-model of the same spec")
    for col in ("batch", "runtime", "model ms", "float ms", "ratio"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    for b in sizes:
        x = torch.randn(b, *shape, generator=torch.Generator().manual_seed(b))
        xn = x.numpy()
        fns = {f"{k} q": (lambda x=x, m=m: m(x)) for k, (m, _) in runs.items()}
        fns |= {f"{k} f": (lambda x=x, m=m: m(x)) for k, m in baselines.items()}
        fns |= {f"ort {k}": (lambda xn=xn, s=s: s.run(None, {"input": xn})) for k, s in sessions.items()}
        try:
            with torch.no_grad():
                t = interleaved_latency(fns, repeats=repeats)
        except torch._dynamo.exc.BackendCompilerFailed as e:  # e.g. no C++ compiler for Inductor
            inner = e.inner_exception
            why = (str(inner).strip().splitlines() or [""])[0][:200]
            raise ConfigError(
                f"--compile/--integer: torch.compile failed ({type(inner).__name__}: {why}); it needs "
                "a C++ compiler (Inductor): install one or run without --compile/--integer"
            ) from None
        for k, base in [*((k, base) for k, (_, base) in runs.items()), ("ort", "ort")]:
            q, f = t[f"{k} q"], t[f"{base} f"]
            table.add_row(str(b), names[k], f"{q * 1e3:.3f}", f"{f * 1e3:.3f}", f"{q / f:.2f}x")
    console.print(table)
    diff = ort_parity(sessions["q"], model, shape)
    console.print(
        f"ONNX Runtime parity: max |ORT - PyTorch| = {diff:.2e} on 8 random inputs "
        "(a quantized activation within float rounding of a step boundary may take the next step)"
    )
    size = model.meta.get("bytes_read", os.path.getsize(file))
    stored = model
    if model.meta.get("activations") == "float":
        console.print("exported with --activations float: no activation quantizers, the float sub-model's "
                      "operations (the ratio measures noise)")
        stored = load(file, parsed, as_stored=True)  # its quantized layers, for the ideal size
    ideal = ideal_size(stored)
    console.print(
        f"file {size:,} bytes (ideal {ideal:,}); params {count_params(model):,}; "
        f"MFLOPs {count_flops(model, shape) / 1e6:.2f} for input {tuple(shape)}"
    )
