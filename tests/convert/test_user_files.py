"""A converted model through ``fn3.export``: exported == nested, and its files (one sub-model, or the
nested file serving every spec) load back to the same function, quantized weights as packed codes."""

from __future__ import annotations

import pytest
import torch
from archs import ARCHS

import fn3
from fn3.convert.user import UserModel, build_user_model
from fn3.errors import FileFormatError
from fn3.export import container, export, ideal_size, load, save, save_nested
from fn3.export.pack import packed_size
from fn3.export.user import Exported

NAMES = tuple(ARCHS)  # every architecture pattern of the conversion tests


@pytest.fixture(scope="module")
def built() -> dict:
    """``name -> (nested model, x)``, built from the ``archs:make`` factory as a run would."""
    from archs import build

    out = {}
    for name in NAMES:
        x = build(name)[1]
        desc = UserModel("archs:make", {"name": name}, tuple(x.shape[1:]), ("channels", "layers", "bits"))
        out[name] = (build_user_model(desc, x)[0].eval(), x)
    return out


def _specs(space: fn3.Space, n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    specs = [space.smallest(), space.uniform({"channels": 0.5, "layers": 0.5, "bits": 3})]
    for _ in range(n):  # random prefixes of every axis
        specs.append(space.spec(**{a.name: int(torch.randint(a.min_size, a.size + 1, (1,), generator=g))
                                   for a in space}))  # fmt: skip
    return specs


@pytest.mark.parametrize("name", NAMES)
def test_exported_files_equal_the_nested_model(built, name, tmp_path):
    model, x = built[name]
    space = fn3.space(model)
    nested = save_nested(model, tmp_path / "nested.safetensors")
    for i, spec in enumerate(_specs(space, 3, seed=len(name))):
        with torch.no_grad(), fn3.active(model, spec):
            ref = model(x)
        small = export(model, spec)
        assert isinstance(small, Exported) and len(fn3.space(small)) == 0
        assert (small(x) - ref).abs().max().item() <= 1e-5
        path = save(small, tmp_path / f"{i}.safetensors")
        back = load(path)
        assert (back(x) - ref).abs().max().item() <= 1e-5
        assert back.meta["spec"] == small.meta["spec"] and back.quant.keys() == small.quant.keys()
        assert save(back, tmp_path / f"{i}b.safetensors").read_bytes() == path.read_bytes()  # round trip
        served = load(nested, spec)
        assert (served(x) - ref).abs().max().item() <= 1e-5
    # Quantized weights are stored as their kept bits: 3 bits per weight, packed.
    small = export(model, space.uniform({"bits": 3}))
    state = small.module.state_dict()
    path = save(small, tmp_path / "3bit.safetensors")
    with container.Reader(path) as r:
        assert r.entries["codes"].shape == [sum(packed_size(state[k].numel(), 3) for k in small.quant)]
    if name != "vit":  # the ViT's attention is frozen (not nested): its projections stay float
        assert len(small.quant) == sum(1 for k in state if k.endswith("weight") and state[k].dim() >= 2)
    else:
        assert 0 < len(small.quant) < sum(1 for k in state if k.endswith("weight") and state[k].dim() >= 2)
    assert ideal_size(small) < sum(t.numel() for t in state.values()) * 4 / 2


def test_a_damaged_file_or_a_changed_factory_is_one_readable_error(built, tmp_path, monkeypatch):
    model, x = built["resnet18"]
    path = save(export(model, fn3.space(model).smallest()), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the compressed header or the data: a CRC catches it
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="bad.safetensors"):
        load(tmp_path / "bad.safetensors")
    import archs

    real = archs.make
    monkeypatch.setattr(archs, "make", lambda name, seed=0: real("mobilenet_v2", seed))
    with pytest.raises(FileFormatError, match="now builds another nested model"):
        load(path)


def test_a_model_nested_without_a_factory_exports_but_cannot_be_saved(tmp_path):
    from archs import build

    model, x = build("mlp")
    fn3.nest_(model, x, verbose=False)
    spec = fn3.space(model).smallest()
    small = export(model, spec)
    with torch.no_grad(), fn3.active(model, spec):
        assert (small(x) - model(x)).abs().max().item() <= 1e-5
    for write in (lambda: save(small, tmp_path / "m.safetensors"), lambda: save_nested(model, tmp_path)):
        with pytest.raises(fn3.ConfigError, match="no recipe to rebuild it from"):
            write()
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda h: h["tensors"].append(7), "do not match the structure"),
        (lambda h: h["tensors"][0].update(shape=[1]), "do not match the structure"),
        (lambda h: next(e for e in h["tensors"] if "B" in e).update(planes=[0, "x"]), "bad coding"),
        (lambda h: h["meta"].update(scheme="round"), "quantization scheme"),
        (lambda h: h["meta"]["model"].update(name="no_such_mod_xyz:make"), "cannot rebuild its model"),
    ],
)
def test_a_crafted_header_is_one_readable_error(built, tmp_path, tamper, message):
    import json
    import zlib

    from fn3.export.io import read_meta

    model, _ = built["resnet18"]
    path = save(export(model, fn3.space(model).uniform({"bits": 3})), tmp_path / "m.safetensors")
    with container.Reader(path) as r:
        header = read_meta(r, r.read("meta"))
        blobs = {n: r.read(n) for n in ("codes", "floats")}
    tamper(header)
    meta = zlib.compress(json.dumps(header).encode())
    tensors = [
        ("codes", "U8", [len(blobs["codes"])], blobs["codes"]),
        ("floats", "F32", [len(blobs["floats"]) // 4], blobs["floats"]),
        ("meta", "U8", [len(meta)], meta),
    ]
    crc = json.dumps({n: f"{zlib.crc32(d):08x}" for n, _, _, d in tensors})
    container.write(
        tmp_path / "t.safetensors", tensors, {"format": "fn3.user-exported", "version": "1", "crc32": crc}
    )
    with pytest.raises(FileFormatError, match=message):
        load(tmp_path / "t.safetensors")
