"""The cost plan of any nested model whose forward the traced plan cannot model: ask its leaves.

:func:`fn3.cost.plan.cost_plan` compiles a model's forward into a :class:`~fn3.cost.plan.CostPlan`
when it can (the built-in models, and models of your own after :func:`fn3.nest_` made of
convolutions, dense layers, batch norms, ReLU-family activations, residual additions, poolings and
views: every metric in tens of microseconds, peak memory and latency included). A model that applies
functions the traced plan does not model (a ``mean`` over positions, a concatenation, the product of
a squeeze-excite, attention, a layer norm), or that is not an image model, gets a :class:`LeafPlan`
instead (its ``notes`` say why),
which prices a spec by :func:`fn3.cost.leaves.leaf_costs`: each nested leaf that runs answers
``fn3_cost`` (:mod:`fn3.nn.protocol`), the plain parts add their counted FLOPs and parameters. The
metrics ``params``, ``bits``, ``macs``, ``flops`` and ``bitops`` mean the same on both plans; ``memory``
and ``latency`` need the traced plan and say so.

Example:
    >>> import torch, fn3
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3))
    >>> _ = fn3.nest_(net, torch.zeros(1, 4), levels="neurons", verbose=False)
    >>> space = fn3.space(net)
    >>> fn3.cost(net, space.largest(), "params", input_shape=(4,))   # 4*16+16 + 2*16 + 16*3+3
    163.0
    >>> type(fn3.cost.cost_plan(net, (4,))).__name__
    'LeafPlan'
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from fn3.cost.leaves import leaf_costs
from fn3.cost.plan import Sizes
from fn3.errors import ConfigError
from fn3.spec import Axis, Space, Spec

__all__ = ["LEAF_METRICS", "LeafPlan"]

#: The metrics a :class:`LeafPlan` answers (what :class:`~fn3.nn.protocol.LeafCost` holds).
LEAF_METRICS = ("params", "bits", "macs", "flops", "bitops")


class LeafPlan:
    """Prices specs of ``model`` by asking its nested leaves, for one input of ``input_shape``.

    Same ``resolve(spec) -> Sizes`` as :class:`~fn3.cost.plan.CostPlan`, so :func:`fn3.cost` and
    :func:`fn3.cost.costs` use either; a spec's costs are computed once and kept in its ``Sizes``.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], axes: dict[str, Axis]):
        self._model = weakref.ref(model)  # the plan is cached on the model: no reference cycle
        self.input_shape, self.axes = tuple(input_shape), dict(axes)
        self._space = Space(axes.values())
        self._resolved: dict[Spec, Sizes] = {}  # the costs of a spec are computed once
        self.notes = ["priced by the nested leaves (fn3.cost.leaves.leaf_costs)"]

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def resolve(self, spec: Spec) -> Sizes:
        """Validate ``spec`` (a readable :class:`~fn3.errors.SpecError` if it does not fit)."""
        sizes = self._resolved.get(spec)
        if sizes is None:
            spec = self._space.validate(spec)
            keep = dict(spec.keep)
            sizes = Sizes({n: self.axes[n].units(b) for n, b in keep.items()}, keep)
            sizes.memo["_spec"] = spec
            if len(self._resolved) >= 4096:  # bounded: a search visits many specs once
                self._resolved.clear()
            self._resolved[spec] = sizes
        return sizes

    def metric(self, name: str, sizes: Sizes) -> float:
        """The value of built-in metric ``name`` for a resolved spec."""
        if name not in LEAF_METRICS:
            raise ConfigError(
                f"metric {name!r} needs the traced cost plan, which this model's forward does not fit; "
                f"its layers price {', '.join(LEAF_METRICS)}"
            )
        got = sizes.memo.get("_leaf")
        if got is None:
            model = self._model()
            if model is None:
                raise ConfigError("the model of this cost plan no longer exists")
            x = torch.zeros(1, *self.input_shape)
            try:
                got = leaf_costs(model, sizes.memo["_spec"], x)
            except (RuntimeError, TypeError, ValueError, IndexError) as err:
                raise ConfigError(
                    f"cannot price this model on a float input of shape {tuple(x.shape)} "
                    f"({type(err).__name__}); for other inputs (token indices, several tensors) use "
                    "fn3.cost.leaf_costs(model, spec, *example_inputs)"
                ) from None
            sizes.memo["_leaf"] = got
        return float(got[name])  # type: ignore[index]
