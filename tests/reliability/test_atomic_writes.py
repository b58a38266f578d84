"""Every file fn3 writes is replaced atomically: a writer that fails keeps the previous file whole and
leaves no temporary file behind.

The failure is injected at the rename (``os.replace`` raising, as on a full disk), the last step of
every atomic write; ``test_fuzz_checkpoints`` and ``test_fuzz_runs`` also kill a checkpoint write
half-way through the temporary file.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import torch
from fuzz_strategies import leftovers
from PIL import Image

import fn3
import fn3.export
from fn3._io import atomic_write_text
from fn3.checkpoint import save_checkpoint
from fn3.cost.latency import LatencyTable
from fn3.data import load_image_folder
from fn3.data.folder import cache_dir
from fn3.search import SearchResult
from fn3.search.pareto import Point
from fn3.spec import Axis, Space


def _net() -> torch.nn.Module:
    return fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(16,)).eval()


def _search_result() -> SearchResult:
    space = Space([Axis("fc1.width", "neurons", 4)])
    return SearchResult("units", [Point(space.largest(), 0.9, {"units": 4.0})], space)


WRITERS = {
    "save_checkpoint": lambda p: save_checkpoint(p, _net(), None, {"step": 1}),
    "atomic_write_text": lambda p: atomic_write_text(p, "new content"),
    "export.save": lambda p: fn3.export.save(fn3.export(_net()), p),
    "export.save_nested": lambda p: fn3.export.save_nested(_net(), p),
    "LatencyTable.save": lambda p: LatencyTable("torch", 1, 1, 1.0, {"u": {"median_us": 2.0}}).save(
        p
    ),
    "SearchResult.save": lambda p: _search_result().save(p),
}


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_failed_write_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    path = tmp_path / "out.file"
    path.write_bytes(b"previous content")
    monkeypatch.setattr(os, "replace", _no_space)  # every writer renames through os.replace
    with pytest.raises(OSError, match="No space"):
        WRITERS[writer](path)
    assert path.read_bytes() == b"previous content"
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["out.file"]
    monkeypatch.undo()
    WRITERS[writer](path)  # and the same write succeeds once the disk has room
    assert path.read_bytes() != b"previous content" and leftovers(tmp_path) == []


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_failed_first_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    monkeypatch.setattr(os, "replace", _no_space)
    with pytest.raises(OSError, match="No space"):
        WRITERS[writer](tmp_path / "out.file")
    assert list(tmp_path.iterdir()) == []


def test_decode_cache_write_failure_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image-folder cache is best effort: a failed write still loads, leaves no temp file."""
    for cls in ("a", "b"):
        (tmp_path / "tree" / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "tree" / "train" / cls / "0.png")
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "tree" / "train", arcname="train")
    monkeypatch.setattr(os, "replace", _no_space)
    ds = load_image_folder(archive, "train")
    assert len(ds) == 2
    cache = cache_dir() / "imagefolder"
    assert not cache.exists() or (list(cache.iterdir()) == [])
