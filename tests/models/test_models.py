"""Every registered model: right output shape for many sampled specs, at every input size."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from spec_strategies import SPECS, specs

import fn3

SIZES = [(1, 8), (1, 28), (3, 32)]


@pytest.mark.parametrize("name", fn3.list_models())
@pytest.mark.parametrize(("channels", "size"), SIZES)
def test_sampled_specs_give_right_shape(name, channels, size):
    if name in ("resnet56", "resnet32") and size > 8:
        pytest.skip("deep models are covered at 8x8 to keep the suite fast")
    model = fn3.create_model(name, num_classes=7, in_channels=channels, input_size=size).eval()
    space = fn3.space(model)
    x = torch.randn(2, channels, size, size)

    def check(spec: fn3.Spec) -> None:
        with fn3.active(model, spec):
            y = model(x)
        assert y.shape == (2, 7)
        assert torch.isfinite(y).all()
        assert fn3.current_spec(model) == space.largest()  # active() restored the full model

    check(space.largest())
    check(space.smallest())
    settings(SPECS, max_examples=3)(given(spec=specs(space))(check))()


@pytest.mark.parametrize("name", fn3.list_models())
def test_levels_subset_and_supported(name):
    levels = fn3.models.model_levels(name)
    for level in levels:
        model = fn3.create_model(name, num_classes=10, in_channels=1, input_size=8, levels=(level,))
        assert fn3.space(model).kinds() == (level,)
    with pytest.raises(fn3.ConfigError, match="unknown level"):
        fn3.create_model(name, levels=("widths",))


def test_every_level_is_covered_by_the_registry():
    covered = {lv for name in fn3.list_models() for lv in fn3.models.model_levels(name)}
    assert covered == set(fn3.KINDS)


def test_coupled_widths_share_one_axis():
    space = fn3.space(fn3.create_model("resnet20", levels=("channels",)))
    names = [a.name for a in space]
    assert [n for n in names if n.count(".") == 1] == ["stage1.width", "stage2.width", "stage3.width"]
    assert len(names) == 3 + 9  # three residual streams + one inner width per block


def test_unknown_model_and_seeded_init():
    with pytest.raises(fn3.ConfigError, match="unknown model 'vgg'"):
        fn3.create_model("vgg")
    a = fn3.create_model("mlp", seed=1, input_size=8, in_channels=1)
    b = fn3.create_model("mlp", seed=1, input_size=8, in_channels=1)
    state = torch.random.get_rng_state()
    c = fn3.create_model("mlp", seed=2, input_size=8, in_channels=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


def test_active_restores_on_error():
    model = fn3.create_model("resnet20", in_channels=1, input_size=8)
    space = fn3.space(model)
    with pytest.raises(RuntimeError), fn3.active(model, space.smallest()):
        raise RuntimeError("boom")
    assert fn3.current_spec(model) == space.largest()
    bad = fn3.Spec({"stage1.width": (0,)})
    with pytest.raises(fn3.SpecError):
        fn3.set_active(model, bad)
