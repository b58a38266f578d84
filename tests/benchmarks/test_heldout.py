"""benchmarks/repro/heldout.py on a --quick run: the two grid arms of experiment 3 and its independent
twins are trained (a tiny subset, one epoch), then scored again on the page's test images (which must
give the page's numbers: the script refuses otherwise) and on the held-out rest of the test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from repro_import import load as _load

import fn3


def test_heldout_scores_both_arms_and_checks_the_page(tmp_path, data_root):
    runner, exp3, heldout = _load("runner"), _load("exp3_layers"), _load("heldout")
    exp = exp3.experiment(20)
    names = [runner.AUTO.name, runner.AUTO_NORM.name]
    quick = ["--quick", "--results-dir", str(tmp_path)]
    runner.main([exp], [*quick, "--arms", *names, "independent"], script=exp3.__file__)
    out = tmp_path / "heldout.md"
    assert heldout.main([*quick, "--only", exp.key, "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    assert saved["page_images"] == 10 * exp.quick_test_limit
    # --quick: the first 50 of each class among the 9,950 images the page does not use.
    assert saved["heldout_images"] == 10 * heldout.QUICK_HELDOUT_PER_CLASS
    assert set(saved["budgets"]) == {b.label for b in exp.budgets}
    for row in saved["budgets"].values():
        d = row["norm_minus_shared"]
        assert d["heldout"] == pytest.approx(row[names[1]]["heldout"] - row[names[0]]["heldout"], abs=1e-6)
        assert 0 < d["se"] < 0.05  # 500 paired images
        alone = row[saved["independent"]]["heldout"]
        for short, name in zip(("shared", "norm"), names, strict=True):
            gap = row[f"{short}_minus_independent"]["heldout"]
            assert gap == pytest.approx(row[name]["heldout"] - alone, abs=1e-6)
    text = out.read_text()
    # One row per budget in the loss table, one per loss in the parity table.
    assert text.count(f"| {exp.key} |") == len(exp.budgets) + 2
    assert "Against the networks trained alone" in text

    # An experiment that ran only one of the two losses (the norm default, or the per-weight mean:
    # the paths default since config version 8) is scored alone: the same numbers and parity gaps for
    # that loss, nothing for the other, and a "not run" column in its place.
    one = tmp_path / "only_one"
    one.mkdir()
    args = ["--quick", "--results-dir", str(one), "--only", exp.key, "--out", str(one / "h.md")]
    path = tmp_path / f"{exp.key}.json"
    for dropped, (kept, gone) in ((names[0], ("norm", "shared")), (names[1], ("shared", "norm"))):
        res = json.loads(path.read_text())
        del res["arms"][dropped]
        (one / path.name).write_text(json.dumps(res))
        assert heldout.main(args) == 0
        alone = json.loads((one / "heldout.json").read_text())["experiments"][exp.key]
        for label, row in alone["budgets"].items():
            assert dropped not in row and not {"norm_minus_shared", f"{gone}_minus_independent"} & set(row)
            assert row[f"{kept}_minus_independent"] == saved["budgets"][label][f"{kept}_minus_independent"]
        text = (one / "h.md").read_text()
        assert text.count("| not run |") == len(exp.budgets) and text.count(f"| {exp.key} | {kept} |") == 1

    # A page value the models do not give (another model or protocol) is refused, nothing written.
    res = json.loads(path.read_text())
    res["arms"][names[1]]["accuracy"]["bn_aug"][exp.budgets[0].label] += 0.01
    path.write_text(json.dumps(res))
    out.unlink()
    with pytest.raises(fn3.ConfigError, match="not the model or protocol the page scored"):
        heldout.main([*quick, "--only", exp.key, "--out", str(out)])
    assert not out.exists()


def test_heldout_scores_the_default_with_a_level_per_bit_width_against_the_default(tmp_path, data_root):
    """Experiment 5's clip arm (act_clip="per-bits") is scored beside the default: its paired
    difference to it per budget and both models' 2-bit drops, on the same held-out images; the clip
    arm with in-place distillation is paired against the clip arm (the default it varies)."""
    runner, exp5, heldout = _load("runner"), _load("exp5_bits"), _load("heldout")
    exp = exp5.longer()
    norm, clip = runner.AUTO_NORM.name, runner.AUTO_NORM_CLIP.name
    distill = runner.AUTO_NORM_CLIP_DISTILL.name
    quick = ["--quick", "--results-dir", str(tmp_path)]
    runner.main([exp], [*quick, "--arms", norm, clip, distill, "independent (one per bit-width)"],
                script=exp5.__file__)
    out = tmp_path / "heldout.md"
    assert heldout.main([*quick, "--only", exp.key, "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    for row in saved["budgets"].values():
        for key, (a, b) in (("clip_minus_norm", (clip, norm)), ("distill_minus_clip", (distill, clip))):
            assert row[key]["heldout"] == pytest.approx(row[a]["heldout"] - row[b]["heldout"], abs=1e-6)
        assert "distill_minus_norm" not in row
    for short, name in (("norm", norm), ("clip", clip), ("distill", distill)):
        rows = saved["budgets"]
        drop = rows["8 bits"][name]["heldout"] - rows["2 bits"][name]["heldout"]
        assert saved[f"{short}_bit_drop"]["heldout"] == pytest.approx(drop, abs=1e-6)
    text = out.read_text()
    assert f"## {clip} against the norm-matched sum" in text
    assert f"## {distill} against {clip}" in text
    # the loss table's rows, the clip and distill arms' rows, and a parity row per arm against the twins
    assert text.count(f"| {exp.key} |") == 3 * len(exp.budgets) + 3
    assert f"- {exp.key}, clip: 8 bits minus 2 bits" in text
    assert f"| {exp.key} | clip |" in text and f"| {exp.key} | distill |" in text  # parity rows

    # The norm arm's model is gone (run directories are not kept forever); the clip arm and the twins
    # are scored again, and the norm arm's earlier readings stay beside them, with the earlier command.
    res = json.loads((tmp_path / f"{exp.key}.json").read_text())
    norm_dir = Path(res["arms"][norm]["runs"]["model"]["run_dir"])
    shutil.rmtree(norm_dir)
    assert heldout.main([*quick, "--out", str(out)]) == 0  # every experiment: the others are skipped
    again = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    assert again["budgets"] == saved["budgets"]
    for short in ("norm", "clip"):
        assert again[f"{short}_bit_drop"] == saved[f"{short}_bit_drop"]
    assert again["command"] == "python benchmarks/repro/heldout.py --quick"
    assert list(again["earlier_commands"]) == [saved["command"]]
    assert f"`{saved['command']}`" in out.read_text()

    # Had the earlier reading scored other twins (their page numbers differ from today's: retrained
    # with other code), the norm arm's own numbers stay but its gaps to those twins are dropped.
    held = json.loads((tmp_path / "heldout.json").read_text())
    first = held["experiments"][exp.key]["budgets"]["8 bits"][saved["independent"]]
    first["page"] += 0.01
    (tmp_path / "heldout.json").write_text(json.dumps(held))
    assert heldout.main([*quick, "--out", str(out)]) == 0
    third = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    for label, row in third["budgets"].items():
        assert row[norm] == saved["budgets"][label][norm] and "clip_minus_norm" in row
        assert "norm_minus_independent" not in row
        assert row["clip_minus_independent"] == saved["budgets"][label]["clip_minus_independent"]
    assert third["norm_bit_drop"] == saved["norm_bit_drop"]  # within one model: unaffected

    # Seen for the first time with no model of either loss on disk (a seed that ran only the bits
    # default and its twins), the clip arm is scored alone against the twins.
    one = tmp_path / "clip_only"
    one.mkdir()
    (one / f"{exp.key}.json").write_text(json.dumps(res))
    assert heldout.main(["--quick", "--results-dir", str(one), "--out", str(one / "h.md")]) == 0
    alone = json.loads((one / "heldout.json").read_text())["experiments"][exp.key]
    for label, row in alone["budgets"].items():
        assert norm not in row and "clip_minus_norm" not in row
        assert row["clip_minus_independent"] == saved["budgets"][label]["clip_minus_independent"]
    assert set(alone) >= {"clip_bit_drop", "independent"} and "norm_bit_drop" not in alone
    text = (one / "h.md").read_text()
    assert text.count(f"| {exp.key} | clip |") == 1 and "| not run | not run |" not in text


def test_heldout_pairs_the_networks_alone_on_a_weight_range_with_the_twins(tmp_path, data_root):
    """Experiment 5 with the networks trained alone on both weight ranges: every nested arm, the one on
    3 rms (fn3 train's bits default since config version 12) too, is held against the twins on each
    channel's largest magnitude, and the networks alone on 3 rms are paired with those twins (a
    measurement of the range on networks alone); the page lists that difference per budget."""
    runner, exp5, heldout = _load("runner"), _load("exp5_bits"), _load("heldout")
    exp = exp5.experiment()
    clip, ranged = runner.AUTO_NORM_CLIP.name, runner.weight_range(3.0).name
    plain, twins = "independent (one per bit-width)", runner.weight_range_twins(3.0).name
    quick = ["--quick", "--results-dir", str(tmp_path)]
    runner.main([exp], [*quick, "--arms", clip, ranged, twins, plain], script=exp5.__file__)
    out = tmp_path / "heldout.md"
    assert heldout.main([*quick, "--only", exp.key, "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    assert saved["independent"] == plain
    for row in saved["budgets"].values():
        for key, (a, b) in (("range3_minus_independent", (ranged, plain)),
                            ("clip_minus_independent", (clip, plain)),
                            ("alone-range3_minus_independent", (twins, plain)),
                            ("range3_minus_clip", (ranged, clip))):
            assert row[key]["heldout"] == pytest.approx(row[a]["heldout"] - row[b]["heldout"], abs=1e-6)
    text = out.read_text()
    assert f"- {exp.key}: `{twins}` minus `{plain}` on the held-out images: 8 bits" in text


def test_heldout_scores_the_depth_default_against_norm_and_its_twins(tmp_path, data_root):
    """Experiment 3's depth default (the grid's mean loss at lr 0.2, config version 6) is scored beside
    the norm-matched sum and against the networks trained alone, and the page's target rows read its
    own held-out gaps (not ``norm``'s) for the default's held-out row."""
    runner, exp3, heldout, targets = _load("runner"), _load("exp3_layers"), _load("heldout"), _load("targets")
    exp = exp3.experiment(20)
    norm, depth = runner.AUTO_NORM.name, runner.AUTO_DEPTH.name
    quick = ["--quick", "--results-dir", str(tmp_path)]
    runner.main([exp], [*quick, "--arms", norm, depth, "independent"], script=exp3.__file__)
    out = tmp_path / "heldout.md"
    assert heldout.main([*quick, "--only", exp.key, "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    for row in saved["budgets"].values():
        alone = row[saved["independent"]]["heldout"]
        got = row[depth]["heldout"]
        assert row["depth_minus_norm"]["heldout"] == pytest.approx(got - row[norm]["heldout"], abs=1e-6)
        assert row["depth_minus_independent"]["heldout"] == pytest.approx(got - alone, abs=1e-6)
    text = out.read_text()
    assert f"## {depth} against the norm-matched sum" in text
    assert text.count(f"| {exp.key} | depth |") == 1  # its parity row

    res = {**json.loads((tmp_path / f"{exp.key}.json").read_text()), "_heldout": saved}
    first = exp.budgets[0].label
    (row,) = [r for r in targets.target_rows(res)
              if "[fn3's default" in r[1] and "test images this page" in r[1]]
    assert row[1].startswith(depth)
    full = saved["budgets"][first]["depth_minus_independent"]["heldout"]
    assert f"full model {full * 100:+.2f} pt" in row[2]


def test_heldout_scores_the_runs_of_another_training_seed(tmp_path, data_root):
    """``--seed N`` scores the runner's ``--seed N`` runs with that seed's calibration batches: the
    page's numbers come back exactly; read as seed 0 they do not, and nothing is written."""
    runner, exp3, heldout = _load("runner"), _load("exp3_layers"), _load("heldout")
    exp = exp3.experiment(20)
    quick = ["--quick", "--results-dir", str(tmp_path)]
    runner.main([exp], [*quick, "--seed", "1", "--arms", runner.AUTO_NORM.name], script=exp3.__file__)
    out = tmp_path / "heldout_seed1.md"
    assert heldout.main([*quick, "--seed", "1", "--only", exp.key, "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "heldout.json").read_text())["experiments"][exp.key]
    assert saved["command"].startswith("python benchmarks/repro/heldout.py --quick --seed 1")
    assert out.read_text().startswith("# The default loss on held-out test images, training seed 1\n")
    out.unlink()
    with pytest.raises(fn3.ConfigError, match="not the model or protocol the page scored"):
        heldout.main([*quick, "--only", exp.key, "--out", str(out)])
    assert not out.exists()


def test_every_variant_is_paired_against_an_arm_that_is_scored():
    """``AGAINST`` pairs each variant with another scored arm, never with itself: a variant paired
    against a name that is not scored would silently leave its comparison off the pages."""
    heldout = _load("heldout")
    shorts = {short for short, _ in heldout.EXTRA}
    assert set(heldout.AGAINST) <= shorts
    for short, ref in heldout.AGAINST.items():
        assert ref in heldout.SHORT_NAMES and ref != short
    assert len(set(heldout.SHORT_NAMES.values())) == len(heldout.SHORT_NAMES)  # one short name an arm


def test_every_scored_arm_is_an_arm_an_experiment_runs():
    """Each name ``heldout.py`` scores is an arm of one of the experiments it reads: a variant whose
    name drifted from the arm's (a renamed flag in ``every_budget``) would be skipped without a word."""
    heldout = _load("heldout")
    run = {arm.name for exp in heldout.experiments() for arm in exp.arms}
    assert set(heldout.SHORT_NAMES.values()) <= run
    assert heldout.SHORT_NAMES["ends-distill-smallest"] in run  # the 18-epoch ResNet-32 candidates


def test_heldout_page_lists_the_drop_of_an_arm_scored_without_its_twins():
    """A default scored alone at a seed (no twins, no paired arm) has its 2-bit drop in the JSON; the
    page must list it too, once, and not repeat a drop a section above already gives."""
    heldout = _load("heldout")
    row = {"range3": {"page": 0.68, "heldout": 0.6924}}
    measured = {
        "exp5_bits_36ep": {"page_images": 2000, "heldout_images": 8000,
                           "command": "c", "command_seconds": 1.0,
                           "budgets": {"8 bits": row, "2 bits": row},
                           "range3_bit_drop": {"heldout": 0.02787, "se": 0.00403}},
    }
    page = heldout.render(measured, seed=2)
    assert "## 2-bit drops of arms scored without their twins" in page
    assert page.count("- exp5_bits_36ep, range3: 8 bits minus 2 bits on the held-out images 2.79 pt "
                      "(2 s.e. 0.81; target <= 3).") == 1
    measured["exp5_bits_36ep"].pop("range3_bit_drop")
    assert "2-bit drops of arms scored without" not in heldout.render(measured, seed=2)


def test_an_arm_scored_after_its_twins_models_are_gone_gets_an_unpaired_gap():
    """The twins' models are gone (a new machine) but their earlier held-out reading stayed: an arm
    scored now is set against it, unpaired, with the s.e. of two independent proportions; a paired
    gap already there is kept as it is, and the page says which is which."""
    heldout = _load("heldout")
    twins = "independent (one per bit-width)"
    corners, default = heldout.SHORT_NAMES["corners-range3"], heldout.SHORT_NAMES["range3"]
    paired = {"heldout": -0.001, "se": 0.004}
    row = {twins: {"page": 0.70, "heldout": 0.70}, corners: {"page": 0.69, "heldout": 0.68},
           default: {"page": 0.70, "heldout": 0.699}, "range3_minus_independent": dict(paired)}
    res = {"page_images": 2000, "heldout_images": 8000, "independent": twins, "command": "c",
           "command_seconds": 1.0, "budgets": {"8 bits": row, "2 bits": {corners: row[corners]}}}
    heldout.unpaired_twin_gaps(res, {corners, default})
    gap = row["corners-range3_minus_independent"]
    assert gap["paired"] is False
    assert gap["heldout"] == pytest.approx(-0.02)
    assert gap["se"] == pytest.approx(((0.68 * 0.32 + 0.70 * 0.30) / 8000) ** 0.5)
    assert row["range3_minus_independent"] == paired  # the paired reading is not replaced
    assert "corners-range3_minus_independent" not in res["budgets"]["2 bits"]  # no twin reading there
    res["budgets"]["8 bits"][heldout.SHORT_NAMES["clip"]] = {"page": 0.7, "heldout": 0.69}
    heldout.unpaired_twin_gaps(res, {corners, default})  # an arm this command did not score: none
    assert "clip_minus_independent" not in res["budgets"]["8 bits"]
    page = heldout.render({"exp5_bits_36ep": res}, seed=2)
    assert "8 bits -2.00 (1.46, unpaired)" in page
    assert "8 bits -0.10 (0.80)" in page
