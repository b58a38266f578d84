"""export(model, spec) equals the nested model under fn3.active, for every registered model."""

from __future__ import annotations

import pytest
import torch
from export_helpers import INPUT, specs_for
from hypothesis import given, settings
from legacy import ModelSource
from spec_strategies import SPECS, specs
from torch import nn

import fn3
from fn3.export import ActQuant, QuantConv2d, QuantLinear, Residual, export
from fn3.export.submodel import extract_coded
from fn3.export.user import _codes_of
from fn3.nn.functional import weight_scale
from fn3.nn.protocol import is_gate, is_leaf
from fn3.nn.slot import AxisSlot

PLAIN = (
    nn.Sequential,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.Flatten,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
    QuantConv2d,
    QuantLinear,
    ActQuant,
    Residual,
)


@pytest.mark.parametrize("name", fn3.list_models())
def test_export_equals_nested(models, name):
    model = models[name]
    space = fn3.space(model)
    g = torch.Generator().manual_seed(3)

    def check(spec: fn3.Spec) -> None:
        exported = export(model, spec)
        x = torch.randn(3, *INPUT, generator=g) * 2
        with torch.no_grad(), fn3.active(model, spec):
            ref = model(x)
        out = exported(x)
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= 1e-5, spec
        assert fn3.current_spec(model) == space.largest()  # restored

    check(space.largest())
    check(space.smallest())
    # Drawn by Hypothesis (prefix and non-prefix): a failure shrinks to the spec nearest the full model.
    settings(SPECS, max_examples=24)(given(spec=specs(space))(check))()


@pytest.mark.parametrize("name", fn3.list_models())
def test_exported_codes_are_the_nested_codes(models, name):
    """Every quantized weight is stored as the kept bits of the full weight's B-bit code, with the
    full weight's per-row scale, and its exported value is what the nested layer computes with."""
    model = models[name]
    space = fn3.space(model)
    for spec in specs_for(space, 4, seed=5):
        exported = export(model, spec)
        params = exported.module.state_dict()
        _, coded = extract_coded(model, spec)
        assert set(coded) == set(exported.quant)
        with fn3.active(model, spec):
            layers = {key: model.get_submodule(nested.rsplit(".", 1)[0])
                      for key, (nested, _) in coded.items()}  # fmt: skip
            assert list(layers.values()) == list(_active_quant_layers(model))  # every kept one, in order
            for key, layer in layers.items():
                q = exported.quant[key]
                full_scale = weight_scale(layer.weight.detach(), layer.total_bits).tolist()
                assert q.scale.numel() == params[key].shape[0] and set(q.scale.tolist()) <= set(full_scale)
                w_active, _ = layer.active_weight()  # what the nested layer computes with
                w_active = w_active.detach()
                # the exported weight is the nested one up to the last float bit
                assert (params[key] - w_active).abs().max() <= 1e-6 * w_active.abs().max()
                codes = _codes_of(params[key], q)  # what a file stores: signed c-bit integers
                c = len(q.planes)
                assert c == layer.wbits.units
                assert int(codes.min()) >= -(2 ** (c - 1)) and int(codes.max()) < 2 ** (c - 1)
                if q.planes == tuple(range(c)):  # the stored code is the top bits of the nested one
                    unit = 2 ** (q.total_bits - c)
                    offset = (unit - 1) / 2 if q.scheme == "centred" else 0.0
                    grid = w_active / q.scale.reshape(-1, *([1] * (w_active.dim() - 1)))
                    top = torch.floor(torch.round(grid - offset) / unit)
                    assert torch.equal(codes.float(), top)


def _active_quant_layers(model):
    """Nested quantized layers in forward order, skipping residual blocks the spec drops."""
    from fn3.nn import NestedConv2d, NestedLinear, NestedStage

    def walk(m):
        if isinstance(m, NestedStage):
            for i in m.active_blocks():
                yield from walk(m.blocks[i])
            return
        if isinstance(m, (NestedConv2d, NestedLinear)):
            if m.wbits is not None:
                yield m
            return
        for c in m.children():
            yield from walk(c)

    yield from walk(model)


def test_physically_sliced_and_plain(models):
    model = models["resnet20"]
    space = fn3.space(model)
    spec = space.uniform({"channels": 0.5, "bits": 3, "layers": 0.34})
    exported = export(model, spec)
    # the model's own classes, every nested leaf replaced by plain torch layers
    assert not any(is_leaf(m) or is_gate(m) for m in exported.modules())
    own = (fn3.export.Exported, nn.ModuleList, type(model), type(model.stages[0].blocks[0]))  # its own
    assert all(isinstance(m, PLAIN + own) for m in exported.modules())
    assert not any(isinstance(v, AxisSlot) for m in exported.modules() for v in vars(m).values())
    assert len(fn3.space(exported.module)) == 0
    blocks = [m for m in exported.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 3  # one block per stage kept
    first = blocks[0].conv1[1]
    assert first.weight.shape[:2] == (space["stage1.block0.width"].units(spec.kept("stage1.block0.width")), 8)
    assert {len(q.planes) for q in exported.quant.values()} == {3}
    # a 3-bit export stores 3-bit codes: its ideal size is about 3/32 of float32 for those weights
    coded = sum(exported.module.state_dict()[k].numel() for k in exported.quant)
    assert coded < sum(p.numel() for p in model.parameters()) / 4
    assert fn3.export.ideal_size(exported) < 4 * sum(p.numel() for p in exported.parameters()) * 0.2


def test_resnext_keeps_fewer_groups(models):
    model = models["resnext_tiny"]
    space = fn3.space(model)
    spec = space.uniform({"paths": 0.25})
    grouped = [
        m for m in export(model, spec).modules() if isinstance(m, (QuantConv2d, nn.Conv2d)) and m.groups > 1
    ]
    assert grouped and all(m.groups == 2 for m in grouped)  # 2 of 8 paths


def test_model_source_reads_full_weight_scale(models):
    model = models["mlp"]
    src = ModelSource(model)
    w = model.layers[1].weight.detach()
    assert torch.equal(src.scale("layers.1.weight", None, 8), weight_scale(w, 8))


def test_callable_package_and_bad_spec(models):
    import fn3.export as fx

    model = models["mlp"]
    assert isinstance(fx(model), fx.Exported)
    with pytest.raises(fn3.SpecError):
        fx.export(model, fn3.Spec({"nope": (0,)}))


@pytest.mark.parametrize("name", ["mlp", "resnet20"])
def test_quantized_ends_export(name, tmp_path):
    """First and last layers quantized too: a signed input quantizer and a quantized classifier."""
    from export_helpers import make_model

    model = make_model(name, quantize_ends=True)
    x = torch.randn(4, *INPUT)
    for spec in specs_for(fn3.space(model), 6, seed=7):
        exported = export(model, spec)
        assert any(isinstance(m, ActQuant) and m.signed for m in exported.modules())
        with torch.no_grad(), fn3.active(model, spec):
            ref = model(x)
        assert (exported(x) - ref).abs().max() <= 1e-5
        loaded = fn3.export.load(fn3.export.save(exported, tmp_path / "m.safetensors"))
        assert torch.equal(loaded(x), exported(x))
