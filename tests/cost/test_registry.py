"""The metric registry, ``cost``/``costs`` options and errors, and Hypothesis-drawn kept sets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import fn3
import fn3.cost
from fn3.cost import cost, costs, get_metric, list_metrics, register_metric
from fn3.errors import ConfigError, SpecError

BUILTIN = ["bitops", "bits", "flops", "latency", "macs", "memory", "params"]


@pytest.fixture(scope="module")
def mlp() -> torch.nn.Module:
    return fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32, 16)).eval()


def test_builtin_metrics_are_registered_with_units() -> None:
    assert set(BUILTIN) <= set(list_metrics())
    assert list_metrics("b*") == [m for m in list_metrics() if m.startswith("b")]
    assert get_metric("memory").unit == "bytes" and get_metric("latency").needs == ("table",)


def test_unknown_metric_lists_the_known_ones(mlp: torch.nn.Module) -> None:
    spec = fn3.space(mlp).largest()
    with pytest.raises(ConfigError, match="unknown metric 'flop'; known metrics: .*bitops.*flops"):
        cost(mlp, spec, "flop")
    with pytest.raises(ConfigError, match="unknown metric"):
        costs(mlp, spec, ["params", "nope"])


def test_latency_without_a_table_and_unknown_options_are_clear_errors(mlp: torch.nn.Module) -> None:
    spec = fn3.space(mlp).largest()
    with pytest.raises(ConfigError, match="metric 'latency' needs table="):
        cost(mlp, spec, "latency")
    with pytest.raises(ConfigError, match="unknown cost option 'tabel'"):
        cost(mlp, spec, "flops", tabel=None)
    assert "latency" not in costs(mlp, spec)  # costs() skips metrics whose options are missing


def test_a_spec_of_another_model_is_a_spec_error(mlp: torch.nn.Module) -> None:
    other = fn3.space(fn3.create_model("resnet20", input_size=8)).largest()
    with pytest.raises(SpecError, match="is not in the model"):
        cost(mlp, other, "flops")
    space = fn3.space(mlp)
    bad = space.largest().with_blocks("fc1.width", [1, 2])  # drops the mandatory block 0
    with pytest.raises(SpecError, match="must always be kept"):
        cost(mlp, bad, "params")


def test_registered_metric_is_usable_everywhere(mlp: torch.nn.Module) -> None:
    @register_metric("test_kept_layers", unit="layers", description="kept conv/linear layers")
    def kept_layers(plan, sizes) -> int:
        return sum(1 for layer in plan.layers if sizes.runs(layer.gate))

    try:
        spec = fn3.space(mlp).largest()
        assert "test_kept_layers" in list_metrics()
        assert cost(mlp, spec, "test_kept_layers") == 3.0
        assert costs(mlp, spec, ["test_kept_layers", "macs"])["test_kept_layers"] == 3.0
        assert cost(mlp, spec, get_metric("macs")) == cost(mlp, spec, "macs")
    finally:
        fn3.cost.metrics._METRICS.pop("test_kept_layers")


def test_the_package_is_callable_and_costs_agree_with_cost(mlp: torch.nn.Module) -> None:
    spec = fn3.space(mlp).uniform({"neurons": 0.5, "bits": 3})
    every = costs(mlp, spec)
    assert set(BUILTIN) - {"latency"} <= set(every) and "latency" not in every
    for name in ("params", "bits", "flops", "bitops", "memory"):
        assert fn3.cost(mlp, spec, name) == every[name] == cost(mlp, spec, name)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_kept_set_costs_what_the_counter_counts(mlp: torch.nn.Module, data: st.DataObject) -> None:
    space = fn3.space(mlp)
    keep = {}
    for ax in space:
        extra = data.draw(st.sets(st.integers(ax.min_blocks, ax.num_blocks - 1)), label=ax.name)
        keep[ax.name] = sorted(set(range(ax.min_blocks)) | extra)
    spec = space.fill(keep)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), fn3.active(mlp, spec), counter:
        mlp(torch.randn(1, 1, 8, 8))
    numel = 0
    with fn3.active(mlp, spec):
        for layer in mlp.layers:
            w, b = layer.active_weight()
            numel += w.numel() + b.numel()
    assert cost(mlp, spec, "flops") == counter.get_total_flops()
    assert cost(mlp, spec, "params") == numel
