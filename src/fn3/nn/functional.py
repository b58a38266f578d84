"""Pure functions behind nested quantization: B-bit codes whose truncations are nested grids.

A weight tensor is coded once at ``total_bits`` (B = 8 by default) with a scale per output channel::

    code = clamp(round(w / s), -2^(B-1), 2^(B-1) - 1)        # signed, two's complement

Keeping ``c`` bits is truncating the ``B - c`` least significant bits of that code
(``floor(code / 2^(B-c)) * 2^(B-c)``), so the c-bit grid is a subset of the (c+1)-bit grid and the
c-bit code is exactly the top c bits of the B-bit code. Activations use one clipping level ``alpha``
shared by every bit-width (unsigned after a ReLU, signed for the network input). A kept set of bit-planes
that is not a prefix (the search may drop a middle plane) is applied as a bit mask on the integer code.

Gradients are straight-through: the forward pass sees the quantized value, the backward pass the
identity inside the clipping range, and ``alpha`` learns through the clamp as in PACT.

Example:
    >>> import torch
    >>> w = torch.randn(4, 3)
    >>> s = weight_scale(w, 8)
    >>> c8 = weight_codes(w, s, 8)
    >>> c2 = truncate_codes(c8, 8, keep=2)
    >>> bool(((c2 / 64) == torch.floor(c8 / 64)).all())   # top 2 bits of the 8-bit code
    True
"""

from __future__ import annotations

import torch

__all__ = [
    "act_codes",
    "act_step",
    "fake_quant_act",
    "fake_quant_weight",
    "truncate_codes",
    "weight_codes",
    "weight_scale",
]


def weight_scale(w: torch.Tensor, total_bits: int) -> torch.Tensor:
    """Per-output-channel scale ``max|w| / (2^(B-1) - 1)`` of the *full* weight, shape (out,).

    Computed on the whole weight (not the active slice) so that a weight's code is the same in every
    sub-model: that is what lets one nested file serve every spec.
    """
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-8)  # (out,)
    return amax / (2 ** (total_bits - 1) - 1)


def weight_codes(w: torch.Tensor, scale: torch.Tensor, total_bits: int) -> torch.Tensor:
    """Integer-valued float codes of ``w`` (out, ...) at ``total_bits``, given ``scale`` (out,)."""
    qmax = 2 ** (total_bits - 1) - 1
    s = scale.reshape(-1, *([1] * (w.dim() - 1)))
    # The full two's-complement range: truncating -127 to fewer bits gives -128, which must stay a
    # point of the B-bit grid for the grids to nest.
    return torch.clamp(torch.round(w.detach() / s), -qmax - 1, qmax)


def truncate_codes(
    codes: torch.Tensor, total_bits: int, keep: int, mask: int | None = None
) -> torch.Tensor:
    """Keep the top ``keep`` bits of integer-valued ``codes`` (or the planes in ``mask``).

    Returns codes still on the B-bit scale (the dropped low bits are zero), so ``value = code * step``
    whatever ``keep`` is. ``mask`` (bit ``B-1`` = MSB) overrides ``keep`` for non-prefix plane sets.
    """
    if mask is not None and mask != ((1 << total_bits) - 1) ^ ((1 << (total_bits - keep)) - 1):
        # Bits at and above B are the sign extension of a negative two's-complement code: keep them.
        return (codes.to(torch.int32) & (mask | -(1 << total_bits))).to(codes.dtype)
    if keep >= total_bits:
        return codes
    unit = float(2 ** (total_bits - keep))
    return torch.floor(codes / unit) * unit


def fake_quant_weight(
    w: torch.Tensor, scale: torch.Tensor, total_bits: int, keep: int, mask: int | None = None
) -> torch.Tensor:
    """``w`` (out, ...) quantized to ``keep`` of ``total_bits`` bits, straight-through gradient."""
    codes = truncate_codes(weight_codes(w, scale, total_bits), total_bits, keep, mask)
    wq = codes * scale.reshape(-1, *([1] * (w.dim() - 1)))
    return w + (wq - w).detach()


def act_step(alpha: torch.Tensor, total_bits: int, signed: bool) -> torch.Tensor:
    """Value of one least-significant step of the activation code (a 0-dim tensor)."""
    levels = 2 ** (total_bits - 1) - 1 if signed else 2**total_bits - 1
    return alpha.abs() / levels


def act_codes(x: torch.Tensor, alpha: torch.Tensor, total_bits: int, signed: bool) -> torch.Tensor:
    """Integer-valued float codes of activations ``x`` clipped to ``[0, alpha]`` or ``[-alpha, alpha]``."""
    a = alpha.abs()
    xc = torch.maximum(torch.minimum(x, a), -a) if signed else torch.minimum(torch.relu(x), a)
    return torch.round(xc / act_step(alpha, total_bits, signed))


def fake_quant_act(
    x: torch.Tensor,
    alpha: torch.Tensor,
    total_bits: int,
    keep: int,
    signed: bool,
    mask: int | None = None,
) -> torch.Tensor:
    """Activations quantized to ``keep`` bits with a clipping level shared by every bit-width.

    Forward: the truncated code times the step. Backward: identity inside the clipping range and the
    PACT gradient for ``alpha`` (through the clamp); the rounding is straight-through.
    """
    a = alpha.abs()
    xc = torch.maximum(torch.minimum(x, a), -a) if signed else torch.minimum(torch.relu(x), a)
    step = act_step(alpha, total_bits, signed)
    codes = truncate_codes(torch.round(xc.detach() / step.detach()), total_bits, keep, mask)
    return xc + (codes * step - xc).detach()
