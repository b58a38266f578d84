"""Analytic costs equal counted costs on every registered model, for prefix and non-prefix specs."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from spec_strategies import SPECS, specs
from torch.utils.flop_counter import FlopCounterMode

import fn3
from fn3._cache import model_cache
from fn3.cost import cost, cost_plan, costs
from fn3.nn import NestedBatchNorm2d, NestedConv2d, NestedLinear
from fn3.nn.base import select

# Every registered model (a newly registered one is covered automatically), small and fast.
MODEL_ARGS = {"mlp": {"hidden": (64, 32)}}
MODELS = [(name, MODEL_ARGS.get(name, {})) for name in fn3.list_models()]
SHAPE = (3, 8, 8)


def _model(name: str, kwargs: dict) -> torch.nn.Module:
    return fn3.create_model(name, num_classes=10, in_channels=3, input_size=8, **kwargs).eval()


def counted(model: torch.nn.Module, spec: fn3.Spec) -> tuple[int, int]:
    """(FLOPs by torch's flop counter, numel of the active weight slices) of one forward as ``spec``."""
    ran: list[torch.nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, a, o: ran.append(m)) for m in model.modules()
             if isinstance(m, (NestedConv2d, NestedLinear, NestedBatchNorm2d))]
    try:
        with torch.no_grad(), fn3.active(model, spec):
            counter = FlopCounterMode(display=False)
            with counter:
                model(torch.randn(1, *SHAPE))
            numel = 0
            for m in ran:  # only the layers that ran: dropped residual blocks do not count
                if isinstance(m, NestedBatchNorm2d):
                    numel += 2 * select(m.axis, m.num_features, m.per_unit).n  # weight + bias
                else:
                    w, b = m.active_weight()
                    numel += w.numel() + (b.numel() if b is not None else 0)
    finally:
        for h in hooks:
            h.remove()
    return counter.get_total_flops(), numel


@pytest.mark.parametrize(("name", "kwargs"), MODELS, ids=[m for m, _ in MODELS])
def test_flops_and_params_equal_counted(name: str, kwargs: dict) -> None:
    model = _model(name, kwargs)
    space = fn3.space(model)
    seen = []

    def check(spec: fn3.Spec) -> None:
        seen.append(spec)
        flops, numel = counted(model, spec)
        assert cost(model, spec, "flops", input_shape=SHAPE) == flops, spec
        assert cost(model, spec, "macs", input_shape=SHAPE) * 2 == flops
        assert cost(model, spec, "params", input_shape=SHAPE) == numel, spec

    check(space.largest())
    check(space.smallest())
    settings(SPECS, max_examples=12)(given(spec=specs(space))(check))()
    assert sum(not s.is_prefix for s in seen) >= 4  # the non-prefix path is really exercised


def _exported_numel(exported: torch.nn.Module) -> int:
    """numel of the exported model's weights: integer codes or float weights, biases, BN affine."""
    from fn3.export import QuantConv2d, QuantLinear

    total = 0
    for m in exported.modules():
        if isinstance(m, (QuantConv2d, QuantLinear)):
            total += m.codes.numel() + (m.bias.numel() if m.bias is not None else 0)
        elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
            total += sum(p.numel() for p in (m.weight, m.bias) if p is not None)
    return total


@pytest.mark.parametrize(("name", "kwargs"), MODELS, ids=[m for m, _ in MODELS])
def test_costs_equal_those_of_the_exported_model(name: str, kwargs: dict) -> None:
    model = _model(name, kwargs)
    space = fn3.space(model)

    def check(spec: fn3.Spec) -> None:
        small = fn3.export(model, spec).eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            small(torch.randn(1, *SHAPE))
        assert cost(model, spec, "flops", input_shape=SHAPE) == counter.get_total_flops(), spec
        assert cost(model, spec, "params", input_shape=SHAPE) == _exported_numel(small), spec

    check(space.largest())
    check(space.smallest())
    settings(SPECS, max_examples=4)(given(spec=specs(space))(check))()


def test_bits_bitops_memory_by_hand_on_a_tiny_mlp() -> None:
    # 1x4x4 input -> fc1 (16 -> 8, float) -> fc2 (8 -> 6, quantized) -> fc3 (6 -> 3, float)
    model = fn3.create_model("mlp", num_classes=3, in_channels=1, input_size=4, hidden=(8, 6),
                             width_blocks=4).eval()  # fc1.width: 4 blocks of 2 neurons
    space = fn3.space(model)
    spec = space.fill({"fc1.width": (0, 1), "fc2.wbits": (0, 1, 2), "fc2.abits": (0, 1, 2, 3, 4)})
    h1, h2, wb, ab = 4, 6, 3, 5  # kept: 4 of 8 neurons, all 6, 3 weight bits, 5 activation bits
    assert cost(model, spec, "params") == (16 * h1 + h1) + (h1 * h2 + h2) + (h2 * 3 + 3)
    macs = 16 * h1 + h1 * h2 + h2 * 3
    assert cost(model, spec, "macs") == macs
    assert cost(model, spec, "bitops") == 16 * h1 * 32 * 32 + h1 * h2 * wb * ab + h2 * 3 * 32 * 32
    bits = ((16 * h1 + h1) * 32  # fc1: float weights and bias
            + h1 * h2 * wb + h2 * 32 + 32 + h2 * 32  # fc2: codes, a scale per row, alpha, bias
            + (h2 * 3 + 3) * 32)  # fc3: float
    assert cost(model, spec, "bits") == bits
    # Peak live activations: fc1 reads the 16 inputs and writes 4 (ReLU: 4 in, 4 out, input freed).
    assert cost(model, spec, "memory") == 4 * (16 + h1)
    # A non-prefix set costs what its number of kept units costs.
    other = space.fill({"fc1.width": (0, 3), "fc2.wbits": (0, 1, 5), "fc2.abits": (0, 1, 2, 5, 6)})
    for metric in ("params", "bits", "bitops", "macs", "memory"):
        assert cost(model, other, metric) == cost(model, spec, metric), metric


def test_memory_counts_the_residual_input_kept_for_the_addition() -> None:
    model = _model("resnet20", {})
    space = fn3.space(model)
    full = cost(model, space.largest(), "memory", input_shape=SHAPE)
    # stage 1 at 8x8 with 16 channels: inside a block, conv2 reads y1 and writes y2 while the block
    # input x waits for the addition: 3 tensors of 16*8*8 floats.
    assert full == 3 * 16 * 8 * 8 * 4


def test_costs_are_monotone_when_a_block_is_removed(subset_spec) -> None:
    model = _model("resnext_tiny", {})
    space = fn3.space(model)
    gen = torch.Generator().manual_seed(3)
    metrics = ["params", "bits", "macs", "flops", "bitops", "memory"]
    for _ in range(6):
        spec = subset_spec(space, gen, keep=0.7)
        base = costs(model, spec, metrics, input_shape=SHAPE)
        for ax in space:
            kept = spec.kept(ax.name)
            for b in kept[ax.min_blocks:]:
                smaller = spec.with_blocks(ax.name, [k for k in kept if k != b])
                after = costs(model, smaller, metrics, input_shape=SHAPE)
                for m in metrics:
                    assert after[m] <= base[m], (ax.name, b, m)


def test_cost_leaves_the_model_alone_and_caches_its_plan() -> None:
    model = fn3.create_model("resnet20", input_size=8)  # training mode, as after create_model
    space = fn3.space(model)
    small = space.smallest()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with fn3.active(model, small):
        cost(model, space.largest(), "flops", input_shape=SHAPE)
        assert fn3.current_spec(model) == small  # the trace restored the active sub-model
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert cost_plan(model, SHAPE) is cost_plan(model, SHAPE)
    assert cost_plan(model, (3, 16, 16)) is not cost_plan(model, SHAPE)
    twin = copy.deepcopy(model)  # a copy does not drag the plans (and their caches) along
    assert "cost_plans" not in model_cache(twin) and "cost_plans" in model_cache(model)
    assert cost(twin, space.largest(), "flops", input_shape=SHAPE) == cost(
        model, space.largest(), "flops", input_shape=SHAPE)


def test_input_shape_defaults_to_the_model_and_changes_spatial_costs() -> None:
    model = fn3.create_model("resnet20", input_size=16)
    spec = fn3.space(model).largest()
    assert cost(model, spec, "flops") == cost(model, spec, "flops", input_shape=(3, 16, 16))
    assert cost(model, spec, "flops", input_shape=(3, 32, 32)) > cost(model, spec, "flops")
    assert cost(model, spec, "params", input_shape=(3, 32, 32)) == cost(model, spec, "params")
