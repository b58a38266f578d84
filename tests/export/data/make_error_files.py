"""Write the damaged files of a model of your own that docs/errors.md runs through the CLI.

Run from the repository root after a change to the file formats:
``python tests/export/data/make_error_files.py``. Each file holds fn3's example factory
(:func:`fn3.export.user.example_net`, width 4, 1x8x8 inputs) with one thing wrong;
``tests/export/test_user_nested.py`` checks that each still raises its message.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import fn3
from fn3.convert.user import UserModel, build_user_model
from fn3.export import container, export, save, save_nested
from fn3.export.io import read_meta

HERE = Path(__file__).resolve().parent

#: file name -> the message its error contains (the rows of docs/errors.md)
FILES = {
    "user-nested-v3.safetensors": "version '3' is not supported",
    "user-nested-no-factory.safetensors": "cannot rebuild its model",
    "user-nested-other-model.safetensors": "now builds another nested model",
    "user-nested-records.safetensors": "its tensors do not match the structure its model rebuilds to",
    "user-exported-coding.safetensors": "bad coding of tensor",
}


def _rewrite(src: Path, dst: Path, tamper: Callable[[dict], None], version: str | None = None) -> None:
    """``src`` with its JSON header tampered (and its version replaced), CRCs recomputed."""
    with container.Reader(src) as r:
        header = read_meta(r, r.read("meta"))
        blobs = {name: r.read(name) for name in r.entries if name != "meta"}
        md = dict(r.metadata)
        dtypes = {name: (e.dtype, e.shape) for name, e in r.entries.items()}
    tamper(header)
    meta = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    blobs["meta"] = meta
    dtypes["meta"] = ("U8", [len(meta)])
    order = ["meta", "data"] if "data" in blobs else ["codes", "floats", "meta"]
    tensors = [(n, dtypes[n][0], dtypes[n][1], blobs[n]) for n in order]
    crc = json.loads(md["crc32"])
    md["crc32"] = json.dumps({n: f"{zlib.crc32(blobs[n]):08x}" for n in crc})
    if version is not None:
        md["version"] = version
    container.write(dst, tensors, md)


def _bad_coding(header: dict) -> None:
    next(e for e in header["tensors"] if "B" in e)["planes"] = [0, "x"]


def _other_space(header: dict) -> None:
    header["meta"]["space"]["axes"][0]["size"] += 1  # a space the factory does not build


def _other_record(header: dict) -> None:
    header["records"][0][3] = []  # the first weight stored uncut, the model cuts it by its axis


def main(out: Path = HERE) -> None:
    desc = UserModel("fn3.export.user:example_net", {"width": 4}, (1, 8, 8), ("channels", "bits"))
    model = build_user_model(desc)[0].eval()
    nested = save_nested(model, out / "tmp-nested.safetensors")
    single = save(export(model, fn3.space(model).uniform({"bits": 3})), out / "tmp-model.safetensors")
    _rewrite(nested, out / "user-nested-v3.safetensors", lambda h: None, version="3")
    _rewrite(nested, out / "user-nested-no-factory.safetensors",
             lambda h: h["meta"]["model"].update(name="no_such_mod_xyz:make"))  # fmt: skip
    _rewrite(nested, out / "user-nested-other-model.safetensors", _other_space)
    _rewrite(nested, out / "user-nested-records.safetensors", _other_record)
    _rewrite(single, out / "user-exported-coding.safetensors", _bad_coding)
    nested.unlink()
    single.unlink()


if __name__ == "__main__":
    main()
