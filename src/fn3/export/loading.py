"""`load`: open any fn3 export file (a dedicated export or a nested file) and get a module back.

Example:
    >>> import os, tempfile, fn3
    >>> from fn3.export import export, load, save, save_nested
    >>> net = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32,))
    >>> d = tempfile.mkdtemp()
    >>> _ = save(export(net), os.path.join(d, "model.safetensors"))
    >>> _ = save_nested(net, os.path.join(d, "nested.safetensors"))
    >>> spec = fn3.space(net).uniform({"neurons": 0.5, "bits": 4})
    >>> small = load(os.path.join(d, "nested.safetensors"), spec=spec)
    >>> small.meta["bytes_read"] < os.path.getsize(os.path.join(d, "nested.safetensors"))
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fn3.errors import ConfigError
from fn3.export import container
from fn3.export.io import FORMAT as EXPORTED_FORMAT
from fn3.export.io import load_exported
from fn3.export.nested import FORMAT as NESTED_FORMAT
from fn3.export.nested import load_nested
from fn3.export.qmodules import ExportedModel
from fn3.export.twin import float_twin
from fn3.export.user import OLD_NESTED_FORMAT, OLD_SUB_FORMAT, Exported, is_recipe_file, load_user
from fn3.spec import Spec

__all__ = ["FORMATS", "NESTED_FORMATS", "file_format", "load", "resolve_file"]

#: The file formats :func:`load` opens, and those of them that hold every sub-model.
FORMATS = (EXPORTED_FORMAT, NESTED_FORMAT, OLD_SUB_FORMAT, OLD_NESTED_FORMAT)
NESTED_FORMATS = (NESTED_FORMAT, OLD_NESTED_FORMAT)


def resolve_file(path: str | Path) -> Path:
    """``path`` itself, or for a directory the fn3 file inside it (model first, then nested)."""
    p = Path(path)
    if p.is_dir():
        for name in ("model.safetensors", "nested.safetensors"):
            if (p / name).is_file():
                return p / name
        raise ConfigError(f"{p}: no model.safetensors or nested.safetensors in this directory")
    return p


def file_format(path: str | Path) -> str:
    """``"fn3.exported"`` or ``"fn3.nested"`` (or their former names for a model of your own,
    ``"fn3.user-exported"`` / ``"fn3.user-nested"``): the format a file's header names."""
    with container.Reader(resolve_file(path)) as r:
        fmt = r.metadata.get("format", "")
        if fmt not in FORMATS:
            raise r.fail(f"format is {fmt!r}, expected one of {', '.join(map(repr, FORMATS))}")
        return fmt


def _budget_spec(budget: str | Mapping[str, float], front: str | Path | None) -> Spec:
    """The best spec under ``budget`` from a search front file (needs :mod:`fn3.search`)."""
    if front is None:
        raise ConfigError("budget= needs front= (a search front JSON written by `fn3 search`)")
    try:
        from fn3.search.result import load_results
    except ImportError:
        raise ConfigError(
            "budget= needs fn3.search, which this installation lacks; pass spec= instead"
        ) from None
    if isinstance(budget, str):  # "flops=20M" or "flops=20M,bits=2e6"
        from fn3.search import parse_budget

        budget = dict(parse_budget(part) for part in budget.split(",") if part.strip())
    # A front file of `fn3 search` holds one result per strategy: the most accurate of their picks.
    picks = [result.best_under(budget) for result in load_results(front)]
    return max(picks, key=lambda p: p.accuracy).spec


def load(
    path: str | Path,
    spec: Spec | None = None,
    *,
    budget: str | Mapping[str, float] | None = None,
    front: str | Path | None = None,
    as_stored: bool = False,
) -> ExportedModel | Exported:
    """Load an exported model; from a nested file, read only the bytes of sub-model ``spec``.

    Args:
        path: a file written by :func:`fn3.export.save` or :func:`fn3.export.save_nested`, or a directory
            holding ``model.safetensors`` or ``nested.safetensors``.
        spec: for a nested file, the sub-model to read (default: the full model). A dedicated export
            is one sub-model already: a ``spec`` must then equal the one it was exported with.
        budget, front: instead of ``spec``, a budget such as ``"flops=20M"`` resolved through the
            search front ``front`` (``SearchResult.best_under``; needs :mod:`fn3.search`).

    A file of a model of your own (:mod:`fn3.export.user`) gives a
    :class:`~fn3.export.user.Exported` (loading imports the factory it names).
    For a nested file, ``model.meta["bytes_read"]`` and ``["file_size"]`` report what the read cost.
    A model exported with ``activations="float"`` (``meta["activations"]``) comes back without its
    activation quantizers (:func:`fn3.export.float_twin`), as it was exported to be deployed;
    ``as_stored=True`` returns it as the file stores it (with its quantized layers, for its sizes).
    Raises :class:`~fn3.errors.FileFormatError` for a truncated, corrupted or mismatched file.
    """
    if budget is not None:
        if spec is not None:
            raise ConfigError("give spec= or budget=, not both")
        spec = _budget_spec(budget, front)
    file = resolve_file(path)
    fmt = file_format(file)
    if fmt in NESTED_FORMATS:
        read = load_nested(file, spec)
        read.model.meta.update(bytes_read=read.bytes_read, file_size=read.file_size)
        return read.model
    with container.Reader(file) as r:
        model = load_user(r) if is_recipe_file(r) else load_exported(r)
    if spec is not None and Spec.from_dict(model.meta.get("spec", {})) != spec:
        raise ConfigError(
            f"{file} holds another sub-model than the spec asked for; "
            "export that spec, or load it from a nested file"
        )
    if model.meta.get("activations") == "float" and not as_stored:  # exported with --activations float
        return float_twin(model)
    return model
