"""Where every tensor of a nested file lives: records, tiles and their byte ranges.

The nested file stores each tensor of the trained FN3 once, cut into *tiles*: the blocks of the
axes governing its first one or two dimensions (a convolution weight ``(out, in, k, k)`` governed by
two channel axes of 8 blocks has 64 tiles of ``(out/8, in/8, k, k)``). The layout is a pure function
of the model description, so the file's index is just that description: no per-tensor offsets.

* A **float** record (biases, scales, BatchNorm, clipping levels, float weights) is its tiles in order,
  float32 little-endian.
* A **planes** record (a quantized weight) is ``B`` bit-planes, most significant first; each plane is
  one bit per weight, tiles in order, packed and starting on a byte boundary. A ``c``-bit reader
  reads planes ``0..c-1`` only.

Tile order is *shell order*: tile ``(a, b)`` belongs to shell ``max(a, b)``; shell ``m`` lists
``(0, m) .. (m-1, m), (m, m), (m, m-1) .. (m, 0)``. The kept tiles of a prefix sub-model keeping
``o x i`` blocks then form one contiguous run for the square part and one run per further shell.

Example:
    >>> shell_order(2, 2)
    [(0, 0), (0, 1), (1, 1), (1, 0)]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product

from fn3.spec import Space

__all__ = ["Record", "records", "shell_order"]


def shell_order(n0: int, n1: int) -> list[tuple[int, int]]:
    """Tiles of an ``n0 x n1`` block grid in shell order (see the module docstring)."""
    order = []
    for m in range(max(n0, n1)):
        if m < n1:
            order += [(j, m) for j in range(min(m, n0))]
        if m < n0 and m < n1:
            order.append((m, m))
        if m < n0:
            order += [(m, j) for j in reversed(range(min(m, n1)))]
    return order


@dataclass(frozen=True)
class Record:
    """One stored tensor: ``kind`` is ``"f32"`` or ``"planes"`` (``bits`` planes)."""

    key: str
    kind: str
    shape: tuple[int, ...]
    dims: tuple[tuple[str, int] | None, ...]  # axis reference of each governed leading dimension
    bits: int = 32

    def blocks(self, space: Space) -> list[list[range]]:
        """Index range of every block of every governed dimension."""
        out = []
        for d, ref in enumerate(self.dims):
            if ref is None:
                out.append([range(self.shape[d])])
            else:
                axis, per = space[ref[0]], ref[1]
                out.append(
                    [
                        range(u.start * per, u.stop * per)
                        for u in (axis.block_units(b) for b in range(axis.num_blocks))
                    ]
                )
        return out

    def tiles(self, space: Space) -> list[tuple[int, ...]]:
        """Tile coordinates (block index per governed dimension) in storage order."""
        grid = self.blocks(space)
        if len(grid) == 2:
            return shell_order(len(grid[0]), len(grid[1]))
        return [tuple(t) for t in product(*(range(len(g)) for g in grid))]

    def tile_numel(self, space: Space) -> list[int]:
        """Number of values of every tile, in storage order."""
        grid, rest = self.blocks(space), 1
        for s in self.shape[len(self.dims) :]:
            rest *= s
        out = []
        for t in self.tiles(space):
            n = rest
            for d, b in enumerate(t):
                n *= len(grid[d][b])
            out.append(n)
        return out

    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return 4 * n if self.kind == "f32" else self.bits * ((n + 7) // 8)


def _ref(r: list | None) -> tuple[str, int] | None:
    return None if r is None else (str(r[0]), int(r[1]))


def records(node: Mapping) -> Iterator[Record]:
    """The records of a model description (from :func:`fn3.export.arch.describe`), in file order."""
    kind = node["type"]
    if kind == "seq":
        for c in node["children"]:
            yield from records(c)
    elif kind == "stage":
        for b in node["blocks"]:
            yield from records(b)
    elif kind == "residual":
        yield from records(node["body"])
        if node["shortcut"] is not None:
            yield from records(node["shortcut"])
    elif kind in ("conv", "linear"):
        name, out = node["name"], node["out"]
        if kind == "conv":
            g, k = node["groups"], node["k"]
            shape: tuple[int, ...] = (out, node["in"] // g, k, k)
            if node["path_axis"] is not None:
                dims = (_ref(node["path_axis"]), None)
            else:
                dims = (_ref(node["out_axis"]), _ref(node["in_axis"]) if g == 1 else None)
        else:
            shape, dims = (out, node["in"]), (_ref(node["out_axis"]), _ref(node["in_axis"]))
        if node["act"] is not None:
            yield Record(f"{name}.act_quant.alpha", "f32", (), ())
        if node["wbits"] is not None:
            yield Record(f"{name}.weight", "planes", shape, dims, node["total_bits"])
            yield Record(f"{name}.weight.scale", "f32", (out,), dims[:1])
        else:
            yield Record(f"{name}.weight", "f32", shape, dims)
        if node["bias"]:
            yield Record(f"{name}.bias", "f32", (out,), dims[:1])
    elif kind == "bn":
        for t in ("weight", "bias", "running_mean", "running_var"):
            yield Record(f"{node['name']}.{t}", "f32", (node["num_features"],), (_ref(node["axis"]),))
    elif kind == "act":
        yield Record(f"{node['name']}.alpha", "f32", (), ())
