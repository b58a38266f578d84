"""Checkpoints: model, optimizer and loop state in one safetensors file, never a pickle.

The tensors (model parameters and buffers, optimizer buffers) go into a safetensors file; everything
else (step, epoch, optimizer hyper-parameters, the resolved config, metrics) goes into its JSON
metadata header as one ``"fn3"`` entry. One file means one atomic rename: a run killed at any moment
leaves either the previous checkpoint or the new one, never a mix. Loading parses only JSON and raw
tensors, so a checkpoint from elsewhere cannot execute code.

The random state needs no saving: the data order, augmentation and ordered-dropout draws of step ``t``
are pure functions of ``(seed, t)`` (see :mod:`fn3.sampling` and :mod:`fn3.data.loader`).

Example:
    >>> import tempfile, torch, fn3
    >>> from fn3.checkpoint import save_checkpoint, load_checkpoint
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> path = tempfile.mkdtemp() + "/ckpt.safetensors"
    >>> save_checkpoint(path, model, opt, {"step": 7})
    >>> load_checkpoint(path, model, opt)["step"]
    7
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fn3._io import atomic_path
from fn3.errors import FileFormatError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "read_checkpoint_meta", "save_checkpoint"]

CHECKPOINT_FORMAT = "fn3.checkpoint"
CHECKPOINT_VERSION = 1


def _optimizer_tensors(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
) -> None:
    """Atomically write model (+ optimizer) tensors and the JSON-serialisable ``meta``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    info: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **meta}
    if optimizer is not None:
        opt_tensors, opt_info = _optimizer_tensors(optimizer)
        tensors.update(opt_tensors)
        info["optimizer"] = opt_info
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"fn3": json.dumps(info)})


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (validated), without loading its tensors."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"checkpoint {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise FileFormatError(f"checkpoint {p} is not a valid safetensors file ({err})") from None
    try:
        info = json.loads(meta["fn3"])
    except (KeyError, json.JSONDecodeError):
        raise FileFormatError(f"checkpoint {p} has no fn3 metadata (not written by fn3?)") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(f"checkpoint {p}: expected format {CHECKPOINT_FORMAT}")
    if info.get("version") != CHECKPOINT_VERSION:
        raise FileFormatError(
            f"checkpoint {p}: version {info.get('version')!r} is not supported "
            f"(expected {CHECKPOINT_VERSION})"
        )
    return info


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load tensors into ``model`` (and ``optimizer``), checking names and shapes; return the metadata."""
    p = Path(path)
    info = read_checkpoint_meta(p)
    try:
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as err:
        raise FileFormatError(f"checkpoint {p} is corrupt ({err})") from None
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise FileFormatError(
            f"checkpoint {p} does not match the model ({what}); was it trained "
            "with another model or levels?"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape or v.dtype != expected[k].dtype:
            raise FileFormatError(
                f"checkpoint {p}: tensor {k!r} has shape {tuple(v.shape)} "
                f"{v.dtype}, the model expects {tuple(expected[k].shape)} {expected[k].dtype}"
            )
    model.load_state_dict(state)
    if optimizer is not None:
        if "optimizer" not in info:
            raise FileFormatError(f"checkpoint {p} holds no optimizer state to resume from")
        opt_info = info["optimizer"]
        opt_state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                opt_state.setdefault(int(idx), {})[key] = v
        for idx, scalars in opt_info.get("scalars", {}).items():
            opt_state.setdefault(int(idx), {}).update(scalars)
        try:
            optimizer.load_state_dict(
                {"state": opt_state, "param_groups": opt_info["param_groups"]}
            )
        except (ValueError, KeyError) as err:
            raise FileFormatError(
                f"checkpoint {p}: optimizer state does not match ({err})"
            ) from None
    return info
