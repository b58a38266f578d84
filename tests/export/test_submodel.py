"""Generic export and generic cost, asked of the nested leaves only, on every registered model.

For random specs (prefix and not): ``extract_submodel(model, spec)`` equals the nested model under the
spec (<= 1e-5), ``leaf_costs`` FLOPs equal ``torch.utils.flop_counter`` on the extracted sub-model,
and the leaf costs agree with the compiled cost plan of :func:`fn3.cost` (params, bits, BitOPs).
"""

from __future__ import annotations

import pytest
import torch
from export_helpers import INPUT, NAMES, specs_for
from torch.utils.flop_counter import FlopCounterMode

import fn3
from fn3.cost.leaves import leaf_costs
from fn3.export.submodel import extract_submodel
from fn3.nn.protocol import is_leaf


def counted_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", NAMES)
def test_extracted_equals_nested_and_leaf_flops_equal_the_counter(models, name):
    model = models[name]
    space = fn3.space(model)
    x = torch.randn(2, *INPUT)
    for spec in specs_for(space, 4, seed=3):
        sub = extract_submodel(model, spec)
        with torch.no_grad(), fn3.active(model, spec):
            ref = model(x)
        assert (sub(x) - ref).abs().max().item() <= 1e-5, spec
        assert not any(is_leaf(m) and m.fn3_axes() for m in sub.modules())
        got = leaf_costs(model, spec, x[:1])
        assert got["flops"] == counted_flops(sub, x[:1]), spec
        plan = fn3.cost.costs(model, spec, ["flops", "params", "bits", "bitops"], input_shape=INPUT)
        assert {k: got[k] for k in plan} == plan, spec


def test_extract_leaves_the_model_as_it_was(models):
    model = models["resnext_tiny"]
    space = fn3.space(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sub = extract_submodel(model, space.smallest())
    assert fn3.current_spec(model) == space.largest()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(fn3.space(sub)) == 0 and not any(p.requires_grad for p in sub.parameters())
