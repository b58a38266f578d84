"""Analytic cost metrics of sub-models, a registry of them, and ``cost()`` / ``costs()``.

Every metric is a function ``fn(plan, sizes, **options) -> float`` of the model's compiled
:class:`~fn3.cost.plan.CostPlan` and a spec resolved against it (kept units per axis); no forward
pass runs. What each built-in metric counts (batch 1; "kept" layers are those whose residual block
is kept; a kept set's size is the number of units it keeps, prefix or not):

``params``
    What ``numel()`` of the exported plain sub-model counts: conv/linear weights and biases, and the
    batch-norm weight and bias of every kept channel. Batch-norm running statistics (buffers) and the
    activation clipping levels of the quantizers are not parameters of the sub-model's arithmetic and
    are not counted.
``bits``
    Model size in bits: each conv/linear weight at its kept weight bit-width (32 if the layer is
    float), plus a 32-bit scale per kept output channel of a quantized weight, a 32-bit clipping level
    per quantized activation, 32-bit biases and 2 x 32 bits per kept batch-norm channel (its affine
    pair; running statistics fold into it at deployment).
``macs``
    Multiply-accumulates of the convolutions and dense layers:
    ``out * (in / groups) * k * k * H_out * W_out`` and ``in * out``.
``flops``
    ``2 * macs``, as :mod:`torch.utils.flop_counter` counts convolutions and matrix products. Batch
    norm, ReLU, residual additions, pooling and biases are not counted (nor does the flop counter).
``bitops``
    Per layer ``macs * weight bits * activation bits`` (32 for a float side), summed.
``memory``
    Peak activation memory in bytes of a float32 forward at batch 1: the maximum over the steps of
    the forward pass (each layer, batch norm, ReLU, addition, pooling) of the bytes of every tensor
    alive during it - its inputs and output, plus tensors waiting for a later use such as a
    residual block's input waiting for the addition. Weights, workspace and in-place reuse are not
    modelled.
``latency``
    Milliseconds predicted from a measured :class:`~fn3.cost.latency.LatencyTable`
    (``table=`` option); see :mod:`fn3.cost.latency`.

Example:
    >>> import fn3
    >>> from fn3.cost import cost, costs
    >>> model = fn3.create_model("mlp", input_size=8, in_channels=1, hidden=(32,), levels=("neurons",))
    >>> spec = fn3.space(model).largest()
    >>> cost(model, spec, "params")        # (64*32 + 32) + (32*10 + 10)
    2410.0
    >>> costs(model, spec, ["macs", "flops"])
    {'macs': 2368.0, 'flops': 4736.0}
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from fn3._cache import model_cache
from fn3.cost.plan import CostPlan, Dim, Sizes, cost_plan
from fn3.errors import ConfigError
from fn3.models.info import model_info
from fn3.spec import Spec

__all__ = ["Metric", "cost", "costs", "get_metric", "list_metrics", "register_metric"]

MetricFn = Callable[..., float]
FLOAT_BITS = 32


@dataclass(frozen=True)
class Metric:
    """A registered cost metric.

    Args:
        name: registry name (``"flops"``).
        fn: ``fn(plan, sizes, **options) -> float``.
        unit: what the number counts (``"FLOPs"``, ``"bytes"``, ``"ms"``).
        description: one line for listings.
        needs: option names the metric requires (``("table",)`` for latency).
    """

    name: str
    fn: MetricFn
    unit: str = ""
    description: str = ""
    needs: tuple[str, ...] = ()

    def __call__(self, plan: CostPlan, sizes: Sizes, **options: object) -> float:
        missing = [n for n in self.needs if options.get(n) is None]
        if missing:
            raise ConfigError(f"metric {self.name!r} needs {missing[0]}=...; e.g. cost(model, spec, "
                              f"{self.name!r}, {missing[0]}=fn3.cost.latency.load_latency_table(path))")
        if type(plan) is not CostPlan:  # a LeafPlan: the nested leaves price the built-in metrics
            return plan.metric(self.name, sizes)  # type: ignore[attr-defined]
        if self.needs:
            return float(self.fn(plan, sizes, **{n: options[n] for n in self.needs}))
        # Keyed by the Metric itself, so a metric registered again under the same name recomputes.
        got = sizes.memo.get(self)
        if got is None:
            got = sizes.memo[self] = float(self.fn(plan, sizes))
        return got  # type: ignore[return-value]


_METRICS: dict[str, Metric] = {}


def register_metric(name: str, fn: MetricFn | None = None, *, unit: str = "", description: str = "",
                    needs: Sequence[str] = ()) -> Callable[[MetricFn], MetricFn] | MetricFn:
    """Register ``fn(plan, sizes, **options) -> float`` as metric ``name`` (usable as a decorator).

    Example:
        >>> from fn3.cost import register_metric, list_metrics
        >>> @register_metric("kept_layers", unit="layers", description="kept conv/linear layers")
        ... def kept_layers(plan, sizes):
        ...     return sum(1 for layer in plan.layers if sizes.runs(layer.gate))
        >>> "kept_layers" in list_metrics()
        True
    """

    def deco(f: MetricFn) -> MetricFn:
        _METRICS[name] = Metric(name, f, unit, description, tuple(needs))
        return f

    return deco(fn) if fn is not None else deco


def list_metrics(pattern: str = "*") -> list[str]:
    """Registered metric names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _METRICS if fnmatch.fnmatch(n, pattern))


def get_metric(metric: str | Metric) -> Metric:
    """The :class:`Metric` named ``metric`` (a Metric passes through); ConfigError lists the known."""
    if isinstance(metric, Metric):
        return metric
    try:
        return _METRICS[metric]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown metric {metric!r}; known metrics: {', '.join(list_metrics())}") from None


def _plan(model: nn.Module, input_shape: Sequence[int] | None) -> CostPlan:
    # Fast path for the search's hot loop: the plans cached for the model (fn3._cache).
    cache = model_cache(model).get("cost_plans")
    if cache is not None:
        key = tuple(input_shape) if input_shape is not None else model_default_key(model)
        plan = cache.get(key)
        if plan is not None:
            return plan
    return cost_plan(model, input_shape)


def model_default_key(model: nn.Module) -> tuple[int, ...] | None:
    info = model_info(model)
    return None if info is None else info.input_shape


def cost(model: nn.Module, spec: Spec, metric: str | Metric = "flops", *,
         input_shape: Sequence[int] | None = None, **options: object) -> float:
    """Cost of sub-model ``spec`` of ``model`` under ``metric`` (see :func:`list_metrics`).

    Args:
        model: a nested model (``fn3.create_model(...)``).
        spec: the sub-model, a :class:`~fn3.Spec` of ``fn3.space(model)``; prefix or not.
        metric: a registered name or a :class:`Metric`.
        input_shape: ``(C, H, W)`` of one sample; default: the model's creation arguments.
        options: metric options, e.g. ``table=`` for ``"latency"``.

    Example:
        >>> import fn3
        >>> model = fn3.create_model("resnet20", input_size=32)
        >>> space = fn3.space(model)
        >>> full, half = space.largest(), space.uniform({"channels": 0.5})
        >>> fn3.cost(model, full, "flops") > fn3.cost(model, half, "flops")
        True
    """
    m = get_metric(metric)
    if options:
        _check_options(options, m.needs + tuple(n for r in _METRICS.values() for n in r.needs))
    plan = _plan(model, input_shape)
    return m(plan, plan.resolve(spec), **options)


def costs(model: nn.Module, spec: Spec, metrics: Iterable[str | Metric] | None = None, *,
          input_shape: Sequence[int] | None = None, **options: object) -> dict[str, float]:
    """Several costs of one sub-model at once (the spec is resolved once).

    ``metrics=None`` gives every registered metric whose options are given (latency only with
    ``table=``).
    """
    chosen_needs = () if metrics is None else tuple(n for m in metrics for n in get_metric(m).needs)
    _check_options(options, chosen_needs + tuple(n for m in _METRICS.values() for n in m.needs))
    plan = _plan(model, input_shape)
    sizes = plan.resolve(spec)
    if metrics is None:
        chosen = [m for n, m in sorted(_METRICS.items()) if all(options.get(k) is not None for k in m.needs)]
    else:
        chosen = [get_metric(m) for m in metrics]
    return {m.name: m(plan, sizes, **options) for m in chosen}


def _check_options(options: dict[str, object], known: tuple[str, ...]) -> None:
    for name in options:
        if name not in known:
            hint = f"; metric options are {', '.join(sorted(set(known)))}" if known else ""
            raise ConfigError(f"unknown cost option {name!r}{hint}")


# -- built-in metrics ----------------------------------------------------------------------------


def _size(d: Dim, u: dict[str, int]) -> int:
    return u[d.axis] * d.per_unit if d.axis is not None else d.full


def _compiled(plan: CostPlan) -> tuple[list[tuple], list[tuple]]:
    """Flat tuples of the plan's layers and norms, built once: the metric loops below are the hot path.

    Layer tuple: ``(gate, in_axis, in_per_unit, in_full, out_axis, out_per_unit, out_full, groups_axis,
    groups_full, k*k*H_out*W_out, k*k, bias, wbits axis, abits axis)``; norm tuple: ``(gate, axis,
    per_unit, full)``. An axis of ``None`` means the full size.
    """
    fast = getattr(plan, "_metric_tuples", None)
    if fast is None:
        layers = [(ly.gate, ly.in_dim.axis, ly.in_dim.per_unit, ly.in_dim.full, ly.out_dim.axis,
                   ly.out_dim.per_unit, ly.out_dim.full, ly.groups.axis, ly.groups.full,
                   ly.kernel * ly.kernel * ly.out_hw[0] * ly.out_hw[1], ly.kernel * ly.kernel, ly.bias,
                   ly.wbits, ly.abits) for ly in plan.layers]
        norms = [(n.gate, n.dim.axis, n.dim.per_unit, n.dim.full) for n in plan.norms]
        fast = (layers, norms)
        plan._metric_tuples = fast  # type: ignore[attr-defined]
    return fast


def _kept_layers(plan: CostPlan, sizes: Sizes) -> list[tuple[int, int, int, tuple]]:
    """``(in, out, groups, layer tuple)`` of every kept layer, memoised on ``sizes``."""
    memo = sizes.memo
    got = memo.get("_layers")
    if got is not None:
        return got  # type: ignore[return-value]
    u, blocks = sizes.units, sizes.blocks
    out = []
    for t in _compiled(plan)[0]:
        gate, ia, ipu, ifull, oa, opu, ofull, ga, gfull = t[:9]
        if gate and not all(i in blocks[a] for a, i in gate):
            continue
        out.append((u[ia] * ipu if ia else ifull, u[oa] * opu if oa else ofull,
                    u[ga] if ga else gfull, t))
    memo["_layers"] = out  # type: ignore[assignment]
    return out


def _norm_channels(plan: CostPlan, sizes: Sizes) -> int:
    u, blocks = sizes.units, sizes.blocks
    total = 0
    for gate, a, pu, full in _compiled(plan)[1]:
        if gate and not all(i in blocks[g] for g, i in gate):
            continue
        total += u[a] * pu if a else full
    return total


@register_metric("params", unit="params", description="parameters of the sliced sub-model (numel)")
def params(plan: CostPlan, sizes: Sizes) -> int:
    total = 0
    for cin, cout, g, t in _kept_layers(plan, sizes):
        total += cout * (cin // g) * t[10] + (cout if t[11] else 0)
    return total + 2 * _norm_channels(plan, sizes)


@register_metric("bits", unit="bits", description="model size: weights at their kept bits + scales")
def bits(plan: CostPlan, sizes: Sizes) -> int:
    u = sizes.units
    total = 0
    for cin, cout, g, t in _kept_layers(plan, sizes):
        wbits, abits = t[12], t[13]
        total += cout * (cin // g) * t[10] * (u[wbits] if wbits else FLOAT_BITS)
        if wbits:
            total += cout * FLOAT_BITS  # one scale per kept output channel
        if abits:
            total += FLOAT_BITS  # the activation clipping level
        if t[11]:
            total += cout * FLOAT_BITS  # bias
    return total + 2 * FLOAT_BITS * _norm_channels(plan, sizes)


@register_metric("macs", unit="MACs", description="multiply-accumulates of conv and linear layers")
def macs(plan: CostPlan, sizes: Sizes) -> int:
    return sum(cout * (cin // g) * t[9] for cin, cout, g, t in _kept_layers(plan, sizes))


@register_metric("flops", unit="FLOPs", description="2 x MACs (torch.utils.flop_counter convention)")
def flops(plan: CostPlan, sizes: Sizes) -> int:
    return 2 * macs(plan, sizes)


@register_metric("bitops", unit="BitOPs", description="MACs x weight bits x activation bits")
def bitops(plan: CostPlan, sizes: Sizes) -> int:
    u = sizes.units
    total = 0
    for cin, cout, g, t in _kept_layers(plan, sizes):
        wbits, abits = t[12], t[13]
        total += (cout * (cin // g) * t[9] * (u[wbits] if wbits else FLOAT_BITS)
                  * (u[abits] if abits else FLOAT_BITS))
    return total


@register_metric("memory", unit="bytes", description="peak float32 activation memory at batch 1")
def memory(plan: CostPlan, sizes: Sizes) -> int:
    u, blocks = sizes.units, sizes.blocks
    tensors, ops = _memory_tuples(plan)
    # Elements of every tensor that exists in the sub-model (0 for tensors of dropped blocks).
    elems = [(u[a] * pu_hw if a else full_hw)
             if (not gate or standin or all(i in blocks[g] for g, i in gate)) else 0
             for a, pu_hw, full_hw, gate, standin in tensors]
    get = elems.__getitem__
    peak = 0
    for gate, live in ops:
        if gate and not all(i in blocks[g] for g, i in gate):
            continue
        n = sum(map(get, live))
        if n > peak:
            peak = n
    return 4 * peak


def _memory_tuples(plan: CostPlan) -> tuple[list[tuple], list[tuple]]:
    fast = getattr(plan, "_memory_tuples", None)
    if fast is None:
        tensors = [(t.dim.axis, t.dim.per_unit * t.hw[0] * t.hw[1], t.dim.full * t.hw[0] * t.hw[1],
                    t.gate, t.standin) for t in plan.tensors]
        ops = [(op.gate, live) for op, live in zip(plan.ops, plan.live, strict=True)]
        fast = plan._memory_tuples = (tensors, ops)  # type: ignore[attr-defined]
    return fast


@register_metric("latency", unit="ms", description="predicted from a measured latency table (table=)",
                 needs=("table",))
def latency(plan: CostPlan, sizes: Sizes, table: object = None) -> float:
    from fn3.cost.latency import LatencyTable

    if not isinstance(table, LatencyTable):
        raise ConfigError(f"metric 'latency' needs table= a LatencyTable, got {type(table).__name__}")
    return table.predict_sizes(plan, sizes)
