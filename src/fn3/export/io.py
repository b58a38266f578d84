"""`save` / `load`: an exported model as one safetensors file, codes bit-packed, no pickle.

File layout (``format: fn3.exported``, ``version: 1``), a plain safetensors file with three tensors:

* ``codes`` (U8): the weight codes of every quantized layer, ``c`` bits each, packed MSB first
  (each layer starts on a byte boundary), in ``state_dict`` order;
* ``floats`` (F32): every float tensor (float weights, biases, scales, BatchNorm parameters and
  statistics, activation clipping levels), flattened and concatenated in ``state_dict`` order;
* ``meta`` (U8): UTF-8 JSON, zlib-compressed: the architecture (a tree of a dozen module types with
  their sizes; rebuilt by fn3, never executed), the spec and the export metadata.

The header's ``__metadata__`` holds ``format``, ``version`` and a CRC-32 of every tensor. Tensor names
and shapes are not stored per layer: they follow from the architecture, which keeps the file within a
few hundred bytes of the ideal ``sum(kept weights x bits) / 8 + 4 x float values`` even for a tiny
sub-model. Loading rebuilds the modules from the architecture, checks that the byte counts match it
exactly and that every CRC matches, and raises :class:`~fn3.errors.FileFormatError` naming the file
and the problem otherwise (truncated, corrupted, wrong format or version, mismatched sizes).

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
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fn3.errors import FileFormatError
from fn3.export import container
from fn3.export.pack import pack_codes, packed_size, unpack_codes
from fn3.export.qmodules import ActQuant, ExportedModel, QuantConv2d, QuantLinear, Residual, code_dtype

__all__ = ["FORMAT", "VERSION", "ideal_size", "load_exported", "model_file", "save", "to_tree"]

FORMAT, VERSION = "fn3.exported", "1"
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
        }
    if isinstance(m, QuantLinear):
        return {
            "t": "QuantLinear",
            "in": m.in_features,
            "out": m.out_features,
            "bias": m.bias is not None,
            "planes": list(m.planes),
            "B": m.total_bits,
        }
    if isinstance(m, ActQuant):
        return {"t": "ActQuant", "planes": list(m.planes), "B": m.total_bits, "signed": m.signed}
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


def from_tree(node: object, where: str = "model") -> nn.Module:
    """Rebuild modules (placeholder tensors) from :func:`to_tree` output; ``ValueError`` if malformed."""
    c = _Check(node, where)
    t = node["t"]
    if t in ("ExportedModel", "Sequential"):
        kids = node.get("c")
        if not isinstance(kids, list) or (t == "ExportedModel" and where != "model"):
            raise ValueError(f"{where}: bad children")
        mods = [from_tree(k, f"{where}.{i}") for i, k in enumerate(kids)]
        return ExportedModel(*mods) if t == "ExportedModel" else nn.Sequential(*mods)
    if t == "Residual":
        short = node.get("shortcut")
        return Residual(
            from_tree(node.get("body"), f"{where}.body"),
            None if short is None else from_tree(short, f"{where}.shortcut"),
        )
    if t in ("QuantConv2d", "Conv2d"):
        i, o, k, g = c.int("in"), c.int("out"), c.int("k", 1, 64), c.int("g")
        s, p, bias = c.int("s", 1, 64), c.int("p", 0, 64), c.bool("bias")
        if i % g or o % g:
            raise ValueError(f"{where}: channels {i}->{o} not divisible by {g} groups")
        if t == "Conv2d":
            return nn.Conv2d(i, o, k, s, p, groups=g, bias=bias)
        planes, b = c.planes()
        codes = torch.zeros(o, i // g, k, k, dtype=code_dtype(len(planes)))
        return QuantConv2d(
            codes,
            torch.ones(o),
            torch.zeros(o) if bias else None,
            stride=s,
            padding=p,
            groups=g,
            planes=planes,
            total_bits=b,
        )
    if t in ("QuantLinear", "Linear"):
        i, o, bias = c.int("in"), c.int("out"), c.bool("bias")
        if t == "Linear":
            return nn.Linear(i, o, bias=bias)
        planes, b = c.planes()
        return QuantLinear(
            torch.zeros(o, i, dtype=code_dtype(len(planes))),
            torch.ones(o),
            torch.zeros(o) if bias else None,
            planes=planes,
            total_bits=b,
        )
    if t == "ActQuant":
        planes, b = c.planes()
        return ActQuant(1.0, planes=planes, total_bits=b, signed=c.bool("signed"))
    if t == "BatchNorm2d":
        eps = node.get("eps")
        if type(eps) is not float or not 0 < eps < 1:
            raise ValueError(f"{where}: bad eps {eps!r}")
        return nn.BatchNorm2d(c.int("n"), eps=eps).eval()
    simple = {
        "ReLU": nn.ReLU,
        "Flatten": nn.Flatten,
        "Identity": nn.Identity,
        "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(1),
    }
    if t in simple:
        return simple[t]()
    raise ValueError(f"{where}: unknown module type {t!r}")


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
    return sum(t.numel() * b for _, t, b in _stored(model)) // 8


def save(exported: nn.Module, path: str | Path) -> Path:
    """Write ``exported`` (from :func:`fn3.export.export`) to ``path`` atomically; returns the file.

    ``path`` is a file (``.safetensors`` suggested) or an existing directory (then ``DIR/model.safetensors``).
    """
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


def check_header(r: container.Reader, fmt: str, version: str) -> dict[str, str]:
    """Check format and version of an open file and return its per-tensor CRCs."""
    got = r.metadata.get("format")
    if got != fmt:
        raise r.fail(f"format is {got!r}, expected {fmt!r}")
    if r.metadata.get("version") != version:
        raise r.fail(f"version {r.metadata.get('version')!r} is not supported (this fn3 reads {version})")
    try:
        crc = json.loads(r.metadata.get("crc32", ""))
        assert isinstance(crc, dict)
    except (json.JSONDecodeError, AssertionError):
        raise r.fail("missing or malformed crc32 metadata") from None
    return crc


def read_checked(r: container.Reader, name: str, crc: dict[str, str]) -> bytes:
    """All bytes of tensor ``name``, verified against its CRC-32."""
    data = r.read(name)
    if crc.get(name) != f"{zlib.crc32(data):08x}":
        raise r.fail(f"tensor {name!r} is corrupted (CRC-32 mismatch)")
    return data


def read_meta(r: container.Reader, data: bytes) -> dict:
    """Decompress and parse a JSON ``meta`` tensor."""
    try:
        meta = json.loads(zlib.decompress(data))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise r.fail(f"metadata is not valid compressed JSON ({err})") from None
    if not isinstance(meta, dict):
        raise r.fail("metadata is not a JSON object")
    return meta


def load_exported(r: container.Reader) -> ExportedModel:
    """Rebuild an exported model from an open ``fn3.exported`` file."""
    crc = check_header(r, FORMAT, VERSION)
    if set(r.entries) != {"codes", "floats", "meta"}:
        raise r.fail(f"expected tensors codes, floats, meta; found {sorted(r.entries)}")
    meta = read_meta(r, read_checked(r, "meta", crc))
    try:
        model = from_tree(meta.get("arch"))
    except (ValueError, TypeError, RecursionError) as err:
        raise r.fail(f"bad architecture: {err}") from None
    if not isinstance(model, ExportedModel) or not isinstance(meta.get("meta"), dict):
        raise r.fail("the architecture root must be an ExportedModel with a meta object")
    model.meta = meta["meta"]
    blob_c, blob_f = read_checked(r, "codes", crc), read_checked(r, "floats", crc)
    stored = _stored(model)
    want_c = sum(packed_size(t.numel(), b) for _, t, b in stored if b != 32)
    want_f = sum(t.numel() for _, t, b in stored if b == 32)
    if len(blob_c) != want_c or len(blob_f) != 4 * want_f:
        raise r.fail(
            f"tensor sizes do not match the architecture: {len(blob_c)} code bytes and "
            f"{len(blob_f) // 4} floats, expected {want_c} and {want_f}"
        )
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
