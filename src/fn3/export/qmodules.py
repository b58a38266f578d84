"""The few modules an exported fn3 model needs beyond ``torch.nn``: they hold integer codes, not floats.

* :class:`QuantLinear` / :class:`QuantConv2d` - a weight stored as ``c``-bit signed integer codes
  (``int8`` for ``c <= 8``) plus the per-output-channel scale of the *full* nested weight;
* :class:`ActQuant` - activation quantization exactly as in training (learned clipping level
  ``alpha``; ``c`` bits rounded on the ``c``-bit grid, or the kept bits of the ``B``-bit code under the
  old ``"truncate"`` scheme);
* :class:`Residual` - ``relu(body(x) + shortcut(x))``, the residual block of fn3's ResNets;
* :class:`ExportedModel` - the root: an ``nn.Sequential`` that also carries the export metadata.

They depend on torch only (plus :mod:`fn3.nn.functional` for the quantizer maths, itself torch only).

**The code of a kept bit-plane set.** A weight's ``B``-bit code (two's complement, plane 0 = the MSB)
is computed once from the full weight. A sub-model keeping the planes ``P = (p_0 < p_1 < ...)``
(always including plane 0, the sign) stores the ``c = len(P)``-bit two's-complement integer made of
those bits, in that order. For a prefix ``P = (0..c-1)`` that is the top ``c`` bits,
``floor(code / 2^(B-c))``, and its value on the ``B``-bit grid is ``code_c * 2^(B-c) + (2^(B-c) - 1) / 2``
(the centre of its cell, ``scheme="centred"``) or ``code_c * 2^(B-c)`` (``scheme="truncate"``, files of
format 1); for any other set the value is looked up in a table of ``2^c`` entries
(:func:`plane_values`).

Example:
    >>> import torch
    >>> codes = torch.tensor([[-2, 1], [0, -1]], dtype=torch.int8)      # 2-bit codes of B = 8
    >>> q = QuantLinear(codes, torch.tensor([0.01, 0.02]), None, planes=(0, 1), total_bits=8)
    >>> [[round(v, 3) for v in row] for row in q.weight().tolist()]   # (codes * 64 + 31.5) * scale
    [[-0.965, 0.955], [0.63, -0.65]]
    >>> q(torch.ones(1, 2)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fn3.nn.act_quant import ActQuant, is_prefix
from fn3.nn.functional import check_scheme

__all__ = [
    "ActQuant",
    "ExportedModel",
    "QuantConv2d",
    "QuantLinear",
    "Residual",
    "code_dtype",
    "is_prefix",
    "plane_values",
]


def code_dtype(bits: int) -> torch.dtype:
    """Smallest signed integer dtype that holds a ``bits``-bit two's-complement code."""
    return torch.int8 if bits <= 8 else torch.int16 if bits <= 16 else torch.int32


def plane_values(planes: Sequence[int], total_bits: int, scheme: str = "centred") -> torch.Tensor:
    """Value on the ``B``-bit grid of every ``c``-bit code of ``planes``: float ``(2^c,)``.

    Entry ``code + 2^(c-1)`` is the value of ``code``.

    Bit ``j`` (from the MSB) of a code is plane ``planes[j]``; plane 0 weighs ``-2^(B-1)``, plane ``p``
    weighs ``2^(B-1-p)``. Under ``"centred"`` half the weight of the dropped planes is added (the
    centre of the cell), as :func:`fn3.nn.functional.grid_values` does.
    """
    c = len(planes)
    codes = torch.arange(-(2 ** (c - 1)), 2 ** (c - 1), dtype=torch.int64)  # (2^c,)
    unsigned = codes & ((1 << c) - 1)
    value = torch.zeros_like(codes)
    for j, p in enumerate(planes):
        weight = -(2 ** (total_bits - 1)) if p == 0 else 2 ** (total_bits - 1 - p)
        value += ((unsigned >> (c - 1 - j)) & 1) * weight
    dropped = sum(2 ** (total_bits - 1 - p) for p in range(1, total_bits) if p not in set(planes))
    return value.to(torch.float32) + (dropped / 2.0 if scheme == "centred" else 0.0)


class _QuantWeight(nn.Module):
    """Shared state of the quantized layers: ``codes`` (int), ``scale`` (out,), the kept planes."""

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        planes: Sequence[int],
        total_bits: int,
        scheme: str = "centred",
    ):
        super().__init__()
        planes = tuple(int(p) for p in planes)
        self.scheme = check_scheme(scheme)
        if not planes or planes[0] != 0 or list(planes) != sorted(set(planes)) or planes[-1] >= total_bits:
            raise ValueError(
                f"planes must be sorted, start with 0 (the sign) and be < {total_bits}: {planes}"
            )
        if codes.dtype != code_dtype(len(planes)):
            raise ValueError(
                f"codes of {len(planes)} bits must be {code_dtype(len(planes))}, got {codes.dtype}"
            )
        self.planes, self.total_bits = planes, total_bits
        self.register_buffer("codes", codes)  # (out, ...) c-bit signed integers
        self.register_buffer("scale", scale.to(torch.float32))  # (out,) B-bit step of the full weight
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        if not is_prefix(planes):
            self.register_buffer("levels", plane_values(planes, total_bits, scheme), persistent=False)
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None

    @property
    def bits(self) -> int:
        """Bits per stored weight code."""
        return len(self.planes)

    @property
    def offset(self) -> float:
        """What a prefix code's value adds on the ``B``-bit grid: half its cell under ``"centred"``."""
        if self.scheme == "truncate":
            return 0.0
        return (2 ** (self.total_bits - self.bits) - 1) / 2

    def grid_codes(self) -> torch.Tensor:
        """The codes on the ``B``-bit grid (float, exact integers), as the nested layer computes them."""
        if is_prefix(self.planes):
            return self.codes.to(torch.float32) * float(2 ** (self.total_bits - self.bits)) + self.offset
        return self.levels[self.codes.to(torch.int64) + 2 ** (self.bits - 1)]

    def weight(self) -> torch.Tensor:
        """The dequantized float weight ``grid_codes * scale`` (cached until codes or scale change)."""
        key = (self.codes._version, self.scale._version)
        if self._cache is None or self._cache[0] != key or torch.jit.is_tracing():
            w = self.grid_codes() * self.scale.reshape(-1, *([1] * (self.codes.dim() - 1)))
            self._cache = (key, w)
        return self._cache[1]

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, planes={list(self.planes)}, total_bits={self.total_bits}, "
            f"scheme={self.scheme}"
        )


class QuantLinear(_QuantWeight):
    """``nn.Linear`` whose weight is stored as ``c``-bit integer codes (out, in) plus scales (out,)."""

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        planes: Sequence[int],
        total_bits: int = 8,
        scheme: str = "centred",
    ):
        super().__init__(codes, scale, bias, planes, total_bits, scheme)
        self.out_features, self.in_features = codes.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)  # (B, in) -> (B, out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " + super().extra_repr()


class QuantConv2d(_QuantWeight):
    """``nn.Conv2d`` whose weight is stored as ``c``-bit codes (out, in/groups, k, k) plus scales."""

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        planes: Sequence[int],
        total_bits: int = 8,
        scheme: str = "centred",
    ):
        super().__init__(codes, scale, bias, planes, total_bits, scheme)
        self.stride, self.padding, self.groups = int(stride), int(padding), int(groups)
        self.out_channels = codes.shape[0]
        self.in_channels = codes.shape[1] * self.groups
        self.kernel_size = codes.shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, H, W) -> (B, C_out, H', W')
        return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding, 1, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, " + super().extra_repr()
        )


class Residual(nn.Module):
    """``relu(body(x) + shortcut(x))``; an identity shortcut when ``shortcut`` is ``None``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, C', H', W'): the body and the shortcut agree on the output shape.
        return F.relu(self.body(x) + (x if self.shortcut is None else self.shortcut(x)))


class ExportedModel(nn.Sequential):
    """Root of an exported model: the layers in order, plus ``meta`` (spec, source model, ...).

    ``meta`` is a JSON-ready dict: ``spec`` (the :class:`~fn3.Spec` as JSON), ``model`` (the nested
    model's registry config), ``input_shape`` and whatever the caller added (e.g. normalisation).
    """

    def __init__(self, *layers: nn.Module, meta: dict | None = None):
        super().__init__(*layers)
        self.meta: dict = dict(meta or {})
