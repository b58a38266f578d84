"""The built-in models cost exactly what they cost before the tracer spoke only the layer protocol.

``data/builtin_costs.json`` holds every analytic metric (memory included) and the latency-unit
signatures of seeded random specs (prefix and not) of every registered model, computed by the tracer
that read fn3's own layer classes (commit e3df040). The protocol-only tracer must reproduce them
exactly. Regenerate (only when a cost definition changes on purpose) with

    PYTHONPATH=src python tests/cost/test_builtin_values.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from spec_strategies import seeded_specs

import fn3
from fn3.cost import costs
from fn3.cost.plan import CostPlan, cost_plan
from fn3.cost.units import latency_units

DATA = Path(__file__).parent / "data" / "builtin_costs.json"
SHAPE = (3, 8, 8)
METRICS = ("params", "bits", "macs", "flops", "bitops", "memory")
#: name -> (model name, creation arguments); every registered model, float and quantized.
CASES = {
    "mlp": ("mlp", {"hidden": (64, 32)}),
    "mlp_float": ("mlp", {"hidden": (64, 32), "levels": ("neurons",)}),
    "resnet20": ("resnet20", {}),
    "resnet20_float": ("resnet20", {"levels": ("channels", "layers")}),
    "resnet32": ("resnet32", {}),
    "resnext_tiny": ("resnext_tiny", {}),
}


def _model(case: str) -> torch.nn.Module:
    name, kwargs = CASES[case]
    return fn3.create_model(name, num_classes=10, in_channels=3, input_size=8, **kwargs).eval()


def _specs(space: fn3.Space, n: int = 8, seed: int = 0) -> list[fn3.Spec]:
    """Largest, smallest, then arbitrary kept sets (most not prefixes) alternating with random prefixes."""
    return [space.largest(), space.smallest(), *seeded_specs(space, n, seed, prefix_first=False)]


def values(case: str) -> list[dict]:
    """Every metric and the kept latency units' signatures of each spec of :func:`_specs`."""
    model = _model(case)
    plan = cost_plan(model, SHAPE)
    rows = []
    for spec in _specs(fn3.space(model)):
        sizes = plan.resolve(spec)
        sigs = [u.signature(u.sizes(sizes.units)) for u in latency_units(plan) if sizes.runs(u.gate)]
        rows.append({"spec": spec.to_dict(), "costs": costs(model, spec, METRICS, input_shape=SHAPE),
                     "units": sigs})
    return rows


@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_costs_are_unchanged(case: str) -> None:
    want = json.loads(DATA.read_text())[case]
    model = _model(case)
    assert type(cost_plan(model, SHAPE)) is CostPlan
    got = values(case)
    assert [r["spec"] for r in got] == [r["spec"] for r in want]  # the same specs were drawn
    for g, w in zip(got, want, strict=True):
        assert g["costs"] == w["costs"], g["spec"]
        assert g["units"] == w["units"], g["spec"]


if __name__ == "__main__":
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps({case: values(case) for case in sorted(CASES)}, indent=None) + "\n")
    print(f"wrote {DATA}")
