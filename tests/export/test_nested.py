"""The nested file: any sub-model read from it equals its dedicated export, reading only its bytes."""

from __future__ import annotations

import os

import pytest
import torch
from export_helpers import INPUT, NAMES
from hypothesis import given, settings
from spec_strategies import SPECS, specs

import fn3
from fn3.errors import FileFormatError
from fn3.export import export, load, load_nested, save, save_nested


@pytest.fixture(scope="module")
def nested_files(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("nested")
    return {name: save_nested(m, d / f"{name}.safetensors") for name, m in models.items()}


@pytest.mark.parametrize("name", NAMES)
def test_read_equals_dedicated_export(models, nested_files, name, tmp_path):
    model, path = models[name], nested_files[name]
    x = torch.randn(2, *INPUT)
    space = fn3.space(model)

    def check(spec: fn3.Spec) -> None:
        read = load_nested(path, spec)
        dedicated = export(model, spec)
        assert torch.equal(read.model(x), dedicated(x))
        a, b = read.model.state_dict(), dedicated.state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
        # only the sub-model's bytes are read: at most 10% more than its dedicated file, plus the
        # index (~1-2 KB) that a tiny sub-model cannot amortise
        size = os.path.getsize(save(dedicated, tmp_path / "d.safetensors"))
        assert read.bytes_read <= 1.1 * size + 2048, (spec, read.bytes_read, size)

    check(space.largest())
    check(space.smallest())
    settings(SPECS, max_examples=8)(given(spec=specs(space))(check))()


def test_small_spec_reads_a_small_part(models, nested_files, tmp_path):
    model = models["resnet20"]
    spec = fn3.space(model).uniform({"channels": 0.25, "bits": 2})
    small = load(nested_files["resnet20"], spec=spec)
    assert small.meta["bytes_read"] < small.meta["file_size"] / 20
    full = load(nested_files["resnet20"])
    assert full.meta["bytes_read"] == full.meta["file_size"]


def test_read_cost_at_most_1_1x_for_uniform_budgets(models, nested_files, tmp_path):
    model = models["resnet20"]
    space = fn3.space(model)
    for frac in (1.0, 0.75, 0.5, 0.25):
        for bits in (8, 4, 2):
            spec = space.uniform({"channels": frac, "bits": bits})
            read = load_nested(nested_files["resnet20"], spec)
            size = os.path.getsize(save(export(model, spec), tmp_path / "d.safetensors"))
            assert read.bytes_read <= 1.1 * size, (frac, bits, read.bytes_read, size)


def test_damaged_nested_file(nested_files, tmp_path):
    good = nested_files["mlp"].read_bytes()
    (tmp_path / "cut.st").write_bytes(good[: len(good) // 2])
    with pytest.raises(FileFormatError, match="cut.st"):
        load(tmp_path / "cut.st")
    bad = bytearray(good)
    header = int.from_bytes(good[:8], "little")
    bad[8 + header + 10] ^= 0xFF  # inside the compressed index
    (tmp_path / "bad.st").write_bytes(bytes(bad))
    with pytest.raises(FileFormatError, match="CRC"):
        load(tmp_path / "bad.st")


def test_spec_of_another_model_is_refused(models, nested_files):
    other = fn3.space(models["resnet20"]).smallest()
    with pytest.raises(fn3.SpecError):
        load(nested_files["mlp"], spec=other)
