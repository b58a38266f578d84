"""Export, save and load a model of your own (one :func:`fn3.nest_` made from a factory).

A built-in model is exported into fn3's own module vocabulary (:mod:`fn3.export.slice`). A model of
your own keeps its own classes and forward: :func:`export_user` is
:func:`~fn3.export.submodel.extract_submodel` (copy, replace each nested leaf by its plain form)
wrapped in a :class:`Exported` that remembers where it came from. Its files store no code and no
module tree, only the recipe and the tensors:

* the JSON header (zlib-compressed ``meta`` tensor) holds the factory reference, its arguments, the
  input shape and nesting levels (:class:`~fn3.convert.user.UserModel`), the space, the spec, the
  quantization scheme, the export metadata, and the list of stored tensors (key, shape, coding);
* ``codes`` (U8): every quantized weight as its kept bit-planes, ``c`` bits per weight, packed
  (:func:`fn3.export.pack.pack_codes`); ``floats`` (F32): everything else, and one scale per output
  row of each quantized weight.

Loading imports the factory, rebuilds and nests the model exactly as its run did (the
:class:`~fn3.convert.user.UserModel` recipe is deterministic), extracts the spec's structure, checks
that every stored tensor has the key and shape that structure expects (before reading the data),
and fills it in. So **loading imports the factory's module**: load files whose factory you trust, as
you would import their package.

Two files: ``fn3.user-exported`` holds one sub-model (:func:`save_user` / :func:`load_user`);
``fn3.user-nested`` holds the whole nested model and serves every spec (:func:`save_user_nested` /
:func:`load_user_nested`). :func:`fn3.export.export`, :func:`fn3.export.save`, :func:`fn3.export.load`,
:func:`fn3.export.save_nested` and :func:`fn3.export.load_nested` call these for a model of your own.

The nested file (version 2) is laid out like the built-in nested file (:mod:`fn3.export.nested`): a
``meta`` tensor (the recipe, the space, and the *records*: key, kind, shape, governing axes and bits
of every stored tensor) and one ``data`` tensor, every tensor stored once in importance order, cut
into tiles by the axes of its leading dimensions, quantized weights as their full ``B``-bit codes in
bit-planes, most significant first, each followed by its per-output-row scale (the step of the full
weight, as training computes it). The records come from the layer protocol of the nested model
(:func:`fn3.export.layout.protocol_records`), not from a hand-written description, so loading checks
them against the model the recipe rebuilds to before reading any data. Then, for a spec, it seeks to
and reads only the kept tiles and kept bit-planes (:class:`fn3.export.tiles.TileFile`; a dropped
residual block's tensors are not read at all), places them, and extracts: the sub-model equals
:func:`export_user` of the model the file was saved from (a quantized weight is built straight from
its kept codes and scales, since a weight's scale is the step of its *full* row, which a partial read
does not hold). :func:`fn3.export.load_nested` reports the bytes read. As in the built-in nested file,
only the header is CRC-checked (a partial read cannot checksum the bytes it skips). A version-1 file
(recipe and every tensor, read whole) still loads.

Example:
    >>> import os, tempfile, torch, fn3
    >>> from fn3.convert.user import UserModel, build_user_model
    >>> desc = UserModel("fn3.export.user:example_net", {"width": 8}, (1, 8, 8), ("channels", "bits"))
    >>> model = build_user_model(desc)[0].eval()
    >>> spec = fn3.space(model).uniform({"channels": 0.5, "bits": 4})
    >>> small = fn3.export.export(model, spec)
    >>> path = fn3.export.save(small, os.path.join(tempfile.mkdtemp(), "model.safetensors"))
    >>> x = torch.randn(2, 1, 8, 8)
    >>> bool((fn3.export.load(path)(x) - small(x)).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fn3.errors import ConfigError, FileFormatError, SpecError
from fn3.export import container
from fn3.export.layout import SCALE, Record, kept_blocks, protocol_records, records_from_json, records_to_json
from fn3.export.pack import from_planes, pack_codes, packed_size, unpack_codes
from fn3.export.submodel import extract_coded
from fn3.export.tiles import TileFile, kept_index, record_bytes
from fn3.models.info import model_info
from fn3.nest import active
from fn3.nest import space as model_space
from fn3.nn.act_quant import plan_in_place
from fn3.nn.base import ACT_CLIPS, NestedModule, act_clip_of, set_act_clip, set_quant_scheme, set_weight_clip
from fn3.nn.functional import SCHEMES, grid_values, weight_codes
from fn3.nn.protocol import QuantWeight, is_gate, is_leaf
from fn3.spec import Space, Spec

__all__ = [
    "NESTED_FORMAT",
    "NESTED_VERSION",
    "SUB_FORMAT",
    "Exported",
    "UserExport",
    "example_net",
    "export_user",
    "is_user_model",
    "load_user",
    "load_user_nested",
    "save_user",
    "save_user_nested",
]

SUB_FORMAT, NESTED_FORMAT = "fn3.exported", "fn3.nested"
#: Version 3 of both formats is the recipe form this module writes, for every model. Versions 1 and 2
#: are fn3's module-tree vocabulary (built-in models only; :mod:`fn3.export.io`,
#: :mod:`fn3.export.nested`), still read.
VERSION = NESTED_VERSION = "3"
#: The names files of a model of your own had before version 3, still read: a sub-model file of
#: version 1 (the layout of version 3), and a nested file of version 1 (the recipe and every tensor,
#: read whole) or 2 (the tiled layout of version 3).
OLD_SUB_FORMAT, OLD_NESTED_FORMAT = "fn3.user-exported", "fn3.user-nested"
_TREE_VERSIONS = ("1", "2")


def is_recipe_file(r: container.Reader) -> bool:
    """True for a file this module reads: version 3 of ``fn3.exported`` / ``fn3.nested`` (or a newer,
    unknown version: the refusal then names the versions fn3 reads), or the former names for a model
    of your own. Versions 1 and 2 go to the module-tree readers."""
    fmt, version = r.metadata.get("format"), r.metadata.get("version")
    if fmt in (OLD_SUB_FORMAT, OLD_NESTED_FORMAT):
        return True
    return fmt in (SUB_FORMAT, NESTED_FORMAT) and version not in _TREE_VERSIONS
_TENSORS = {"codes": "U8", "floats": "F32", "meta": "U8"}  # sub-model file, nested file version 1
_NESTED_TENSORS = {"meta": "U8", "data": "U8"}  # nested file version 2


def is_user_model(model: nn.Module) -> bool:
    """True for a nested model built from a factory (:func:`fn3.models.info.model_info`)."""
    info = model_info(model)
    return info is not None and info.is_user_model


def example_net(width: int = 8) -> nn.Module:
    """A tiny CNN for 1-channel 8x8 images (the factory of this module's example)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


class Exported(nn.Module):
    """An exported sub-model: ``module``, the nested model's own classes with each leaf extracted.

    ``meta`` is the export metadata (spec, model description, input shape, ...); ``quant`` maps the
    ``state_dict`` key of every quantized weight of ``module`` to its coding, so a file stores it as
    bit-packed codes.
    """

    def __init__(self, module: nn.Module, meta: dict, quant: Mapping[str, QuantWeight]):
        super().__init__()
        self.module = module
        self.meta = meta
        self.quant = dict(quant)
        self._planned = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self._planned:  # which quantized inputs may be overwritten (once, at the first call)
            self._planned = True
            plan_in_place(self.module)
        return self.module(*args, **kwargs)


#: The name :class:`Exported` had while only models of your own were exported this way.
UserExport = Exported


def _scheme(model: nn.Module) -> str:
    schemes = {m.quant_scheme for m in model.modules() if isinstance(m, NestedModule)}
    return schemes.pop() if len(schemes) == 1 else "centred"


def _weight_clip(model: nn.Module) -> float:
    clips = {m.weight_clip for m in model.modules() if isinstance(m, NestedModule)}
    return clips.pop() if len(clips) == 1 else 0.0


def _quant_info(model: nn.Module) -> dict[str, Any]:
    """The header's quantization fields: the scheme, ``act_clip`` when it is not the shared level and
    ``weight_clip`` when it is not the largest magnitude (so headers of models with neither read as
    before)."""
    clip, wclip = act_clip_of(model), _weight_clip(model)
    return {"scheme": _scheme(model), **({"act_clip": clip} if clip != "shared" else {}),
            **({"weight_clip": wclip} if wclip else {})}


@torch.no_grad()
def export_user(model: nn.Module, spec: Spec | None = None, *, meta: Mapping | None = None) -> Exported:
    """Sub-model ``spec`` of any nested model, as a :class:`Exported` (eval mode)."""
    return _export_coded(model, spec, meta)[0]


def _export_coded(
    model: nn.Module, spec: Spec | None, meta: Mapping | None = None
) -> tuple[Exported, dict[str, tuple[str, QuantWeight]]]:
    """:func:`export_user`, and ``extracted weight key -> (nested weight key, coding)``."""
    from fn3.export.slice import export_meta

    sp = model_space(model)
    spec = sp.largest() if spec is None else sp.validate(spec)
    sub, coded = extract_coded(model, spec)
    quant = {key: q for key, (_, q) in coded.items()}
    # Each quantized weight as a file gives it back: the value of its codes (_weight_of), so that
    # save -> load, and a read from the nested file, are bit-exact (the extracted value can differ
    # from it in the last float bit: another order of the same operations).
    params = sub.state_dict()
    for key, q in quant.items():
        params[key].copy_(_on_grid(params[key], q)[1])
    info = export_meta(model, spec, meta)
    info.update(space=sp.to_dict(), **_quant_info(model))
    recipe = model_info(model)
    if recipe is not None:  # the recipe a file needs to rebuild it
        info["model"] = dict(recipe.config)
        if recipe.input_shape is not None:
            info["input_shape"] = list(recipe.input_shape)
    else:
        info.pop("model", None)
    return Exported(sub, info, quant).eval().requires_grad_(False), coded


# -- tensors <-> file ------------------------------------------------------------------------------
def _codes_of(w: torch.Tensor, q: QuantWeight) -> torch.Tensor:
    """The kept-plane codes of an extracted quantized weight (inverse of :func:`_weight_of`)."""
    return _on_grid(w, q)[0]


def _on_grid(w: torch.Tensor, q: QuantWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, value)`` of an extracted quantized weight: its kept-plane codes, and the float
    value a file gives back for them (``w`` up to the last float bit; checked)."""
    big = q.total_bits
    full = (1 << big) - 1
    kept = sum(1 << (big - 1 - p) for p in q.planes)
    offset = (full & ~kept) / 2.0 if q.scheme == "centred" else 0.0  # the cell centre grid_values adds
    s = q.scale.reshape(-1, *([1] * (w.dim() - 1)))
    t = torch.round(w / s - offset).to(torch.int64)  # the truncated B-bit code: dropped planes are 0
    u = t & full
    c = len(q.planes)
    out = torch.zeros_like(u)
    for j, p in enumerate(q.planes):
        out |= ((u >> (big - 1 - p)) & 1) << (c - 1 - j)
    codes = out - ((out >> (c - 1)) & 1) * (1 << c)
    value = _weight_of(codes, q)
    if not torch.allclose(value, w, rtol=1e-5, atol=1e-7):
        raise RuntimeError("fn3 bug: an extracted quantized weight is not on its grid")
    return codes, value


def _weight_of(codes: torch.Tensor, q: QuantWeight) -> torch.Tensor:
    """The float weight of kept-plane ``codes`` (signed ``c``-bit integers)."""
    big, c = q.total_bits, len(q.planes)
    u = codes.to(torch.int64) & ((1 << c) - 1)
    t = torch.zeros_like(u)
    for j, p in enumerate(q.planes):  # bit j of the c-bit code is plane p of the B-bit code
        t |= ((u >> (c - 1 - j)) & 1) << (big - 1 - p)
    t = t - ((t >> (big - 1)) & 1) * (1 << big)
    mask = sum(1 << (big - 1 - p) for p in q.planes)
    values = grid_values(t.to(torch.float32), big, c, mask, q.scheme)
    return values * q.scale.reshape(-1, *([1] * (codes.dim() - 1)))


def _entries(state: Mapping[str, torch.Tensor], quant: Mapping[str, QuantWeight]) -> list[dict]:
    """The stored tensors of ``state``, in order (BatchNorm's step counter is not stored)."""
    out = []
    for key, t in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if t.dtype != torch.float32:
            raise ConfigError(f"cannot save tensor {key!r} of dtype {t.dtype}: fn3 files hold float32")
        e: dict[str, Any] = {"key": key, "shape": list(t.shape)}
        q = quant.get(key)
        if q is not None:
            e.update(B=q.total_bits, planes=list(q.planes), q=q.scheme)
        out.append(e)
    return out


def _write(path: Path, fmt: str, header: dict, state: Mapping[str, torch.Tensor],
           quant: Mapping[str, QuantWeight], version: str = VERSION) -> Path:  # fmt: skip
    entries = _entries(state, quant)
    codes, floats = [], []
    for e in entries:
        t = state[e["key"]].detach()
        q = quant.get(e["key"])
        if q is None:
            floats.append(t.reshape(-1).numpy())
        else:
            codes.append(pack_codes(_codes_of(t, q), len(q.planes)))
            floats.append(q.scale.reshape(-1).numpy())
    blob_c = b"".join(codes)
    blob_f = np.concatenate(floats).astype("<f4").tobytes() if floats else b""
    blob_m = zlib.compress(json.dumps({**header, "tensors": entries}, separators=(",", ":")).encode(), 9)
    tensors = [("codes", "U8", [len(blob_c)], blob_c), ("floats", "F32", [len(blob_f) // 4], blob_f),
               ("meta", "U8", [len(blob_m)], blob_m)]  # fmt: skip
    crc = {name: f"{zlib.crc32(data):08x}" for name, _, _, data in tensors}
    container.write(path, tensors, {"format": fmt, "version": version, "crc32": json.dumps(crc)})
    return path


def _read_header(r: container.Reader, fmt: str) -> tuple[dict, dict[str, str]]:
    """The checked header of a sub-model file (``fmt = SUB_FORMAT``) or a nested file of any version
    this module reads."""
    from fn3.export.io import check_entries, check_header, read_checked, read_meta

    nested = fmt == NESTED_FORMAT
    if r.metadata.get("format") in (OLD_SUB_FORMAT, OLD_NESTED_FORMAT):
        crc = check_header(r, OLD_NESTED_FORMAT if nested else OLD_SUB_FORMAT, ("1", "2") if nested else "1")
    else:  # versions 1 and 2 never get here (is_recipe_file): the message lists every version read
        crc = check_header(r, fmt, (*_TREE_VERSIONS, VERSION))
    tiled = _tiled(r)
    check_entries(r, _NESTED_TENSORS if tiled else _TENSORS)
    header = read_meta(r, read_checked(r, "meta", crc))
    listed = "records" if tiled else "tensors"
    if not isinstance(header.get(listed), list) or not isinstance(header.get("meta"), dict):
        raise r.fail(f"bad header: {listed!r} must be a list and 'meta' an object")
    return header, crc


def _tiled(r: container.Reader) -> bool:
    """True for a nested file in tiles and bit-planes (read in parts), false for one read whole."""
    fmt, version = r.metadata.get("format"), r.metadata.get("version")
    return fmt == NESTED_FORMAT or (fmt == OLD_NESTED_FORMAT and version == "2")


def _rebuild(r: container.Reader, meta: dict) -> tuple[nn.Module, Space]:
    """The nested model of the file's recipe, its weights not loaded; checks the space matches.

    The recipe is a factory's (:class:`~fn3.convert.user.UserModel`: import it, build, nest) or a
    registered model's (its ``fn3.create_model`` arguments).
    """
    from fn3.convert.user import UserModel, build_user_model

    recipe = meta.get("model") or {}
    if meta.get("scheme") not in SCHEMES:
        raise r.fail(f"bad header: quantization scheme {meta.get('scheme')!r}")
    if meta.get("act_clip", "shared") not in ACT_CLIPS:
        raise r.fail(f"bad header: activation clipping {meta.get('act_clip')!r}")
    wclip = meta.get("weight_clip", 0.0)
    if isinstance(wclip, bool) or not isinstance(wclip, (int, float)) or not 0 <= wclip <= 1e6:
        raise r.fail(f"bad header: weight range {wclip!r}")
    try:
        if _is_factory_recipe(recipe):
            desc = UserModel.from_dict(recipe)
            model, source = build_user_model(desc, fresh=False)[0], f"the factory {desc.factory!r}"
        else:
            _check_model_size(r, recipe)
            model, source = _registry_model(recipe), f"the registered model {recipe.get('name')!r}"
    except ConfigError as err:
        raise r.fail(f"cannot rebuild its model ({err})") from None
    set_quant_scheme(model, meta["scheme"])
    try:
        set_act_clip(model, meta.get("act_clip", "shared"))  # a model of your own set it after nesting
        set_weight_clip(model, float(wclip))
    except ConfigError as err:
        raise r.fail(f"bad header: {err}") from None
    sp = model_space(model)
    if sp.to_dict() != meta.get("space"):
        raise r.fail(f"{source} now builds another nested model than the one saved")
    return model.eval(), sp


def _is_factory_recipe(recipe: object) -> bool:
    from fn3.convert.user import FORMAT

    return isinstance(recipe, Mapping) and recipe.get("format") == FORMAT


#: A file of ``n`` bytes may rebuild a model of at most ``PARAMS_PER_BYTE * n + 2^20`` parameters: a
#: 2-bit sub-model of a quarter of the channels stores ~1/64 byte per parameter of its full model.
PARAMS_PER_BYTE = 256


def _check_model_size(r: container.Reader, recipe: Mapping) -> None:
    """Refuse a recipe whose model is far larger than the file (a crafted header must not make fn3
    allocate gigabytes): the model is first built on the ``meta`` device, which allocates nothing."""
    with torch.device("meta"):
        try:
            n = sum(p.numel() for p in _registry_model(recipe).parameters())
        except ConfigError:
            return  # building it for real gives the error
    if n > PARAMS_PER_BYTE * r.size + (1 << 20):
        raise r.fail(f"its recipe builds a model of {n:,} parameters, more than a file of "
                     f"{r.size:,} bytes can hold: the header is damaged or crafted")


def _registry_model(recipe: Mapping) -> nn.Module:
    """``fn3.create_model(**recipe)``: a registered model from the arguments it recorded."""
    from fn3.models.registry import create_model, list_models

    name = recipe.get("name")
    if not isinstance(name, str) or name not in list_models():
        raise ConfigError(f"its model {name!r} is not a registered model (see `fn3 info --models`)")
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recipe.items() if k != "name"}
    try:
        return create_model(name, **args)
    except TypeError as err:  # an argument this version of the model does not take
        raise ConfigError(f"bad arguments for model {name!r}: {err}") from None


def _fill(
    r: container.Reader, header: dict, crc: dict[str, str], state: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, QuantWeight]]:
    """The file's tensors for ``state``'s keys (checked against the header *before* reading the data),
    and the coding of its quantized weights."""
    from fn3.export.io import read_checked

    want = _entries(state, {})
    got = header["tensors"]
    if not all(isinstance(e, dict) for e in got) or [(e.get("key"), e.get("shape")) for e in got] != [
        (e["key"], e["shape"]) for e in want
    ]:
        raise r.fail("its tensors do not match the structure its model rebuilds to (keys or shapes differ)")
    n_codes = n_floats = 0
    for e in got:
        n = math.prod(e["shape"])
        if "B" in e:
            ok = type(e["B"]) is int and 1 <= e["B"] <= 16 and e.get("q") in SCHEMES
            planes = e.get("planes")
            ok = ok and isinstance(planes, list) and planes and all(type(p) is int for p in planes)
            ok = ok and planes == sorted(set(planes))
            if not ok or planes[0] != 0 or planes[-1] >= e["B"] or len(e["shape"]) < 1:
                raise r.fail(f"bad coding of tensor {e['key']!r}")
            n_codes += packed_size(n, len(planes))
            n_floats += e["shape"][0]
        else:
            n_floats += n
    if (r.entries["codes"].shape[0], r.entries["floats"].shape[0]) != (n_codes, n_floats):
        raise r.fail("tensor sizes do not match its header")
    blob_c, blob_f = read_checked(r, "codes", crc), read_checked(r, "floats", crc)
    floats = torch.from_numpy(np.frombuffer(blob_f, dtype="<f4").astype(np.float32))
    out, quant, oc, of = {}, {}, 0, 0
    for e in got:
        shape, n = tuple(e["shape"]), math.prod(e["shape"])
        if "B" in e:
            c = len(e["planes"])
            k = packed_size(n, c)
            codes = unpack_codes(blob_c[oc : oc + k], c, n).reshape(shape)
            scale = floats[of : of + shape[0]]
            oc, of = oc + k, of + shape[0]
            q = quant[e["key"]] = QuantWeight(scale, e["B"], tuple(e["planes"]), e["q"])
            out[e["key"]] = _weight_of(codes, q)
        else:
            out[e["key"]] = floats[of : of + n].reshape(shape)
            of += n
    return out, quant


def _file(path: str | Path, name: str) -> Path:
    p = Path(path)
    if p.is_dir():
        return p / name
    if not p.parent.is_dir():
        raise FileFormatError(f"{p}: directory {p.parent} does not exist")
    return p


def _check_recipe(meta: Mapping) -> None:
    """Refuse to save a model no recipe can rebuild (one built by hand, or ``fn3.nest_``-ed in place)."""
    recipe = meta.get("model")
    if isinstance(recipe, Mapping) and (_is_factory_recipe(recipe) or isinstance(recipe.get("name"), str)):
        return
    raise ConfigError(
        "this model has no recipe to rebuild it from, so fn3 cannot save it: build it with "
        "fn3.create_model or fn3.convert.user.build_user_model (as `fn3 train --model pkg.mod:factory` "
        "does), or save its state_dict with safetensors yourself"
    )


def save_user(exported: Exported, path: str | Path) -> Path:
    """Write a :class:`Exported` to ``path`` (a file, or a directory: ``DIR/model.safetensors``)."""
    _check_recipe(exported.meta)
    path = _file(path, "model.safetensors")
    return _write(path, SUB_FORMAT, {"meta": exported.meta}, exported.module.state_dict(), exported.quant)


def load_user(r: container.Reader) -> Exported:
    """Rebuild a :class:`Exported` from an open ``fn3.user-exported`` file."""
    header, crc = _read_header(r, SUB_FORMAT)
    meta = header["meta"]
    model, sp = _rebuild(r, meta)
    try:
        spec = sp.validate(Spec.from_dict(meta.get("spec") or {}, sp))
    except (SpecError, TypeError, ValueError) as err:
        raise r.fail(f"bad spec: {err}") from None
    shell = export_user(model, spec)
    state, shell.quant = _fill(r, header, crc, shell.module.state_dict())
    shell.module.load_state_dict(state, strict=False)
    shell.meta = meta
    return shell.eval().requires_grad_(False)


def _nested_info(model: nn.Module, meta: dict | None) -> dict:
    """The export metadata of a nested file: the recipe, the space, the scheme, no spec."""
    from fn3.export.slice import export_meta

    sp = model_space(model)
    info = export_meta(model, sp.largest(), meta)
    info.pop("spec", None)
    recipe = model_info(model)
    info.update(model=dict(recipe.config), space=sp.to_dict(), **_quant_info(model))
    if recipe.input_shape is not None:
        info["input_shape"] = list(recipe.input_shape)
    return info


def save_user_nested(model: nn.Module, path: str | Path, *, meta: dict | None = None) -> Path:
    """Write the whole nested model of your own to one file (version 2: tiles and bit-planes).

    ``path`` is a file or an existing directory (then ``DIR/nested.safetensors``). Every tensor is
    stored once as the records of :func:`fn3.export.layout.protocol_records` say; a quantized weight as
    the ``B``-bit codes training rounds it to (``weight_codes`` with the per-row step of the full
    weight), the step stored beside it.
    """
    if model_info(model) is None:
        _check_recipe({})
    path = _file(path, "nested.safetensors")
    sp = model_space(model)
    try:
        recs = protocol_records(model)
    except ValueError as err:  # a leaf slicing a dimension in a way tiles cannot describe
        raise ConfigError(f"fn3 cannot lay this model out in a nested file: {err}") from None
    state, quant = model.state_dict(), _full_quant(model)
    scales: dict[str, torch.Tensor] = {}
    chunks = []
    for rec in recs:
        if rec.kind == "planes":
            w = state[rec.key].detach()  # (out, ...)
            scales[rec.key + SCALE] = quant[rec.key].scale  # (out,): the full weight's step
            t = weight_codes(w, scales[rec.key + SCALE], rec.bits).to(torch.int64)
        elif rec.key in scales:
            t = scales.pop(rec.key)
        else:
            t = state[rec.key]
            if t.dtype != torch.float32:
                raise ConfigError(
                    f"cannot save tensor {rec.key!r} of dtype {t.dtype}: fn3 files hold float32"
                )
        chunks.append(record_bytes(rec, t, sp))
    data = b"".join(chunks)
    header = {"meta": _nested_info(model, meta), "records": records_to_json(recs)}
    blob_m = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    tensors = [("meta", "U8", [len(blob_m)], blob_m), ("data", "U8", [len(data)], data)]
    crc = json.dumps({"meta": f"{zlib.crc32(blob_m):08x}"})  # the data is read in parts: not summed
    container.write(path, tensors, {"format": NESTED_FORMAT, "version": NESTED_VERSION, "crc32": crc})
    return path


def _full_quant(model: nn.Module) -> dict[str, QuantWeight]:
    """How each quantized leaf codes its full weight, by state key (``<leaf>.weight``): the leaves'
    own ``fn3_quant_weight()`` at the largest sub-model, so the step stored is the one training used
    (its range rule, ``weight_clip``, is the leaf's business)."""
    quant = {}
    with active(model, model_space(model).largest()):
        for name, leaf in model.named_modules():
            q = leaf.fn3_quant_weight() if is_leaf(leaf) and hasattr(leaf, "fn3_quant_weight") else None
            if q is not None:
                quant[f"{name}.weight" if name else "weight"] = q
    return quant


def _save_user_nested_v1(model: nn.Module, path: str | Path, *, meta: dict | None = None) -> Path:
    """The version-1 writer (recipe + every tensor, read whole), kept to test that such files load."""
    path = _file(path, "nested.safetensors")
    quant = _full_quant(model)
    state = model.state_dict()
    for key, q in quant.items():  # the full codes: every sub-model's weight is read from them
        state[key] = _weight_of(_codes_raw(state[key], q), q)
    return _write(path, OLD_NESTED_FORMAT, {"meta": _nested_info(model, meta)}, state, quant, "1")


def _codes_raw(w: torch.Tensor, q: QuantWeight) -> torch.Tensor:
    """The ``B``-bit codes of a full float weight (what training rounds it to)."""
    return weight_codes(w, q.scale, q.total_bits).to(torch.int64)


def load_user_nested(r: container.Reader, spec: Spec | None) -> tuple[Exported, Spec, Space]:
    """Sub-model ``spec`` (``None``: the full model) of an open ``fn3.user-nested`` file.

    A version-2 file is read in parts (``r.bytes_read`` counts them); a version-1 file whole.
    """
    header, crc = _read_header(r, NESTED_FORMAT)
    meta = header["meta"]
    model, sp = _rebuild(r, meta)
    spec = sp.largest() if spec is None else sp.validate(spec)
    if not _tiled(r):
        model.load_state_dict(_fill(r, header, crc, model.state_dict())[0], strict=False)
        out = export_user(model, spec)
    else:
        out = _read_spec(r, header, model, sp, spec)
    out.meta = {**meta, "spec": spec.to_dict()}
    return out, spec, sp


def _check_records(r: container.Reader, header: dict, model: nn.Module) -> list[Record]:
    """The file's records, once they equal those of the model its recipe rebuilds to."""
    try:
        recs = records_from_json(header["records"])
    except ValueError as err:
        raise r.fail(f"bad header: {err}") from None
    want = protocol_records(model)
    if recs != want:
        got_keys, want_keys = [x.key for x in recs], [x.key for x in want]
        if got_keys != want_keys:
            diff = f"{len(recs)} tensors stored, {len(want)} expected"
            bad = next((a for a, b in zip(got_keys, want_keys, strict=False) if a != b), None)
            diff += f"; first differing key {bad!r}" if bad is not None else ""
        else:
            a, b = next((a, b) for a, b in zip(recs, want, strict=True) if a != b)
            diff = f"tensor {a.key!r} is stored as {a.kind} {list(a.shape)} cut by {list(a.dims)}, " \
                   f"the model has {b.kind} {list(b.shape)} cut by {list(b.dims)}"  # fmt: skip
        raise r.fail(f"its tensors do not match the structure its model rebuilds to ({diff})")
    return recs


@torch.no_grad()
def _read_spec(r: container.Reader, header: dict, model: nn.Module, sp: Space, spec: Spec) -> Exported:
    """Read only the bytes of sub-model ``spec`` of a version-2 file into ``model``, then extract it."""
    recs = _check_records(r, header, model)
    tiles = TileFile(r, recs, r.entries["data"].start, r.entries["data"].end, sp)
    with active(model, spec):  # what the spec keeps: its blocks, and each quantized leaf's planes
        dropped = {id(m) for g in model.modules() if is_gate(g) for m in g.fn3_skipped()}
        coding = {f"{n}.weight" if n else "weight": m.fn3_quant_weight() for n, m in model.named_modules()
                  if is_leaf(m) and hasattr(m, "fn3_quant_weight")}  # fmt: skip
    skip = tuple(f"{n}." for n, m in model.named_modules() if id(m) in dropped)
    wants = {}
    for rec in recs:
        if rec.key.startswith(skip):
            continue  # a tensor of a dropped residual block: its sub-model does not hold it
        planes = coding[rec.key].planes if rec.kind == "planes" else None  # type: ignore[union-attr]
        wants[rec.key] = (kept_blocks(rec, spec), planes)
    got = tiles.read(wants)
    # Place every kept part into a zero tensor of the full shape (unread tiles stay 0: an extracted
    # float tensor is a slice, so they never reach it), and keep the quantized weights' codes and steps.
    state, codes, steps, keys = {}, {}, {}, set(model.state_dict())
    for rec in recs:
        if rec.key not in got:
            continue
        kept = got[rec.key]
        if rec.kind == "planes":
            codes[rec.key] = from_planes(kept, coding[rec.key].planes)  # type: ignore[union-attr]
        elif rec.key.endswith(SCALE) and rec.key[: -len(SCALE)] in codes:
            steps[rec.key[: -len(SCALE)]] = torch.from_numpy(kept)  # (out_kept,)
        if rec.key not in keys:
            continue  # a step is not a tensor of the model
        full = np.zeros(rec.shape, dtype=np.float32)
        if rec.kind == "f32":
            full[np.ix_(*kept_index(rec, wants[rec.key][0], sp))] = kept
        state[rec.key] = torch.from_numpy(full)
    model.load_state_dict(state, strict=False)
    out, coded = _export_coded(model, spec)
    # A quantized weight's extracted value is grid(code) * step, its step that of its FULL row, which
    # extract would compute from the zero-filled row: build it from the kept codes and stored steps.
    params = out.module.state_dict()
    for key, (weight, q) in coded.items():
        stored = QuantWeight(steps[weight], q.total_bits, q.planes, q.scheme)
        params[key].copy_(_weight_of(codes[weight], stored).reshape(params[key].shape))
        out.quant[key] = stored
    return out


def user_header(r: container.Reader) -> tuple[dict, Space, dict]:
    """The model description, space and whole metadata (what its run trained, too) of an open
    ``fn3.user-nested`` file (reads its header only, once)."""
    header, _ = _read_header(r, NESTED_FORMAT)
    meta = header["meta"]
    try:
        return dict(meta.get("model") or {}), Space.from_dict(meta["space"]), meta
    except (KeyError, TypeError, SpecError) as err:
        raise r.fail(f"bad header: {err}") from None


def user_space(r: container.Reader) -> Space:
    """The space of an open ``fn3.user-nested`` file (reads its header only)."""
    return user_header(r)[1]
