"""save/load: exact round trip, near-ideal size, and a clear error for any damaged file."""

from __future__ import annotations

import os

import pytest
import safetensors
import torch
from export_helpers import INPUT, specs_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fn3
from fn3.errors import FileFormatError
from fn3.export import export, ideal_size, load, save


@pytest.mark.parametrize("name", fn3.list_models())
def test_round_trip_exact_and_size_near_ideal(models, name, tmp_path):
    model = models[name]
    for i, spec in enumerate(specs_for(fn3.space(model), 4, seed=11)):
        exported = export(model, spec, meta={"note": "hi"})
        path = save(exported, tmp_path / f"m{i}.safetensors")
        loaded = load(path)
        x = torch.randn(2, *INPUT)
        assert torch.equal(loaded(x), exported(x))
        a, b = exported.state_dict(), loaded.state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
        assert loaded.meta == {**exported.meta}
        assert fn3.Spec.from_dict(loaded.meta["spec"]) == spec
        ideal = ideal_size(exported)
        assert ideal <= os.path.getsize(path) <= 1.05 * ideal + 4096


def test_bits_shrink_the_file(models, tmp_path):
    model = models["resnet20"]
    space = fn3.space(model)
    sizes = {
        b: os.path.getsize(save(export(model, space.uniform({"bits": b})), tmp_path / f"{b}.st"))
        for b in (8, 4, 2)
    }
    assert sizes[2] < sizes[4] < sizes[8]
    full = export(model)
    params = full.module.state_dict()
    quant = sum(params[key].numel() for key in full.quant)  # every quantized weight's codes
    assert quant > 0.9 * sum(t.numel() for t in params.values())  # (the stem and classifier are float)
    assert sizes[8] - sizes[2] == pytest.approx(quant * 6 / 8, rel=0.01)  # 6 bits saved per weight


def test_file_is_plain_safetensors(models, tmp_path):
    path = save(export(models["mlp"]), tmp_path / "m.safetensors")
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == {"codes", "floats", "meta"}
        assert (f.metadata()["format"], f.metadata()["version"]) == ("fn3.exported", "3")


def test_directory_path(models, tmp_path):
    exported = export(models["mlp"])
    assert save(exported, tmp_path) == tmp_path / "model.safetensors"
    assert isinstance(load(tmp_path), fn3.export.Exported)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory, models):
    model = models["resnet20"]
    spec = fn3.space(model).uniform({"channels": 0.5, "bits": 3})
    path = save(export(model, spec), tmp_path_factory.mktemp("io") / "good.safetensors")
    return path.read_bytes()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_bit_is_detected(good_file, tmp_path, data):
    pos = data.draw(st.integers(0, len(good_file) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    bad = bytearray(good_file)
    bad[pos] ^= 1 << bit
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bytes(bad))
    with pytest.raises(FileFormatError, match="bad.safetensors"):
        load(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_file_is_detected(good_file, tmp_path, data):
    n = data.draw(st.integers(0, len(good_file) - 1))
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good_file[:n])
    with pytest.raises(FileFormatError, match="cut.safetensors"):
        load(path)


def test_wrong_format_version_and_missing(tmp_path, good_file):
    from fn3.export import container

    container.write(tmp_path / "other.st", [("x", "F32", [1], b"\0\0\0\0")], {"format": "other"})
    with pytest.raises(FileFormatError, match="format is 'other'"):
        load(tmp_path / "other.st")
    container.write(
        tmp_path / "v9.st", [("x", "F32", [1], b"\0\0\0\0")], {"format": "fn3.exported", "version": "9"}
    )
    with pytest.raises(FileFormatError, match="version '9' is not supported"):
        load(tmp_path / "v9.st")
    with pytest.raises(FileFormatError, match="no such file"):
        load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.st").write_bytes(b"hello world, not a model")
    with pytest.raises(FileFormatError, match="junk.st"):
        load(tmp_path / "junk.st")


def test_mismatched_spec_is_refused(models, tmp_path):
    model = models["mlp"]
    space = fn3.space(model)
    path = save(export(model, space.smallest()), tmp_path / "s.st")
    assert isinstance(load(path, spec=space.smallest()), fn3.export.Exported)
    with pytest.raises(fn3.ConfigError, match="another sub-model"):
        load(path, spec=space.largest())


def test_budget_resolved_through_a_front(models, tmp_path):
    from fn3.search import SearchResult
    from fn3.search.pareto import Point

    model = models["mlp"]
    space = fn3.space(model)
    path = fn3.export.save_nested(model, tmp_path / "n.safetensors")
    specs = [space.largest(), space.uniform({"neurons": 0.5}), space.smallest()]
    pts = [Point(s, a, {"flops": f}) for s, a, f in zip(specs, (0.9, 0.8, 0.5), (3e6, 1e6, 2e5), strict=True)]
    SearchResult("flops", pts, space, min_costs={"flops": 2e5}).save(tmp_path / "front.json")
    small = load(path, budget="flops=1.5M", front=tmp_path / "front.json")
    assert fn3.Spec.from_dict(small.meta["spec"]) == specs[1]
    with pytest.raises(fn3.ConfigError, match="front"):
        load(path, budget="flops=1M")
