"""File format 2 (quantization schemes) and files of format 1, written before schemes existed."""

from __future__ import annotations

import json
import zlib

import pytest
import torch

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


def test_new_files_are_format_2_and_name_their_scheme(pair, tmp_path):
    _, new = pair
    spec = fn3.space(new).uniform({"channels": 0.5, "bits": 3})
    path = save(export(new, spec), tmp_path / "m.safetensors")
    with container.Reader(path) as r:
        assert r.metadata["version"] == "2"
        meta = json.loads(zlib.decompress(r.read("meta")))
    assert '"q":"centred"' in json.dumps(meta, separators=(",", ":"))
    again = load(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), export(new, spec)(x))
    assert {m.scheme for m in again.modules() if isinstance(m, QuantConv2d | ActQuant)} == {"centred"}


def test_format_1_files_are_read_with_the_truncating_rule(pair, tmp_path):
    old, new = pair
    spec = fn3.space(old).uniform({"channels": 0.5, "bits": 3})
    save(export(old, spec), tmp_path / "v2.safetensors")
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
    path = save(export(new, fn3.space(new).uniform({"bits": 4})), tmp_path / "v2.safetensors")
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


def test_a_newer_format_is_refused_with_the_versions_read(tmp_path):
    container.write(tmp_path / "v3.st", [("x", "F32", [1], b"\0\0\0\0")],
                    {"format": "fn3.exported", "version": "3"})
    with pytest.raises(FileFormatError, match=r"version '3' is not supported \(this fn3 reads 1 and 2"):
        load(tmp_path / "v3.st")


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
    path = save_nested(old, tmp_path / "n.safetensors")
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
    assert torch.equal(legacy(x), export(old, spec)(x))
    centred = load_nested(save_nested(new, tmp_path / "c.safetensors"), spec).model
    assert torch.equal(centred(x), export(new, spec)(x))
    assert not torch.allclose(legacy(x), centred(x), atol=1e-3)


def _strip_scheme(node: object) -> object:
    if isinstance(node, dict):
        return {k: _strip_scheme(v) for k, v in node.items() if k != "scheme"}
    if isinstance(node, list):
        return [_strip_scheme(v) for v in node]
    return node
