"""Run directories: train from a config into a folder, and load everything back from it.

A run directory holds:

* ``config.json`` - the resolved :class:`~fn3.config.TrainConfig` (normalisation included);
* ``checkpoint.safetensors`` - the latest model + optimizer state (for ``--resume``);
* ``model.safetensors`` - the final weights, written when training ends;
* ``metrics.jsonl`` - one line per epoch (loss, throughput, validation accuracy of chosen specs);
* ``nesting.json`` - for a model of your own (``model="package.module:factory"``): the factory
  reference, its arguments and input shape, and the nesting report (:mod:`fn3.convert.user`).

:func:`load_run` rebuilds the model from ``config.json`` and the weights; :meth:`Run.datasets` gives
the same train / validation / test split the run used, so a search scores sub-models on the
held-out validation split, never on the test set.

Example:
    >>> import tempfile, fn3
    >>> from fn3.config import TrainConfig
    >>> from fn3.run import train_run, load_run
    >>> out = tempfile.mkdtemp()
    >>> cfg = TrainConfig(model="mlp", model_kwargs={"hidden": [32, 32]}, epochs=1)
    >>> _ = train_run(cfg, out, progress=False)
    >>> run = load_run(out)
    >>> run.space.kinds()
    ('bits', 'neurons')
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from fn3 import distributed as dist
from fn3._io import atomic_write_text
from fn3.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from fn3.config import TrainConfig
from fn3.convert.user import UserModel, build_user_model, is_factory
from fn3.data import ImageDataset, batches, channel_stats, load_dataset, train_val_split
from fn3.errors import ConfigError, FileFormatError
from fn3.models import create_model
from fn3.nest import space
from fn3.nn.base import NestedActQuant, NestedModule, set_act_clip, set_weight_clip
from fn3.nn.blocks import zero_init_residual_
from fn3.spec import Space
from fn3.train import (
    CHECKPOINT_NAME,
    FitResult,
    distill_students,
    eval_specs_of,
    evaluate_specs,
    fit,
    make_rule,
)

__all__ = [
    "AUTO_ACT_CLIP",
    "AUTO_WEIGHT_CLIP",
    "Run",
    "build_model",
    "load_data",
    "load_run",
    "resolved_act_clip",
    "resolved_weight_clip",
    "train_run",
]

CONFIG_NAME = "config.json"
MODEL_NAME = "model.safetensors"
NESTING_NAME = "nesting.json"


def load_data(cfg: TrainConfig) -> tuple[ImageDataset, ImageDataset | None, ImageDataset]:
    """(train, validation or None, test) splits for ``cfg``; validation is held out of train."""
    full = load_dataset(cfg.data, "train", cfg.data_dir, limit=cfg.limit)
    test = load_dataset(cfg.data, "test", cfg.data_dir)
    if cfg.val_fraction > 0:
        train, val = train_val_split(full, cfg.val_fraction, cfg.seed)
    else:
        train, val = full, None
    return train, val, test


#: What ``act_clip="auto"`` (``fn3 train``'s default) gives a model nested in bits with the centred
#: scheme (:func:`resolved_act_clip`): a level per bit-width. Measured (issue 11, experiment 5,
#: ResNet-20 on CIFAR-10, 18 epochs, on the 8,000 test images no choice was made on) against one
#: shared level: +1.15/+0.85/+0.37/+0.85/+1.50 pt at 8/6/4/3/2 bits (2 s.e. 0.9-1.0), 2-bit drop
#: 3.4 pt against 3.7 (``docs/benchmarks/heldout_act_clip.md``). Only for a model nested in bits
#: alone: nested in four levels at once (``fn3 demo``'s ResNeXt, ``full+odo``) it scored below the
#: shared level on this machine (8 bits 97.8 against 98.6%, 2 bits 86.9 against 88.6%): auto keeps it.
AUTO_ACT_CLIP = "per-bits"


def _centred_bits_alone(model: nn.Module, kind: type[nn.Module]) -> bool:
    """True when ``model`` is nested in bits alone and its ``kind`` modules (at least one) quantize
    under the centred scheme: where the clipping rules of :func:`resolved_act_clip` and
    :func:`resolved_weight_clip` were measured."""
    mods = [m for m in model.modules() if isinstance(m, kind)]
    centred = bool(mods) and all(m.quant_scheme == "centred" for m in mods)
    return centred and set(space(model).kinds()) == {"bits"}


def resolved_act_clip(model: nn.Module, cfg: TrainConfig) -> str:
    """How ``cfg`` clips ``model``'s activations: ``cfg.act_clip``, or for ``"auto"`` the model
    option ``act_clip`` of a built-in model when given, else :data:`AUTO_ACT_CLIP` for a model nested
    in bits alone with quantized activations under the centred scheme and ``"shared"`` for any other
    (where it was measured; a model without them has nothing to clip; a ``"truncate"`` model reads
    every bit-width off one code).

    Example:
        >>> import fn3
        >>> net = fn3.create_model("resnet20", levels="bits")
        >>> resolved_act_clip(net, TrainConfig()), resolved_act_clip(net, TrainConfig(act_clip="shared"))
        ('per-bits', 'shared')
    """
    given = None if is_factory(cfg.model) else cfg.model_kwargs.get("act_clip")
    if given is not None and cfg.act_clip not in ("auto", given):
        raise ConfigError(f"act_clip={cfg.act_clip!r} and the model option act_clip={given!r} disagree: "
                          "give one of them")
    if cfg.act_clip != "auto":
        return cfg.act_clip
    if given is not None:
        return str(given)
    return AUTO_ACT_CLIP if _centred_bits_alone(model, NestedActQuant) else "shared"


#: What an unset ``weight_clip`` (``fn3 train``'s default since config version 12) gives a model nested
#: in bits alone with the centred scheme (:func:`resolved_weight_clip`): each weight channel quantized
#: on ``min(max|w|, 3 rms)``. Measured against the largest magnitude (0) on a ResNet-20 nested in bits
#: (issue 11, experiment 5, fn3's default rule, on the 8,000 test images the page does not use, both
#: arms trained with the same code; 2 s.e. about 1 pt): at 6 epochs +2.50 to +3.51 pt at every
#: bit-width at seed 0, +1.50 to +1.90 at seed 1, +0.41 to +1.44 at seed 2; at 18 epochs level above
#: 2 bits at seeds 0 and 1 and the 2-bit model +1.60 / +0.00 pt (2-bit drop 1.86 / 3.27 against
#: 3.50 / 3.18). Never below the largest magnitude beyond the noise in 25 paired readings. The
#: networks trained alone at one bit-width (``rule="fixed"``, the twins of experiment 5) did not gain
#: from it (6 epochs, held-out: -2.70 to -0.79 pt at seed 0, -1.84 to +1.10 at seed 1): they keep the
#: largest magnitude, as does any family nested in more than bits, where the range measured mixed:
#: on experiment 6's ResNet-20 nested in bits, channels and layers (Fashion-MNIST, 6 epochs, ``full+odo``)
#: it was +1.1 to +2.7 pt above the largest magnitude on average over three seeds (-1.65 to +9.20 pt
#: per reading, above the noise at one seed), but on ``fn3 demo``'s four-level family
#: (``benchmarks/demo_weight_range.py``, three seeds) it is level on the whole network and 2.6 pt below
#: it at half of every other level at 2 bits, on average. ``--weight-clip 3`` is a flag to try there,
#: not the default.
AUTO_WEIGHT_CLIP = 3.0


def resolved_weight_clip(model: nn.Module, cfg: TrainConfig) -> float:
    """The range rule of ``model``'s quantized weights under ``cfg`` (:func:`fn3.nn.base.set_weight_clip`):
    ``cfg.weight_clip``, or when it is ``None`` the model option ``weight_clip`` of a built-in model
    when given, else :data:`AUTO_WEIGHT_CLIP` for a model nested in bits alone under the centred
    scheme trained by any rule but ``fixed``, and 0 (each channel's largest magnitude) for any other
    model or a network trained alone at one sub-model. A config written before version 12 reads as
    0 where it left the range unset (what its run trained on).

    Example:
        >>> import fn3
        >>> bits = fn3.create_model("resnet20", levels="bits")
        >>> resolved_weight_clip(bits, TrainConfig()), resolved_weight_clip(bits, TrainConfig(weight_clip=0))
        (3.0, 0.0)
        >>> resolved_weight_clip(fn3.create_model("resnet20", levels=("bits", "channels")), TrainConfig())
        0.0
        >>> resolved_weight_clip(bits, TrainConfig(rule="fixed", fixed_spec="bits=2"))
        0.0
    """
    given = None if is_factory(cfg.model) else cfg.model_kwargs.get("weight_clip")
    if given is not None and cfg.weight_clip is not None and float(given) != cfg.weight_clip:
        raise ConfigError(f"weight_clip={cfg.weight_clip!r} and the model option weight_clip={given!r} "
                          "disagree: give one of them")
    if cfg.weight_clip is not None:
        return float(cfg.weight_clip)
    if given is not None:
        return float(given)
    nested = cfg.rule != "fixed" and _centred_bits_alone(model, NestedModule)
    return AUTO_WEIGHT_CLIP if nested else 0.0


def _with_act_clip(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``model`` with the activation clipping and the weight range ``cfg`` resolves to."""
    set_weight_clip(model, resolved_weight_clip(model, cfg))
    return set_act_clip(model, resolved_act_clip(model, cfg))


def build_model(cfg: TrainConfig, ds: ImageDataset) -> nn.Module:
    """The nested model ``cfg`` describes, sized for ``ds`` (a user's factory model is nested here),
    its activation clipping and weight range as :func:`resolved_act_clip` and
    :func:`resolved_weight_clip` say."""
    c, h, w = ds.image_shape
    if is_factory(cfg.model):
        return _user_model(cfg, ds)[0]
    model = create_model(
        cfg.model,
        num_classes=ds.num_classes,
        in_channels=c,
        input_size=(h, w),
        levels=cfg.levels,
        seed=cfg.seed,
        **cfg.model_kwargs,
    )
    if cfg.zero_init_residual and zero_init_residual_(model) == 0:
        raise ConfigError(f"zero_init_residual: model {cfg.model!r} has no residual blocks; "
                          "use it with resnet or resnext models")
    return _with_act_clip(model, cfg)


def _user_model(cfg: TrainConfig, ds: ImageDataset) -> tuple[nn.Module, dict[str, Any]]:
    """Build, load ``cfg.init`` into, and nest a user's model; the quantizers see one real batch; its
    activation clipping as :func:`resolved_act_clip` says."""
    desc = UserModel(cfg.model, cfg.model_kwargs, ds.image_shape, cfg.levels, cfg.seed, cfg.init)
    example = next(iter(batches(ds, 64, shuffle=False, mean=cfg.mean, std=cfg.std)))[0]
    model, report, desc = build_user_model(desc, example)
    return _with_act_clip(model, cfg), {"model": desc.to_dict(), "report": report.to_dict()}


def _resolve(cfg: TrainConfig, train: ImageDataset) -> TrainConfig:
    if cfg.mean is None or cfg.std is None:
        mean, std = channel_stats(train)
        cfg = cfg.replace(mean=cfg.mean or mean, std=cfg.std or std)
    return cfg


def train_run(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> FitResult:
    """Train ``cfg`` into run directory ``out`` (or resume the run there) and evaluate on the test set.

    With ``resume=True`` the saved ``config.json`` is used and ``cfg`` is ignored. ``max_steps`` stops
    (with a checkpoint) at that global step, to train in chunks.
    """
    out = Path(out)
    dist.setup()  # no-op unless launched by torchrun
    if resume:
        cfg = read_config(out)
    elif (out / CONFIG_NAME).exists():
        raise ConfigError(
            f"run directory {out} already holds a run; resume it with --resume {out} or choose another --out"
        )
    train, val, test = load_data(cfg)
    cfg = _resolve(cfg, train)
    nesting = None
    if is_factory(cfg.model) and resume:
        model = _stored_user_model(out / NESTING_NAME, cfg)
    elif is_factory(cfg.model):
        model, nesting = _user_model(cfg, train)
    else:
        model = build_model(cfg, train)
    make_rule(model, cfg)  # a --fixed-spec, --train-spec or --eval-spec that does not fit fails
    eval_specs_of(model, cfg)  # before anything is written
    distill_students(model, cfg)  # distill_to=smallest under a rule that never trains the smallest
    dist.barrier()  # every rank has checked the directory before rank 0 writes into it
    if not resume and dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2) + "\n")
        if nesting is not None:
            atomic_write_text(out / NESTING_NAME, json.dumps(nesting, indent=1) + "\n")
    result = fit(
        model, train, cfg, val=val, run_dir=out, resume=resume, progress=progress, max_steps=max_steps
    )
    if not result.interrupted:
        final = {"test_accuracy": evaluate_specs(model, eval_specs_of(model, cfg), test, cfg, train)}
        if dist.is_main():
            meta = {"config": cfg.to_dict(), "step": result.step, "model": model.fn3_config, **final}
            save_checkpoint(out / MODEL_NAME, model, None, meta)
        dist.barrier()
        result.history.append(final)
    return result


def _stored_user_model(path: Path, cfg: TrainConfig) -> nn.Module:
    """Rebuild the nested user model described in a run's ``nesting.json`` (weights not loaded), its
    activation clipping as the run's ``cfg`` says."""
    if not path.is_file():
        raise FileFormatError(f"{path} is missing: the run cannot rebuild its model of your own")
    desc = UserModel.from_dict(_read_json(path).get("model"))
    return _with_act_clip(build_user_model(desc, fresh=False)[0], cfg)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} does not hold a JSON object")
    return data


def read_config(run: str | Path) -> TrainConfig:
    """The resolved config of run directory ``run``."""
    path = Path(run) / CONFIG_NAME
    if not Path(run).is_dir():
        raise ConfigError(f"run directory {run} does not exist (train one with `fn3 train --out {run}`)")
    if not path.is_file():
        raise FileFormatError(f"{run} is not an fn3 run directory: {CONFIG_NAME} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path} is not valid JSON ({err})") from None
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


@dataclass
class Run:
    """A trained (or training) run: its config, model (weights loaded) and space."""

    path: Path
    config: TrainConfig
    model: nn.Module
    step: int

    @property
    def space(self) -> Space:
        return space(self.model)

    def datasets(self) -> tuple[ImageDataset, ImageDataset | None, ImageDataset]:
        """The run's (train, validation, test) splits."""
        return load_data(self.config)

    def batches(self, ds: ImageDataset, batch_size: int = 256) -> list:
        """Normalised, unshuffled batches of ``ds`` as the run saw them (a list, reusable)."""
        return list(batches(ds, batch_size, shuffle=False, mean=self.config.mean, std=self.config.std))


def load_run(path: str | Path, *, checkpoint: bool = False) -> Run:
    """Load a run directory: the final weights, or the latest checkpoint if training did not finish.

    ``checkpoint=True`` always loads the latest checkpoint.
    """
    run = Path(path)
    cfg = read_config(run)
    weights = run / MODEL_NAME
    if checkpoint or not weights.is_file():
        weights = run / CHECKPOINT_NAME
    if not weights.is_file():
        raise FileFormatError(
            f"run {run} has no weights yet ({MODEL_NAME} and {CHECKPOINT_NAME} are missing)"
        )
    meta = read_checkpoint_meta(weights)
    model_cfg = dict(meta.get("model") or {})
    if "name" not in model_cfg:
        raise FileFormatError(f"{weights} does not say which model it holds (no model metadata)")
    if isinstance(model_cfg["name"], str) and is_factory(model_cfg["name"]):
        model = _stored_user_model(run / NESTING_NAME, cfg)
        info = load_checkpoint(weights, model)
        return Run(path=run, config=cfg, model=model.eval(), step=int(info.get("step", 0)))
    # Runs written before quantization schemes existed were trained with the truncating rule.
    model_cfg.setdefault("quant_scheme", "truncate")
    try:
        model = create_model(model_cfg.pop("name"), **model_cfg)
    except ConfigError as err:
        raise FileFormatError(f"{weights}: its model description is invalid ({err})") from None
    info = load_checkpoint(weights, model)
    model.eval()
    return Run(path=run, config=cfg, model=model, step=int(info.get("step", 0)))


def default_data_dir() -> str | None:
    """``$FN3_DATA_DIR`` if set."""
    return os.environ.get("FN3_DATA_DIR")
