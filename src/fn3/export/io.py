"""`save` / `load`: an exported model as one safetensors file, codes bit-packed, no pickle.

:func:`save` writes an export of :func:`fn3.export.export` as **format 3** (:mod:`fn3.export.user`):
the model's recipe and its tensors, quantized weights as bit-packed codes; loading rebuilds the model
from the recipe and checks every tensor against it. This module also reads (and, for an
:class:`ExportedModel` loaded from one, writes) fn3's former layout, **versions 1 and 2**, a plain
safetensors file with three tensors:

* ``codes`` (U8): the weight codes of every quantized layer, ``c`` bits each, packed MSB first
  (each layer starts on a byte boundary), in ``state_dict`` order;
* ``floats`` (F32): every float tensor (float weights, biases, scales, BatchNorm parameters and
  statistics, activation clipping levels), flattened and concatenated in ``state_dict`` order;
* ``meta`` (U8): UTF-8 JSON, zlib-compressed: the architecture (a tree of a dozen module types with
  their sizes; rebuilt by fn3, never executed), the spec and the export metadata.

The header's ``__metadata__`` holds ``format``, ``version`` and a CRC-32 of every tensor. Tensor names
and shapes are not stored per layer: they follow from the architecture. Loading parses the
architecture, checks that the byte counts match it exactly *before* building any module (a crafted
description cannot make it allocate more than the file holds) and that every CRC matches, and raises
:class:`~fn3.errors.FileFormatError` naming the file and the problem otherwise (truncated, corrupted,
wrong format or version, mismatched sizes).

Example:
    >>> import os, tempfile, torch, fn3
    >>> from fn3.export import export, save, load
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = export(net, fn3.space(net).uniform({"channels": 0.25, "bits": 2}))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> _ = save(small, path)
    >>> x = torch.randn(1, 3, 32, 32)
    >>> bool(torch.equal(load(path)(x), small(x)))
    True
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fn3._io import loads_untrusted, one_line
from fn3.errors import FileFormatError
from fn3.export import container
from fn3.export.pack import pack_codes, packed_size, unpack_codes
from fn3.export.qmodules import ActQuant, ExportedModel, QuantConv2d, QuantLinear, Residual, code_dtype
from fn3.nn.functional import SCHEMES

__all__ = [
    "FORMAT",
    "VERSION",
    "Layer",
    "ideal_size",
    "load_exported",
    "model_file",
    "parse_tree",
    "save",
    "to_tree",
]

FORMAT, VERSION = "fn3.exported", "2"
#: Versions this fn3 reads. Format 1 predates quantization schemes: its codes are read with the
#: truncating rule (``scheme="truncate"``), as the model that wrote them was trained; format 2 names
#: the scheme of every quantized layer (``"q"``).
READS = ("1", "2")
MODEL_FILE = "model.safetensors"


# -- architecture <-> modules ----------------------------------------------------------------------
def to_tree(m: nn.Module) -> dict:
    """JSON-ready description of an exported module tree (only fn3's export vocabulary)."""
    if isinstance(m, (ExportedModel, nn.Sequential)):
        return {
            "t": type(m).__name__ if isinstance(m, ExportedModel) else "Sequential",
            "c": [to_tree(c) for c in m],
        }
    if isinstance(m, Residual):
        return {
            "t": "Residual",
            "body": to_tree(m.body),
            "shortcut": None if m.shortcut is None else to_tree(m.shortcut),
        }
    if isinstance(m, QuantConv2d):
        return {
            "t": "QuantConv2d",
            "in": m.in_channels,
            "out": m.out_channels,
            "k": m.kernel_size,
            "s": m.stride,
            "p": m.padding,
            "g": m.groups,
            "bias": m.bias is not None,
            "planes": list(m.planes),
            "B": m.total_bits,
            "q": m.scheme,
        }
    if isinstance(m, QuantLinear):
        return {
            "t": "QuantLinear",
            "in": m.in_features,
            "out": m.out_features,
            "bias": m.bias is not None,
            "planes": list(m.planes),
            "B": m.total_bits,
            "q": m.scheme,
        }
    if isinstance(m, ActQuant):
        return {"t": "ActQuant", "planes": list(m.planes), "B": m.total_bits, "signed": m.signed,
                "q": m.scheme}
    if type(m) is nn.Conv2d and m.dilation == (1, 1) and m.padding_mode == "zeros":
        return {
            "t": "Conv2d",
            "in": m.in_channels,
            "out": m.out_channels,
            "k": m.kernel_size[0],
            "s": m.stride[0],
            "p": m.padding[0],
            "g": m.groups,
            "bias": m.bias is not None,
        }
    if type(m) is nn.Linear:
        return {"t": "Linear", "in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    if type(m) is nn.BatchNorm2d:
        return {"t": "BatchNorm2d", "n": m.num_features, "eps": m.eps}
    if type(m) in (nn.ReLU, nn.Flatten, nn.Identity) or (
        type(m) is nn.AdaptiveAvgPool2d and m.output_size in (1, (1, 1))
    ):
        return {"t": type(m).__name__}
    raise FileFormatError(f"cannot save a module of type {type(m).__name__}: not part of an fn3 export")


# Bounds of a description (a crafted file must not make the loader recurse or loop without end):
MAX_LAYERS = 100_000  # nodes; fn3's largest registered models have a few hundred
MAX_DEPTH = 64  # nesting levels; fn3's models nest 4 deep (model > stage > residual > body)
MAX_META = 64 * 1024 * 1024  # bytes of a decompressed description (stops a zlib bomb)

Stored = tuple[str, tuple[int, ...], int]
"""One stored tensor: ``(state_dict key, shape, bits per value)``, ``bits = 32`` for a float."""


class _Check:
    """Validates the fields of one architecture node while it is rebuilt."""

    def __init__(self, node: object, where: str):
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise ValueError(f"{where}: expected a module object with a type")
        self.node, self.where = node, where

    def int(self, key: str, lo: int = 1, hi: int = 1 << 24) -> int:
        v = self.node.get(key)
        if type(v) is not int or not lo <= v <= hi:
            raise ValueError(f"{self.where}: field {key!r} must be an integer in {lo}..{hi}, got {v!r}")
        return v

    def bool(self, key: str) -> bool:
        v = self.node.get(key)
        if type(v) is not bool:
            raise ValueError(f"{self.where}: field {key!r} must be true/false, got {v!r}")
        return v

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        v = self.node.get(key)
        if v not in allowed:
            raise ValueError(f"{self.where}: field {key!r} must be one of {', '.join(allowed)}, got {v!r}")
        return v

    def planes(self) -> tuple[list[int], int]:
        b, p = self.int("B", 1, 16), self.node.get("planes")
        if not (
            isinstance(p, list)
            and p
            and all(type(x) is int for x in p)
            and p[0] == 0
            and p == sorted(set(p))
            and p[-1] < b
        ):
            raise ValueError(f"{self.where}: bad bit-planes {p!r}")
        return p, b


_SIMPLE = {
    "ReLU": nn.ReLU,
    "Flatten": nn.Flatten,
    "Identity": nn.Identity,
    "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(1),
}


@dataclass(frozen=True)
class Layer:
    """One checked node of an architecture description: type, fields and children, but no tensors.

    :func:`parse_tree` turns a description into these, checking every field; :meth:`tensors` then lists
    the shape of every tensor the modules will hold without allocating any, so a loader compares the
    sizes a description implies with the bytes its file holds *before* :meth:`build` allocates them
    (a 300-byte file can describe a 2**24 x 2**24 layer).

    Example:
        >>> arch = parse_tree({"t": "ExportedModel", "c": [{"t": "Flatten"},
        ...     {"t": "QuantLinear", "in": 64, "out": 10, "bias": True, "planes": [0, 1], "B": 8,
        ...      "q": "centred"}]})
        >>> list(arch.tensors())
        [('1.bias', (10,), 32), ('1.codes', (10, 64), 2), ('1.scale', (10,), 32)]
        >>> type(arch.build()[1]).__name__
        'QuantLinear'
    """

    t: str
    fields: dict[str, Any] = field(default_factory=dict)
    kids: tuple[tuple[str, Layer | None], ...] = ()  # (attribute name, child or None) in module order

    def _weight_shape(self) -> tuple[int, ...]:
        f = self.fields
        if self.t in ("Conv2d", "QuantConv2d"):
            return (f["out"], f["in"] // f["g"], f["k"], f["k"])
        return (f["out"], f["in"])

    def own_tensors(self) -> list[Stored]:
        """This node's own stored tensors, keys relative to it, in ``state_dict`` order (parameters,
        then persistent buffers; BatchNorm's ``num_batches_tracked`` is not stored)."""
        f, t = self.fields, self.t
        if t in ("Conv2d", "Linear", "QuantConv2d", "QuantLinear"):
            bias = [("bias", (f["out"],), 32)] if f["bias"] else []
            if t.startswith("Quant"):  # bias is a parameter, codes and scale are buffers
                return [*bias, ("codes", self._weight_shape(), len(f["planes"])), ("scale", (f["out"],), 32)]
            return [("weight", self._weight_shape(), 32), *bias]
        if t == "BatchNorm2d":
            return [(name, (f["n"],), 32) for name in ("weight", "bias", "running_mean", "running_var")]
        if t == "ActQuant":
            return [("alpha", (), 32)]
        return []

    def tensors(self, prefix: str = "") -> Iterator[Stored]:
        """Every stored tensor of this subtree in ``state_dict`` order: what ``_stored`` lists for the
        modules of :meth:`build`, computed from the description alone."""
        for name, shape, bits in self.own_tensors():
            yield prefix + name, shape, bits
        for name, kid in self.kids:
            if kid is not None:
                yield from kid.tensors(f"{prefix}{name}.")

    def build(self) -> nn.Module:
        """The modules, holding placeholder tensors of the right shapes (a loader then loads the file's)."""
        f, t = self.fields, self.t
        kids = [None if k is None else k.build() for _, k in self.kids]
        if t == "ExportedModel":
            return ExportedModel(*kids)
        if t == "Sequential":
            return nn.Sequential(*kids)
        if t == "Residual":
            return Residual(*kids)
        if t == "Conv2d":
            return nn.Conv2d(f["in"], f["out"], f["k"], f["s"], f["p"], groups=f["g"], bias=f["bias"])
        if t == "Linear":
            return nn.Linear(f["in"], f["out"], bias=f["bias"])
        if t in ("QuantConv2d", "QuantLinear"):
            codes = torch.zeros(self._weight_shape(), dtype=code_dtype(len(f["planes"])))
            bias = torch.zeros(f["out"]) if f["bias"] else None
            quant = {"planes": f["planes"], "total_bits": f["B"], "scheme": f["q"]}
            if t == "QuantLinear":
                return QuantLinear(codes, torch.ones(f["out"]), bias, **quant)
            return QuantConv2d(
                codes, torch.ones(f["out"]), bias, stride=f["s"], padding=f["p"], groups=f["g"], **quant
            )
        if t == "ActQuant":
            return ActQuant(1.0, planes=f["planes"], total_bits=f["B"], signed=f["signed"], scheme=f["q"])
        if t == "BatchNorm2d":
            return nn.BatchNorm2d(f["n"], eps=f["eps"]).eval()
        return _SIMPLE[t]()


def parse_tree(node: object, where: str = "model", version: str = VERSION) -> Layer:
    """Check a :func:`to_tree` description and return it as :class:`Layer` s; ``ValueError`` if malformed.

    Checks the type and range of every field, group divisibility, bit-planes, and bounds the nesting
    (:data:`MAX_DEPTH`) and the number of layers (:data:`MAX_LAYERS`). Allocates no tensor.
    ``version`` is the file format's: a format-1 description has no scheme field (its quantized
    layers truncate); from format 2 every quantized layer names its scheme.
    """
    count = 0

    def parse(node: object, where: str, depth: int) -> Layer:
        nonlocal count
        count += 1
        if count > MAX_LAYERS:
            raise ValueError(f"more than {MAX_LAYERS} layers")
        if depth > MAX_DEPTH:
            raise ValueError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        c = _Check(node, where)
        t = node["t"]
        if t in ("ExportedModel", "Sequential"):
            kids = node.get("c")
            if not isinstance(kids, list) or (t == "ExportedModel" and depth > 0):
                raise ValueError(f"{where}: bad children")
            return Layer(
                t, {}, tuple((str(i), parse(k, f"{where}.{i}", depth + 1)) for i, k in enumerate(kids))
            )
        if t == "Residual":
            short = node.get("shortcut")
            body = parse(node.get("body"), f"{where}.body", depth + 1)
            shortcut = None if short is None else parse(short, f"{where}.shortcut", depth + 1)
            return Layer(t, {}, (("body", body), ("shortcut", shortcut)))
        f: dict[str, Any]
        if t in ("QuantConv2d", "Conv2d", "QuantLinear", "Linear"):
            f = {"in": c.int("in"), "out": c.int("out"), "bias": c.bool("bias")}
            if t.endswith("Conv2d"):
                f.update(g=c.int("g"), k=c.int("k", 1, 64), s=c.int("s", 1, 64), p=c.int("p", 0, 64))
                if f["in"] % f["g"] or f["out"] % f["g"]:
                    raise ValueError(
                        f"{where}: channels {f['in']}->{f['out']} not divisible by {f['g']} groups"
                    )
        elif t == "ActQuant":
            f = {"signed": c.bool("signed")}
        elif t == "BatchNorm2d":
            eps = node.get("eps")
            if type(eps) is not float or not 0 < eps < 1:
                raise ValueError(f"{where}: bad eps {eps!r}")
            f = {"n": c.int("n"), "eps": eps}
        elif t in _SIMPLE:
            f = {}
        else:
            raise ValueError(f"{where}: unknown module type {t!r}")
        if t.startswith("Quant") or t == "ActQuant":
            f["planes"], f["B"] = c.planes()
            f["q"] = "truncate" if version == "1" else c.choice("q", SCHEMES)
        return Layer(t, f)

    return parse(node, where, 0)


def from_tree(node: object, where: str = "model") -> nn.Module:
    """Rebuild modules (placeholder tensors) from :func:`to_tree` output; ``ValueError`` if malformed."""
    return parse_tree(node, where).build()


# -- tensors <-> blobs ------------------------------------------------------------------------------
def _bits_of(model: nn.Module) -> dict[str, int]:
    """``state_dict`` key of every codes buffer -> its bits per code."""
    return {
        f"{n}.codes" if n else "codes": m.bits
        for n, m in model.named_modules()
        if isinstance(m, (QuantConv2d, QuantLinear))
    }


def _stored(model: nn.Module) -> list[tuple[str, torch.Tensor, int]]:
    """The stored tensors in order: ``(key, tensor, bits)``, ``bits = 32`` for floats."""
    bits, out = _bits_of(model), []
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # training-only counter; eval BatchNorm does not read it
        if key in bits:
            out.append((key, t, bits[key]))
        elif t.dtype == torch.float32:
            out.append((key, t, 32))
        else:
            raise FileFormatError(f"cannot save tensor {key!r} of dtype {t.dtype}")
    return out


def ideal_size(model: nn.Module) -> int:
    """Ideal bytes of an exported model: ``sum(codes x bits) / 8 + 4 x float values``."""
    from fn3.export.user import Exported

    if isinstance(model, Exported):  # kept planes per quantized weight, 32-bit scales and floats
        total = 0
        for key, t in model.module.state_dict().items():
            q = model.quant.get(key)
            if key.endswith("num_batches_tracked"):
                continue
            total += t.numel() * 32 if q is None else t.numel() * len(q.planes) + q.scale.numel() * 32
        return total // 8
    return sum(t.numel() * b for _, t, b in _stored(model)) // 8


def save(exported: nn.Module, path: str | Path) -> Path:
    """Write ``exported`` (from :func:`fn3.export.export`) to ``path`` atomically; returns the file.

    ``path`` is a file (``.safetensors`` suggested) or an existing directory (then ``DIR/model.safetensors``).
    An export is written as format 3 (its recipe and tensors, :mod:`fn3.export.user`); an
    :class:`ExportedModel` loaded from a format-1/2 file is written back in format 2.
    """
    from fn3.export.user import Exported, save_user

    if isinstance(exported, Exported):  # format 3: the model's recipe and its tensors
        return save_user(exported, path)
    path = model_file(path, for_writing=True)
    codes, floats = [], []
    for _, t, bits in _stored(exported):
        if bits == 32:
            floats.append(t.detach().reshape(-1).numpy())
        else:
            codes.append(pack_codes(t, bits))
    blob_c = b"".join(codes)
    blob_f = np.concatenate(floats).astype("<f4").tobytes() if floats else b""
    meta = {"arch": to_tree(exported), "meta": getattr(exported, "meta", {})}
    blob_m = zlib.compress(json.dumps(meta, separators=(",", ":")).encode(), 9)
    tensors = [
        ("codes", "U8", [len(blob_c)], blob_c),
        ("floats", "F32", [len(blob_f) // 4], blob_f),
        ("meta", "U8", [len(blob_m)], blob_m),
    ]
    crc = {name: f"{zlib.crc32(data):08x}" for name, _, _, data in tensors}
    container.write(path, tensors, {"format": FORMAT, "version": VERSION, "crc32": json.dumps(crc)})
    return path


def model_file(path: str | Path, for_writing: bool = False) -> Path:
    """The file behind ``path``: itself, or ``DIR/model.safetensors`` for a directory."""
    p = Path(path)
    if p.is_dir():
        return p / MODEL_FILE
    if for_writing and not p.parent.is_dir():
        raise FileFormatError(f"{p}: directory {p.parent} does not exist")
    return p


def _listed(items: tuple[str, ...]) -> str:
    """``"1"``, ``"1 and 2"``, ``"1, 2 and 3"``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def check_header(r: container.Reader, fmt: str, versions: str | tuple[str, ...]) -> dict[str, str]:
    """Check format and version (one of ``versions``) of an open file; return its per-tensor CRCs."""
    got = r.metadata.get("format")
    if got != fmt:
        raise r.fail(f"format is {got!r}, expected {fmt!r}")
    versions = (versions,) if isinstance(versions, str) else versions
    if r.metadata.get("version") not in versions:
        raise r.fail(
            f"version {r.metadata.get('version')!r} is not supported (this fn3 reads "
            f"{_listed(versions)}; a newer fn3 may read it)"
        )
    if "crc32" not in r.metadata:
        raise r.fail("no crc32 metadata (every fn3 file stores a CRC-32 of its tensors)")
    crc = loads_untrusted(r.metadata["crc32"], r.path, "crc32 metadata")
    if not isinstance(crc, dict):
        raise r.fail("crc32 metadata is not a JSON object of tensor name -> CRC-32")
    return crc


def read_checked(r: container.Reader, name: str, crc: dict[str, str]) -> bytes:
    """All bytes of tensor ``name``, verified against its CRC-32."""
    data = r.read(name)
    if crc.get(name) != f"{zlib.crc32(data):08x}":
        raise r.fail(f"tensor {name!r} is corrupted (CRC-32 mismatch)")
    return data


def read_meta(r: container.Reader, data: bytes) -> dict:
    """Decompress (to at most :data:`MAX_META` bytes) and parse a JSON ``meta`` tensor."""
    unzip = zlib.decompressobj()
    try:
        raw = unzip.decompress(data, MAX_META)
    except zlib.error as err:
        raise r.fail(f"metadata is not valid zlib-compressed data ({one_line(err)})") from None
    if not unzip.eof:  # stopped at the size bound, or the compressed stream ends early
        problem = f"expands to more than {MAX_META} bytes" if len(raw) >= MAX_META else "is truncated"
        raise r.fail(f"compressed metadata {problem}")
    meta = loads_untrusted(raw, r.path, "metadata")
    if not isinstance(meta, dict):
        raise r.fail("metadata is not a JSON object")
    return meta


_TENSORS = {"codes": "U8", "floats": "F32", "meta": "U8"}  # the tensors of a file, and their dtypes


def check_entries(r: container.Reader, tensors: Mapping[str, str]) -> None:
    """Refuse a file whose tensors are not exactly ``tensors`` (name -> dtype), each 1-D."""
    if set(r.entries) != set(tensors):
        raise r.fail(f"expected tensors {', '.join(tensors)}; found {sorted(r.entries)}")
    for name, dtype in tensors.items():
        e = r.entries[name]
        if e.dtype != dtype or len(e.shape) != 1:
            raise r.fail(f"tensor {name!r} is {e.dtype}{e.shape}, expected a 1-D {dtype} tensor")


def load_exported(r: container.Reader) -> ExportedModel:
    """Rebuild an exported model from an open ``fn3.exported`` file.

    Every size is checked before anything is allocated: the description is parsed into
    :class:`Layer` s, the shapes of the tensors it implies are summed and compared with the tensor
    sizes of the file's header (which the reader has checked against the file's length). Only a file
    whose description and data agree byte for byte gets its modules built.
    """
    crc = check_header(r, FORMAT, READS)
    check_entries(r, _TENSORS)
    meta = read_meta(r, read_checked(r, "meta", crc))
    try:
        arch = parse_tree(meta.get("arch"), version=r.metadata["version"])
    except (ValueError, TypeError, RecursionError) as err:
        raise r.fail(f"bad architecture: {err}") from None
    if arch.t != "ExportedModel" or not isinstance(meta.get("meta"), dict):
        raise r.fail("the architecture root must be an ExportedModel with a meta object")
    expected = list(arch.tensors())
    want_c = sum(packed_size(math.prod(shape), bits) for _, shape, bits in expected if bits != 32)
    want_f = sum(math.prod(shape) for _, shape, bits in expected if bits == 32)
    have_c, have_f = r.entries["codes"].shape[0], r.entries["floats"].shape[0]
    if (have_c, have_f) != (want_c, want_f):
        raise r.fail(
            f"tensor sizes do not match the architecture: {have_c} code bytes and "
            f"{have_f} floats, expected {want_c} and {want_f}"
        )
    blob_c, blob_f = read_checked(r, "codes", crc), read_checked(r, "floats", crc)
    model = arch.build()  # now bounded: its tensors hold no more values than the file holds
    model.meta = meta["meta"]
    stored = _stored(model)
    if [(key, tuple(t.shape), bits) for key, t, bits in stored] != expected:
        raise RuntimeError("fn3 bug: Layer.tensors() disagrees with the modules Layer.build() makes")
    floats = torch.from_numpy(np.frombuffer(blob_f, dtype="<f4").astype(np.float32))
    state, oc, of = {}, 0, 0
    for key, t, bits in stored:
        if bits == 32:
            state[key] = floats[of : of + t.numel()].reshape(t.shape)
            of += t.numel()
        else:
            n = packed_size(t.numel(), bits)
            state[key] = unpack_codes(blob_c[oc : oc + n], bits, t.numel()).reshape(t.shape)
            oc += n
    model.load_state_dict(state, strict=False)
    return model.eval().requires_grad_(False)
