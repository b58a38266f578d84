"""The compiled *cost plan* of a nested model: every cost of every sub-model by arithmetic alone.

A plan is built once per ``(model, input_shape)`` from one forward trace of the full model at batch 1
(module hooks on the nested leaves and plain layers, and a :class:`~torch.overrides.TorchFunctionMode`
that sees the functional activations, residual additions and poolings between them; see
:mod:`fn3.cost._trace`, which knows layers only through :mod:`fn3.nn.protocol`). It records, for each
layer, which axis sets its input/output channels and groups (a :class:`Dim`), which axes set its
weight and activation bits, its spatial sizes, and which droppable block of a block gate gates it. After that
a sub-model's cost is pure Python over the spec's kept blocks: no forward pass, and the model's active
sub-model is never touched (the trace itself runs under ``fn3.active(model, None)`` in eval mode and
restores both).

The plan is cached on the model (``cost_plan(model, shape)`` twice returns the same object).

Example:
    >>> import fn3
    >>> from fn3.cost.plan import cost_plan
    >>> model = fn3.create_model("resnet20", input_size=8)
    >>> plan = cost_plan(model, (3, 8, 8))
    >>> len(plan.layers), plan is cost_plan(model, (3, 8, 8))
    (22, True)
    >>> sizes = plan.resolve(fn3.space(model).largest())
    >>> sizes.units["stage1.width"]
    16
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from torch import nn

from fn3._cache import model_cache
from fn3.errors import ConfigError, SpecError
from fn3.models.info import model_info
from fn3.nest import space as model_space
from fn3.spec import Axis, Space, Spec

if TYPE_CHECKING:
    from fn3.cost.leafplan import LeafPlan

__all__ = ["CostPlan", "Dim", "Layer", "Norm", "Op", "Sizes", "TensorInfo", "cost_plan", "Gate"]

#: ``((depth axis name, block index), ...)``: the droppable residual blocks an op sits in; it runs iff
#: every one of them is kept. Empty for ops outside them (and in a gate's mandatory blocks).
Gate = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Dim:
    """A size that an axis may set: ``units(axis) * per_unit``, or ``full`` when ``axis`` is None."""

    axis: str | None
    per_unit: int
    full: int

    def size(self, units: dict[str, int]) -> int:
        return units[self.axis] * self.per_unit if self.axis is not None else self.full


@dataclass(frozen=True)
class Layer:
    """A convolution or dense layer (weights live here; MACs happen here)."""

    name: str
    kind: str  # "conv" | "linear"
    in_dim: Dim
    out_dim: Dim
    groups: Dim
    kernel: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    bias: bool
    wbits: str | None  # bits axis of the weight (None: float, 32 bits)
    abits: str | None  # bits axis of the input activation (None: float)
    gate: Gate


@dataclass(frozen=True)
class Norm:
    """A batch norm over ``dim`` channels (2 learned numbers per channel)."""

    name: str
    dim: Dim
    gate: Gate


@dataclass(frozen=True)
class TensorInfo:
    """An activation tensor of the trace: ``dim`` channels (or features) times ``hw`` positions.

    ``standin``: the output of a droppable residual block; when the block is dropped its input (of the
    same shape) takes its place, so the tensor still exists in the sub-model.
    """

    dim: Dim
    hw: tuple[int, int]
    gate: Gate
    standin: bool = False


@dataclass(frozen=True)
class Op:
    """One step of the forward pass: ``conv``, ``linear``, ``bn``, ``relu``, ``add`` or ``pool``.

    ``name`` is the layer's module name, the activation of a ``relu`` op (``"relu"``, ``"hardtanh"``,
    ...: any of :data:`fn3.cost._trace.ACTIVATIONS`) or the pooling function of a ``pool`` op;
    ``window`` is a windowed pooling's ``(kernel, stride, padding)`` (empty for an adaptive one).
    """

    kind: str
    name: str
    inputs: tuple[int, ...]  # tensor indices
    output: int
    gate: Gate
    layer: Layer | None = None
    window: tuple[int, ...] = ()


@dataclass(frozen=True)
class Sizes:
    """A spec resolved against a plan: kept units per axis and kept block indices per axis."""

    units: dict[str, int]
    blocks: dict[str, tuple[int, ...]]
    memo: dict[object, object] = field(default_factory=dict, repr=False)  # per-spec results

    def runs(self, gate: Gate) -> bool:
        """True when every residual block in ``gate`` is kept."""
        return all(i in self.blocks[a] for a, i in gate)


@dataclass
class CostPlan:
    """Everything the analytic metrics need, recorded from one trace of the full model.

    Attributes:
        input_shape: ``(C, H, W)`` of one sample.
        layers: convolutions / dense layers in execution order.
        norms: batch norms in execution order.
        tensors: activation tensors of the trace (index 0 is the model input).
        ops: the forward pass as a list of :class:`Op`.
        live: for each op, the tensors alive while it runs (inputs, output, and tensors kept for later,
            such as a residual block's input waiting for the addition).
        notes: ops the plan treats as free (views and element-wise ops it does not model).
    """

    input_shape: tuple[int, int, int]
    axes: dict[str, Axis]
    layers: list[Layer]
    norms: list[Norm]
    tensors: list[TensorInfo]
    ops: list[Op]
    live: list[tuple[int, ...]]
    notes: list[str] = field(default_factory=list)
    # name -> (num_blocks, step, units missing from the last block, mandatory blocks)
    _axis_info: dict[str, tuple[int, int, int, int]] = field(default_factory=dict, repr=False)
    # id(spec) -> (spec, sizes): an identity cache (a Spec's hash walks all its axes, ~3 us); holding
    # the spec keeps its id from being reused while the entry lives.
    _resolved: dict[int, tuple[Spec, Sizes]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, ax in self.axes.items():
            short = ax.step - len(ax.block_units(ax.num_blocks - 1))
            self._axis_info[name] = (ax.num_blocks, ax.step, short, ax.min_blocks)

    def __hash__(self) -> int:  # identity: a plan keys per-plan caches (latency tables)
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def resolve(self, spec: Spec) -> Sizes:
        """Validate ``spec`` against the model's axes and count its kept units.

        Works for any kept set, prefix or not: a set's size is the number of units it keeps. This is
        the hot path of every cost (a search prices many specs), hence the terse loop and the cache.
        """
        hit = self._resolved.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        info = self._axis_info
        keep = spec.keep
        if len(keep) != len(info):
            _raise_spec_error(self.axes, spec)
        units: dict[str, int] = {}
        try:
            for name, kept in keep:
                nb, step, short, m0 = info[name]
                n, last = len(kept), kept[-1]
                # kept is sorted and unique: kept[m0 - 1] == m0 - 1 means the mandatory blocks are in.
                if n < m0 or kept[m0 - 1] != m0 - 1 or kept[0] < 0 or last >= nb:
                    _raise_spec_error(self.axes, spec)
                units[name] = n * step - short if last == nb - 1 else n * step
        except KeyError:
            _raise_spec_error(self.axes, spec)
        sizes = Sizes(units, dict(keep))
        if len(self._resolved) >= 4096:  # bounded: a search visits many specs once
            self._resolved.clear()
        self._resolved[id(spec)] = (spec, sizes)
        return sizes

    def achievable_units(self, name: str) -> list[int]:
        """Every number of units that some kept set of axis ``name`` has (sorted)."""
        ax = self.axes[name]
        mandatory = ax.units(range(ax.min_blocks))
        sums = {mandatory}
        for b in range(ax.min_blocks, ax.num_blocks):
            n = len(ax.block_units(b))
            sums |= {s + n for s in sums}
        return sorted(sums)


def _raise_spec_error(axes: dict[str, Axis], spec: Spec) -> NoReturn:
    """Raise the space's own readable :class:`SpecError` for a spec that does not fit."""
    Space(axes.values()).validate(spec)
    raise SpecError(f"spec {spec!r} does not fit the model")  # not reached: validate() raised


# -- building ------------------------------------------------------------------------------------


def cost_plan(model: nn.Module, input_shape: Sequence[int] | None = None) -> CostPlan | LeafPlan:
    """The (cached) cost plan of ``model`` for one sample of ``input_shape`` (``(C, H, W)`` for images).

    ``input_shape`` defaults to the model's creation arguments (``in_channels``, ``input_size``, or
    the ``input_shape`` of a model of your own).

    Which plan a model gets: an image model whose forward is convolutions, dense layers, batch norms,
    ReLU-family activations, residual additions, poolings and views (the built-in models, and the
    ResNet / VGG / MobileNet-V2 style nets :func:`fn3.nest_` converts) gets a traced
    :class:`CostPlan`, every metric included (peak ``memory``, ``latency``). The trace knows layers
    only through the layer protocol (:mod:`fn3.cost._trace`), and before it is used its params, bits,
    MACs, FLOPs and BitOPs are checked against what the nested leaves say
    (:func:`fn3.cost.leaves.leaf_costs`) on the largest, the smallest and a random sub-model. Any other
    model (a function the trace does not model, such as a ``mean``, a concatenation, a product or
    attention; a non-image input; a disagreement) gets a :class:`~fn3.cost.leafplan.LeafPlan`, which
    asks the nested leaves (:mod:`fn3.nn.protocol`) and prices all but ``memory`` and ``latency``.
    """
    shape = resolve_input_shape(model, input_shape, any_rank=True)
    cache = model_cache(model).setdefault("cost_plans", {})  # {input_shape: plan}, fn3._cache
    plan = cache.get(shape)
    if plan is None:
        from fn3.cost._trace import trace_plan  # late: the tracer pulls in torch.overrides
        from fn3.cost.leafplan import LeafPlan

        axes = {a.name: a for a in model_space(model)}
        try:
            if len(shape) != 3:
                raise ConfigError("not an image input")
            plan = trace_plan(model, shape, axes)  # type: ignore[arg-type]
            _check_against_leaves(model, plan)
        except ConfigError as err:
            plan = LeafPlan(model, shape, axes)
            plan.notes.append(f"not traced: {err}")
        cache[shape] = plan
    return plan


def _check_against_leaves(model: nn.Module, plan: CostPlan) -> None:
    """A ConfigError unless the plan prices what the nested leaves price, on three sub-models.

    The trace follows what it sees; a part it does not see (a plain module's parameter used by a
    function it treats as free, a layer whose leaf prices itself differently) would make it price a
    sub-model wrongly without a word. The leaves are the reference, so a disagreement falls back.
    """
    import torch

    from fn3.cost.leafplan import LEAF_METRICS
    from fn3.cost.leaves import leaf_costs
    from fn3.cost.metrics import get_metric

    space = Space(plan.axes.values())
    specs = [space.largest(), space.smallest(), space.sample(torch.Generator().manual_seed(0))]
    param = next(model.parameters(), None)
    x = torch.zeros(1, *plan.input_shape, device=param.device if param is not None else None)
    for spec in specs:
        try:
            want = leaf_costs(model, spec, x)
        except (RuntimeError, TypeError, ValueError, IndexError):
            return  # the leaves cannot price this input; the traced plan can
        sizes = plan.resolve(spec)
        for name in LEAF_METRICS:
            got = get_metric(name)(plan, sizes)
            if got != want[name]:
                raise ConfigError(f"the traced plan prices {name} at {got:g}, its layers at {want[name]:g}")


def resolve_input_shape(
    model: nn.Module, input_shape: Sequence[int] | None, *, any_rank: bool = False
) -> tuple[int, ...]:
    """``(C, H, W)`` from the argument, else the one the model's recipe records
    (:func:`fn3.models.info.model_info`); a ConfigError if neither.

    ``any_rank=True`` accepts one sample of any shape (``(features,)`` for a model of your own).
    """
    if input_shape is None:
        info = model_info(model)
        if info is None or info.input_shape is None:
            raise ConfigError("give input_shape=(C, H, W): this model does not record its input size")
        input_shape = info.input_shape
    shape = tuple(int(v) for v in input_shape)
    if (len(shape) != 3 and not (any_rank and shape)) or min(shape, default=0) < 1:
        want = "one sample's shape" if any_rank else "(C, H, W)"
        raise ConfigError(f"input_shape must be {want} with positive sizes, got {tuple(input_shape)}")
    return shape
