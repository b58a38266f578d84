"""File format 3 (every model as its recipe), format 2 (quantization schemes; fn3's module tree) and
files of format 1, written before schemes existed: all are read, each with its quantization rule."""

from __future__ import annotations

import json
import zlib

import pytest
import torch
from legacy import export_tree
from legacy import save_nested_v2 as _save_nested_v2

import fn3
from fn3.errors import FileFormatError
from fn3.export import container, export, load, save
from fn3.export.qmodules import ActQuant, QuantConv2d


def _strip_q(node: object) -> object:
    if isinstance(node, dict):
        return {k: _strip_q(v) for k, v in node.items() if k != "q"}
    if isinstance(node, list):
        return [_strip_q(v) for v in node]
    return node


def _as_format_1(src, dst) -> None:
    """Rewrite an exported file as fn3 wrote it before quantization schemes: version "1", no "q"."""
    with container.Reader(src) as r:
        blobs = {name: r.read(name) for name in ("codes", "floats", "meta")}
        entries = {name: r.entries[name] for name in blobs}
    meta = json.loads(zlib.decompress(blobs["meta"]))
    blobs["meta"] = zlib.compress(json.dumps(_strip_q(meta)).encode(), 9)
    crc = {name: f"{zlib.crc32(data):08x}" for name, data in blobs.items()}
    tensors = [(name, entries[name].dtype, [len(blobs[name]) // (4 if name == "floats" else 1)],
                blobs[name]) for name in ("codes", "floats", "meta")]
    container.write(dst, tensors, {"format": "fn3.exported", "version": "1", "crc32": json.dumps(crc)})


@pytest.fixture(scope="module")
def pair():
    """The same weights as a truncating (old) and a centred (new) model."""
    old = fn3.create_model("resnet20", levels=("channels", "bits"), width=4, quant_scheme="truncate").eval()
    new = fn3.create_model("resnet20", levels=("channels", "bits"), width=4).eval()
    new.load_state_dict(old.state_dict())
    return old, new


@pytest.mark.parametrize("which", [0, 1])
def test_new_files_are_format_3_and_name_their_scheme(pair, tmp_path, which):
    model = pair[which]  # truncate, centred
    scheme = ("truncate", "centred")[which]
    spec = fn3.space(model).uniform({"channels": 0.5, "bits": 3})
    path = save(export(model, spec), tmp_path / "m.safetensors")
    with container.Reader(path) as r:
        assert (r.metadata["format"], r.metadata["version"]) == ("fn3.exported", "3")
        meta = json.loads(zlib.decompress(r.read("meta")))
    assert meta["meta"]["scheme"] == scheme
    assert {e["q"] for e in meta["tensors"] if "q" in e} == {scheme}
    again = load(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), export(model, spec)(x))
    with torch.no_grad(), fn3.active(model, spec):
        assert torch.allclose(again(x), model(x), atol=1e-5)  # the rule the model was trained with


def test_files_of_format_2_name_their_scheme(pair, tmp_path):
    _, new = pair
    spec = fn3.space(new).uniform({"channels": 0.5, "bits": 3})
    path = save(export_tree(new, spec), tmp_path / "m.safetensors")  # an ExportedModel: format 2
    with container.Reader(path) as r:
        assert r.metadata["version"] == "2"
        meta = json.loads(zlib.decompress(r.read("meta")))
    assert '"q":"centred"' in json.dumps(meta, separators=(",", ":"))
    again = load(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), export_tree(new, spec)(x))
    assert torch.allclose(again(x), export(new, spec)(x), atol=1e-5)
    assert {m.scheme for m in again.modules() if isinstance(m, QuantConv2d | ActQuant)} == {"centred"}


def test_format_1_files_are_read_with_the_truncating_rule(pair, tmp_path):
    old, new = pair
    spec = fn3.space(old).uniform({"channels": 0.5, "bits": 3})
    save(export_tree(old, spec), tmp_path / "v2.safetensors")
    _as_format_1(tmp_path / "v2.safetensors", tmp_path / "v1.safetensors")
    legacy = load(tmp_path / "v1.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), fn3.active(old, spec):
        want = old(x)
    assert torch.allclose(legacy(x), want, atol=1e-5)  # as the old model computed
    with torch.no_grad(), fn3.active(new, spec):
        assert not torch.allclose(legacy(x), new(x), atol=1e-3)  # not silently read as centred


def test_format_2_without_a_scheme_is_refused(pair, tmp_path):
    _, new = pair
    path = save(export_tree(new, fn3.space(new).uniform({"bits": 4})), tmp_path / "v2.safetensors")
    _as_format_1(path, tmp_path / "bad.safetensors")
    with container.Reader(tmp_path / "bad.safetensors") as r:
        blobs = {name: r.read(name) for name in ("codes", "floats", "meta")}
        entries = {name: r.entries[name] for name in blobs}
        md = dict(r.metadata)
    md["version"] = "2"
    tensors = [(n, entries[n].dtype, list(entries[n].shape), blobs[n]) for n in ("codes", "floats", "meta")]
    container.write(tmp_path / "bad.safetensors", tensors, md)
    with pytest.raises(FileFormatError, match=r"bad\.safetensors: bad architecture: .*'q' must be one of"):
        load(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("fmt", ["fn3.exported", "fn3.nested"])
def test_a_newer_format_is_refused_with_the_versions_read(tmp_path, fmt):
    container.write(tmp_path / "v4.st", [("x", "F32", [1], b"\0\0\0\0")], {"format": fmt, "version": "4"})
    with pytest.raises(FileFormatError, match=r"version '4' is not supported \(this fn3 reads 1, 2 and 3"):
        load(tmp_path / "v4.st")


def test_old_runs_load_with_the_truncating_rule(tmp_path):
    """A run directory whose model metadata predates schemes gets ``quant_scheme="truncate"``."""
    from fn3.checkpoint import save_checkpoint
    from fn3.config import TrainConfig
    from fn3.run import CONFIG_NAME, MODEL_NAME, load_run

    cfg = TrainConfig(model="mlp", levels=("bits",), model_kwargs={"hidden": [16]})
    model = fn3.create_model("mlp", in_channels=1, input_size=8, levels=("bits",), hidden=[16])
    old_meta = {k: v for k, v in model.fn3_config.items() if k != "quant_scheme"}
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg.to_dict()))
    save_checkpoint(tmp_path / MODEL_NAME, model, None,
                    {"config": cfg.to_dict(), "step": 1, "model": old_meta})
    assert load_run(tmp_path).model.fn3_config["quant_scheme"] == "truncate"
    save_checkpoint(tmp_path / MODEL_NAME, model, None,
                    {"config": cfg.to_dict(), "step": 1, "model": model.fn3_config})
    assert load_run(tmp_path).model.fn3_config["quant_scheme"] == "centred"


def test_nested_files_of_format_1_are_read_with_the_truncating_rule(pair, tmp_path):
    from fn3.export import load_nested, save_nested

    old, new = pair
    spec = fn3.space(old).uniform({"channels": 0.5, "bits": 2})
    path = _save_nested_v2(old, tmp_path / "n.safetensors")
    with container.Reader(path) as r:
        assert r.metadata["version"] == "2"
        meta, data = r.read("meta"), r.read("data")
    header = json.loads(zlib.decompress(meta))
    stripped = zlib.compress(json.dumps(_strip_scheme(header)).encode(), 9)
    crc = json.dumps({"meta": f"{zlib.crc32(stripped):08x}"})
    container.write(tmp_path / "v1.safetensors",
                    [("meta", "U8", [len(stripped)], stripped), ("data", "U8", [len(data)], data)],
                    {"format": "fn3.nested", "version": "1", "crc32": crc})
    x = torch.randn(2, 3, 32, 32)
    legacy = load_nested(tmp_path / "v1.safetensors", spec).model
    assert torch.equal(legacy(x), export_tree(old, spec)(x))
    assert torch.allclose(legacy(x), export(old, spec)(x), atol=1e-5)
    centred = load_nested(save_nested(new, tmp_path / "c.safetensors"), spec).model
    assert torch.equal(centred(x), export(new, spec)(x))
    v2 = load_nested(_save_nested_v2(new, tmp_path / "c2.safetensors"), spec).model
    assert torch.equal(v2(x), export_tree(new, spec)(x))
    assert not torch.allclose(legacy(x), centred(x), atol=1e-3)


def _strip_scheme(node: object) -> object:
    if isinstance(node, dict):
        return {k: _strip_scheme(v) for k, v in node.items() if k != "scheme"}
    if isinstance(node, list):
        return [_strip_scheme(v) for v in node]
    return node
