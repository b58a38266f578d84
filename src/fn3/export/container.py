"""A minimal, strict reader and writer of the safetensors container, with byte-range reads.

fn3 writes its files itself (rather than through ``safetensors.torch.save_file``) for two reasons: the
nested file must place its tensors in a chosen order so a sub-model's bytes are contiguous, and its
reader must read byte *ranges* with seeks and count them. The layout is plain safetensors (8-byte
little-endian header size, a JSON header padded with spaces to a multiple of 8, then the data), so
any safetensors tool opens fn3 files.

Every check raises :class:`~fn3.errors.FileFormatError` naming the file and what is wrong.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> write(path, [("a", "U8", [3], b"xyz")], {"format": "demo"})
    >>> with Reader(path) as r:
    ...     r.metadata["format"], r.entries["a"].shape, r.read_range(r.entries["a"].start, 2)
    ('demo', [3], b'xy')
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fn3._io import atomic_path, loads_untrusted
from fn3.errors import FileFormatError

__all__ = ["DTYPE_SIZES", "Entry", "Reader", "atomic_write", "write"]

DTYPE_SIZES = {
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "I32": 4,
    "I64": 8,
    "F16": 2,
    "BF16": 2,
    "F32": 4,
    "F64": 8,
    "BOOL": 1,
}
MAX_HEADER = 64 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One tensor of the container: dtype, shape, and its absolute byte range in the file."""

    dtype: str
    shape: list[int]
    start: int
    end: int


def atomic_write(path: str | Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``path`` atomically and durably (:func:`fn3._io.atomic_path`: temp file,
    fsync, rename, fsync of the directory), streaming them so no joined copy of the file is built."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def write(
    path: str | Path, tensors: list[tuple[str, str, list[int], bytes]], metadata: dict[str, str]
) -> None:
    """Write ``(name, dtype, shape, raw bytes)`` tensors, in this order, and string ``metadata``."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, data in tensors:
        n = DTYPE_SIZES[dtype]
        for s in shape:
            n *= s
        if n != len(data):
            raise ValueError(f"tensor {name}: {len(data)} bytes for {dtype}{shape}")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    atomic_write(path, [len(text).to_bytes(8, "little"), text, *(t[3] for t in tensors)])


class Reader:
    """Opens a safetensors file, validates its header, and reads byte ranges (counting them).

    ``bytes_read`` counts every byte read from the file, header included.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 (closed by close / __exit__)
        except FileNotFoundError:
            raise FileFormatError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise FileFormatError(f"{self.path}: is a directory, expected an fn3 file") from None
        self.size = os.fstat(self._f.fileno()).st_size
        self.bytes_read = 0
        try:
            self._parse()
        except BaseException:
            self._f.close()
            raise

    def fail(self, what: str) -> FileFormatError:
        """The error to raise for a problem with this file."""
        return FileFormatError(f"{self.path}: {what}")

    def _parse(self) -> None:
        if self.size < 8:
            raise self.fail(f"truncated: {self.size} bytes, too short for a safetensors header")
        n = int.from_bytes(self.read_range(0, 8), "little")
        if n > min(MAX_HEADER, self.size - 8):
            raise self.fail(f"header size {n} exceeds the file ({self.size} bytes): truncated or not fn3")
        header = loads_untrusted(self.read_range(8, n), self.path, "header")
        if not isinstance(header, dict):
            raise self.fail("header is not a JSON object")
        meta = header.pop("__metadata__", {})
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise self.fail("__metadata__ must map names to strings")
        self.metadata: dict[str, str] = meta
        base, self.entries = 8 + n, {}
        spans = []
        for name, e in header.items():
            if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
                raise self.fail(f"tensor {name!r}: malformed header entry")
            dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
            if dtype not in DTYPE_SIZES:
                raise self.fail(f"tensor {name!r}: unknown dtype {dtype!r}")
            if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
                raise self.fail(f"tensor {name!r}: bad shape {shape!r}")
            if not (
                isinstance(offs, list)
                and len(offs) == 2
                and all(type(o) is int for o in offs)
                and 0 <= offs[0] <= offs[1]
            ):
                raise self.fail(f"tensor {name!r}: bad data offsets {offs!r}")
            nbytes = DTYPE_SIZES[dtype]
            for s in shape:
                nbytes *= s
            if offs[1] - offs[0] != nbytes:
                raise self.fail(
                    f"tensor {name!r}: {offs[1] - offs[0]} bytes for {dtype}{shape} ({nbytes} expected)"
                )
            self.entries[name] = Entry(dtype, shape, base + offs[0], base + offs[1])
            spans.append((offs[0], offs[1]))
        spans.sort()
        end = 0
        for a, b in spans:
            if a != end:
                raise self.fail("tensor data overlaps or leaves a gap (corrupt header)")
            end = b
        if base + end != self.size:
            state = "truncated" if base + end > self.size else "has trailing bytes"
            raise self.fail(f"{state}: header describes {base + end} bytes, file has {self.size}")

    def read_range(self, start: int, length: int) -> bytes:
        """``length`` bytes at absolute offset ``start`` (a seek and a read, counted)."""
        if start < 0 or length < 0 or start + length > self.size:
            raise self.fail(f"read of {length} bytes at {start} is past the end ({self.size} bytes)")
        self._f.seek(start)
        data = self._f.read(length)
        if len(data) != length:
            raise self.fail(f"short read at {start}: file truncated")
        self.bytes_read += length
        return data

    def read(self, name: str) -> bytes:
        """All bytes of tensor ``name``."""
        if name not in self.entries:
            raise self.fail(f"missing tensor {name!r}")
        e = self.entries[name]
        return self.read_range(e.start, e.end - e.start)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
