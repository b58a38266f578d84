"""Cost models of sub-models: analytic metrics (params, bits, MACs, FLOPs, BitOPs, memory) and
latency predicted from a table measured on your own device.

``fn3.cost`` is both this package and a function: ``fn3.cost(model, spec, "flops")`` calls
:func:`fn3.cost.metrics.cost`. (The package is made callable so that ``fn3.cost(...)`` and
``fn3.cost.latency`` can both work; a plain function of the same name would hide the sub-modules.)

Every cost is computed from the model's compiled :class:`~fn3.cost.plan.CostPlan` (one trace of the
full model, cached on it) by arithmetic over the spec's kept blocks, in tens of microseconds, so a
search can price many candidates; see :mod:`fn3.cost.metrics` for exactly what each metric counts.
The trace reads layers only through the layer protocol (:mod:`fn3.nn.protocol`), so a model
:func:`fn3.nest_` made gets the same plan when its forward is convolutions, dense layers, batch norms,
ReLU-family activations, residual additions, poolings and views (ResNet, VGG, MobileNet-V2 style). A
model whose forward the trace does not model (squeeze-excite, a concatenation, attention, a non-image
input) is priced by its nested layers instead (:class:`~fn3.cost.leafplan.LeafPlan`, the same metrics
but memory and latency); :func:`fn3.cost.plan.cost_plan` says which plan a model gets.

Example:
    >>> import fn3
    >>> import fn3.cost
    >>> model = fn3.create_model("resnet20", input_size=32)
    >>> spec = fn3.space(model).uniform({"channels": 0.5, "bits": 4})
    >>> flops = fn3.cost(model, spec, "flops")
    >>> fn3.cost.costs(model, spec, ["flops", "params"])["flops"] == flops
    True
    >>> fn3.cost.list_metrics()[:3]
    ['bitops', 'bits', 'flops']
"""

from __future__ import annotations

from fn3._callable import make_callable
from fn3.cost.latency import LatencyTable, load_latency_table, measure_latency_table
from fn3.cost.leaves import leaf_costs
from fn3.cost.metrics import Metric, cost, costs, get_metric, list_metrics, register_metric
from fn3.cost.plan import CostPlan, cost_plan

__all__ = [
    "CostPlan",
    "LatencyTable",
    "Metric",
    "cost",
    "cost_plan",
    "costs",
    "get_metric",
    "leaf_costs",
    "list_metrics",
    "load_latency_table",
    "measure_latency_table",
    "register_metric",
]


make_callable(__name__, cost)
