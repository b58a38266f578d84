"""float_twin: the float sub-model of the same spec has the float export's structure and cost."""

from __future__ import annotations

import torch
from export_helpers import INPUT, make_model

import fn3
from fn3.export import export
from fn3.export.bench import count_flops
from fn3.export.qmodules import ActQuant, QuantConv2d, QuantLinear
from fn3.export.twin import float_twin


def _leaves(model: torch.nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if not list(m.children())]


def test_twin_is_the_float_export_of_the_same_spec():
    quant = make_model("resnet20")
    plain = make_model("resnet20", levels=("channels", "layers"))
    qs, fs = fn3.space(quant), fn3.space(plain)
    for kept in ({"channels": 0.5}, {"channels": 0.25, "layers": 0.5}, {}):
        q = export(quant, qs.uniform({**kept, "bits": 4}))
        twin, ref = float_twin(q), export(plain, fs.uniform(kept) if kept else None)
        assert _leaves(twin) == _leaves(ref)  # the same layers in the same order
        assert count_flops(twin, INPUT) == count_flops(ref, INPUT) == count_flops(q, INPUT)
        assert not any(isinstance(m, (ActQuant, QuantConv2d, QuantLinear)) for m in twin.modules())
    x = torch.randn(2, *INPUT)
    conv = next(m for m in q.modules() if isinstance(m, QuantConv2d))
    assert any(torch.equal(m.weight, conv.weight()) for m in twin.modules() if isinstance(m, torch.nn.Conv2d))
    assert twin(x).shape == q(x).shape
