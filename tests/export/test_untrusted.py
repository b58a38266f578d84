"""A crafted export file (CRCs made to match) is checked before the loader allocates for it.

The description of a dedicated export is JSON the loader turns into modules: every size it implies is
compared with the sizes the file's header declares before any module is built, and every way parsing
JSON can fail (deep nesting, a zlib bomb, a huge integer) is a :class:`FileFormatError` naming the file.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path

import pytest
from export_helpers import specs_for
from legacy import export_tree as export  # the module-tree vocabulary of format 2 files

import fn3
from fn3.errors import FileFormatError
from fn3.export import container, io, load, save


def _parts(path: Path) -> tuple[dict, bytes, bytes]:
    """The decoded description, the code bytes and the float bytes of a dedicated export."""
    with container.Reader(path) as r:
        return json.loads(zlib.decompress(r.read("meta"))), r.read("codes"), r.read("floats")


def _rewrite(
    path: Path, meta: dict | None, codes: bytes, floats: bytes, *, blob_m: bytes | None = None, **header: str
) -> Path:
    """Write an export whose description is ``meta`` (or the compressed ``blob_m``), CRCs matching."""
    blob_m = zlib.compress(json.dumps(meta).encode()) if blob_m is None else blob_m
    tensors = [
        ("codes", "U8", [len(codes)], codes),
        ("floats", "F32", [len(floats) // 4], floats),
        ("meta", "U8", [len(blob_m)], blob_m),
    ]
    crc = json.dumps({name: f"{zlib.crc32(b):08x}" for name, _, _, b in tensors})
    container.write(path, tensors, {"format": "fn3.exported", "version": "1", "crc32": crc, **header})
    return path


@pytest.fixture(scope="module")
def resnet_file(models, tmp_path_factory) -> Path:
    spec = fn3.space(models["resnet20"]).uniform({"channels": 0.5, "bits": 3})
    return save(export(models["resnet20"], spec), tmp_path_factory.mktemp("u") / "model.safetensors")


@pytest.mark.parametrize("name", fn3.list_models())
def test_sizes_from_the_description_match_the_modules(models, name):
    """``Layer.tensors`` (no allocation) lists exactly what the built modules store, in order."""
    for spec in specs_for(fn3.space(models[name]), 2, seed=5):
        exported = export(models[name], spec)
        want = [(key, tuple(t.shape), bits) for key, t, bits in io._stored(exported)]
        assert list(io.parse_tree(io.to_tree(exported)).tensors()) == want


HUGE = {
    "QuantConv2d": {"in": 1 << 20, "out": 1 << 20, "k": 64, "s": 1, "p": 0, "g": 1, "bias": True}
    | {"planes": [0, 1], "B": 8},
    "Conv2d": {"in": 1 << 24, "out": 1 << 24, "k": 3, "s": 1, "p": 1, "g": 1, "bias": False},
    "QuantLinear": {"in": 1 << 24, "out": 1 << 24, "bias": False, "planes": [0], "B": 1},
    "Linear": {"in": 1 << 24, "out": 1 << 24, "bias": True},
    "BatchNorm2d": {"n": 1 << 24, "eps": 1e-5},
}


@pytest.mark.parametrize("kind", sorted(HUGE))
def test_huge_layer_rejected_before_building(resnet_file, tmp_path, monkeypatch, kind):
    """A huge layer of any kind with parameters, inserted deep in a real description."""
    meta, codes, floats = _parts(resnet_file)
    meta["arch"]["c"][1] = {"t": "Sequential", "c": [meta["arch"]["c"][1], {"t": kind, **HUGE[kind]}]}
    path = _rewrite(tmp_path / "huge.safetensors", meta, codes, floats)

    def no_build(self):
        raise AssertionError("modules built before the sizes were checked")

    # refused before any module is built (no_build would raise instead), so nothing huge is allocated;
    # not timed: a wall-clock bound flakes on a loaded machine
    monkeypatch.setattr(io.Layer, "build", no_build)
    with pytest.raises(FileFormatError, match=r"huge\.safetensors: tensor sizes do not match"):
        load(path)


def test_too_deep_or_too_many_layers(resnet_file, tmp_path, monkeypatch):
    meta, codes, floats = _parts(resnet_file)
    deep: dict = {"t": "ReLU"}
    for _ in range(io.MAX_DEPTH + 1):
        deep = {"t": "Sequential", "c": [deep]}
    meta["arch"]["c"].append(deep)
    with pytest.raises(FileFormatError, match=r"deep\.safetensors: bad architecture: .*levels deep"):
        load(_rewrite(tmp_path / "deep.safetensors", meta, codes, floats))
    meta["arch"]["c"][-1] = {"t": "Sequential", "c": [{"t": "ReLU"}] * 50}
    monkeypatch.setattr(io, "MAX_LAYERS", 40)
    with pytest.raises(FileFormatError, match=r"wide\.safetensors: bad architecture: more than 40 layers"):
        load(_rewrite(tmp_path / "wide.safetensors", meta, codes, floats))


def test_zlib_bomb_stops_at_the_bound(resnet_file, tmp_path, monkeypatch):
    meta, codes, floats = _parts(resnet_file)
    meta["meta"]["padding"] = " " * 100_000  # compresses to a few hundred bytes
    path = _rewrite(tmp_path / "bomb.safetensors", meta, codes, floats)
    monkeypatch.setattr(io, "MAX_META", 50_000)
    with pytest.raises(FileFormatError, match=r"bomb\.safetensors: compressed metadata expands to more"):
        load(path)
    monkeypatch.undo()
    assert load(path).meta["padding"] == " " * 100_000


def test_truncated_compressed_description(resnet_file, tmp_path):
    meta, codes, floats = _parts(resnet_file)
    blob = zlib.compress(json.dumps(meta).encode())[:-10]
    path = _rewrite(tmp_path / "cut.safetensors", None, codes, floats, blob_m=blob)
    with pytest.raises(FileFormatError, match=r"cut\.safetensors: compressed metadata is truncated"):
        load(path)


@pytest.mark.parametrize(
    ("crc", "message"),
    [
        ("[" * 100_000, "crc32 metadata is not valid JSON \\(nested too deeply\\)"),
        ("1" * 5000, "crc32 metadata is not valid JSON"),  # past Python's int-conversion limit
        ("[1, 2]", "crc32 metadata is not a JSON object"),
    ],
)
def test_bad_crc_metadata(resnet_file, tmp_path, crc, message):
    meta, codes, floats = _parts(resnet_file)
    path = _rewrite(tmp_path / "crc.safetensors", meta, codes, floats, crc32=crc)
    with pytest.raises(FileFormatError, match=r"crc\.safetensors: " + message):
        load(path)


def test_huge_integer_in_description(resnet_file, tmp_path):
    meta, codes, floats = _parts(resnet_file)
    text = json.dumps(meta).replace('"planes": [0', '"planes": [' + "9" * 5000, 1)
    path = _rewrite(tmp_path / "int.safetensors", None, codes, floats, blob_m=zlib.compress(text.encode()))
    with pytest.raises(FileFormatError, match=r"int\.safetensors: metadata is not valid JSON"):
        load(path)


def test_tensor_dtypes_are_checked(resnet_file, tmp_path):
    meta, codes, floats = _parts(resnet_file)
    blob_m = zlib.compress(json.dumps(meta).encode())
    tensors = [
        ("codes", "U8", [len(codes)], codes),
        ("floats", "U8", [len(floats)], floats),  # the right bytes, declared as bytes
        ("meta", "U8", [len(blob_m)], blob_m),
    ]
    crc = json.dumps({name: f"{zlib.crc32(b):08x}" for name, _, _, b in tensors})
    path = tmp_path / "dtype.safetensors"
    container.write(path, tensors, {"format": "fn3.exported", "version": "1", "crc32": crc})
    with pytest.raises(FileFormatError, match=r"'floats' is U8\[\d+\], expected a 1-D F32 tensor"):
        load(path)


def test_container_writes_are_fsynced(tmp_path, monkeypatch):
    """An export survives a power loss like a checkpoint: the data is fsynced before the rename."""
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    container.write(tmp_path / "t.safetensors", [("a", "U8", [3], b"xyz")], {"format": "demo"})
    assert synced and [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_a_recipe_far_larger_than_its_file_is_refused_before_building(models, tmp_path):
    """A format-3 file rebuilds its model from the recipe in its header: a crafted recipe of a huge
    model is refused from a build on the meta device (nothing allocated), not built for real."""
    from fn3.export import export as export_recipe

    path = save(export_recipe(models["mlp"]), tmp_path / "m.safetensors")
    with container.Reader(path) as r:
        blobs = {name: r.read(name) for name in ("codes", "floats", "meta")}
        entries = {name: r.entries[name] for name in blobs}
        md = dict(r.metadata)
    header = json.loads(zlib.decompress(blobs["meta"]))
    header["meta"]["model"]["hidden"] = [10**6, 10**6]  # 10^12 parameters: 4 TB of float32
    blobs["meta"] = zlib.compress(json.dumps(header).encode())
    md["crc32"] = json.dumps({n: f"{zlib.crc32(b):08x}" for n, b in blobs.items()})
    tensors = [(n, entries[n].dtype, [len(blobs[n]) // (4 if n == "floats" else 1)], blobs[n]) for n in blobs]
    container.write(tmp_path / "huge.safetensors", tensors, md)
    start = time.perf_counter()
    with pytest.raises(FileFormatError, match=r"huge\.safetensors: its recipe builds a model of 1,00"):
        load(tmp_path / "huge.safetensors")
    assert time.perf_counter() - start < 30
