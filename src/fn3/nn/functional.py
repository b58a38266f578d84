"""Pure functions behind nested quantization: B-bit codes whose truncations are nested grids.

A weight tensor is coded once at ``total_bits`` (B = 8 by default) with a scale per output channel::

    code = clamp(round(w / s), -2^(B-1), 2^(B-1) - 1)        # signed, two's complement

Keeping ``c`` bits keeps the top ``c`` bits of that code (``floor(code / 2^(B-c))``): the c-bit code
that is stored is exactly the top c bits of the B-bit code, so one file of bit-planes serves every
bit-width. A kept set of bit-planes that is not a prefix (the search may drop a middle plane) is applied
as a bit mask on the integer code.

**Where in its cell a truncated code is read** is the quantization *scheme*:

* ``"centred"`` (the default): at the centre of the cell of B-bit codes that share the kept bits,
  ``floor(code / u) * u + (u - 1) / 2`` with ``u = 2^(B-c)`` (for a plane mask: half of the dropped
  planes' weight is added back). Same stored bits, unbiased value: the mean squared error of a uniform
  cell is ``u^2/12`` instead of the ``u^2/3`` of its bottom edge. At ``c = B`` nothing changes.
  Activations are computed at run time and need no stored prefix, so under this scheme ``c``-bit
  activations are simply *rounded* on the ``c``-bit grid of the shared clipping level
  (``step = alpha / (2^c - 1)``), one fixed rule per bit-width, as Any-Precision DNN and AdaBits do.
* ``"truncate"``: the paper's literal reading and fn3's rule before file format 2: weights and
  activations are read at the bottom of the cell (``floor(code / u) * u``). Kept to read old files and
  to reproduce old runs; it biases every value by half a cell, so 2- and 3-bit models train badly
  (``python benchmarks/quant_error.py``).

Gradients are straight-through: the forward pass sees the quantized value, the backward pass the
identity inside the clipping range, and ``alpha`` learns through the clamp as in PACT.

Example:
    >>> import torch
    >>> w = torch.linspace(-1, 1, 12).reshape(1, 12)
    >>> s = weight_scale(w, 8)
    >>> c8 = weight_codes(w, s, 8)
    >>> c2 = truncate_codes(c8, 8, keep=2)
    >>> bool(((c2 / 64) == torch.floor(c8 / 64)).all())   # top 2 bits of the 8-bit code
    True
    >>> sorted(set(grid_values(c2, 8, keep=2).flatten().tolist()))  # read at the cell centres
    [-96.5, -32.5, 31.5, 95.5]
"""

from __future__ import annotations

import math

import torch

from fn3.errors import ConfigError

#: The gain of LSQ's gradient for a clipping level (``learn="lsq"``), over ``1 / sqrt(top code)``:
#: 20 and 100 measured alike on experiment 5 at 6 epochs (2-bit 46.1 and 45.7%), 20 slightly ahead.
LSQ_GAIN = 20.0

#: Quantization schemes: where a truncated code is read (see the module docstring).
SCHEMES = ("centred", "truncate")

__all__ = [
    "SCHEMES",
    "act_codes",
    "act_step",
    "act_values",
    "check_scheme",
    "clip_act",
    "fake_quant_act",
    "fake_quant_act_autograd",
    "fake_quant_weight",
    "grid_values",
    "kept_bits",
    "top_code",
    "truncate_codes",
    "weight_codes",
    "weight_scale",
]


def weight_scale(w: torch.Tensor, total_bits: int, clip: float = 0.0) -> torch.Tensor:
    """Per-output-channel scale ``range / (2^(B-1) - 1)`` of the *full* weight, shape (out,): the range
    is ``max|w|`` (``clip=0``), or ``min(max|w|, clip * rms(w))`` for ``clip > 0``.

    Computed on the whole weight (not the active slice) so that a weight's code is the same in every
    sub-model: that is what lets one nested file serve every spec. A range below the largest
    magnitude clips the largest weights of a channel to widen the cells every bit-width keeps: at 2
    bits the cells split at half the range, which at ``max|w|`` (3-5 rms) leaves nearly every weight
    in the two inner cells.
    """
    flat = w.detach().flatten(1)  # (out, rest)
    amax = flat.abs().amax(dim=1)
    if clip > 0:
        amax = torch.minimum(amax, clip * flat.pow(2).mean(dim=1).sqrt())
    return amax.clamp_min(1e-8) / (2 ** (total_bits - 1) - 1)


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


def check_scheme(scheme: str) -> str:
    """``scheme`` if it is one of :data:`SCHEMES`, else a :class:`~fn3.errors.ConfigError`."""
    if scheme not in SCHEMES:
        raise ConfigError(f"quantization scheme {scheme!r} is unknown; expected one of {', '.join(SCHEMES)}")
    return scheme


def kept_bits(total_bits: int, keep: int, mask: int | None) -> int:
    """Number of kept bit-planes: ``keep``, or the planes set in ``mask`` (below bit ``B``)."""
    return keep if mask is None else bin(mask & ((1 << total_bits) - 1)).count("1")


def grid_values(
    codes: torch.Tensor, total_bits: int, keep: int, mask: int | None = None, scheme: str = "centred"
) -> torch.Tensor:
    """Value on the B-bit grid of integer-valued ``codes`` keeping ``keep`` bits (or ``mask``'s planes).

    ``"truncate"``: the truncated code itself (the bottom of its cell). ``"centred"``: the truncated
    code plus half the weight of the dropped planes, the centre of the cell of B-bit codes that share
    the kept bits; exactly the B-bit code when every plane is kept.
    """
    t = truncate_codes(codes, total_bits, keep, mask)
    if scheme == "truncate":
        return t
    full = (1 << total_bits) - 1
    kept = full ^ ((1 << (total_bits - keep)) - 1) if mask is None else mask & full
    dropped = full & ~kept  # the planes left out, all of positive weight (the sign plane is kept)
    return t if dropped == 0 else t + dropped / 2.0


def fake_quant_weight(
    w: torch.Tensor,
    scale: torch.Tensor,
    total_bits: int,
    keep: int,
    mask: int | None = None,
    scheme: str = "centred",
) -> torch.Tensor:
    """``w`` (out, ...) quantized to ``keep`` of ``total_bits`` bits, straight-through gradient."""
    values = grid_values(weight_codes(w, scale, total_bits), total_bits, keep, mask, scheme)
    wq = values * scale.reshape(-1, *([1] * (w.dim() - 1)))
    return w + (wq - w).detach()


def top_code(bits: int, signed: bool) -> int:
    """The largest code of a ``bits``-bit activation: ``2^bits - 1``, or ``2^(bits-1) - 1`` signed.

    A signed 1-bit code has no positive level; it gets the top of 2 bits (levels -alpha, 0, alpha).
    """
    return max(1, 2 ** (bits - 1) - 1) if signed else 2**bits - 1


def act_step(alpha: torch.Tensor, total_bits: int, signed: bool) -> torch.Tensor:
    """Value of one least-significant step of a ``total_bits`` activation code (a 0-dim tensor):
    ``|alpha| / top_code(total_bits, signed)``."""
    return alpha.abs() / top_code(total_bits, signed)


def clip_act(x: torch.Tensor, alpha: torch.Tensor, signed: bool) -> torch.Tensor:
    """``x`` clipped to ``[0, |alpha|]`` (unsigned) or ``[-|alpha|, |alpha|]`` (signed); ``alpha``
    learns through the clamp (PACT)."""
    a = alpha.abs()
    return torch.maximum(torch.minimum(x, a), -a) if signed else torch.minimum(torch.relu(x), a)


def act_codes(x: torch.Tensor, alpha: torch.Tensor, total_bits: int, signed: bool) -> torch.Tensor:
    """Integer-valued float codes of activations ``x`` clipped to ``[0, alpha]`` or ``[-alpha, alpha]``."""
    return torch.round(clip_act(x, alpha, signed) / act_step(alpha, total_bits, signed))


def act_values(
    xc: torch.Tensor,
    alpha: torch.Tensor,
    total_bits: int,
    keep: int,
    signed: bool,
    mask: int | None = None,
    scheme: str = "centred",
) -> torch.Tensor:
    """Quantized value of clipped activations ``xc`` (no gradient path; see :func:`fake_quant_act`).

    ``"centred"``: rounded on the grid of ``c`` kept bits (``c`` = the number of kept planes),
    ``step = alpha / (2^c - 1)``. ``"truncate"``: the ``B``-bit code with its low bits cleared.
    """
    if scheme == "truncate":
        step = act_step(alpha, total_bits, signed)
        return truncate_codes(torch.round(xc / step), total_bits, keep, mask) * step
    step = act_step(alpha, kept_bits(total_bits, keep, mask), signed)
    return torch.round(xc / step) * step


def fake_quant_act(
    x: torch.Tensor,
    alpha: torch.Tensor,
    total_bits: int,
    keep: int,
    signed: bool,
    mask: int | None = None,
    scheme: str = "centred",
    learn: str = "pact",
) -> torch.Tensor:
    """Activations ``x`` (batch, ...) quantized to ``keep`` bits with clipping level ``alpha``.

    Forward: the quantized value (:func:`act_values`). Backward: identity inside the clipping range,
    the rounding straight-through, and for ``alpha``:

    * ``learn="pact"``: PACT's gradient, through the clamp only. It moves ``alpha`` only when many
      activations exceed it: after BatchNorm few do, and fn3's levels stayed within 1% of their
      start over 6 CIFAR-10 epochs (issue 11).
    * ``learn="lsq"``: LSQ's gradient of the step ``s = alpha / (2^c - 1)`` (Esser et al., 2020):
      ``round(x/s) - x/s`` inside the range, the top code where clipped, so the rounding error of
      every activation moves the level. Scaled by ``LSQ_GAIN / sqrt(top code)``: LSQ's own scale,
      ``1 / sqrt(features x top code)``, left the levels' relative gradient ~200x below the weights'
      on a ResNet-20 at 2 bits (1e-4 against 2e-2 a step), and they hardly moved. Needs the
      ``"centred"`` scheme (``c``-bit grid).

    The forward value is the same either way, bit for bit. Under ``"centred"`` both run as one
    autograd function (``_CentredRound``), twice as fast as the same gradients written with autograd.
    """
    if learn not in ("pact", "lsq") or (learn == "lsq" and scheme != "centred"):
        raise ConfigError(f"learn={learn!r} with scheme {scheme!r}: use 'pact', or 'lsq' with 'centred'")
    if scheme == "centred":
        top = float(top_code(kept_bits(total_bits, keep, mask), signed))
        return _CentredRound.apply(x, alpha, top, signed, learn == "lsq")
    return _straight_through(x, alpha, alpha, total_bits, keep, signed, mask, scheme)


def _straight_through(x: torch.Tensor, clip_alpha: torch.Tensor, alpha: torch.Tensor, total_bits: int,
                      keep: int, signed: bool, mask: int | None, scheme: str) -> torch.Tensor:
    """``x`` clipped at ``clip_alpha`` (through which the level learns, PACT, unless detached) and
    rounded straight-through: the quantized value forward, the clamp's gradient backward."""
    xc = clip_act(x, clip_alpha, signed)
    q = act_values(xc.detach(), alpha.detach(), total_bits, keep, signed, mask, scheme)
    return xc + (q - xc).detach()


def fake_quant_act_autograd(
    x: torch.Tensor,
    alpha: torch.Tensor,
    total_bits: int,
    keep: int,
    signed: bool,
    mask: int | None = None,
    learn: str = "pact",
) -> torch.Tensor:
    """:func:`fake_quant_act` under the ``"centred"`` scheme written with autograd: clamps, the
    straight-through rounding, and (``learn="lsq"``) a surrogate that is zero in the forward pass and
    carries LSQ's step gradient. The specification the one-pass function is tested against, and the
    baseline of ``benchmarks/act_quant_speed.py``: the quantizer alone about twice as slow (PACT) or
    four times (LSQ), a ResNet-20 training step nested in bits 1.25-1.45x or 1.6-1.75x as long.

    Example:
        >>> import torch
        >>> x, a = torch.randn(4, 8), torch.tensor(1.5)
        >>> bool((fake_quant_act_autograd(x, a, 8, 2, True) == fake_quant_act(x, a, 8, 2, True)).all())
        True
    """
    lsq = learn == "lsq"
    clip_alpha = alpha.detach() if lsq else alpha  # LSQ: no gradient through the clamp
    out = _straight_through(x, clip_alpha, alpha, total_bits, keep, signed, mask, "centred")
    if not lsq:
        return out
    top = float(top_code(kept_bits(total_bits, keep, mask), signed))
    g = LSQ_GAIN / math.sqrt(top)
    a = alpha.abs()
    step = (a * g + (a - a * g).detach()) / top  # the value of |alpha| / top, its gradient scaled by g
    v = torch.clamp(x.detach() / step, -top if signed else 0.0, top)  # (batch, ...): codes before rounding
    surrogate = (v + (torch.round(v) - v).detach()) * step  # d/d step: round(v) - v, or the clipped code
    return out + (surrogate - surrogate.detach())


class _CentredRound(torch.autograd.Function):
    """:func:`fake_quant_act` under the ``"centred"`` scheme in one pass each way: the forward rounds
    ``x`` on the ``c``-bit grid of ``|alpha|``; the backward is the straight-through identity inside
    ``(lo, |alpha|)`` for ``x`` and, for ``alpha`` (``v = x / step``, ``step = |alpha| / top``)::

        PACT: sign(alpha) * (sum of grad above |alpha| - sum of grad below -|alpha|, signed only)
        LSQ:  sign(alpha) * LSQ_GAIN / (sqrt(top) * top) * sum(grad * s),
              s = round(v) - v inside, top above |alpha|, -top below -|alpha| (signed), 0 below 0

    Written as autograd of clamps and detached surrogates, the same values and gradients took ~7
    (PACT) and ~19 (LSQ) elementwise passes over the activations, and a training step with a
    clipping level per bit-width (LSQ) was 1.33x one with the shared level. This saves ``x`` and
    ``alpha`` (and, for LSQ, the output ``q``), builds one mask in the backward pass and reads the
    level's gradient from dot products: ``sum(grad * s) = (<grad, q> - <grad * inside, x>) / step``.
    Both levels now cost the same step (``python benchmarks/act_quant_speed.py``). An activation
    exactly at ``|alpha|`` gives its gradient to ``alpha`` (``torch.minimum`` would split it half
    and half).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor, top: float, signed: bool,
                lsq: bool) -> torch.Tensor:
        step = alpha.detach().abs() / top
        q = torch.clamp(x / step, -top if signed else 0.0, top).round_().mul_(step)
        ctx.save_for_backward(x, alpha, *((q,) if lsq else ()))  # LSQ's gradient reads q
        ctx.top, ctx.signed, ctx.lsq = top, signed, lsq
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, alpha, *saved = ctx.saved_tensors
        top, signed = ctx.top, ctx.signed
        a = alpha.detach().abs()
        inside = ((x > -a) if signed else (x > 0)) & (x < a)  # (batch, ...): not clipped
        gx = grad * inside
        ga = None
        if ctx.needs_input_grad[1] and ctx.lsq:
            # sum(grad * s) = sum(grad * round(v clipped)) - sum(grad * v inside)
            #               = (<grad, q> - <gx, x>) / step: two dot products, no new tensor
            (q,) = saved
            dot = torch.dot(grad.reshape(-1), q.reshape(-1)) - torch.dot(gx.reshape(-1), x.reshape(-1))
            ga = dot * (top / a) * (LSQ_GAIN / (math.sqrt(top) * top))
        elif ctx.needs_input_grad[1]:
            flat = grad.reshape(-1)
            ga = torch.dot(flat, (x >= a).reshape(-1).to(grad.dtype))
            if signed:
                ga = ga - torch.dot(flat, (x <= -a).reshape(-1).to(grad.dtype))
        if ga is not None:
            ga = ga * torch.sign(alpha.detach())
        return gx if ctx.needs_input_grad[0] else None, ga, None, None, None
