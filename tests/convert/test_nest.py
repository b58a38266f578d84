"""`fn3.nest_` on plain networks with the op patterns of ResNet-18/50, ResNeXt, VGG-BN, MobileNet-V2/V3,
EfficientNet, a ViT block, a user MLP and a channel concat.

For each: the full nested model equals the original (pretrained weights reordered by importance),
and over Hypothesis-drawn specs (prefix or not) the extracted sub-model equals the nested one and the
analytic FLOPs equal ``torch.utils.flop_counter`` on the extracted sub-model.
"""

from __future__ import annotations

import pytest
import torch
from archs import ARCHS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import fn3
from fn3.cost.leaves import leaf_costs
from fn3.export.submodel import extract_submodel
from fn3.spec import Space, Spec

KINDS = {
    "resnet18": {"channels", "layers"},
    "resnet50": {"channels", "layers"},
    "resnext50": {"channels", "paths", "layers"},
    "vgg11_bn": {"channels", "neurons"},
    "mobilenet_v2": {"channels", "layers"},
    "mobilenet_v3": {"channels", "layers"},
    "efficientnet": {"channels", "layers"},
    "vit": {"neurons", "layers"},
    "mlp": {"neurons"},
    "concat": {"channels"},
}


@st.composite
def specs(draw: st.DrawFn, space: Space) -> Spec:
    """Any kept set holding each axis's mandatory blocks (a prefix half of the time)."""
    keep = {}
    prefix = draw(st.booleans())
    for a in space:
        if prefix:
            keep[a.name] = range(draw(st.integers(a.min_blocks, a.num_blocks)))
        else:
            extra = draw(st.lists(st.integers(a.min_blocks, a.num_blocks - 1), max_size=a.num_blocks)) \
                if a.num_blocks > a.min_blocks else []
            keep[a.name] = [*range(a.min_blocks), *extra]
    return space.validate(Spec(keep))


def counted_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", list(ARCHS))
def test_full_nested_model_equals_the_original(nested_float, name):
    orig, model, x, report = nested_float[name]
    with torch.no_grad():
        assert (model(x) - orig(x)).abs().max().item() <= 1e-5
    assert set(fn3.space(model).kinds()) == KINDS[name]
    assert set(report.axes) == set(fn3.space(model).names)
    # The reordering really moved units (else the equality would prove nothing about it).
    assert any(order != sorted(order) for order in report.orders.values())


@pytest.mark.parametrize("name", list(ARCHS))
def test_extracted_equals_nested_and_flops_equal_the_counter(nested_all, name):
    model, x = nested_all[name]
    space = fn3.space(model)
    assert "bits" in space.kinds()

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=specs(space))
    def check(spec: Spec) -> None:
        sub = extract_submodel(model, spec)
        with torch.no_grad(), fn3.active(model, spec):
            ref = model(x)
        assert (sub(x) - ref).abs().max().item() <= 1e-5
        assert leaf_costs(model, spec, x[:1])["flops"] == counted_flops(sub, x[:1])

    check()


def test_the_report_says_why_groups_are_frozen(nested_float):
    report = nested_float["concat"][3]
    reasons = {r.group: r.frozen for r in report.rows}
    concat = "channel concatenation (a first version freezes it)"
    assert reasons["a.3.width"] == reasons["b.0.width"] == concat
    assert reasons["a.0.width"] is None and reasons["mix.width"] is None  # nested elsewhere
    assert reasons["input"] == "the model input" and reasons["fc.width"] == "the model output"
    text = str(report)
    assert "a.0.width (channels)" in text and "channel concatenation" in text
    assert 0.5 < report.nested_params < 1.0
    vit = {r.group: r for r in nested_float["vit"][3].rows}
    assert vit["blocks.0.mlp.0.width"].kind == "neurons" and vit["patch.width"].axis is None


def test_shape_preserving_residual_blocks_become_layers_axes(nested_float):
    model = nested_float["resnet18"][1]
    space = fn3.space(model)
    assert space["layer1.depth"].size == 2 and space["layer2.depth"].size == 3  # unit 0: the downsample block
    assert type(model.layer2).__name__ == "NestedSequential"
    x = nested_float["resnet18"][2]
    with fn3.active(model, space.largest().with_blocks("layer2.depth", [0])), torch.no_grad():
        y = model(x)  # only layer2.0 runs
    with torch.no_grad():
        h = model.maxpool(torch.relu(model.bn1(model.conv1(x))))
        ref = model.fc(torch.flatten(model.avgpool(model.layer2[0](model.layer1(h))), 1))
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("name", list(ARCHS))
def test_fn3_cost_prices_every_converted_model_as_its_leaves_do(nested_all, name):
    model, x = nested_all[name]
    space = fn3.space(model)
    shape = tuple(x.shape[1:])
    for spec in (space.smallest(), space.uniform({"channels": 0.5, "bits": 4}), space.largest()):
        got = fn3.cost.costs(model, spec, ["params", "bits", "macs", "flops", "bitops"], input_shape=shape)
        want = fn3.cost.leaf_costs(model, spec, x[:1])
        assert got == {k: want[k] for k in got}
    assert fn3.cost(model, space.smallest(), "flops", input_shape=shape) < got["flops"]


def test_the_leaf_plan_says_which_metrics_need_the_traced_plan(nested_float):
    model, x = nested_float["mobilenet_v3"][1:3]  # squeeze-excite (a product): not traced
    spec = fn3.space(model).smallest()
    assert type(fn3.cost.cost_plan(model, tuple(x.shape[1:]))).__name__ == "LeafPlan"
    with pytest.raises(fn3.ConfigError, match="'memory' needs the traced cost plan"):
        fn3.cost(model, spec, "memory", input_shape=tuple(x.shape[1:]))
    with pytest.raises(fn3.SpecError):
        fn3.cost(model, fn3.space(nested_float["mlp"][1]).smallest(), "flops", input_shape=tuple(x.shape[1:]))
    mlp, x = nested_float["mlp"][1:3]  # what the traced plan does model, it prices as the leaves do
    spec = fn3.space(mlp).smallest()
    assert type(fn3.cost.cost_plan(mlp, tuple(x.shape[1:]))).__name__ == "CostPlan"
    planned = fn3.cost(mlp, spec, "flops", input_shape=tuple(x.shape[1:]))
    assert planned == fn3.cost.leaf_costs(mlp, spec, x[:1])["flops"]
