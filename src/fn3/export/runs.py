"""Export from a trained run directory, and evaluate an exported model on a dataset.

:func:`export_run` is what ``fn3 export RUN`` calls: it re-estimates BatchNorm statistics for the spec
exactly as ``fn3 eval RUN`` does (same calibration batches), exports, and writes the export directory
(``model.safetensors``, optionally ``model.onnx``, ``spec.json``); with ``nested=True`` it writes the
nested file of the whole model instead. The input normalisation and the dataset of the run go into
the export's metadata, so :func:`evaluate_exported` needs nothing but the directory.

Example:
    >>> import tempfile, fn3
    >>> from fn3.config import TrainConfig
    >>> from fn3.run import load_run, train_run
    >>> from fn3.export.runs import evaluate_exported, export_run
    >>> run_dir, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = train_run(TrainConfig(model="mlp", model_kwargs={"hidden": [32]}, epochs=1), run_dir,
    ...               progress=False)
    >>> run = load_run(run_dir)
    >>> files = export_run(run, run.space.uniform({"neurons": 0.5, "bits": 4}), out)
    >>> sorted(p.name for p in files)
    ['model.safetensors', 'spec.json']
    >>> 0.0 <= evaluate_exported(out) <= 1.0
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fn3.errors import ConfigError
from fn3.evaluate import bn_recalibrated
from fn3.export.container import atomic_write
from fn3.export.io import save
from fn3.export.loading import load
from fn3.export.nested import save_nested
from fn3.export.slice import export
from fn3.export.twin import float_twin
from fn3.spec import Spec

__all__ = ["ACTIVATIONS", "check_options", "drop_activation_quantizers", "evaluate_exported", "export_run",
           "run_meta", "write_model_files"]

FORMATS = ("fn3", "onnx")
#: What an export does with its activation quantizers: keep them (the values the nested model
#: computes), or drop them at deployment (``fn3.export.float_twin``: the speed of the float sub-model;
#: the weights stay on their c-bit grid and the file stays as small).
ACTIVATIONS = ("quantized", "float")


def run_meta(run: Any) -> dict:
    """What an export must remember of its run: input normalisation and dataset, and the depths its
    rule never trained (:func:`fn3.train.untrained_of`: ``fn3 export NESTED --spec`` warns from them)."""
    from fn3.train import untrained_of

    cfg = run.config
    missing, trained = untrained_of(run.model, cfg)
    return {
        "mean": list(cfg.mean) if cfg.mean else None,
        "std": list(cfg.std) if cfg.std else None,
        "dataset": cfg.data,
        "data_dir": cfg.data_dir,
        "run": str(run.path),
        "untrained_depths": missing,
        "trained_specs": trained,
    }


def _calibration(run: Any) -> tuple[list, int]:
    """The BatchNorm calibration batches ``fn3 eval`` uses for a run (training split, seed + 1)."""
    from fn3.train import calibration_batches

    cfg = run.config
    train, _, _ = run.datasets()
    return calibration_batches(train, cfg), cfg.recalibrate_batches


def export_run(
    run: Any,
    spec: Spec,
    out: str | Path,
    *,
    fmt: str = "fn3",
    nested: bool = False,
    recalibrate: bool = True,
    rounding: str = "qdq",
    activations: str = "quantized",
) -> list[Path]:
    """Export sub-model ``spec`` of a loaded run (:func:`fn3.run.load_run`) into directory ``out``.

    Args:
        run: the run (its ``model``, ``config``, ``datasets()``).
        spec: the sub-model.
        out: the export directory (created if missing).
        fmt: ``"fn3"`` (``model.safetensors``) or ``"onnx"`` (``model.onnx`` as well).
        nested: write ``nested.safetensors`` (the whole model, every spec) instead of one sub-model.
        recalibrate: re-estimate BatchNorm statistics for ``spec`` as ``fn3 eval`` does (when the run's
            ``recalibrate_batches > 0``). The nested file keeps the shared statistics.
        rounding: the ONNX form of the activation quantizers (:func:`fn3.export.to_onnx`).
        activations: ``"quantized"`` keeps the activation quantizers; ``"float"`` drops them at
            deployment (the float sub-model's speed, see :func:`fn3.export.float_twin`). The file
            still holds the c-bit weight codes and records the choice, so :func:`fn3.export.load`
            returns the model without quantizers and ``model.onnx`` is written without them. Both
            models are scored on the run's test split first and the accuracies are stored in
            ``meta["activation_drop"]``: the accuracy cost of the choice, measured, not assumed.

    Returns the files written.
    """
    check_options(fmt, activations, nested)
    out = Path(out)
    meta = run_meta(run)
    if nested:
        out.mkdir(parents=True, exist_ok=True)
        return [save_nested(run.model, out / "nested.safetensors", meta=meta)]
    calib, n = _calibration(run) if recalibrate else ([], 0)
    if n > 0:
        with bn_recalibrated(run.model, spec, calib, n):
            exported = export(run.model, spec, meta={**meta, "bn_recalibrated": n})
    else:
        exported = export(run.model, spec, meta=meta)
    if activations == "float":
        exported = drop_activation_quantizers(exported, run.datasets()[2])
    files = write_model_files(exported, out, fmt=fmt, rounding=rounding)
    spec_json = json.dumps(spec.to_dict(run.space), indent=1, sort_keys=True) + "\n"
    atomic_write(out / "spec.json", [spec_json.encode()])
    return [*files, out / "spec.json"]


def check_options(fmt: str, activations: str, nested: bool = False) -> None:
    """Refuse an unknown ``--format`` / ``--activations``, and ``--activations float`` for the nested
    file (checked before any work, by ``fn3 export`` from a run directory or from a nested file)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if activations not in ACTIVATIONS:
        raise ConfigError(f"--activations {activations!r}: use one of {', '.join(ACTIVATIONS)}")
    if activations == "float" and nested:
        raise ConfigError("--activations float applies to one sub-model; the nested file keeps every "
                          "quantizer (choose at `fn3 export NESTED --spec ... --activations float`)")


def write_model_files(exported: nn.Module, out: Path, *, fmt: str, rounding: str) -> list[Path]:
    """``out/model.safetensors`` (and ``out/model.onnx`` for ``fmt="onnx"``, without activation
    quantizers when ``exported`` is to be deployed so: :func:`drop_activation_quantizers`)."""
    out.mkdir(parents=True, exist_ok=True)
    files = [save(exported, out / "model.safetensors")]
    if fmt == "onnx":
        from fn3.export.onnx import to_onnx

        deployed = float_twin(exported) if exported.meta.get("activations") == "float" else exported
        files.append(to_onnx(deployed, out / "model.onnx", rounding=rounding))
    return files


def drop_activation_quantizers(exported: nn.Module, test: Any) -> nn.Module:
    """Mark ``exported`` to be deployed without its activation quantizers: ``meta["activations"] =
    "float"`` (saving keeps the c-bit weight codes; :func:`fn3.export.load` then returns
    :func:`fn3.export.float_twin` of the model), and the accuracy of the model with and without them
    on ``test`` (an ``ImageDataset``) in ``meta["activation_drop"]``. Returns ``exported``."""
    twin = float_twin(exported)
    drop = {"split": "test", "images": len(test), "quantized": evaluate_exported(exported, test),
            "float": evaluate_exported(twin, test)}
    exported.meta = {**exported.meta, "activations": "float", "activation_drop": drop}
    return exported


@torch.no_grad()
def evaluate_exported(
    model: nn.Module | str | Path,
    dataset: str | Any | None = None,
    *,
    split: str = "test",
    data_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    mean: Any = None,
    std: Any = None,
) -> float:
    """Top-1 accuracy in [0, 1] of an exported model (or export directory / file) on a dataset.

    Args:
        model: an exported module, or a path :func:`fn3.export.load` opens.
        dataset: a dataset name for :func:`fn3.data.load_dataset`, an ``ImageDataset``, or ``None`` for
            the dataset recorded in the export's metadata.
        split, data_dir, limit: passed to ``load_dataset`` (``data_dir`` defaults to the recorded one).
        mean, std: input normalisation; default: the one recorded in the export's metadata.
    """
    from fn3.data import batches, load_dataset

    if not isinstance(model, nn.Module):
        model = load(model)
    meta = getattr(model, "meta", {}) or {}
    mean = meta.get("mean") if mean is None else mean
    std = meta.get("std") if std is None else std
    if mean is None or std is None:
        raise ConfigError("the exported model does not record its input normalisation; pass mean= and std=")
    if dataset is None or isinstance(dataset, str):
        name = dataset or meta.get("dataset")
        if name is None:
            raise ConfigError("the exported model does not record its dataset; pass dataset=")
        dataset = load_dataset(name, split, data_dir or meta.get("data_dir"), limit=limit)
    model.eval()
    correct = total = 0
    for x, y in batches(dataset, batch_size, shuffle=False, mean=mean, std=std):
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / total if total else 0.0
