"""`NestedModule`, the base of every nested layer, and the quantizer modules the layers share.

A nested module keeps its maximum-size parameters and, in ``forward``, computes with the active part
only (slicing, never masking), as read from the :class:`~fn3.nn.slot.AxisSlot` objects it holds.
``fn3_slots()`` lists those slots so that :func:`fn3.space` can find every axis of a model.

Example:
    >>> import torch
    >>> from fn3.spec import Axis
    >>> from fn3.nn.slot import AxisSlot
    >>> q = NestedActQuant(AxisSlot(Axis("a.abits", "bits", 8, min_size=2)))
    >>> q.slot.set((0, 1))              # 2 bits: rounded on the 4 levels of [0, alpha]
    >>> [round(v, 3) for v in sorted(set(q(torch.linspace(0, 4, 9)).tolist()))]
    [0.0, 1.333, 2.667, 4.0]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from fn3.nn.act_quant import ActQuant
from fn3.nn.functional import check_scheme, fake_quant_act, fake_quant_weight, weight_scale
from fn3.nn.protocol import FLOAT_BITS, AxisUse, LeafCost, QuantWeight, uses
from fn3.nn.slot import AxisSlot, Selection

__all__ = [
    "ACT_CLIPS",
    "NestedActQuant",
    "NestedModule",
    "act_clip_of",
    "eval_mode",
    "full",
    "select",
    "set_act_clip",
    "set_quant_scheme",
    "set_weight_clip",
    "weight_step",
]

#: How the activation quantizers of a model clip: ``"shared"``, one learned clipping level for every
#: bit-width; ``"per-bits"``, one learned level per kept bit count (AdaBits' switchable clipping).
ACT_CLIPS = ("shared", "per-bits")


class NestedModule(nn.Module):
    """Base class: a module that reads one or more axis slots.

    ``quant_scheme`` is where a quantized layer reads its truncated codes (see
    :mod:`fn3.nn.functional`); :func:`set_quant_scheme` sets it on a whole model.
    """

    quant_scheme: str = "centred"
    #: The range of a quantized weight: 0, each output channel's largest magnitude; ``k > 0``, at most
    #: ``k`` times its root mean square (:func:`set_weight_clip`).
    weight_clip: float = 0.0

    def fn3_slots(self) -> Iterator[AxisSlot]:
        """The slots this module reads directly (not those of its children)."""
        for value in vars(self).values():
            if isinstance(value, AxisSlot):
                yield value


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block (batch norm does not update its statistics); on exit
    every module gets back its own training flag, also when only some of them were training.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> net[1].eval()  # doctest: +ELLIPSIS
        BatchNorm1d(...)
        >>> with eval_mode(net):
        ...     net.training, net[0].training
        (False, False)
        >>> net.training, net[0].training, net[1].training
        (True, True, False)
    """
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in training.items():
            m.training = mode


def set_act_clip(model: nn.Module, clip: str) -> nn.Module:
    """Give every nested activation quantizer of ``model`` one clipping level per bit-width
    (``clip="per-bits"``) or one shared by all (``"shared"``, fn3's rule before it).

    Only stored weights must nest bit-plane by bit-plane (a ``c``-bit file is a prefix of the 8-bit
    one); activations are quantized at run time, so each bit-width may clip them where it fits best:
    two bits put their 4 levels on a narrower range than eight bits put their 256. ``"per-bits"`` adds
    the parameter ``alpha_bits`` (``B - 1`` levels, for ``c = 1 .. B-1`` kept bits; ``B`` bits keep
    ``alpha``), each started at ``alpha``'s value and learned by the steps that train that bit-width.
    Every level of such a model (``alpha`` too) learns with LSQ's gradient (``learn="lsq"`` of
    :func:`fn3.nn.functional.fake_quant_act`: the rounding error moves it); PACT's clamp gradient,
    which a shared level keeps, left every level where it started (issue 11). It needs the
    ``"centred"`` scheme (``"truncate"`` reads every bit-width off the one ``B``-bit code of the
    shared level).

    Example:
        >>> import fn3
        >>> net = set_act_clip(fn3.create_model("mlp", input_size=8, in_channels=1), "per-bits")
        >>> sorted({tuple(m.alpha_bits.shape) for m in net.modules() if isinstance(m, NestedActQuant)})
        [(7,)]
        >>> act_clip_of(net)
        'per-bits'
    """
    from fn3.errors import ConfigError

    if clip not in ACT_CLIPS:
        raise ConfigError(f"act_clip={clip!r}: choose {' or '.join(ACT_CLIPS)}")
    for m in model.modules():
        if isinstance(m, NestedActQuant):
            if clip == "per-bits" and m.quant_scheme != "centred":
                raise ConfigError(f"act_clip='per-bits' needs quant_scheme='centred', not {m.quant_scheme!r}")
            m.clip_per_bits(clip == "per-bits")
    config = getattr(model, "fn3_config", None)
    if isinstance(config, dict):  # a registered model's arguments: rebuilding it gives the same levels
        config.pop("act_clip", None)
        config.update({"act_clip": clip} if clip != "shared" else {})
    return model


def act_clip_of(model: nn.Module) -> str:
    """``"per-bits"`` when ``model``'s activation quantizers have a clipping level per bit-width,
    else ``"shared"`` (also for a model without any); see :func:`set_act_clip`."""
    per = any(isinstance(m, NestedActQuant) and m.alpha_bits is not None for m in model.modules())
    return "per-bits" if per else "shared"


def set_quant_scheme(model: nn.Module, scheme: str) -> nn.Module:
    """Make every nested layer of ``model`` use quantization ``scheme`` (``"centred"``/``"truncate"``).

    Example:
        >>> import fn3
        >>> net = set_quant_scheme(fn3.create_model("mlp", input_size=8, in_channels=1), "truncate")
        >>> {m.quant_scheme for m in net.modules() if isinstance(m, NestedModule)}
        {'truncate'}
    """
    check_scheme(scheme)
    for m in model.modules():
        if isinstance(m, NestedModule):
            m.quant_scheme = scheme
    return model


def full(n: int) -> Selection:
    """Selection of all ``n`` entries."""
    return Selection(n, None)


def select(slot: AxisSlot | None, n: int, per_unit: int = 1) -> Selection:
    """Active entries of a dimension of size ``n`` governed by ``slot`` (all of them if ``None``)."""
    return full(n) if slot is None else slot.select(per_unit)


class NestedActQuant(NestedModule):
    """Nested activation quantizer: one learned clipping level shared by every bit-width, or one per
    kept bit count after :meth:`clip_per_bits` (see :func:`set_act_clip`).

    Args:
        slot: the bits axis (block 0 = most significant bit).
        total_bits: B, the width of the code that every kept bit-width truncates.
        signed: ``False`` after a ReLU (range ``[0, alpha]``), ``True`` for signed inputs.
        alpha: initial clipping level.
    """

    def __init__(
        self, slot: AxisSlot, total_bits: int = 8, signed: bool = False, alpha: float = 4.0
    ):
        super().__init__()
        self.slot = slot
        self.total_bits = total_bits
        self.signed = signed
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.alpha_bits: nn.Parameter | None
        self.register_parameter("alpha_bits", None)  # (B-1,): c = 1 .. B-1 kept bits, per-bits only

    def clip_per_bits(self, on: bool = True) -> None:
        """Add (``on``) one learned clipping level per kept bit count ``c < B``, each started at
        ``alpha``'s value, or remove them (every bit-width back on ``alpha``)."""
        if on and self.alpha_bits is None:
            start = self.alpha.detach().abs().expand(self.total_bits - 1).clone()
            self.alpha_bits = nn.Parameter(start)
        elif not on:
            self.alpha_bits = None

    def clip_level(self, bits: int | None = None) -> torch.Tensor:
        """The clipping level (0-dim, may be negative: its magnitude is used) of ``bits`` kept bits,
        by default the slot's current count."""
        c = self.slot.units if bits is None else bits
        return self.alpha if self.alpha_bits is None or c >= self.total_bits else self.alpha_bits[c - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_act(
            x,
            self.clip_level(),
            self.total_bits,
            self.slot.units,
            self.signed,
            self.slot.bit_mask(self.total_bits),
            self.quant_scheme,
            "pact" if self.alpha_bits is None else "lsq",  # per-bits levels learn from the rounding
        )

    def extra_repr(self) -> str:
        return f"{self.slot.axis.name}, total_bits={self.total_bits}, signed={self.signed}"

    # -- the nested-leaf protocol (fn3.nn.protocol) ----------------------------------------------
    def fn3_axes(self) -> tuple[AxisUse, ...]:
        return uses((self.slot, "abits", 1)) if isinstance(self.slot, AxisSlot) else ()

    def fn3_cost(self, in_shape: tuple[int, ...]) -> LeafCost:
        return LeafCost(bits=FLOAT_BITS)  # the clipping level; its MACs are counted by the layer

    def extract(self) -> nn.Module:
        """This quantizer with its kept bits pinned, as the deployed :class:`~fn3.nn.act_quant.ActQuant`:
        the same values as this module's forward, in the fewest passes (no gradient path to keep)."""
        alpha = self.clip_level(len(self.slot.blocks)).detach()
        q = ActQuant(alpha, planes=tuple(self.slot.blocks), total_bits=self.total_bits,
                     signed=self.signed, scheme=self.quant_scheme)  # fmt: skip
        return q.to(self.alpha.device).eval().requires_grad_(False)


def weight_step(layer: nn.Module) -> torch.Tensor:
    """The step of each output channel's 8-bit weight code (out,) of a quantized layer (``weight``,
    ``total_bits`` and ``weight_clip`` attributes, as :class:`~fn3.nn.conv.NestedConv2d` and
    :class:`~fn3.nn.linear.NestedLinear` have): its full weight's range over the top code
    (:func:`~fn3.nn.functional.weight_scale`). The one source of the step: training, extraction
    (``fn3_quant_weight``) and the nested file's writer all read it here.

    Example:
        >>> import torch
        >>> import fn3
        >>> net = fn3.create_model("mlp", input_size=8, in_channels=1, levels=("bits",))
        >>> layer = next(m for m in net.modules() if getattr(m, "wbits", None) is not None)
        >>> bool(torch.allclose(weight_step(layer) * 127, layer.weight.abs().amax(1)))
        True
    """
    return weight_scale(layer.weight, layer.total_bits, getattr(layer, "weight_clip", 0.0))


def quantized_weight(layer: nn.Module, w: torch.Tensor, out: Selection) -> torch.Tensor:
    """Fake-quantize ``w``, the active slice of ``layer.weight`` (its kept output channels ``out``),
    on the layer's kept bit-planes (``layer.wbits``; ``w`` itself for a float weight)."""
    slot = layer.wbits
    if slot is None:
        return w
    scale = out.take(weight_step(layer), 0)  # (out_active,)
    bits = layer.total_bits
    return fake_quant_weight(w, scale, bits, slot.units, slot.bit_mask(bits), layer.quant_scheme)


def quant_weight(layer: nn.Module, out: Selection) -> QuantWeight | None:
    """The :class:`~fn3.nn.protocol.QuantWeight` of ``layer``'s active slice (``None`` for a float
    weight)."""
    slot = layer.wbits
    if slot is None:
        return None
    scale = out.take(weight_step(layer), 0).detach().clone()  # (out_active,)
    return QuantWeight(scale, layer.total_bits, tuple(slot.blocks), layer.quant_scheme)


def set_weight_clip(model: nn.Module, clip: float) -> nn.Module:
    """Quantize every weight of ``model`` on the range ``max|w|`` of each output channel (``clip=0``,
    a layer's default) or ``min(max|w|, clip * rms(w))`` (``clip > 0``); see
    :func:`~fn3.nn.functional.weight_scale`. Every bit-width keeps a prefix of the one code either way.
    ``fn3 train`` sets 3 on a family nested in bits alone unless told otherwise
    (:func:`fn3.run.resolved_weight_clip`).

    Example:
        >>> import fn3
        >>> net = set_weight_clip(fn3.create_model("mlp", input_size=8, in_channels=1), 3.0)
        >>> {m.weight_clip for m in net.modules() if isinstance(m, NestedModule)}
        {3.0}
    """
    from fn3.errors import ConfigError

    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 <= clip <= 1e6:
        raise ConfigError(f"weight_clip={clip!r}: give 0 (each channel's largest magnitude) or a "
                          "multiple of its root mean square, e.g. 3")
    for m in model.modules():
        if isinstance(m, NestedModule):
            m.weight_clip = float(clip)
    config = getattr(model, "fn3_config", None)
    if isinstance(config, dict):
        config.pop("weight_clip", None)
        config.update({"weight_clip": float(clip)} if clip else {})
    return model
