"""Export: physically small, truly low-bit sub-models, their files, ONNX, and one nested file.

``fn3.export`` is both this package and its main verb: ``fn3.export(model, spec)`` calls
:func:`export` (the package is callable), and ``fn3.export.to_onnx``, ``fn3.export.save_nested``, ...
are its other functions.

==========================  ==========================================================================
:func:`export`              a plain, physically sliced copy of the model for one spec (its own classes,
                            each nested leaf extracted; a file stores its weights as c-bit codes)
:func:`save` / :func:`load` one safetensors file per export, codes bit-packed; ``load`` also reads
                            a sub-model out of a nested file
:func:`save_nested`         the whole FN3 in importance order; :func:`load_nested` reads one spec's bytes
:func:`to_onnx`             a single-file ONNX model, quantizers as QDQ nodes (any module: others go
                            through ``torch.onnx.export``)
:func:`float_twin`          the float sub-model of the same spec as an export: the speed baseline
:func:`compiled`            an export under ``torch.compile`` for CPU inference (quantizers fused;
                            ``integer=True``: quantized convolutions on int8 kernels,
                            :mod:`fn3.export.integer`)
:func:`evaluate_exported`   accuracy of an exported model on a dataset
:func:`extract_submodel`    any nested model (also ``fn3.nest_``-ed ones): a plain copy of one spec
==========================  ==========================================================================

Example:
    >>> import torch, fn3
    >>> import fn3.export
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = fn3.export(net, fn3.space(net).uniform({"channels": 0.5, "bits": 4}))
    >>> type(small).__name__, type(small.module).__name__, small(torch.randn(1, 3, 32, 32)).shape
    ('Exported', 'NestedResNet', torch.Size([1, 10]))
"""

from __future__ import annotations

from typing import Any

from fn3._callable import make_callable
from fn3.export.fast import compiled
from fn3.export.io import ideal_size, save
from fn3.export.loading import load
from fn3.export.nested import NestedRead, load_nested, save_nested
from fn3.export.qmodules import ActQuant, ExportedModel, QuantConv2d, QuantLinear, Residual
from fn3.export.runs import evaluate_exported, export_run
from fn3.export.slice import export
from fn3.export.submodel import extract_submodel
from fn3.export.twin import float_twin
from fn3.export.user import Exported

__all__ = [
    "ActQuant",
    "Exported",
    "ExportedModel",
    "NestedRead",
    "QuantConv2d",
    "QuantLinear",
    "Residual",
    "compiled",
    "evaluate_exported",
    "export",
    "export_run",
    "extract_submodel",
    "float_twin",
    "ideal_size",
    "load",
    "load_nested",
    "save",
    "save_nested",
    "to_onnx",
]


def __getattr__(name: str) -> Any:
    """``to_onnx`` on first use: its module imports ``onnx``, which takes a second or more (its
    ``ml_dtypes`` extension), and every ``fn3`` command and ``import fn3`` would pay it otherwise."""
    if name == "to_onnx":
        from fn3.export.onnx import to_onnx

        globals()[name] = to_onnx
        return to_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


make_callable(__name__, export)
