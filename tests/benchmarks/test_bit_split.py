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
    text = out.read_text()
    assert f"| {exp.key}, seed {exp.base.seed} |" in text
    assert "| weights \\ activations | 8 | 4 | 3 | 2 |" in text

    # A model that is not the page's (retrained, or another model on its run directory) is refused.
    results = json.loads((tmp_path / f"{exp.key}.json").read_text())
    results["arms"][split.ARM]["accuracy"]["bn_aug"]["8 bits"] += 0.01
    (tmp_path / f"{exp.key}.json").write_text(json.dumps(results))
    with pytest.raises(fn3.errors.ConfigError, match="not the model or protocol the page scored"):
        split.main([*quick, "--only", exp.key, "--out", str(out)])


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
