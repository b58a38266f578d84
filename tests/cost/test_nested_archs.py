"""Models made nested by ``fn3.nest_`` get the traced cost plan when their forward fits it.

ResNet-18/50, ResNeXt-50, VGG-BN, MobileNet-V2 and an MLP of ``tests/convert/archs.py`` (in-place
residual additions and ReLUs, max pooling, depthwise convolutions, ReLU6, gated blocks) are traced
through the layer protocol alone: their plan prices FLOPs as torch's flop counter counts the extracted
sub-model, every leaf metric as the leaves do, and has the two metrics only a plan has, peak memory
and latency. Squeeze-excite (a product), a concatenation and attention still get the ``LeafPlan``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from spec_strategies import seeded_specs
from torch.utils.flop_counter import FlopCounterMode

import fn3
from fn3.cost import cost, costs, measure_latency_table
from fn3.cost._plain import float_submodel
from fn3.cost.leafplan import LEAF_METRICS, LeafPlan
from fn3.cost.leaves import leaf_costs
from fn3.cost.plan import CostPlan, cost_plan
from fn3.cost.units import latency_units
from fn3.export.submodel import extract_submodel
from fn3.nn.act_quant import ActQuant
from fn3.nn.base import NestedActQuant

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))
from archs import build  # noqa: E402  (the conversion tests' architectures)

TRACED = ["resnet18", "resnet50", "resnext50", "vgg11_bn", "mobilenet_v2", "mlp"]
NOT_TRACED = ["mobilenet_v3", "efficientnet", "vit", "concat"]


def _nested(name: str, bits: bool) -> tuple[torch.nn.Module, torch.Tensor]:
    model, x = build(name, seed=1)
    levels = None if bits else ("neurons", "channels", "paths", "layers")
    fn3.nest_(model, x, levels=levels, verbose=False)
    return model, x[:1]


@pytest.fixture(scope="module")
def nested() -> dict:
    """``(name, bits) -> (nested model, one input)``, built once."""
    return {}


def _get(nested: dict, name: str, bits: bool) -> tuple[torch.nn.Module, torch.Tensor]:
    if (name, bits) not in nested:
        nested[name, bits] = _nested(name, bits)
    return nested[name, bits]


def _counted_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("bits", [False, True], ids=["float", "quantized"])
@pytest.mark.parametrize("name", TRACED)
def test_traced_plan_prices_as_the_leaves_and_the_flop_counter(nested: dict, name: str, bits: bool) -> None:
    model, x = _get(nested, name, bits)
    shape = tuple(x.shape[1:])
    plan = cost_plan(model, shape)
    assert type(plan) is CostPlan, plan.notes
    space = fn3.space(model)
    for spec in [space.largest(), space.smallest(), *seeded_specs(space, 6, seed=len(name))]:
        got = costs(model, spec, [*LEAF_METRICS, "memory"], input_shape=shape)
        want = leaf_costs(model, spec, x)
        assert {k: got[k] for k in LEAF_METRICS} == want, spec
        assert got["flops"] == _counted_flops(extract_submodel(model, spec), x), spec
        assert got["memory"] > 0


@pytest.mark.parametrize("name", TRACED)
def test_memory_never_grows_when_channels_shrink(nested: dict, name: str) -> None:
    model, x = _get(nested, name, False)
    shape = tuple(x.shape[1:])
    space = fn3.space(model)
    kinds = {a.kind for a in space} & {"channels", "neurons", "paths"}
    fractions = [1.0, 0.75, 0.5, 0.25, 0.01]  # 0.01: the mandatory blocks
    mem = [cost(model, space.uniform(dict.fromkeys(kinds, f)), "memory", input_shape=shape)
           for f in fractions]
    assert mem == sorted(mem, reverse=True) and mem[0] > mem[-1] > 0
    # Shrinking one axis of random kept sets never costs more memory either.
    for spec in seeded_specs(space, 6, seed=1):
        keep = dict(spec.keep)
        for ax in space:
            if ax.kind in kinds and len(keep[ax.name]) > ax.min_blocks:
                smaller = fn3.Spec({**keep, ax.name: keep[ax.name][:-1]})
                assert cost(model, smaller, "memory", input_shape=shape) <= cost(model, spec, "memory",
                                                                                input_shape=shape)


@pytest.mark.parametrize("name", NOT_TRACED)
def test_forwards_the_plan_does_not_model_still_get_the_leaf_plan(nested: dict, name: str) -> None:
    model, x = _get(nested, name, False)
    shape = tuple(x.shape[1:])
    plan = cost_plan(model, shape)
    assert type(plan) is LeafPlan and plan.notes[-1].startswith("not traced: ")
    spec = fn3.space(model).smallest()
    assert cost(model, spec, "flops", input_shape=shape) == _counted_flops(extract_submodel(model, spec), x)
    with pytest.raises(fn3.ConfigError, match="'memory' needs the traced cost plan"):
        cost(model, spec, "memory", input_shape=shape)


def test_latency_table_of_a_nested_resnet(nested: dict) -> None:
    model, x = _get(nested, "resnet18", True)
    shape = tuple(x.shape[1:])
    space = fn3.space(model)
    specs = [space.smallest(), space.largest()]
    table = measure_latency_table(model, shape, repeats=2, threads=1, clock="cpu", specs=specs,
                                  references=specs)
    sigs = set(table.entries)
    assert any(s.startswith("pool(c=") and ",op=max," in s and s.endswith(",k=2,s=2,p=0)") for s in sigs)
    for spec in specs:
        assert cost(model, spec, "latency", table=table, input_shape=shape) > 0
    assert len(table.check(model, shape)) == 2


def test_units_name_activations_other_than_relu(nested: dict) -> None:
    model, x = _get(nested, "mobilenet_v2", False)
    plan = cost_plan(model, tuple(x.shape[1:]))
    units = latency_units(plan)
    sizes = plan.resolve(fn3.space(model).largest())
    sigs = [u.signature(u.sizes(sizes.units)) for u in units]
    assert any(",g=32," in s and s.endswith(",bn=1,relu=1,act=hardtanh)") for s in sigs)  # depthwise + ReLU6
    module, args = next(u for u in units if u.kind == "conv2d").build(
        next(u for u in units if u.kind == "conv2d").sizes(sizes.units), 1)
    assert isinstance(module[-1], torch.nn.Hardtanh) and module(*args).shape[0] == 1


def test_float_submodel_of_a_quantized_nested_model_has_no_quantizer(nested: dict) -> None:
    model, x = _get(nested, "mobilenet_v2", True)
    shape = tuple(x.shape[1:])
    spec = fn3.space(model).uniform({"channels": 0.5, "layers": 0.5, "bits": 4})
    sub = float_submodel(model, spec)
    assert not any(isinstance(m, (ActQuant, NestedActQuant)) for m in sub.modules())
    assert sum(p.numel() for p in sub.parameters()) == cost(model, spec, "params", input_shape=shape)
    assert _counted_flops(sub, x) == cost(model, spec, "flops", input_shape=shape)
