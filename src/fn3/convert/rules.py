"""Teach :func:`fn3.nest_` a plain layer type: one :func:`register_conversion` call, in your own file.

``nest_`` knows ``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d`` and ``nn.LayerNorm``. Any other
type is frozen (kept as it is) unless a :class:`Conversion` is registered for it, saying

* ``analyse(an, node, name, module, feat)``: how the type maps channels in the traced graph. It reads
  the channel group of its input (``feat``, a :class:`~fn3.convert.groups.Feat` or ``None``), adds
  the module as a :class:`~fn3.convert.groups.Member` of the groups it holds (``an.g.add``), may
  start a new group for its output (``an.fresh(node, dim, name)``) or freeze one (``an.g.freeze``),
  and returns the group of its output;
* ``nested(module, roles)``: its nested twin, given ``roles = {role: (AxisSlot, entries per unit)}``
  for the roles that became axes (the weights are copied by ``state_dict`` afterwards);
* ``roles``: one :class:`Role` per dimension the type's groups slice: whether the type *produces*
  that width (a group needs a producer to become an axis), which tensors and dimension to permute
  when units are reordered by importance, and which weight ranks the units.

The nested twin answers the leaf protocol (:mod:`fn3.nn.protocol`), so cost, search, export and the
files then work on the converted model with no other change. ``docs/nested_layers.md`` walks through
``nn.Embedding`` end to end.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from fn3.convert.groups import Member
    >>> from fn3.nn import NestedLinear
    >>> class Scale(nn.Linear):              # a plain type fn3 does not know: y = x @ W.T, no bias
    ...     def __init__(self, n, m):
    ...         super().__init__(n, m, bias=False)
    >>> def analyse(an, node, name, mod, feat):
    ...     out = an.fresh(node, 1, name)
    ...     an.g.add(out.gid, Member(name, "scale_out"))
    ...     if feat is not None:
    ...         an.g.freeze(feat.gid, f"{name} reads it whole")
    ...     return out
    >>> def nested(mod, roles):
    ...     slot, per = roles.get("scale_out", (None, 1))
    ...     return NestedLinear(mod.in_features, mod.out_features, False, out_axis=slot)
    >>> _ = register_conversion(Conversion(Scale, analyse, nested,
    ...                                    (Role("scale_out", produces=True, permute=(("weight", 0),)),)))
    >>> import fn3
    >>> net = nn.Sequential(Scale(4, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> _ = fn3.nest_(net, torch.zeros(1, 4), levels="neurons", verbose=False)
    >>> fn3.space(net).names
    ('0.width',)
    >>> unregister_conversion(Scale)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fn3.errors import ConfigError

__all__ = ["Conversion", "Role", "conversion_for", "register_conversion", "role", "unregister_conversion"]


@dataclass(frozen=True)
class Role:
    """A dimension of a registered type's tensors that one channel group slices.

    Args:
        name: the role's name, as the ``Member`` s of ``analyse`` give it (unique over all types).
        produces: the type creates this width (its output features); a group becomes an axis only
            if some member produces it.
        kind: the axis kind a group of this role gets (``"neurons"`` or ``"channels"``).
        permute: ``(tensor name, dimension)`` pairs to permute when the group's units are reordered.
        importance: ``(tensor name, dimension)`` whose L1 norm over the other dimensions ranks the
            units (a *consumer* of the group), or ``None``.
    """

    name: str
    produces: bool = False
    kind: str = "neurons"
    permute: tuple[tuple[str, int], ...] = ()
    importance: tuple[str, int] | None = None


@dataclass(frozen=True)
class Conversion:
    """How :func:`fn3.nest_` converts one plain module type (see the module docstring).

    ``quantized=True``: the type multiplies its input by a weight, as a convolution or a dense layer
    does, so it gets weight- and activation-bits axes when ``"bits"`` is asked for. ``nested`` is then
    called with a third argument: ``{}`` without bits, else the keyword arguments fn3's own nested
    layers take (``wbits`` and ``abits``, two :class:`~fn3.nn.slot.AxisSlot` s, ``total_bits`` and
    ``signed_input``: pass them to :class:`~fn3.nn.NestedLinear` or :class:`~fn3.nn.NestedConv2d`, or
    use them in your own leaf). The twin holds its activation quantizer as ``act_quant`` (a
    :class:`~fn3.nn.NestedActQuant`): ``nest_`` sets its clipping level from the example inputs.
    """

    plain: type[nn.Module]
    analyse: Callable[..., Any]
    nested: Callable[..., nn.Module]
    roles: tuple[Role, ...] = ()
    quantized: bool = False


_BY_TYPE: dict[type, Conversion] = {}
_ROLES: dict[str, Role] = {}
#: The roles of the four built-in types (``fn3.convert.groups``); a registered role must not reuse them.
BUILTIN_ROLES = ("conv_in", "conv_out", "conv_tied", "linear_in", "linear_out", "bn", "ln")


def register_conversion(conversion: Conversion) -> Conversion:
    """Register ``conversion`` for its exact type ``conversion.plain`` (not for subclasses)."""
    if not (isinstance(conversion.plain, type) and issubclass(conversion.plain, nn.Module)):
        raise ConfigError(f"register_conversion: {conversion.plain!r} is not an nn.Module type")
    for r in conversion.roles:
        owner = _owner(r.name)
        if r.name in BUILTIN_ROLES or (owner is not None and owner is not conversion.plain):
            raise ConfigError(f"register_conversion: role {r.name!r} is already taken")
        if r.kind not in ("neurons", "channels"):
            raise ConfigError(f"register_conversion: role {r.name!r} has kind {r.kind!r}")
    _BY_TYPE[conversion.plain] = conversion
    _ROLES.update({r.name: r for r in conversion.roles})
    return conversion


def _owner(role_name: str) -> type | None:
    return next((t for t, c in _BY_TYPE.items() if any(r.name == role_name for r in c.roles)), None)


def unregister_conversion(plain: type[nn.Module]) -> None:
    """Forget the conversion of ``plain`` (tests and notebooks that register one for a while)."""
    conv = _BY_TYPE.pop(plain, None)
    for r in conv.roles if conv is not None else ():
        _ROLES.pop(r.name, None)


def conversion_for(module: nn.Module) -> Conversion | None:
    """The registered conversion of ``module``'s exact type, or ``None``."""
    return _BY_TYPE.get(type(module))


def role(name: str) -> Role | None:
    """The registered :class:`Role` called ``name`` (``None`` for the built-in roles)."""
    return _ROLES.get(name)
