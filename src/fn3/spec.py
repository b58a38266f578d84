"""`Axis`, `Space` and `Spec`: what a nested model can vary, and one concrete sub-model of it.

A **Space** is an ordered list of named axes. Each :class:`Axis` is an ordered group of *blocks* of one
kind (``bits``, ``neurons``, ``channels``, ``paths`` or ``layers``): ``"stage2.width"`` has 32 channels
in blocks of 4, ``"stage2.depth"`` has 3 residual blocks, ``"fc1.wbits"`` has 8 bit-planes. Block 0
is the most important one (the first channels, the most significant bit), and the first
``min_size`` units of an axis are always kept.

A **Spec** is one concrete sub-model: for every axis, the sorted tuple of kept block indices. It is
normally a prefix (ordered dropout keeps the first blocks) but may be any set that contains the
mandatory first blocks, which the search uses to take blocks out of order inside its window. A Spec is
frozen and hashable, so it can key caches and dictionaries, and it has a stable, versioned JSON form.

Example:
    >>> from fn3.spec import Axis, Space
    >>> space = Space([Axis("fc1.width", "neurons", size=64, step=16),
    ...                Axis("fc1.wbits", "bits", size=8, min_size=2)])
    >>> spec = space.spec(**{"fc1.width": 32, "fc1.wbits": 4})
    >>> spec.size("fc1.width", space), spec.size("fc1.wbits", space)
    (32, 4)
    >>> space.validate(spec) is spec
    True
    >>> Spec.from_json(spec.to_json()) == spec
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from fn3.errors import SpecError

__all__ = ["KINDS", "Axis", "Space", "Spec", "parse_spec"]

#: The five nesting levels of FN3, in the paper's order.
KINDS: tuple[str, ...] = ("bits", "neurons", "channels", "paths", "layers")

SPEC_FORMAT = "fn3.spec"
SPEC_VERSION = 1
#: The two roles of a bits axis, by the suffix of its name (``<layer>.wbits``: the stored weight's
#: bit-planes; ``<layer>.abits``: the layer's quantized input), as ``parse_spec`` keys.
BIT_ROLES: tuple[str, ...] = ("wbits", "abits")
#: The most blocks a spec read without its space may keep on one axis (bounds what a file can ask).
MAX_BLOCKS = 1 << 20


@dataclass(frozen=True)
class Axis:
    """One ordered group of blocks that ordered dropout truncates.

    Args:
        name: unique dotted name, e.g. ``"stage2.width"``.
        kind: one of :data:`KINDS`.
        size: number of units (channels, neurons, paths, residual blocks, bits).
        step: units per block (channels in groups of 4 -> ``step=4``); the last block may be smaller.
        min_size: units that are always kept (rounded up to whole blocks); at least one block.

    Example:
        >>> Axis("stage1.width", "channels", size=16, step=4).num_blocks
        4
    """

    name: str
    kind: str
    size: int
    step: int = 1
    min_size: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(
                f"axis {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}"
            )
        if self.size < 1 or self.step < 1:
            raise SpecError(
                f"axis {self.name!r}: size and step must be >= 1 (got {self.size}, {self.step})"
            )
        if not 1 <= self.min_size <= self.size:
            raise SpecError(
                f"axis {self.name!r}: min_size must be in 1..{self.size}, got {self.min_size}"
            )

    @property
    def num_blocks(self) -> int:
        """Number of blocks, ``ceil(size / step)``."""
        return math.ceil(self.size / self.step)

    @property
    def min_blocks(self) -> int:
        """Number of leading blocks that every sub-model keeps."""
        return math.ceil(self.min_size / self.step)

    def block_units(self, block: int) -> range:
        """Units covered by ``block``: ``range(block * step, min((block + 1) * step, size))``."""
        return range(block * self.step, min((block + 1) * self.step, self.size))

    def units(self, blocks: Iterable[int]) -> int:
        """Total number of units in ``blocks``."""
        return sum(len(self.block_units(b)) for b in blocks)

    def blocks_for(self, size: int) -> int:
        """Smallest number of prefix blocks holding at least ``size`` units (clamped to the axis)."""
        return min(max(math.ceil(size / self.step), self.min_blocks), self.num_blocks)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "step": self.step,
            "min_size": self.min_size,
        }


@dataclass(frozen=True)
class Spec:
    """One sub-model: per axis name, the sorted tuple of kept block indices.

    Build specs through a :class:`Space` (``space.largest()``, ``space.spec(...)``,
    ``space.sample(gen)``) so they are validated; ``Spec`` itself only guarantees it is well formed.

    Example:
        >>> spec = Spec({"a": (0, 1), "b": (0,)})
        >>> spec.kept("a"), spec.is_prefix
        ((0, 1), True)
        >>> hash(spec) == hash(Spec({"b": [0], "a": [1, 0]}))
        True
    """

    keep: tuple[tuple[str, tuple[int, ...]], ...]

    def __init__(self, keep: Mapping[str, Iterable[int]] | Iterable[tuple[str, Iterable[int]]]):
        items = keep.items() if isinstance(keep, Mapping) else keep
        norm = []
        for name, blocks in items:
            blocks = tuple(sorted({int(b) for b in blocks}))
            if not blocks:
                raise SpecError(f"axis {name!r}: a spec must keep at least one block")
            norm.append((str(name), blocks))
        norm.sort(key=lambda kv: kv[0])
        names = [n for n, _ in norm]
        if len(set(names)) != len(names):
            raise SpecError("a spec names an axis twice")
        object.__setattr__(self, "keep", tuple(norm))

    # -- access -------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, tuple[int, ...]]:
        """``{axis name: kept block indices}``."""
        return dict(self.keep)

    def kept(self, name: str) -> tuple[int, ...]:
        """Kept block indices of axis ``name``."""
        for n, blocks in self.keep:
            if n == name:
                return blocks
        raise SpecError(f"spec has no axis {name!r}")

    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.keep)

    def __iter__(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        return iter(self.keep)

    @property
    def is_prefix(self) -> bool:
        """True when every axis keeps a prefix ``(0, 1, ..., k-1)`` of its blocks."""
        return all(b == tuple(range(len(b))) for _, b in self.keep)

    def size(self, name: str, space: Space) -> int:
        """Kept units (channels, neurons, bits, ...) of axis ``name``; the space knows the block sizes."""
        return space[name].units(self.kept(name))

    def replace(self, **keep: Iterable[int]) -> Spec:
        """A copy with the kept blocks of some axes replaced (names given as keyword arguments)."""
        d = self.as_dict()
        d.update({k: tuple(v) for k, v in keep.items()})
        return Spec(d)

    def with_blocks(self, name: str, blocks: Iterable[int]) -> Spec:
        """A copy with axis ``name`` keeping ``blocks`` (for dotted names ``replace`` cannot take)."""
        d = self.as_dict()
        d[name] = tuple(blocks)
        return Spec(d)

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self, space: Space | None = None) -> dict[str, object]:
        """Versioned JSON-ready form: a prefix axis as ``{"size": units}``, others as ``{"blocks": [...]}``.

        Without a space, prefixes are written as ``{"prefix": n_blocks}``.
        """
        axes: dict[str, object] = {}
        for name, blocks in self.keep:
            if blocks == tuple(range(len(blocks))):
                if space is not None:
                    axes[name] = {"size": space[name].units(blocks)}
                else:
                    axes[name] = {"prefix": len(blocks)}
            else:
                axes[name] = {"blocks": list(blocks)}
        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "axes": axes}

    def to_json(self, space: Space | None = None) -> str:
        return json.dumps(self.to_dict(space), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], space: Space | None = None) -> Spec:
        """Inverse of :meth:`to_dict`; ``{"size": n}`` entries need ``space`` to convert units to blocks."""
        if not isinstance(data, Mapping) or data.get("format") != SPEC_FORMAT:
            raise SpecError(f'not an fn3 spec: expected an object with "format": "{SPEC_FORMAT}"')
        if data.get("version") != SPEC_VERSION:
            raise SpecError(
                f"spec version {data.get('version')!r} is not supported (expected {SPEC_VERSION})"
            )
        unknown = set(data) - {"format", "version", "axes"}
        if unknown:
            raise SpecError(
                f"spec has unknown keys {sorted(unknown)}; expected format, version, axes"
            )
        axes = data.get("axes")
        if not isinstance(axes, Mapping):
            raise SpecError('spec field "axes" must be an object {axis name: {size|prefix|blocks}}')
        keep: dict[str, tuple[int, ...]] = {}
        for name, entry in axes.items():
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise SpecError(
                    f'axis {name!r}: expected one of {{"size": n}}, {{"prefix": n}}, {{"blocks": [...]}}'
                )
            ((key, value),) = entry.items()
            if key == "blocks" and isinstance(value, list) and all(_is_int(v) for v in value):
                keep[name] = tuple(value)
            elif key == "prefix" and _is_int(value) and value >= 1:
                # Check before building range(value): a hostile file may say 10**30.
                most = space[name].num_blocks if space is not None and name in space else MAX_BLOCKS
                if value > most:
                    raise SpecError(f"axis {name!r}: prefix of {value} blocks; the axis has {most}")
                keep[name] = tuple(range(value))
            elif key == "size" and _is_int(value) and value >= 1:
                if space is None:
                    raise SpecError(f"axis {name!r}: a size needs the model's space to be read")
                if name not in space:
                    raise SpecError(
                        f"spec axis {name!r} is not in the model; axes are {', '.join(space.names)}"
                    )
                ax = space[name]
                if value > ax.size:
                    raise SpecError(
                        f"axis {name!r}: size {value} is larger than the axis ({ax.size})"
                    )
                if value % ax.step and value != ax.size:
                    raise SpecError(
                        f"axis {name!r}: size {value} is not a multiple of its step {ax.step}"
                    )
                keep[name] = tuple(range(ax.blocks_for(value)))
            else:
                raise SpecError(
                    f'axis {name!r}: bad entry {entry!r}; expected {{"size": n}} or {{"blocks": [...]}}'
                )
        spec = cls(keep)
        return space.validate(spec) if space is not None else spec

    @classmethod
    def from_json(cls, text: str, space: Space | None = None) -> Spec:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SpecError(f"spec is not valid JSON ({err})") from None
        except RecursionError:
            raise SpecError("spec JSON nests too deeply; expected {format, version, axes}") from None
        return cls.from_dict(data, space)

    def __repr__(self) -> str:
        parts = []
        for name, blocks in self.keep:
            parts.append(
                f"{name}={len(blocks)}"
                if blocks == tuple(range(len(blocks)))
                else f"{name}={list(blocks)}"
            )
        return "Spec(" + ", ".join(parts) + ")"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Space:
    """The axes a nested model can vary, in model order.

    Args:
        axes: the axes; names must be unique.

    Example:
        >>> space = Space([Axis("w", "channels", 16, step=4), Axis("d", "layers", 3)])
        >>> space.largest()
        Spec(d=3, w=4)
        >>> space.smallest()
        Spec(d=1, w=1)
        >>> space.uniform({"channels": 0.5}).size("w", space)
        8
    """

    def __init__(self, axes: Iterable[Axis]):
        self.axes: tuple[Axis, ...] = tuple(axes)
        self._by_name = {a.name: a for a in self.axes}
        if len(self._by_name) != len(self.axes):
            raise SpecError("a space names an axis twice")

    # -- container ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Axis:
        try:
            return self._by_name[name]
        except KeyError:
            raise SpecError(
                f"no axis {name!r} in this model; axes are {', '.join(self.names)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Axis]:
        return iter(self.axes)

    def __len__(self) -> int:
        return len(self.axes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.axes == other.axes

    def __hash__(self) -> int:
        return hash(self.axes)

    def __repr__(self) -> str:
        return (
            f"Space({len(self.axes)} axes: "
            + ", ".join(f"{a.name}[{a.kind} {a.size}]" for a in self.axes)
            + ")"
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def kinds(self) -> tuple[str, ...]:
        """The kinds present, in :data:`KINDS` order."""
        present = {a.kind for a in self.axes}
        return tuple(k for k in KINDS if k in present)

    def of_kind(self, kind: str) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if a.kind == kind)

    # -- building specs -----------------------------------------------------------------------
    def largest(self) -> Spec:
        """Every block of every axis kept: the full model."""
        return Spec({a.name: range(a.num_blocks) for a in self.axes})

    def smallest(self) -> Spec:
        """Only the mandatory blocks of every axis."""
        return Spec({a.name: range(a.min_blocks) for a in self.axes})

    def prefix(self, blocks: Mapping[str, int]) -> Spec:
        """Prefix spec from a number of kept *blocks* per axis (missing axes keep everything)."""
        keep = {a.name: range(a.num_blocks) for a in self.axes}
        for name, n in blocks.items():
            ax = self[name]
            if not ax.min_blocks <= n <= ax.num_blocks:
                raise SpecError(
                    f"axis {name!r}: {n} blocks is outside {ax.min_blocks}..{ax.num_blocks}"
                )
            keep[name] = range(n)
        return Spec(keep)

    def spec(self, **sizes: int) -> Spec:
        """Prefix spec from kept *units* per axis, e.g. ``space.spec(**{"fc1.width": 32})``.

        Missing axes keep everything; sizes round up to whole blocks.
        """
        blocks = {}
        for name, size in sizes.items():
            ax = self[name]
            if not ax.min_size <= size <= ax.size:
                raise SpecError(f"axis {name!r}: size {size} is outside {ax.min_size}..{ax.size}")
            blocks[name] = ax.blocks_for(size)
        return self.prefix(blocks)

    def uniform(self, fractions: Mapping[str, float]) -> Spec:
        """Prefix spec keeping a fraction per *kind*; ``bits`` takes a bit count instead.

        ``{"channels": 0.5, "bits": 4}`` keeps half the channels of every channel axis and 4 bits of
        every bits axis; kinds not named keep everything.
        """
        blocks = {}
        for kind, frac in fractions.items():
            if kind not in KINDS:
                raise SpecError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
            for ax in self.of_kind(kind):
                if kind == "bits":
                    if (
                        not (isinstance(frac, int) or float(frac).is_integer())
                        or not 1 <= frac <= ax.size
                    ):
                        raise SpecError(
                            f"bits={frac!r}: give a whole number of bits in 1..{ax.size}"
                        )
                    units = int(frac)
                else:
                    if not 0.0 < frac <= 1.0:
                        raise SpecError(f"{kind}={frac!r}: give a kept fraction in (0, 1]")
                    units = max(1, round(frac * ax.size))
                blocks[ax.name] = ax.blocks_for(units)
        return self.prefix(blocks)

    def sample(
        self, generator: torch.Generator | None = None, *, dist: str = "uniform", rho: float = 0.9
    ) -> Spec:
        """A random prefix spec (one index per axis); see :class:`fn3.OrderedDropout` for training."""
        from fn3.sampling import sample_blocks  # late import: sampling depends on this module

        return self.prefix({a.name: sample_blocks(a, generator, dist, rho) for a in self.axes})

    # -- validation ---------------------------------------------------------------------------
    def validate(self, spec: Spec) -> Spec:
        """Return ``spec`` if it fits this space, else raise :class:`SpecError` naming the axis."""
        if not isinstance(spec, Spec):
            raise SpecError(f"expected a Spec, got {type(spec).__name__}")
        names = set(spec.names())
        missing = [n for n in self.names if n not in names]
        extra = sorted(names - set(self.names))
        if extra:
            raise SpecError(
                f"spec axis {extra[0]!r} is not in the model; axes are {', '.join(self.names)}"
            )
        if missing:
            raise SpecError(
                f"spec has no entry for axis {missing[0]!r} ({len(missing)} axes missing)"
            )
        for name, blocks in spec:
            ax = self._by_name[name]
            if blocks[-1] >= ax.num_blocks or blocks[0] < 0:
                raise SpecError(
                    f"axis {name!r}: block {blocks[-1]} is outside 0..{ax.num_blocks - 1}"
                )
            if blocks[: ax.min_blocks] != tuple(range(ax.min_blocks)):
                raise SpecError(
                    f"axis {name!r}: the first {ax.min_blocks} block(s) must always be kept"
                )
        return spec

    def fill(self, partial: Mapping[str, Iterable[int]]) -> Spec:
        """Spec from kept blocks of some axes; the other axes keep everything."""
        keep = {a.name: tuple(range(a.num_blocks)) for a in self.axes}
        for name, blocks in partial.items():
            self[name]
            keep[name] = tuple(blocks)
        return self.validate(Spec(keep))

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {"format": "fn3.space", "version": 1, "axes": [a.to_dict() for a in self.axes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Space:
        if (
            not isinstance(data, Mapping)
            or data.get("format") != "fn3.space"
            or data.get("version") != 1
        ):
            raise SpecError("not an fn3 space (expected format fn3.space, version 1)")
        axes = data.get("axes")
        if not isinstance(axes, list):
            raise SpecError('space field "axes" must be a list')
        try:
            return cls(Axis(**a) for a in axes)
        except TypeError as err:
            raise SpecError(f"bad axis in space: {err}") from None


def parse_spec(text: str, space: Space) -> Spec:
    """Read a spec as users write it on the command line.

    Accepted forms: ``largest``, ``smallest``; ``kind=value,...`` (a kept fraction per kind, bits as a
    bit count, e.g. ``channels=0.5,bits=4``); ``wbits=c`` / ``abits=c``: the bits of every weight
    (every ``<layer>.wbits`` axis) or every quantized activation (``<layer>.abits``) alone, over
    ``bits``, e.g. ``bits=2,abits=4``: 2-bit weights (the 2-bit file's size) on 4-bit activations;
    ``axis=units,...`` (e.g. ``fc1.width=64``), which may be mixed with kinds (axes override kinds and
    roles); or the path of a spec JSON file.

    Example:
        >>> space = Space([Axis("fc1.width", "neurons", 64, step=16), Axis("fc1.wbits", "bits", 8),
        ...                Axis("fc1.abits", "bits", 8)])
        >>> parse_spec("neurons=0.5,bits=4", space)
        Spec(fc1.abits=4, fc1.wbits=4, fc1.width=2)
        >>> parse_spec("bits=2,abits=4", space)
        Spec(fc1.abits=4, fc1.wbits=2, fc1.width=4)
    """
    from pathlib import Path

    text = text.strip()
    if not text.strip(", "):  # "" or ",": saying nothing must not silently mean the largest model
        raise SpecError(
            f"empty spec {text!r}: give largest, smallest, kind=value pairs (e.g. channels=0.5,bits=4) "
            "or a spec JSON file"
        )
    if text in ("largest", "full"):
        return space.largest()
    if text == "smallest":
        return space.smallest()
    if text.endswith(".json") or _is_file(text):
        try:
            content = Path(text).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise SpecError(f"spec file {text} is not UTF-8 text ({err.reason})") from None
        except (OSError, ValueError) as err:  # ValueError: an embedded NUL, never a file name
            raise SpecError(
                f"cannot read spec file {text!r}: {getattr(err, 'strerror', None) or err}"
            ) from None
        return Spec.from_json(content, space)
    kinds: dict[str, float] = {}
    roles: dict[str, int] = {}  # "wbits" / "abits": every bits axis of that role
    axes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise SpecError(
                f"cannot read spec {text!r}: expected largest, smallest, kind=value pairs "
                "(e.g. channels=0.5,bits=4) or a spec JSON file"
            )
        try:
            number = float(value)
        except ValueError:
            raise SpecError(f"spec entry {part!r}: {value!r} is not a number") from None
        if key in KINDS:
            if key not in space.kinds():
                raise SpecError(
                    f"spec entry {part!r}: the model does not nest {key}; it nests "
                    f"{', '.join(space.kinds())}"
                )
            kinds[key] = number
        elif key in BIT_ROLES and key not in space:
            of_role = [a for a in space.of_kind("bits") if a.name.endswith(f".{key}")]
            if not of_role:
                raise SpecError(
                    f"spec entry {part!r}: the model has no {key} axes (no <layer>.{key}); "
                    + ("it nests bits under other names: give its axes (see `fn3 info RUN`)"
                       if "bits" in space.kinds() else f"it nests {', '.join(space.kinds())}")
                )
            low, top = max(a.min_size for a in of_role), min(a.size for a in of_role)
            if not number.is_integer() or not low <= number <= top:
                raise SpecError(f"spec entry {part!r}: give a whole number of bits in {low}..{top}")
            roles[key] = int(number)
        elif key in space:
            if not number.is_integer():
                raise SpecError(f"spec entry {part!r}: an axis takes a whole number of units")
            axes[key] = int(number)
        else:
            raise SpecError(
                f"spec entry {part!r}: {key!r} is neither a kind ({', '.join(KINDS)}), "
                f"{' nor '.join(BIT_ROLES)}, nor an axis of the model (see `fn3 info RUN`)"
            )
    base = space.uniform(kinds)
    for role, bits in roles.items():  # over the kinds, under the axes named one by one
        for a in space.of_kind("bits"):
            if a.name.endswith(f".{role}") and a.name not in axes:
                axes[a.name] = bits
    if not axes:
        return base
    sized = space.spec(**axes)
    return Spec({**base.as_dict(), **{n: sized.kept(n) for n in axes}})


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file (False for what cannot be a path at all)."""
    from pathlib import Path

    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the OS, an embedded NUL
        return False
