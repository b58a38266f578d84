"""Tiled records on disk: write each record's bytes, and read the kept tiles of many records at once.

A list of :class:`~fn3.export.layout.Record` s, stored back to back, is a byte layout with no index
(:mod:`fn3.export.layout`): a float record is its tiles in storage order, float32 little-endian; a
planes record is ``bits`` bit-planes (plane 0 = the most significant bit of the signed code), each
one bit per value, tiles in storage order, packed MSB first and starting on a byte boundary.

:func:`record_bytes` writes one record. :class:`TileFile` reads, for many records at once, only the
tiles a sub-model keeps (and only the bit-planes it keeps): it lists the byte range of every run of
consecutive kept tiles of every stream (a float record, or one plane), merges ranges that touch or
overlap (a fully kept record, or consecutive planes of a fully kept weight, is one read), then seeks
and reads each merged range once through :meth:`fn3.export.container.Reader.read_range`, which counts
the bytes.

Example:
    >>> import os, tempfile, torch
    >>> from fn3.export import container
    >>> from fn3.export.layout import Record, kept_blocks
    >>> from fn3.spec import Axis, Space, Spec
    >>> space = Space([Axis("w", "channels", 4, step=2)])
    >>> rec = Record("fc.weight", "f32", (4, 3), (("w", 1),))
    >>> t = torch.arange(12.0).reshape(4, 3)
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> data = record_bytes(rec, t, space)
    >>> container.write(path, [("data", "U8", [len(data)], data)], {})
    >>> with container.Reader(path) as r:
    ...     f = TileFile(r, [rec], r.entries["data"].start, r.entries["data"].end, space)
    ...     got = f.read({"fc.weight": (kept_blocks(rec, Spec({"w": [0]})), None)})
    >>> got["fc.weight"].tolist()      # the first block of 2 rows; the other rows were not read
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fn3.export import container
from fn3.export.layout import Record, kept_runs
from fn3.export.pack import to_planes, unpack_bits
from fn3.spec import Space

__all__ = ["TileFile", "kept_index", "record_bytes"]

Kept = list[list[int]]  # kept block indices of each governed dimension of a record


def _tile_values(a: np.ndarray, rec: Record, space: Space) -> list[np.ndarray]:
    """The flat values of every tile of ``a`` (shape ``rec.shape``), in storage order."""
    grid = rec.blocks(space)
    out = []
    for tile in rec.tiles(space):
        idx = tuple(slice(grid[d][b].start, grid[d][b].stop) for d, b in enumerate(tile))
        out.append(np.ascontiguousarray(a[idx]).reshape(-1))
    return out


def record_bytes(rec: Record, t: torch.Tensor, space: Space) -> bytes:
    """The stored bytes of one record: ``t`` is the float tensor (``"f32"``) or, for ``"planes"``, its
    signed ``rec.bits``-bit integer codes, both of shape ``rec.shape``."""
    if tuple(t.shape) != rec.shape:
        raise ValueError(f"{rec.key}: shape {tuple(t.shape)} does not match its record {rec.shape}")
    if rec.kind == "f32":
        a = t.detach().to(torch.float32).numpy().reshape(rec.shape)
        parts = _tile_values(a, rec, space)
        return np.concatenate(parts).astype("<f4").tobytes() if parts else b""
    planes = to_planes(t.detach().to(torch.int64), rec.bits)  # (bits, *shape) 0/1, plane 0 = MSB
    # Each plane is packed on its own so that it starts on a byte boundary (layout.Record.nbytes).
    return b"".join(np.packbits(np.concatenate(_tile_values(p, rec, space))).tobytes() for p in planes)


def kept_index(rec: Record, kept: Kept, space: Space) -> list[np.ndarray]:
    """Index of the kept entries of every governed dimension in the full tensor, kept blocks ascending
    (the order :meth:`fn3.nn.slot.AxisSlot.select` keeps them in)."""
    grid = rec.blocks(space)
    return [np.concatenate([np.arange(grid[d][b].start, grid[d][b].stop) for b in kept[d]])
            for d in range(len(rec.dims))]  # fmt: skip


class TileFile:
    """The records ``recs`` stored back to back in bytes ``[start, end)`` of an open file.

    Checks that the records fill those bytes exactly (a file whose sizes disagree with its records is a
    :class:`~fn3.errors.FileFormatError` before any data is read).
    """

    def __init__(self, r: container.Reader, recs: Sequence[Record], start: int, end: int, space: Space):
        self.r, self.space = r, space
        self.records: dict[str, tuple[Record, int]] = {}
        offset = start
        for rec in recs:
            self.records[rec.key] = (rec, offset)
            offset += rec.nbytes()
        if offset != end:
            raise r.fail(f"data holds {end - start} bytes, its records need {offset - start}")

    def _streams(self, key: str, planes: Sequence[int] | None) -> list[tuple[int, int]]:
        """``(byte offset, bits per value)`` of every stream to read of record ``key``."""
        rec, base = self.records[key]
        if rec.kind == "f32":
            return [(base, 32)]
        plane_bytes = rec.nbytes() // rec.bits
        return [(base + p * plane_bytes, 1) for p in (planes if planes is not None else range(rec.bits))]

    def read(self, wants: Mapping[str, tuple[Kept, Sequence[int] | None]]) -> dict[str, np.ndarray]:
        """The kept part of every record ``key -> (kept blocks, planes)`` in ``wants``.

        A float record gives a float32 array of its kept shape; a planes record gives uint8 bits
        ``(len(planes), *kept shape)`` of the planes asked for (``None``: all), in that order.
        """
        # 1. Every run of consecutive kept tiles of every stream, as an absolute bit range.
        pieces = []  # (key, stream number, first tile, last tile + 1, first bit, end bit)
        layout = {}
        for key, (kept, planes) in wants.items():
            rec, _ = self.records[key]
            offsets, runs = kept_runs(rec, kept, self.space)
            streams = self._streams(key, planes)
            layout[key] = (offsets, streams)  # values before each tile; where each stream starts
            for s, (base, width) in enumerate(streams):
                starts = np.asarray(offsets, dtype=np.int64) * width + base * 8
                pieces += [(key, s, i, j, int(starts[i]), int(starts[j])) for i, j in runs]
        # 2. Their byte ranges, merged when they touch or overlap, each read once.
        spans = sorted((b0 // 8, (b1 + 7) // 8) for *_, b0, b1 in pieces)
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        firsts = [m[0] for m in merged]
        data = [self.r.read_range(a, b - a) for a, b in merged]
        # 3. Cut the pieces out of the buffers: tile values per (key, stream).
        got: dict[tuple[str, int], dict[int, np.ndarray]] = {}
        for key, s, i, j, b0, b1 in pieces:
            m = bisect.bisect_right(firsts, b0 // 8) - 1
            buf = memoryview(data[m])[b0 // 8 - firsts[m] : (b1 + 7) // 8 - firsts[m]]
            if layout[key][1][s][1] == 32:
                vals = np.frombuffer(buf, dtype="<f4").astype(np.float32)
            else:
                vals = unpack_bits(np.frombuffer(buf, dtype=np.uint8), b1 - b0, b0 % 8)
            offsets = layout[key][0]
            cuts = np.asarray(offsets[i : j + 1]) - offsets[i]  # value offsets of tiles i..j-1
            part = got.setdefault((key, s), {})
            for k in range(i, j):
                part[k] = vals[cuts[k - i] : cuts[k - i + 1]]
        return {key: self._assemble(key, kept, {s: got.get((key, s), {}) for s in range(len(layout[key][1]))})
                for key, (kept, _) in wants.items()}  # fmt: skip

    def _assemble(self, key: str, kept: Kept, streams: dict[int, dict[int, np.ndarray]]) -> np.ndarray:
        """Place the tiles of every stream into the kept tensor (kept blocks ascending per dim)."""
        rec, _ = self.records[key]
        grid, tiles = rec.blocks(self.space), rec.tiles(self.space)
        sizes = [sum(len(grid[d][b]) for b in kept[d]) for d in range(len(kept))]
        rest = rec.shape[len(rec.dims) :]
        dtype = np.float32 if rec.kind == "f32" else np.uint8
        out = np.zeros((len(streams), *sizes, *rest), dtype=dtype)
        pos = [{b: int(p) for b, p in zip(kept[d], np.cumsum([0] + [len(grid[d][b]) for b in kept[d]]),
                                           strict=False)} for d in range(len(kept))]  # fmt: skip
        for s, part in streams.items():
            for k, vals in part.items():
                tile = tiles[k]
                idx = tuple(slice(pos[d][b], pos[d][b] + len(grid[d][b])) for d, b in enumerate(tile))
                shape = tuple(len(grid[d][b]) for d, b in enumerate(tile)) + tuple(rest)
                out[(s, *idx)] = vals.reshape(shape)
        return out[0, ...] if rec.kind == "f32" else out
