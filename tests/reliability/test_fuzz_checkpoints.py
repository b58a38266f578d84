"""Never trust a checkpoint: damaged bytes, edited metadata, wrong tensors; never a half-written one.

A checkpoint that loads is exactly the one saved (CRC-32 of metadata and tensors); any other raises
:class:`fn3.errors.FileFormatError` naming the file and leaves the model and optimizer untouched.
A save that dies mid-write leaves the previous checkpoint intact and no temporary file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fuzz_strategies import FUZZ, corrupted, edited_json, expect_error, expect_only, leftovers
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file

import fn3
import fn3.checkpoint as ckpt
from fn3.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from fn3.errors import FileFormatError


def _model() -> torch.nn.Module:
    return fn3.create_model(
        "mlp", num_classes=10, in_channels=1, input_size=8, hidden=(16,), seed=1
    )


def _optimizer(model: torch.nn.Module, kind: str) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(model.parameters(), lr=0.01)


def _state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    tensors = [t.clone() for t in model.state_dict().values()]
    for param in (q for g in opt.param_groups for q in g["params"]):
        s = opt.state.get(param, {})  # in parameter order, each state's buffers by name
        tensors += [s[k].clone() for k in sorted(s) if isinstance(s[k], torch.Tensor)]
    return tensors


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module", params=["sgd", "adamw"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A real checkpoint after two training steps: (kind, bytes, model state, optimizer, metadata)."""
    model = _model()
    opt = _optimizer(model, request.param)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        x, y = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.safetensors"
    save_checkpoint(path, model, opt, {"step": 2, "model": model.fn3_config})
    return request.param, path.read_bytes(), _state(model, opt), read_checkpoint_meta(path)


def _fresh(kind: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, list[torch.Tensor]]:
    model = _model()
    opt = _optimizer(model, kind)
    return model, opt, _state(model, opt)


def _load_expecting_all_or_nothing(path: Path, kind: str, saved_state, saved_info) -> None:
    """Load into a fresh model: exactly the saved state, or an error and nothing changed."""
    model, opt, before = _fresh(kind)
    out = expect_only(FileFormatError, lambda: load_checkpoint(path, model, opt), names=path)
    if isinstance(out, Exception):
        assert _equal(_state(model, opt), before), "a failed load changed the model or optimizer"
    else:
        assert _equal(_state(model, opt), saved_state), "a damaged checkpoint loaded other weights"
        assert out == saved_info


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_checkpoint_damaged(tmp_path_factory: pytest.TempPathFactory, saved, data) -> None:
    kind, blob, state, info = saved
    header = int.from_bytes(blob[:8], "little") + 8
    path = tmp_path_factory.mktemp("bad") / "checkpoint.safetensors"
    path.write_bytes(data.draw(corrupted(blob, header=header)))
    _load_expecting_all_or_nothing(path, kind, state, info)


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_checkpoint_meta_damaged(tmp_path_factory: pytest.TempPathFactory, saved, data) -> None:
    _, blob, _, info = saved
    path = tmp_path_factory.mktemp("bad") / "checkpoint.safetensors"
    path.write_bytes(data.draw(corrupted(blob, header=int.from_bytes(blob[:8], "little") + 8)))
    out = expect_only(FileFormatError, lambda: read_checkpoint_meta(path), names=path)
    if not isinstance(out, Exception):
        assert out == info


def _craft(path: Path, tensors: dict[str, torch.Tensor], info: object) -> None:
    """A checkpoint with valid CRCs around arbitrary content: what a hostile or buggy writer makes."""
    if isinstance(info, dict):
        info = {**info, "tensors_crc32": ckpt._tensors_crc(tensors)}
    text = json.dumps(info)
    save_file(tensors, str(path), metadata={"fn3": text, "fn3_crc32": ckpt._text_crc(text)})


def _tensors(blob: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(blob)


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_checkpoint_metadata_edited(tmp_path_factory: pytest.TempPathFactory, saved, data) -> None:
    """Any value of the JSON metadata replaced by any JSON value (CRCs made to match)."""
    kind, blob, state, info = saved
    doc = {k: v for k, v in info.items() if k != "tensors_crc32"}
    edited = data.draw(edited_json(doc))
    path = tmp_path_factory.mktemp("edit") / "checkpoint.safetensors"
    _craft(path, _tensors(blob), edited)
    model, opt, before = _fresh(kind)
    out = expect_only(FileFormatError, lambda: load_checkpoint(path, model, opt), names=path)
    if isinstance(out, Exception):
        assert _equal(_state(model, opt), before)
    else:  # an accepted optimizer state must be usable
        model(torch.randn(2, 1, 8, 8)).sum().backward()
        opt.step()


def _wrong(blob: bytes, case: str) -> dict[str, torch.Tensor]:
    t = _tensors(blob)
    weight = next(k for k in t if k.startswith("model.") and k.endswith("weight"))
    buf = next(k for k in t if k.startswith("optim.") and t[k].ndim >= 2)
    if case == "model-shape":
        t[weight] = t[weight].reshape(-1)
    elif case == "model-dtype":
        t[weight] = t[weight].double()
    elif case == "model-missing":
        del t[weight]
    elif case == "model-extra":
        t["model.extra"] = torch.zeros(3)
    elif case == "optim-shape":
        t[buf] = t[buf][:1]
    elif case == "optim-dtype":
        t[buf] = t[buf].to(torch.int32)
    elif case == "optim-unknown-param":
        t["optim.999.momentum_buffer"] = torch.zeros(3)
    elif case == "optim-bad-name":
        t["optim.x"] = torch.zeros(1)
    return t


@pytest.mark.parametrize(
    "case",
    [
        "model-shape",
        "model-dtype",
        "model-missing",
        "model-extra",
        "optim-shape",
        "optim-dtype",
        "optim-unknown-param",
        "optim-bad-name",
    ],
)
def test_checkpoint_wrong_tensors(tmp_path: Path, saved, case: str) -> None:
    kind, blob, _, info = saved
    path = tmp_path / "checkpoint.safetensors"
    _craft(path, _wrong(blob, case), {k: v for k, v in info.items() if k != "tensors_crc32"})
    model, opt, before = _fresh(kind)
    expect_error(FileFormatError, lambda: load_checkpoint(path, model, opt), names=path)
    assert _equal(_state(model, opt), before)


@pytest.mark.parametrize("info", [[], "fn3", {"format": "fn3.checkpoint"}, {"version": 1}])
def test_checkpoint_not_fn3_metadata(tmp_path: Path, saved, info: object) -> None:
    path = tmp_path / "checkpoint.safetensors"
    _craft(path, _tensors(saved[1]), info)
    expect_error(FileFormatError, lambda: read_checkpoint_meta(path), names=path)


def test_checkpoint_metadata_too_deep(tmp_path: Path, saved) -> None:
    path = tmp_path / "checkpoint.safetensors"
    save_file(_tensors(saved[1]), str(path), metadata={"fn3": "[" * 100_000 + "]" * 100_000})
    expect_error(FileFormatError, lambda: read_checkpoint_meta(path), names=path)


# -- a save that dies mid-write ---------------------------------------------------------------------


class _Crash(Exception):
    pass


def _dying_save_file(fraction: float):
    """A ``save_file`` that writes ``fraction`` of the real file, then dies (a crash mid-write)."""

    def dying(tensors, filename, metadata=None):  # noqa: ANN001, ANN202 (safetensors' signature)
        data = save(tensors, metadata=metadata)
        Path(filename).write_bytes(data[: int(len(data) * fraction)])
        raise _Crash("killed mid-write")

    return dying


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.99])
def test_save_checkpoint_dies_midway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saved, fraction: float
) -> None:
    kind, _, _, _ = saved
    path = tmp_path / "checkpoint.safetensors"
    model, opt, _ = _fresh(kind)
    save_checkpoint(path, model, opt, {"step": 1})
    before = path.read_bytes()
    torch.nn.init.zeros_(next(model.parameters()))  # the next checkpoint would differ
    monkeypatch.setattr(ckpt, "save_file", _dying_save_file(fraction))
    with pytest.raises(_Crash):
        save_checkpoint(path, model, opt, {"step": 2})
    assert path.read_bytes() == before, "the previous checkpoint was damaged"
    assert leftovers(tmp_path) == [], "a temporary file was left behind"
    assert read_checkpoint_meta(path)["step"] == 1
    monkeypatch.undo()
    save_checkpoint(path, model, opt, {"step": 2})  # the next save works
    assert read_checkpoint_meta(path)["step"] == 2


def test_first_save_dies_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    monkeypatch.setattr(ckpt, "save_file", _dying_save_file(0.5))
    with pytest.raises(_Crash):
        save_checkpoint(tmp_path / "run" / "checkpoint.safetensors", model, None, {"step": 1})
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert leftovers(tmp_path) == []
