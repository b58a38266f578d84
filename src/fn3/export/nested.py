"""The nested file: the whole trained FN3 in one file, from which every sub-model reads only its bytes.

``save_nested(model, path)`` stores every tensor once, in importance order: channels and paths are
already in rank order (ordered dropout makes the first blocks the important ones), and every quantized
weight is stored as bit-planes, most significant first (see :mod:`fn3.export.layout`). It writes
format 3 (:mod:`fn3.export.user`, any model: its recipe, and the tiles and bit-planes laid out from
the layer protocol); ``load_nested(path, spec)`` seeks to and reads only the tiles and bit-planes
that ``spec`` keeps, and reports the bytes it read.

This module also reads versions 1 and 2 (``format: fn3.nested``, a built-in model's module tree in
the header: ``meta``, zlib-compressed JSON with the description, space and metadata, and ``data``),
building exactly the module that tree describes from the kept bytes.

Integrity: the header is CRC-checked and every size is checked against the description; a partial read
cannot checksum the bytes it skips, so a flipped bit inside the weight data goes unnoticed here (the
dedicated file of :func:`fn3.export.save` checks every byte).

Example:
    >>> import os, tempfile, torch, fn3
    >>> from fn3.export import export, save_nested, load_nested
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> path = os.path.join(tempfile.mkdtemp(), "nested.safetensors")
    >>> _ = save_nested(net, path)
    >>> spec = fn3.space(net).uniform({"channels": 0.25, "bits": 2})
    >>> read = load_nested(path, spec)
    >>> read.bytes_read < read.file_size / 10
    True
    >>> x = torch.randn(1, 3, 32, 32)
    >>> bool(torch.equal(read.model(x), export(net, spec)(x)))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fn3.errors import FileFormatError, SpecError
from fn3.export import container
from fn3.export.io import check_header, read_checked, read_meta
from fn3.export.layout import Record, kept_runs, records
from fn3.export.pack import from_planes, unpack_bits
from fn3.export.qmodules import ExportedModel
from fn3.export.slice import Sels, build
from fn3.nn.slot import Selection
from fn3.spec import Space, Spec

__all__ = ["FORMAT", "VERSION", "NestedRead", "load_nested", "nested_space", "save_nested"]

FORMAT, VERSION = "fn3.nested", "2"
#: Versions read: format 1 descriptions name no quantization scheme and are read with the truncating
#: rule their model was trained with; format 2 names the scheme of every quantized layer.
READS = ("1", "2")


def save_nested(model: nn.Module, path: str | Path, *, meta: dict | None = None) -> Path:
    """Write the whole nested ``model`` to one file, in importance order; returns the file path.

    ``path`` is a file or an existing directory (then ``DIR/nested.safetensors``).
    """
    from fn3.export.user import save_user_nested

    return save_user_nested(model, path, meta=meta)


class _NestedSource:
    """Reads the kept tiles and bit-planes of a spec from an open nested file (``TensorSource``)."""

    def __init__(self, reader: container.Reader, arch: dict, space: Space, spec: Spec):
        self.r, self.space, self.spec = reader, space, spec
        self.records, offset = {}, reader.entries["data"].start
        for rec in records(arch):
            self.records[rec.key] = (rec, offset)
            offset += rec.nbytes()
        if offset != reader.entries["data"].end:
            raise reader.fail(
                f"data holds {reader.entries['data'].end - reader.entries['data'].start} bytes, "
                f"the description needs {offset - reader.entries['data'].start}"
            )

    def _kept(self, rec: Record) -> list[list[int]]:
        """Kept block indices of every governed dimension (all blocks of an ungoverned one)."""
        out = []
        for _d, ref in enumerate(rec.dims):
            out.append([0] if ref is None else list(self.spec.kept(ref[0])))
        return out

    def _read(self, rec: Record, base: int, bits: int) -> dict[tuple[int, ...], np.ndarray]:
        """The kept tiles of one stream (a float record or one plane), as flat numpy arrays."""
        tiles = rec.tiles(self.space)
        offsets, runs = kept_runs(rec, self._kept(rec), self.space)
        starts = np.asarray(offsets, dtype=np.int64) * bits  # bit offsets
        out = {}
        for i, end in runs:  # one read per run of consecutive kept tiles
            j = end - 1
            b0, b1 = int(starts[i]), int(starts[j + 1])
            raw = self.r.read_range(base + b0 // 8, (b1 + 7) // 8 - b0 // 8)
            if bits == 32:
                vals = np.frombuffer(raw, dtype="<f4").astype(np.float32)
                cuts = (starts[i : j + 2] - b0) // 32
            else:
                vals = unpack_bits(raw, b1 - b0, b0 % 8)
                cuts = starts[i : j + 2] - b0
            for k in range(i, j + 1):
                out[tiles[k]] = vals[cuts[k - i] : cuts[k - i + 1]]
        return out

    def _assemble(
        self, rec: Record, parts: dict[tuple[int, ...], np.ndarray], lead: tuple[int, ...]
    ) -> np.ndarray:
        """Place tiles into the kept tensor (kept blocks in ascending order along each dimension)."""
        grid, kept = rec.blocks(self.space), self._kept(rec)
        sizes = [sum(len(grid[d][b]) for b in kept[d]) for d in range(len(kept))]
        rest = rec.shape[len(rec.dims) :]
        sample = next(iter(parts.values()))
        out = np.zeros((*lead, *sizes, *rest), dtype=sample.dtype)
        pos = [np.cumsum([0] + [len(grid[d][b]) for b in kept[d]]) for d in range(len(kept))]
        for tile, vals in parts.items():
            idx = tuple(
                slice(int(pos[d][kept[d].index(b)]), int(pos[d][kept[d].index(b)]) + len(grid[d][b]))
                for d, b in enumerate(tile)
            )
            shape = tuple(len(grid[d][b]) for d, b in enumerate(tile)) + tuple(rest)
            out[(slice(None),) * len(lead) + idx] = vals.reshape(*lead, *shape)
        return out

    def _record(self, key: str, kind: str, sels: Sels) -> tuple[Record, int]:
        if key not in self.records:
            raise self.r.fail(f"the description has no tensor {key!r}")
        rec, base = self.records[key]
        if rec.kind != kind:
            raise self.r.fail(f"tensor {key!r} is stored as {rec.kind}, expected {kind}")
        return rec, base

    def floats(self, key: str, sels: Sels) -> torch.Tensor:
        rec, base = self._record(key, "f32", sels)
        if not rec.shape:
            return torch.from_numpy(
                np.frombuffer(self.r.read_range(base, 4), dtype="<f4").astype(np.float32)
            ).reshape(())
        out = self._assemble(rec, self._read(rec, base, 32), ())
        return torch.from_numpy(np.ascontiguousarray(out))

    def codes(self, key: str, sels: Sels, planes: tuple[int, ...], total_bits: int) -> torch.Tensor:
        rec, base = self._record(key, "planes", sels)
        if total_bits != rec.bits:
            raise self.r.fail(f"{key!r} has {rec.bits}-bit codes, the description says {total_bits}")
        plane_bytes = rec.nbytes() // rec.bits
        read = [self._read(rec, base + p * plane_bytes, 1) for p in planes]
        stacked = {t: np.stack([r[t] for r in read]) for t in read[0]}  # (c, tile numel)
        bits = self._assemble(rec, stacked, (len(planes),))
        return from_planes(bits, planes)

    def scale(self, key: str, out: Selection | None, total_bits: int) -> torch.Tensor:
        return self.floats(f"{key}.scale", (out,))


@dataclass(frozen=True)
class NestedRead:
    """A sub-model read from a nested file, and what reading it cost."""

    model: ExportedModel
    spec: Spec
    space: Space
    bytes_read: int
    file_size: int


def nested_space(r: container.Reader) -> Space:
    """The space of an open nested file, built-in or of a model of your own (reads the header)."""
    from fn3.export.user import is_recipe_file, user_space

    if is_recipe_file(r):
        return user_space(r)
    return open_nested(r)[1]


def open_nested(r: container.Reader) -> tuple[dict, Space]:
    """Check an open nested file and return its header (description, metadata) and space."""
    crc = check_header(r, FORMAT, READS)
    if set(r.entries) != {"meta", "data"}:
        raise r.fail(f"expected tensors meta, data; found {sorted(r.entries)}")
    header = read_meta(r, read_checked(r, "meta", crc))
    if not (isinstance(header.get("arch"), dict) and isinstance(header.get("meta"), dict)):
        raise r.fail("bad header: 'arch' and 'meta' must be JSON objects")
    try:
        space = Space.from_dict(header["space"])
    except (KeyError, TypeError, SpecError) as err:
        raise r.fail(f"bad header: {err}") from None
    return header, space


def load_nested(path: str | Path, spec: Spec | None = None) -> NestedRead:
    """Read sub-model ``spec`` (``None``: the full model) from a nested file, reading only its bytes."""
    p = Path(path)
    with container.Reader(p / "nested.safetensors" if p.is_dir() else p) as r:
        from fn3.export.user import is_recipe_file, load_user_nested

        if is_recipe_file(r):  # version 3 (any model): rebuilt from its recipe, then read in parts
            sub, spec, space = load_user_nested(r, spec)
            return NestedRead(sub, spec, space, r.bytes_read, r.size)  # type: ignore[arg-type]
        header, space = open_nested(r)
        spec = space.largest() if spec is None else space.validate(spec)
        try:
            net = build(header["arch"], _NestedSource(r, header["arch"], space, spec), spec, space)
        except FileFormatError as err:  # already says what is wrong; add the file if it does not
            if str(r.path) in str(err):
                raise
            raise r.fail(f"bad model description: {err}") from None
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise r.fail(f"bad model description: {type(err).__name__}: {err}") from None
        layers = list(net) if type(net) is nn.Sequential else [net]
        model = ExportedModel(*layers, meta={**header["meta"], "spec": spec.to_dict()})
        model = model.eval().requires_grad_(False)
        return NestedRead(model, spec, space, r.bytes_read, r.size)
