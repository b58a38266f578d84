"""benchmarks/repro/bit_split.py on a --quick run of experiment 5's default: the same trained model
read with its weights and activations at different bit-widths, the page's 8- and 2-bit readings
reproduced exactly, the drops set apart consistent with the grid they come from."""

from __future__ import annotations

import json

import pytest
from repro_import import load as _load

import fn3


def test_bit_split_reads_weights_and_activations_apart(tmp_path, data_root):
    runner, exp5, split = _load("runner"), _load("exp5_bits"), _load("bit_split")
    exp = exp5.experiment()
    quick = ["--quick", "--results-dir", str(tmp_path)]
    runner.main([exp], [*quick, "--arms", split.ARM], script=exp5.__file__)
    out = tmp_path / "split.md"
    assert split.main([*quick, "--only", exp.key, "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "bit_split.json").read_text())[f"{exp.key}, seed {exp.base.seed}"]
    grid = saved["grid"]
    assert set(grid) == {f"w{w}a{a}" for w in split.BITS for a in split.BITS}
    # the diagonal is the page's own sub-model at that bit-width (the script checked the page subset;
    # the held-out reading of 8/8 and 2/2 must differ where the model does)
    for label, (w, a) in (("weights", (2, 8)), ("activations", (8, 2)), ("both", (2, 2))):
        assert saved[f"{label}_drop"]["heldout"] == pytest.approx(grid["w8a8"] - grid[f"w{w}a{a}"], abs=1e-6)
        assert saved[f"{label}_drop"]["se"] >= 0
    assert len({round(v, 6) for v in grid.values()}) > 1  # the bit-widths really change the model
    # every quantized input's 2-bit level against the error-minimising one: never a larger error, and
    # the model scored with those levels is another model than the learned one's 2/2 reading
    levels = saved["levels"]
    assert levels and all(v["mse_best"] <= v["mse_learned"] + 1e-12 and v["power"] > 0
                          for v in levels.values())
    assert any(abs(v["best"] - v["learned"]) > 1e-6 for v in levels.values())
    assert all(v["set"] == pytest.approx(v["best"]) for v in levels.values())  # the 2-bit level moved
    tuned = saved["error_levels"]
    assert tuned["gain"] == pytest.approx(tuned["accuracy"] - grid["w2a2"], abs=1e-6)
    text = out.read_text()
    assert f"| {exp.key}, seed {exp.base.seed} |" in text
    assert "| weights \\ activations | 8 | 4 | 3 | 2 |" in text
    assert "## The 2-bit clipping levels: learned or error-minimising" in text

    # A model that is not the page's (retrained, or another model on its run directory) is refused.
    results = json.loads((tmp_path / f"{exp.key}.json").read_text())
    results["arms"][split.ARM]["accuracy"]["bn_aug"]["8 bits"] += 0.01
    (tmp_path / f"{exp.key}.json").write_text(json.dumps(results))
    with pytest.raises(fn3.errors.ConfigError, match="not the model or protocol the page scored"):
        split.main([*quick, "--only", exp.key, "--out", str(out)])


def test_quant_error_is_the_quantizers_own_rounding():
    """quant_error reads fn3's activation quantizer: zero on its grid, the clipped part above the level,
    and the values of fake_quant_act's forward pass at the same level."""
    split = _load("bit_split")
    import torch

    from fn3.nn.functional import fake_quant_act

    assert split.quant_error(torch.tensor([0.0, 1.0, 2.0, 3.0]), 3.0, 2, False) == 0.0
    assert split.quant_error(torch.tensor([5.0]), 3.0, 2, False) == pytest.approx(4.0)  # clipped at 3
    assert split.quant_error(torch.tensor([-1.0]), 3.0, 2, False) == 0.0  # the ReLU's zero is exact
    x = torch.randn(1000) * 2
    q = fake_quant_act(x, torch.tensor(2.5), 8, 2, False, learn="lsq")
    assert split.quant_error(x, 2.5, 2, False) == pytest.approx(float((q - x.clamp(min=0)).pow(2).mean()))
    q = fake_quant_act(x, torch.tensor(2.5), 8, 3, True, learn="lsq")
    assert split.quant_error(x, 2.5, 3, True) == pytest.approx(float((q - x).pow(2).mean()))


def test_split_text_sets_weight_and_activation_axes_apart():
    split = _load("bit_split")
    model = fn3.create_model("resnet20", levels=("bits",))
    space = fn3.space(model)
    spec = fn3.parse_spec(split.split_text(2, 8), space)
    w = [a.name for a in space.axes if a.name.endswith(".wbits")]
    a = [a.name for a in space.axes if a.name.endswith(".abits")]
    assert w and a
    assert {spec.size(n, space) for n in w} == {2} and {spec.size(n, space) for n in a} == {8}
    with pytest.raises(fn3.SpecError, match="the model has no wbits axes"):
        fn3.parse_spec(split.split_text(2, 8), fn3.space(fn3.create_model("resnet20", levels=("channels",))))
