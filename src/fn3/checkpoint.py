"""Checkpoints: model, optimizer and loop state in one safetensors file, never a pickle.

The tensors (model parameters and buffers, optimizer buffers) go into a safetensors file; everything
else (step, epoch, optimizer hyper-parameters, the resolved config, metrics) goes into its JSON
metadata header as one ``"fn3"`` entry. One file means one atomic rename: a run killed at any moment
leaves either the previous checkpoint or the new one, never a mix. Loading parses only JSON and raw
tensors, so a checkpoint from elsewhere cannot execute code.

Integrity: the header holds a CRC-32 of the JSON metadata and the JSON holds a CRC-32 of every
tensor (name, dtype, shape and bytes), so a flipped bit anywhere is an error, never silently different
weights. Everything is validated (names, shapes, dtypes, optimizer groups) before the model or
optimizer is touched: a bad checkpoint leaves them as they were.

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

import inspect
import json
import math
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fn3._io import atomic_path, one_line
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


def _tensors_crc(tensors: dict[str, torch.Tensor]) -> str:
    """CRC-32 over every tensor's name, dtype, shape and bytes, in name order."""
    crc = 0
    for name in sorted(tensors):
        t = tensors[name]
        crc = zlib.crc32(f"{name}|{t.dtype}|{list(t.shape)}".encode(), crc)
        crc = zlib.crc32(t.contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def _text_crc(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


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
    info["tensors_crc32"] = _tensors_crc(tensors)
    text = json.dumps(info)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"fn3": text, "fn3_crc32": _text_crc(text)})


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
        raise FileFormatError(
            f"checkpoint {p} is not a valid safetensors file ({one_line(err)})"
        ) from None
    text = meta.get("fn3")
    if not isinstance(text, str):
        raise FileFormatError(f"checkpoint {p} has no fn3 metadata (not written by fn3?)")
    if "fn3_crc32" in meta and meta["fn3_crc32"] != _text_crc(text):
        raise FileFormatError(f"checkpoint {p} is corrupt (its metadata fails the CRC-32 check)")
    try:
        info = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise FileFormatError(f"checkpoint {p} has no fn3 metadata (not written by fn3?)") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(f"checkpoint {p}: expected format {CHECKPOINT_FORMAT}")
    if info.get("version") != CHECKPOINT_VERSION:
        raise FileFormatError(
            f"checkpoint {p}: version {one_line(repr(info.get('version')), 40)} is not supported "
            f"(expected {CHECKPOINT_VERSION})"
        )
    return info


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load tensors into ``model`` (and ``optimizer``), checking names and shapes; return the metadata.

    Nothing is loaded unless the whole checkpoint is valid.
    """
    p = Path(path)
    info = read_checkpoint_meta(p)
    try:
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as err:
        raise FileFormatError(f"checkpoint {p} is corrupt ({one_line(err)})") from None
    if "tensors_crc32" in info and info["tensors_crc32"] != _tensors_crc(tensors):
        raise FileFormatError(f"checkpoint {p} is corrupt (its tensors fail the CRC-32 check)")
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
    opt_state = None
    if optimizer is not None:
        opt_state = _optimizer_state(p, optimizer, info, tensors)
    model.load_state_dict(state)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise FileFormatError(
                f"checkpoint {p}: optimizer state does not match ({one_line(err)})"
            ) from None
    return info


def _same_kind(saved: object, current: object) -> bool:
    """Whether a saved optimizer hyper-parameter may replace the current one (JSON turned tuples into
    lists; numbers must be finite)."""
    if isinstance(current, bool) or current is None or isinstance(current, str):
        # flags (nesterov, foreach, capturable, ...): fn3 builds the optimizer from the run's
        # config, so a genuine checkpoint has the same ones; others would change how it steps
        return type(saved) is type(current) and saved == current
    if isinstance(current, int | float):
        return type(saved) in (int, float) and math.isfinite(saved)
    if isinstance(current, tuple | list):
        return (
            isinstance(saved, list | tuple)
            and len(saved) == len(current)
            and all(_same_kind(a, b) for a, b in zip(saved, current, strict=True))
        )
    return True  # a kind fn3 does not know (a newer torch): let torch decide


def _check_hyperparameters(cls: type, group: dict[str, Any], bad: Any) -> None:
    """Let the optimizer's own constructor validate the saved values (a negative lr, a beta of 1)."""
    names = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in group.items() if k in names and k != "params"}
    try:
        cls([torch.zeros(1, requires_grad=True)], **kwargs)
    except (ValueError, TypeError, RuntimeError) as err:
        raise bad(one_line(err, 80)) from None


def _optimizer_state(
    p: Path, optimizer: torch.optim.Optimizer, info: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """The optimizer ``state_dict`` the checkpoint holds, checked against ``optimizer``."""

    def bad(what: str) -> FileFormatError:
        return FileFormatError(f"checkpoint {p}: optimizer state does not match ({what})")

    opt_info = info.get("optimizer")
    if opt_info is None:
        raise FileFormatError(f"checkpoint {p} holds no optimizer state to resume from")
    groups, scalars = (opt_info.get(k) if isinstance(opt_info, dict) else None
                       for k in ("param_groups", "scalars"))
    current = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current):
        raise bad(f"expected {len(current)} parameter groups")
    params: dict[int, torch.Tensor] = {}  # state index -> the parameter it belongs to
    ordered = [q for g in optimizer.param_groups for q in g["params"]]
    for saved, cur in zip(groups, current, strict=True):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
            raise bad("a parameter group is not an object with params")
        if len(saved["params"]) != len(cur["params"]) or not all(
            type(i) is int for i in saved["params"]
        ):
            raise bad("a parameter group holds another number of parameters")
        for key, value in cur.items():
            if key == "params" or (key not in saved and (value is None or isinstance(value, bool))):
                continue  # a flag an older torch did not save: torch fills in its default
            if key not in saved or not _same_kind(saved[key], value):
                got = one_line(repr(saved[key]), 40) if key in saved else "missing"
                raise bad(f"group setting {key!r} is {got}")
        _check_hyperparameters(type(optimizer), saved, bad)
        for i, q in zip(saved["params"], cur["params"], strict=True):
            params[i] = ordered[q]
    if len(params) != len(ordered):
        raise bad("parameter indices repeat")
    if not isinstance(scalars, dict | None):
        raise bad("scalars is not an object")
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            idx, _, key = k[len("optim.") :].partition(".")
            param = params.get(int(idx)) if idx.isdecimal() and key else None
            if param is None:
                raise bad(f"tensor {k!r} names no parameter")
            if (v.shape != param.shape and v.numel() != 1) or not v.is_floating_point():
                # a float buffer per weight (momentum, exp_avg) or a float step count
                raise bad(
                    f"tensor {k!r} is {tuple(v.shape)} {v.dtype}, expected {tuple(param.shape)} "
                    f"{param.dtype}"
                )
            state.setdefault(int(idx), {})[key] = v
    for idx, values in (scalars or {}).items():
        if not (idx.isdecimal() and int(idx) in params and isinstance(values, dict)) or not all(
            type(x) in (int, float, bool) or x is None for x in values.values()
        ):
            raise bad(f"scalar state {one_line(repr(idx), 20)} is malformed")
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": groups}
