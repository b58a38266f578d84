"""The activation quantizer of a deployed model: the values of training's, in the fewest passes.

:class:`ActQuant` is what an activation quantizer becomes once its bits are chosen: the extracted
form of :class:`~fn3.nn.base.NestedActQuant` (``extract()``, so a user's own network extracted by
:func:`fn3.export.extract_submodel` runs it) and the quantizer of :func:`fn3.export.export`'s models
(re-exported as ``fn3.export.ActQuant``). It computes exactly :func:`fn3.nn.functional.fake_quant_act`'s
forward value, with one new tensor and three in-place passes instead of training's five out-of-place
ops (which keep the gradient path).

Example:
    >>> import torch
    >>> q = ActQuant(torch.tensor(3.0), planes=(0, 1))          # 2 bits of 8, clip at 3: step 1
    >>> q(torch.tensor([-1.0, 0.4, 1.6, 9.0])).tolist()
    [0.0, 0.0, 2.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from fn3.nn.functional import act_step, act_values, check_scheme, clip_act

__all__ = ["ActQuant", "is_prefix", "relu_unless_quantized", "relus_kept"]


def is_prefix(planes: Sequence[int]) -> bool:
    """True when ``planes`` is ``(0, 1, ..., c-1)``: the top ``c`` bits."""
    return tuple(planes) == tuple(range(len(planes)))



class ActQuant(nn.Module):
    """Activation quantizer of training: clip to ``[0, alpha]`` (or ``[-alpha, alpha]``), then quantize.

    ``"centred"``: ``y = round(clip(x) / step_c) * step_c`` with ``step_c = |alpha| / (2^c - 1)``
    (unsigned) or ``|alpha| / (2^(c-1) - 1)`` (signed), ``c = len(planes)``. ``"truncate"``: the
    ``B``-bit code with the dropped planes cleared. Either way the forward value of
    :func:`fn3.nn.functional.fake_quant_act`.
    """

    def __init__(
        self,
        alpha: torch.Tensor | float,
        *,
        planes: Sequence[int],
        total_bits: int = 8,
        signed: bool = False,
        scheme: str = "centred",
    ):
        super().__init__()
        self.planes, self.total_bits, self.signed = (
            tuple(int(p) for p in planes),
            int(total_bits),
            bool(signed),
        )
        self.scheme = check_scheme(scheme)
        self.register_buffer(
            "alpha", torch.as_tensor(alpha, dtype=torch.float32).detach().clone().reshape(())
        )
        full = (1 << total_bits) - 1
        self._mask = None if is_prefix(self.planes) else sum(1 << (total_bits - 1 - p) for p in self.planes)
        self._mask = self._mask if self._mask != full else None
        self._cached: tuple[int, tuple[float, float, float]] | None = None

    @property
    def bits(self) -> int:
        return len(self.planes)

    def step(self) -> torch.Tensor:
        """One step of the output grid (0-dim): of the ``c``-bit code (``"centred"``) or of the
        ``B``-bit code (``"truncate"``)."""
        bits = self.bits if self.scheme == "centred" else self.total_bits
        return act_step(self.alpha, bits, self.signed)

    def _grid(self) -> tuple[float, float, float]:
        """``(step, lowest code, highest code)`` of the ``"centred"`` grid, as Python floats, cached
        until ``alpha`` changes (loading fills it in place)."""
        if self._cached is None or self._cached[0] != self.alpha._version:
            step = float(self.step())
            top = float(max(1, 2 ** (self.bits - 1) - 1) if self.signed else 2**self.bits - 1)
            self._cached = (self.alpha._version, (step, -top if self.signed else 0.0, top))
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scheme == "centred" and not torch.jit.is_tracing():
            # The same values as clip_act + act_values (round(clip(x) / step) * step): the clip is
            # done on the rounded codes instead, where it is the same. One new tensor and three
            # in-place passes (~3x faster than the five out-of-place ops; fake_quantize_per_tensor_
            # affine, one fused op, measured ~10x slower than both on this CPU).
            step, lo, hi = self._grid()
            return torch.div(x, step).round_().clamp_(lo, hi).mul_(step)
        xc = clip_act(x, self.alpha, self.signed)
        return act_values(xc, self.alpha, self.total_bits, self.bits, self.signed, self._mask, self.scheme)

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, planes={list(self.planes)}, total_bits={self.total_bits}, "
            f"signed={self.signed}, scheme={self.scheme}"
        )


_ELIDE = [True]  # relu_unless_quantized leaves the ReLU out; relus_kept() puts it back


@contextmanager
def relus_kept() -> Iterator[None]:
    """Within this block :func:`relu_unless_quantized` always applies its ReLU.

    The cost plan traces the nested model to price the *float* sub-model a latency back-end runs
    (quantizers dropped, so the ReLU is back): it traces inside this block. Not thread-safe (a
    module-level switch, like ``torch.no_grad``'s counterpart in Python code).
    """
    _ELIDE.append(False)
    try:
        yield
    finally:
        _ELIDE.pop()


def relu_unless_quantized(x: torch.Tensor, consumer: nn.Module) -> torch.Tensor:
    """``relu(x)``, or ``x`` itself when ``consumer`` starts with a clip at 0 of its own.

    A consumer with an unsigned activation quantizer clips to ``[0, alpha]`` as ``min(relu(x),
    alpha)``, so a ReLU right before it changes neither a value nor a gradient: leaving it out saves
    one pass over the feature map, in training and in the deployed model alike. ``consumer`` is a
    nested layer with an ``act_quant``, or its extracted form ``Sequential(ActQuant, layer)``, or
    that form with the quantizer replaced by an ``nn.ReLU`` (:func:`fn3.export.float_twin`); once
    the quantizer is gone altogether (a float sub-model), the ReLU is applied here again. The check
    reads only module attributes, so ``torch.fx`` traces it as a constant.

    Example:
        >>> conv = nn.Sequential(ActQuant(torch.tensor(2.0), planes=(0, 1)), nn.Identity())
        >>> relu_unless_quantized(torch.tensor([-1.0, 1.0]), conv).tolist()   # the quantizer clips
        [-1.0, 1.0]
        >>> relu_unless_quantized(torch.tensor([-1.0, 1.0]), nn.Identity()).tolist()
        [0.0, 1.0]
    """
    if _ELIDE[-1]:
        if isinstance(consumer, nn.Sequential):
            q = consumer[0] if len(consumer) else None
        else:
            q = getattr(consumer, "act_quant", None)
        unsigned_quantizer = getattr(q, "signed", True) is False and hasattr(q, "alpha")
        if isinstance(q, nn.ReLU) or unsigned_quantizer:
            return x  # the consumer clips at 0 itself
    return torch.relu(x)
