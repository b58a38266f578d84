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

The records come from one of two places. A built-in model's come from its hand-written description
(:func:`records`, the module tree of version-1/2 files). Any nested model's come from the layer protocol
(:func:`protocol_records`, :mod:`fn3.nn.protocol`): each nested leaf says which axis slices which of
its dimensions (``fn3_axes()``) and whether its weight is coded in bits (``fn3_quant_weight()``), and
that is all a layout needs, so a model of your own (:mod:`fn3.export.user`) is laid out the same way.

Example:
    >>> shell_order(2, 2)
    [(0, 0), (0, 1), (1, 1), (1, 0)]
    >>> import torch, fn3
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> _ = fn3.nest_(net, torch.randn(1, 8), verbose=False)
    >>> for rec in protocol_records(net):
    ...     print(rec.key, rec.kind, rec.shape, rec.dims, rec.bits)
    0.weight planes (16, 8) (('0.width', 1),) 8
    0.weight.scale f32 (16,) (('0.width', 1),) 32
    0.bias f32 (16,) (('0.width', 1),) 32
    0.act_quant.alpha f32 () () 32
    2.weight planes (4, 16) (None, ('0.width', 1)) 8
    2.weight.scale f32 (4,) () 32
    2.bias f32 (4,) () 32
    2.act_quant.alpha f32 () () 32

    ``0.weight`` is 8 bit-planes of 16 x 8 bits, cut along its rows by ``0.width``; ``2.weight`` is
    cut along its columns by the same axis (the output of ``0`` is the input of ``2``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, product

from torch import nn

from fn3.spec import Space, Spec

__all__ = [
    "SCALE",
    "Record",
    "kept_blocks",
    "kept_runs",
    "protocol_records",
    "records",
    "records_from_json",
    "records_to_json",
    "shell_order",
]

#: Suffix of the record holding the per-output-row scale of a bit-plane weight (``conv.weight.scale``).
SCALE = ".scale"


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
    """The records of a stored model tree (a version-1/2 nested file's ``arch``), in file order."""
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


# -- records from the layer protocol --------------------------------------------------------------
def _leaf_dims(
    leaf: nn.Module, t_shape: tuple[int, ...], space: Space, where: str
) -> tuple[tuple[str, int] | None, ...]:
    """Axis reference of each governed leading dimension of one tensor a nested leaf owns.

    The protocol's dims map to tensor dimensions the way every fn3 leaf slices them: ``"out"`` and
    ``"groups"`` slice dim 0 (a weight's output rows, a bias, a norm's per-channel tensors), ``"in"``
    slices dim 1 of a weight of an ungrouped layer (a grouped convolution keeps every input of the
    groups it keeps), and ``"groups"`` counts whole groups, ``out / groups`` rows each. A scalar
    (a clipping level) is ungoverned.
    """
    if not t_shape:
        return ()
    groups = int(getattr(leaf, "groups", 1) or 1)
    dims: list[tuple[str, int] | None] = [None] * min(2, len(t_shape))
    for use in leaf.fn3_axes():
        if use.dim == "out" or use.dim == "groups":
            per = use.per_unit * (t_shape[0] // groups if use.dim == "groups" else 1)
            dims[0] = (use.axis, per)
        elif use.dim == "in" and len(t_shape) >= 2 and groups == 1:
            dims[1] = (use.axis, use.per_unit)
    for d, ref in enumerate(dims):
        # A leaf that slices a dimension some other way than whole units of one axis cannot be cut
        # into tiles; fail at save time, naming it, rather than write a file that reads wrongly.
        if ref is not None and space[ref[0]].size * ref[1] != t_shape[d]:
            raise ValueError(
                f"{where}: axis {ref[0]!r} ({space[ref[0]].size} units x {ref[1]}) does not cover "
                f"dim {d} of size {t_shape[d]}"
            )
    while dims and dims[-1] is None:  # a trailing ungoverned dim is one block: the same tiles
        dims.pop()
    return tuple(dims)


def protocol_records(model: nn.Module) -> list[Record]:
    """The records of any nested ``model``, in ``state_dict`` order, from the layer protocol.

    Every tensor of ``model.state_dict()`` but BatchNorm's step counter is one record: a tensor a
    nested leaf owns is governed as :func:`_leaf_dims` says; any other tensor (a layer fn3 did not
    nest, a positional embedding) is ungoverned, one tile. A leaf whose ``fn3_quant_weight()`` is not
    ``None`` stores its ``weight`` as ``total_bits`` bit-planes, followed by the record
    ``<key>.scale`` (one float per output row, the step of the *full* weight, governed like dim 0).
    """
    from fn3.nest import active
    from fn3.nest import space as model_space
    from fn3.nn.protocol import is_leaf

    sp = model_space(model)
    owner: dict[str, tuple[str, nn.Module]] = {}  # tensor key -> (leaf name, leaf)
    bits: dict[str, int] = {}  # quantized weight key -> total bits
    with active(model, sp.largest()):
        for name, mod in model.named_modules():
            if not is_leaf(mod):
                continue
            prefix = f"{name}." if name else ""
            for t_name, _ in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
                owner[prefix + t_name] = (name, mod)
            q = mod.fn3_quant_weight() if hasattr(mod, "fn3_quant_weight") else None
            if q is not None:
                bits[f"{prefix}weight"] = int(q.total_bits)
    out = []
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # an int64 step counter no sub-model needs (the files never stored it)
        shape = tuple(int(s) for s in t.shape)
        dims = _leaf_dims(owner[key][1], shape, sp, key) if key in owner else ()
        if key in bits:
            out.append(Record(key, "planes", shape, dims, bits[key]))
            out.append(Record(key + SCALE, "f32", shape[:1], dims[:1] if dims[:1] != (None,) else ()))
        else:
            out.append(Record(key, "f32", shape, dims))
    return out


def kept_runs(
    rec: Record, kept: Sequence[Sequence[int]], space: Space
) -> tuple[list[int], list[tuple[int, int]]]:
    """Where the kept tiles of ``rec`` lie in one of its streams (a float record, or one plane).

    Returns ``(offsets, runs)``: ``offsets[t]`` is the number of values stored before tile ``t``
    (``len(tiles) + 1`` entries, so the last is the record's size), and ``runs`` the ``(first, end)``
    tile indices of every run of consecutive tiles whose blocks are all in ``kept`` (the blocks kept
    along each governed dimension): each run is one contiguous read.
    """
    tiles = rec.tiles(space)
    offsets = [0, *accumulate(rec.tile_numel(space))]
    want = [all(t[d] in kept[d] for d in range(len(t))) for t in tiles]
    runs, i = [], 0
    while i < len(tiles):
        if not want[i]:
            i += 1
            continue
        j = i
        while j < len(tiles) and want[j]:
            j += 1
        runs.append((i, j))
        i = j
    return offsets, runs


def kept_blocks(rec: Record, spec: Spec) -> list[list[int]]:
    """Kept block indices of every governed dimension of ``rec`` (``[0]``: an ungoverned one)."""
    return [[0] if ref is None else list(spec.kept(ref[0])) for ref in rec.dims]


def records_to_json(recs: list[Record]) -> list[list]:
    """Records as JSON lists ``[key, kind, shape, dims, bits]`` (a file header stores them)."""
    return [[r.key, r.kind, list(r.shape), [None if d is None else list(d) for d in r.dims], r.bits]
            for r in recs]  # fmt: skip


def records_from_json(data: object) -> list[Record]:
    """Inverse of :func:`records_to_json`; ``ValueError`` for anything malformed (untrusted input)."""
    if not isinstance(data, list):
        raise ValueError("'records' must be a list")
    out = []
    for item in data:
        if not (isinstance(item, list) and len(item) == 5):
            raise ValueError(f"bad record {item!r}")
        key, kind, shape, dims, bits = item
        ok = isinstance(key, str) and kind in ("f32", "planes") and isinstance(shape, list)
        ok = ok and all(type(s) is int and 0 <= s < 1 << 31 for s in shape) and type(bits) is int
        ok = ok and isinstance(dims, list) and len(dims) <= len(shape)
        ok = ok and all(d is None or (isinstance(d, list) and len(d) == 2 and isinstance(d[0], str)
                                      and type(d[1]) is int and d[1] >= 1) for d in dims)  # fmt: skip
        ok = ok and (bits == 32 if kind == "f32" else 1 <= bits <= 16)
        if not ok:
            raise ValueError(f"bad record {item!r}")
        out.append(Record(key, kind, tuple(shape), tuple(_ref(d) for d in dims), bits))
    return out
