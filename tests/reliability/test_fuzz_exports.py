"""Never trust an exported model, a nested file or a latency table.

``fn3.export.load`` / ``load_nested`` and ``fn3.cost.load_latency_table`` answer a damaged or
edited file with :class:`fn3.errors.FileFormatError` naming it (or, for an undetectable change such
as a flipped weight inside a nested file's unchecksummed data, load it).
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import pytest
import torch
from fuzz_strategies import FUZZ, corrupted, deep_json, edited_json, expect_error, expect_only
from hypothesis import given, settings
from hypothesis import strategies as st

import fn3
import fn3.export
from fn3.cost.latency import LatencyTable, load_latency_table
from fn3.errors import FileFormatError
from fn3.export import container, load, load_nested, save, save_nested

X = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    model = fn3.create_model(
        "mlp", num_classes=10, in_channels=1, input_size=8, hidden=(16,), seed=3
    )
    return model.eval()


@pytest.fixture(scope="module")
def files(net, tmp_path_factory: pytest.TempPathFactory):
    """A dedicated export (4-bit, half the neurons) and the nested file, with their bytes."""
    d = tmp_path_factory.mktemp("export")
    spec = fn3.space(net).uniform({"neurons": 0.5, "bits": 4})
    small = fn3.export(net, spec)
    exported = save(small, d / "model.safetensors")
    nested = save_nested(net, d / "nested.safetensors")
    return {
        "spec": spec,
        "small": small,
        "exported": exported.read_bytes(),
        "nested": nested.read_bytes(),
    }


def _header_len(blob: bytes) -> int:
    return int.from_bytes(blob[:8], "little") + 8


# -- dedicated exports --------------------------------------------------------------------------------


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_exported_file_damaged(tmp_path_factory: pytest.TempPathFactory, files, data) -> None:
    """Every byte is CRC-checked: a load either fails or computes exactly the saved model."""
    blob = files["exported"]
    path = tmp_path_factory.mktemp("bad") / "model.safetensors"
    path.write_bytes(data.draw(corrupted(blob, header=_header_len(blob))))
    out = expect_only(FileFormatError, lambda: load(path), names=path)
    if not isinstance(out, Exception):
        assert torch.equal(out(X), files["small"](X))


def _write_exported(path: Path, meta: object, blob: bytes, text: str | None = None) -> None:
    """A dedicated export whose JSON description is ``meta`` (or the JSON ``text``), with matching
    CRCs (a crafted file)."""
    with container.Reader(_tmp_copy(path, blob)) as r:
        codes, floats = r.read("codes"), r.read("floats")
    blob_m = zlib.compress((json.dumps(meta) if text is None else text).encode())
    tensors = [
        ("codes", "U8", [len(codes)], codes),
        ("floats", "F32", [len(floats) // 4], floats),
        ("meta", "U8", [len(blob_m)], blob_m),
    ]
    crc = {name: f"{zlib.crc32(b):08x}" for name, _, _, b in tensors}
    meta_h = {"format": "fn3.exported", "version": "1", "crc32": json.dumps(crc)}
    container.write(path, tensors, meta_h)


def _tmp_copy(path: Path, blob: bytes) -> Path:
    src = path.with_name(path.name + ".src")
    src.write_bytes(blob)
    return src


def _exported_meta(blob: bytes, where: Path) -> dict:
    with container.Reader(_tmp_copy(where, blob)) as r:
        return json.loads(zlib.decompress(r.read("meta")))


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_exported_description_edited(tmp_path_factory: pytest.TempPathFactory, files, data) -> None:
    """Any value of the architecture description replaced (CRCs made to match)."""
    d = tmp_path_factory.mktemp("edit")
    meta = _exported_meta(files["exported"], d / "orig.safetensors")
    path = d / "model.safetensors"
    _write_exported(path, data.draw(edited_json(meta)), files["exported"])
    expect_only(FileFormatError, lambda: load(path), names=path, seconds=5)


def test_exported_huge_description_is_rejected_before_allocating(tmp_path: Path, files) -> None:
    """A crafted 300-byte file describing a 2**24 x 2**24 layer is rejected by comparing the sizes the
    description implies with the header's, before any module (or tensor) is built."""
    meta = _exported_meta(files["exported"], tmp_path / "orig.safetensors")
    huge = {"t": "QuantLinear", "in": 1 << 24, "out": 1 << 24, "bias": False, "planes": [0], "B": 1}
    meta["arch"] = {"t": "ExportedModel", "c": [{"t": "Flatten"}, huge]}
    path = tmp_path / "model.safetensors"
    _write_exported(path, meta, files["exported"])
    expect_error(FileFormatError, lambda: load(path), names=path, seconds=5)


def test_exported_header_too_deep(tmp_path: Path) -> None:
    """A header nested 100,000 levels deep (RecursionError in ``json.loads``) is a bad file."""
    header = deep_json().encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    expect_error(FileFormatError, lambda: load(path), names=path)


def test_exported_description_too_deep(tmp_path: Path, files) -> None:
    """So is a CRC-valid description nested that deep (the nested file's header is read the same way)."""
    path = tmp_path / "model.safetensors"
    _write_exported(path, None, files["exported"], text=deep_json())
    expect_error(FileFormatError, lambda: load(path), names=path)


# -- nested files -------------------------------------------------------------------------------------


@settings(max_examples=150, **FUZZ)
@given(data=st.data(), full=st.booleans())
def test_nested_file_damaged(tmp_path_factory: pytest.TempPathFactory, files, data, full) -> None:
    """The header is CRC-checked and every size against the description; the weight bytes are not
    (a partial read cannot checksum what it skips), so a load may succeed with other weights."""
    blob = files["nested"]
    path = tmp_path_factory.mktemp("bad") / "nested.safetensors"
    path.write_bytes(data.draw(corrupted(blob, header=_header_len(blob))))
    spec = None if full else files["spec"]
    out = expect_only(FileFormatError, lambda: load_nested(path, spec), names=path)
    if not isinstance(out, Exception):
        assert out.model(X).shape == (3, 10)
    expect_only(FileFormatError, lambda: load(path, spec), names=path)


def _nested_header(blob: bytes, where: Path) -> dict:
    with container.Reader(_tmp_copy(where, blob)) as r:
        return json.loads(zlib.decompress(r.read("meta")))


def _write_nested(path: Path, header: object, blob: bytes) -> None:
    with container.Reader(_tmp_copy(path, blob)) as r:
        data = r.read("data")
    blob_m = zlib.compress(json.dumps(header).encode())
    tensors = [("meta", "U8", [len(blob_m)], blob_m), ("data", "U8", [len(data)], data)]
    crc = json.dumps({"meta": f"{zlib.crc32(blob_m):08x}"})
    container.write(path, tensors, {"format": "fn3.nested", "version": "1", "crc32": crc})


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_nested_description_edited(tmp_path_factory: pytest.TempPathFactory, files, data) -> None:
    d = tmp_path_factory.mktemp("edit")
    header = _nested_header(files["nested"], d / "orig.safetensors")
    path = d / "nested.safetensors"
    _write_nested(path, data.draw(edited_json(header)), files["nested"])
    out = expect_only(FileFormatError, lambda: load_nested(path), names=path, seconds=5)
    if not isinstance(out, Exception):
        assert out.model(X).shape == (3, 10)


# -- latency tables -----------------------------------------------------------------------------------

TABLE = LatencyTable(
    backend="torch",
    batch_size=1,
    threads=1,
    overhead_us=12.5,
    entries={"linear(64->16)": {"median_us": 20.0, "iqr_us": 1.5}, "relu(16)": {"median_us": 13.0}},
    device={"cpu": "test"},
    versions={"torch": torch.__version__},
    measurement={"repeats": 3},
)


@pytest.fixture(scope="module")
def table_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    return TABLE.save(tmp_path_factory.mktemp("lat") / "table.json").read_text()


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_latency_table_damaged(tmp_path_factory: pytest.TempPathFactory, table_text, data) -> None:
    path = tmp_path_factory.mktemp("bad") / "table.json"
    path.write_bytes(data.draw(corrupted(table_text.encode(), header=64)))
    out = expect_only(FileFormatError, lambda: load_latency_table(path), names=path)
    if not isinstance(out, Exception):
        assert math.isfinite(out.overhead_us) and out.entries


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_latency_table_edited(tmp_path_factory: pytest.TempPathFactory, table_text, data) -> None:
    path = tmp_path_factory.mktemp("edit") / "table.json"
    path.write_text(json.dumps(data.draw(edited_json(json.loads(table_text)))))
    expect_only(FileFormatError, lambda: load_latency_table(path), names=path)


@pytest.mark.parametrize("key", ["overhead_us", "median_us"])
def test_latency_table_huge_integer(tmp_path: Path, table_text: str, key: str) -> None:
    doc = json.loads(table_text)
    if key == "overhead_us":
        doc["overhead_us"] = 10**400
    else:
        next(iter(doc["entries"].values()))["median_us"] = 10**400
    path = tmp_path / "table.json"
    path.write_text(json.dumps(doc))
    expect_error(FileFormatError, lambda: load_latency_table(path), names=path)


def test_latency_table_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text(deep_json())
    expect_error(FileFormatError, lambda: load_latency_table(path), names=path)


def test_nested_description_too_deep(tmp_path: Path, files) -> None:
    """A CRC-valid nested file whose description is nested 100,000 levels deep is a bad file."""
    path = tmp_path / "nested.safetensors"
    with container.Reader(_tmp_copy(path, files["nested"])) as r:
        data = r.read("data")
    blob_m = zlib.compress(deep_json().encode())
    tensors = [("meta", "U8", [len(blob_m)], blob_m), ("data", "U8", [len(data)], data)]
    crc = json.dumps({"meta": f"{zlib.crc32(blob_m):08x}"})
    container.write(path, tensors, {"format": "fn3.nested", "version": "1", "crc32": crc})
    expect_error(FileFormatError, lambda: load_nested(path), names=path)
    expect_error(FileFormatError, lambda: load(path, files["spec"]), names=path)
