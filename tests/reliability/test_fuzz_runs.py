"""Never trust a run directory; never leave one half-written.

``fn3.run.load_run`` on a damaged or edited ``config.json`` / ``model.safetensors`` raises a
:class:`~fn3.errors.ConfigError` or :class:`~fn3.errors.FileFormatError`, or loads exactly what was
saved. A run killed while writing a checkpoint keeps its previous checkpoint, leaves no temporary
file and no final weights, and resumes to the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fuzz_strategies import FUZZ, corrupted, edited_json, expect_error, expect_only, leftovers
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save

import fn3.checkpoint as ckpt
from fn3.checkpoint import read_checkpoint_meta
from fn3.config import TrainConfig
from fn3.errors import ConfigError, FileFormatError
from fn3.run import load_run, train_run

CFG = TrainConfig(
    model="mlp",
    model_kwargs={"hidden": [16]},
    epochs=2,
    checkpoint_every=4,
    eval_specs=("largest",),
    recalibrate_batches=0,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (2 epochs of an MLP on the bundled digits)."""
    out = tmp_path_factory.mktemp("run") / "run"
    train_run(CFG, out, progress=False)
    return out


def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def _same_model(run, reference: Path) -> None:
    ref = _weights(reference / "model.safetensors")
    got = {f"model.{k}": v for k, v in run.model.state_dict().items()}
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


@settings(max_examples=80, **FUZZ)
@given(data=st.data())
def test_run_config_damaged(tmp_path_factory: pytest.TempPathFactory, run_dir: Path, data) -> None:
    run = _copy(run_dir, tmp_path_factory.mktemp("r") / "run")
    good = (run_dir / "config.json").read_bytes()
    (run / "config.json").write_bytes(data.draw(corrupted(good, header=64)))
    out = expect_only((ConfigError, FileFormatError), lambda: load_run(run))
    if not isinstance(out, Exception):
        _same_model(out, run_dir)


@settings(max_examples=120, **FUZZ)
@given(data=st.data())
def test_run_config_edited(tmp_path_factory: pytest.TempPathFactory, run_dir: Path, data) -> None:
    run = _copy(run_dir, tmp_path_factory.mktemp("r") / "run")
    doc = json.loads((run_dir / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(data.draw(edited_json(doc))))
    out = expect_only((ConfigError, FileFormatError), lambda: load_run(run))
    if not isinstance(out, Exception):
        _same_model(out, run_dir)


@settings(max_examples=80, **FUZZ)
@given(data=st.data())
def test_run_weights_damaged(tmp_path_factory: pytest.TempPathFactory, run_dir: Path, data) -> None:
    run = _copy(run_dir, tmp_path_factory.mktemp("r") / "run")
    good = (run_dir / "model.safetensors").read_bytes()
    header = int.from_bytes(good[:8], "little") + 8
    (run / "model.safetensors").write_bytes(data.draw(corrupted(good, header=header)))
    out = expect_only(FileFormatError, lambda: load_run(run), names=run / "model.safetensors")
    if not isinstance(out, Exception):
        _same_model(out, run_dir)


def _rewrite_meta(path: Path, change) -> None:  # noqa: ANN001
    """Rewrite a checkpoint's metadata with valid CRCs (a hand-edited or foreign file)."""
    tensors = load_file(str(path))
    info = {k: v for k, v in read_checkpoint_meta(path).items() if k != "tensors_crc32"}
    info = change(info)
    info["tensors_crc32"] = ckpt._tensors_crc(tensors)
    text = json.dumps(info)
    path.write_bytes(save(tensors, metadata={"fn3": text, "fn3_crc32": ckpt._text_crc(text)}))


@pytest.mark.parametrize(
    "change",
    [
        {"levels": 5},
        {"input_size": [8]},
        {"seed": None},
        {"seed": "x"},
        {"in_channels": 0},
        {"num_classes": 10**12},
    ],
    ids=["levels-int", "input_size-1d", "seed-null", "seed-str", "in_channels-0", "huge-classes"],
)
def test_run_model_metadata_edited(tmp_path: Path, run_dir: Path, change: dict) -> None:
    """The model description in model.safetensors, edited (with valid CRCs)."""
    run = _copy(run_dir, tmp_path / "run")
    _rewrite_meta(
        run / "model.safetensors", lambda info: {**info, "model": {**info["model"], **change}}
    )
    expect_error((ConfigError, FileFormatError), lambda: load_run(run), names=run / "model.safetensors")


def test_run_config_error_names_the_file(tmp_path: Path, run_dir: Path) -> None:
    run = _copy(run_dir, tmp_path / "run")
    doc = json.loads((run_dir / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**doc, "epochs": "ten"}))
    expect_error(ConfigError, lambda: load_run(run), names=run / "config.json")


# -- a run killed while writing a checkpoint --------------------------------------------------------


class _Killed(BaseException):
    """What the process sees of a kill: nothing after this point runs (not even ``except Exception``)."""


def test_run_killed_mid_checkpoint_resumes_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_dir: Path
) -> None:
    out = tmp_path / "run"
    real_save = ckpt.save_file
    calls = []

    def dying(tensors, filename, metadata=None):  # noqa: ANN001, ANN202 (safetensors' signature)
        calls.append(filename)
        if len(calls) < 3:
            return real_save(tensors, filename, metadata=metadata)
        data = save(tensors, metadata=metadata)
        Path(filename).write_bytes(data[: len(data) // 2])  # half the file is on disk...
        raise _Killed  # ...when the process dies

    monkeypatch.setattr(ckpt, "save_file", dying)
    with pytest.raises(_Killed):
        train_run(CFG, out, progress=False)
    monkeypatch.undo()

    assert leftovers(out) == [], "a temporary file was left behind"
    assert not (out / "model.safetensors").exists(), "final weights of an unfinished run"
    step = read_checkpoint_meta(out / "checkpoint.safetensors")["step"]  # the previous one, intact
    assert step == 2 * CFG.checkpoint_every
    metrics = out / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        json.loads(line)  # every line is complete
    json.loads((out / "config.json").read_text())

    train_run(CFG, out, resume=True, progress=False)
    _same_model(load_run(out), run_dir)
    assert leftovers(out) == []
