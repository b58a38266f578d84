"""The nested file of a model of your own reads only a spec's bytes, and gives what export gives.

Models: three patterns of ``tests/convert/archs.py`` (ResNet-18 basic blocks, MobileNet-V2 depthwise
inverted residuals, ResNeXt grouped bottlenecks), built from the ``archs:make`` factory with channels,
layers (and paths) and bits nested, as ``fn3 train --model archs:make`` would.
"""

from __future__ import annotations

import copy
import json
import sys
import zlib
from pathlib import Path

import pytest
import torch

sys.path.append(str(Path(__file__).resolve().parents[1] / "convert"))  # the archs factory (appended:
# put first, its conftest.py would shadow the one of tests/export)

import fn3  # noqa: E402
from fn3.convert.user import UserModel, build_user_model  # noqa: E402
from fn3.errors import FileFormatError  # noqa: E402
from fn3.export import container, export, load, load_nested, save, save_nested  # noqa: E402
from fn3.export.io import read_meta  # noqa: E402
from fn3.export.layout import protocol_records  # noqa: E402
from fn3.export.user import NESTED_FORMAT, OLD_NESTED_FORMAT, _save_user_nested_v1  # noqa: E402

NAMES = ("resnet18", "mobilenet_v2", "resnext50")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """``name -> (nested model, x, nested file)``."""
    from archs import build

    base = tmp_path_factory.mktemp("user-nested")
    out = {}
    for name in NAMES:
        x = build(name)[1]
        levels = ("channels", "paths", "layers", "bits")
        desc = UserModel("archs:make", {"name": name}, tuple(x.shape[1:]), levels)
        model = build_user_model(desc, x)[0].eval()
        out[name] = (model, x, save_nested(model, base / f"{name}.safetensors"))
    return out


def _random_specs(space: fn3.Space, n: int, seed: int, prefix: bool) -> list[fn3.Spec]:
    """``n`` random specs: prefixes of every axis, or any block sets that keep the mandatory blocks
    (the search may drop a middle channel block or a middle bit-plane)."""
    g = torch.Generator().manual_seed(seed)
    specs = []
    for _ in range(n):
        keep = {}
        for a in space:
            if prefix:
                k = int(torch.randint(a.min_blocks, a.num_blocks + 1, (1,), generator=g))
                keep[a.name] = range(max(1, k))
            else:
                extra = [b for b in range(a.min_blocks, a.num_blocks) if torch.rand(1, generator=g) < 0.5]
                keep[a.name] = [*range(a.min_blocks), *extra] or [0]
        specs.append(space.validate(fn3.Spec(keep)))
    return specs


def _same(sub: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor) -> None:
    """``sub`` is ``ref``: same tensors (<= 1e-6), same codings, same outputs (<= 1e-6)."""
    a, b = sub.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert (a[k].float() - b[k].float()).abs().max().item() <= 1e-6 if a[k].numel() else True, k
    assert sub.quant.keys() == ref.quant.keys()
    for k, q in sub.quant.items():
        r = ref.quant[k]
        assert (q.total_bits, q.planes, q.scheme) == (r.total_bits, r.planes, r.scheme), k
        assert torch.equal(q.scale, r.scale), k  # the stored steps are the full rows' steps
    assert (sub(x) - ref(x)).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_a_partial_read_is_the_export_of_the_full_model(built, name):
    model, x, path = built[name]
    space = fn3.space(model)
    specs = [space.largest(), space.smallest(), space.uniform({"channels": 0.25, "bits": 2})]
    specs += _random_specs(space, 3, seed=len(name), prefix=True)
    specs += _random_specs(space, 3, seed=len(name) + 1, prefix=False)
    for spec in specs:
        read = load_nested(path, spec)
        assert read.spec == spec and read.file_size == path.stat().st_size
        _same(read.model, export(model, spec), x)
        assert read.model.meta["spec"] == spec.to_dict()
        if spec != space.largest():
            assert read.bytes_read < read.file_size


def test_a_model_of_your_own_on_a_weight_range_of_1_5_rms(built, tmp_path):
    """An own network given ``set_weight_clip(model, 1.5)`` after nesting (its uniform initial weights
    reach sqrt(3) rms: 1.5 clips every channel): its file records the range (the factory does not),
    its stored steps are the range's, and every sub-model read from it is the export of the model;
    at the largest magnitude the same weights give other steps."""
    from fn3.export.user import _rebuild
    from fn3.nn.base import NestedModule, set_weight_clip

    model, x, _ = built["resnet18"]
    model = copy.deepcopy(model)
    set_weight_clip(model, 1.5)
    path = save_nested(model, tmp_path / "clip.safetensors")
    with container.Reader(path) as r:
        meta = read_meta(r, r.read("meta"))["meta"]
        assert meta["weight_clip"] == 1.5
        rebuilt = _rebuild(r, meta)[0]  # the model the reader builds from the recipe and the header
    assert {m.weight_clip for m in rebuilt.modules() if isinstance(m, NestedModule)} == {1.5}
    space = fn3.space(model)
    for spec in (space.largest(), space.uniform({"channels": 0.5, "bits": 2})):
        read = load_nested(path, spec)
        _same(read.model, export(model, spec), x)
    set_weight_clip(model, 0.0)  # the same weights on their largest magnitude: other steps
    spec = space.uniform({"bits": 2})
    assert not torch.equal(export(model, spec)(x), load_nested(path, spec).model(x))


@pytest.mark.parametrize("name", NAMES)
def test_a_prefix_spec_reads_about_its_dedicated_file(built, name, tmp_path):
    model, _, path = built[name]
    space = fn3.space(model)
    specs = [space.smallest(), space.uniform({"channels": 0.5, "layers": 0.5, "bits": 3})]
    for i, spec in enumerate(specs + _random_specs(space, 4, seed=7, prefix=True)):
        read = load_nested(path, spec)
        dedicated = save(export(model, spec), tmp_path / f"{i}.safetensors").stat().st_size
        assert read.bytes_read <= 1.1 * dedicated, (spec, read.bytes_read, dedicated)


def test_a_small_spec_reads_a_small_part_of_the_file(built):
    model, _, path = built["resnet18"]
    spec = fn3.space(model).uniform({"channels": 0.25, "bits": 2})
    read = load_nested(path, spec)
    assert read.bytes_read < 0.2 * read.file_size
    # through fn3.export.load as well, which reports what the read cost
    small = load(path, spec)
    assert small.meta["bytes_read"] == read.bytes_read and small.meta["file_size"] == read.file_size


def test_dropped_blocks_are_not_read(built, monkeypatch):
    from fn3.export.tiles import TileFile

    model, x, path = built["resnet18"]
    space = fn3.space(model)
    depth = [a.name for a in space if a.kind == "layers"]
    spec = space.largest()
    for name in depth:
        spec = spec.with_blocks(name, range(space[name].min_blocks))
    asked: list[str] = []
    real = TileFile.read

    def spy(self, wants):
        asked.extend(wants)
        return real(self, wants)

    monkeypatch.setattr(TileFile, "read", spy)
    read = load_nested(path, spec)
    _same(read.model, export(model, spec), x)
    kept = set(read.model.module.state_dict())
    blocks = {".".join(k.split(".")[:2]) + "." for k in model.state_dict() if k.startswith("layer")}
    gone = tuple(b for b in blocks if not any(k.startswith(b) for k in kept))  # layerX.i. prefixes
    dropped = [k for k in model.state_dict() if k.startswith(gone)]
    assert gone and dropped and not [k for k in asked if k.startswith(gone)]  # nothing of them read
    assert read.bytes_read < load_nested(path, space.largest()).bytes_read - 4 * len(dropped)


def test_a_version_1_file_still_loads_whole(built, tmp_path):
    model, x, _ = built["mobilenet_v2"]
    old = _save_user_nested_v1(model, tmp_path / "v1.safetensors")
    with container.Reader(old) as r:
        assert (r.metadata["format"], r.metadata["version"]) == (OLD_NESTED_FORMAT, "1")
    space = fn3.space(model)
    for spec in [space.largest(), *_random_specs(space, 2, seed=3, prefix=False)]:
        read = load_nested(old, spec)
        _same(read.model, export(model, spec), x)
        assert read.bytes_read == read.file_size  # read whole
    assert fn3.export.nested.nested_space(container.Reader(old)) == space


def test_the_records_come_from_the_protocol(built):
    model, _, path = built["resnext50"]
    recs = {r.key: r for r in protocol_records(model)}
    grouped = next(r for k, r in recs.items() if k.endswith("conv2.weight"))  # (width, width / 4, 3, 3)
    paths = fn3.space(model)[grouped.dims[0][0]]
    assert paths.kind == "paths" and grouped.kind == "planes" and len(grouped.dims) == 1
    assert paths.size * grouped.dims[0][1] == grouped.shape[0]  # a path keeps its whole group of rows
    assert recs["fc.weight"].dims[0] is None and recs["fc.weight"].dims[1] is not None  # by its input
    assert recs["conv1.act_quant.alpha"].dims == ()
    assert "bn1.num_batches_tracked" not in recs
    with container.Reader(path) as r:
        header = read_meta(r, r.read("meta"))
    assert len(header["records"]) == len(recs)


# -- damaged, crafted and foreign files: one FileFormatError naming the file -----------------------
def _rewrite(path: Path, out: Path, tamper=None, version: str = "3", data_cut: int = 0) -> Path:
    """``path`` re-written with its header JSON tampered, its version replaced or data cut short."""
    with container.Reader(path) as r:
        header = read_meta(r, r.read("meta"))
        data = r.read("data")
    if tamper is not None:
        tamper(header)
    meta = zlib.compress(json.dumps(header).encode())
    data = data[: len(data) - data_cut]
    tensors = [("meta", "U8", [len(meta)], meta), ("data", "U8", [len(data)], data)]
    crc = json.dumps({"meta": f"{zlib.crc32(meta):08x}"})
    container.write(out, tensors, {"format": NESTED_FORMAT, "version": version, "crc32": crc})
    return out


MISMATCH = "its tensors do not match the structure its model rebuilds to"


def _swap_dims(header: dict) -> None:
    rec = next(r for r in header["records"] if r[1] == "planes" and len(r[3]) == 2)
    rec[3] = rec[3][::-1]


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda h: h["records"].pop(), f"{MISMATCH} (87 tensors stored, 88 expected"),
        (lambda h: h["records"][3].__setitem__(2, [1]), f"{MISMATCH} (tensor 'bn1.weight' is stored as"),
        (_swap_dims, "do not match the structure"),
        (lambda h: h.update(records=7), "bad header: 'records' must be a list"),
        (lambda h: h["records"].append(["x", "f32", [2], [], 8]), "bad header: bad record"),
        (lambda h: h["meta"].update(scheme="round"), "quantization scheme"),
        (lambda h: h["meta"]["model"].update(name="no_such_mod_xyz:make"), "cannot rebuild its model"),
    ],
)
def test_a_crafted_header_is_one_readable_error(built, tmp_path, tamper, message):
    _, _, path = built["resnet18"]
    bad = _rewrite(path, tmp_path / "t.safetensors", tamper)
    with pytest.raises(FileFormatError, match="t.safetensors") as err:
        load_nested(bad, None)
    assert message in str(err.value)


def test_a_damaged_or_foreign_file_is_one_readable_error(built, tmp_path, monkeypatch):
    model, _, path = built["resnet18"]
    spec = fn3.space(model).smallest()
    cases = {
        "version": (_rewrite(path, tmp_path / "v4.safetensors", version="4"), "version '4' is not supported"),
        "short data": (_rewrite(path, tmp_path / "cut.safetensors", data_cut=5), "its records need"),
    }
    raw = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[: len(raw) - 100])
    cases["truncated"] = (tmp_path / "trunc.safetensors", "truncated")
    flipped = bytearray(raw)
    with container.Reader(path) as r:
        flipped[r.entries["meta"].start + 10] ^= 0xFF  # inside the compressed header: its CRC catches it
    (tmp_path / "crc.safetensors").write_bytes(bytes(flipped))
    cases["header bit"] = (tmp_path / "crc.safetensors", "corrupted (CRC-32 mismatch)")
    for what, (file, message) in cases.items():
        with pytest.raises(FileFormatError, match=file.name) as err:
            load(file, spec)
        assert message in str(err.value), what
    import archs

    real = archs.make
    monkeypatch.setattr(archs, "make", lambda name, seed=0: real("mobilenet_v2", seed))
    with pytest.raises(FileFormatError, match="now builds another nested model"):
        load_nested(path, spec)


def test_the_damaged_files_of_the_error_catalogue_still_fail_as_documented(tmp_path):
    """docs/errors.md rows 61-65 run these files through the CLI; here the Python API, with a hint."""
    sys.path.append(str(Path(__file__).resolve().parent / "data"))
    from make_error_files import FILES, HERE, main

    for name, message in FILES.items():
        with pytest.raises(FileFormatError) as err:
            load(HERE / name)
        assert message in str(err.value), f"{name}: run tests/export/data/make_error_files.py ({err.value})"
    main(tmp_path)  # the writer still runs, and writes every file of the catalogue
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
