"""benchmarks/repro/merge.py: arms trained in a scratch directory join the page's result file, with
their models, without losing the arms already there; a file of other settings is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repro_import import load as _load

from fn3.run import load_run


def test_merge_adds_scratch_arms_with_their_models(tmp_path, data_root, capsys):
    runner, exp3, merge = _load("runner"), _load("exp3_layers"), _load("merge")
    exp = exp3.experiment(20)
    page, scratch = tmp_path / "page", tmp_path / "scratch"
    kept, added = runner.AUTO.name, runner.AUTO_NORM.name
    runner.main([exp], ["--quick", "--results-dir", str(page), "--arms", kept], script=exp3.__file__)
    runner.main([exp], ["--quick", "--results-dir", str(scratch), "--runs-dir", str(scratch / "r"),
                        "--arms", kept, added, "--rerun"], script=exp3.__file__)
    dst = page / f"{exp.key}.json"
    before = json.loads(dst.read_text())
    # the page's reading of the kept arm differs from the scratch rerun's: it is reported as changed
    before["arms"][kept]["accuracy"]["bn_aug"][exp.budgets[0].label] += 0.01
    dst.write_text(json.dumps(before))

    assert merge.main([str(scratch / f"{exp.key}.json"), "--into", str(page)]) == 0
    assert f"CHANGED accuracy: {kept}" in capsys.readouterr().out
    merged = json.loads(dst.read_text())
    assert set(merged["arms"]) == {kept, added}
    for name in (kept, added):
        run_dir = Path(merged["arms"][name]["runs"]["model"]["run_dir"])
        assert run_dir.is_relative_to(page / "runs" / exp.key)  # copied beside the page's file
        assert load_run(run_dir).model is not None
    assert merged["arms"][kept]["earlier_runs"]  # the page's earlier timing is kept
    # the page's command, then the scratch one without its directories
    assert merged["commands"][0] == before["commands"][0] and len(merged["commands"]) == 2
    assert "--rerun" in merged["commands"][1] and str(scratch) not in merged["commands"][1]

    # Other settings: refused with one line, the page's file untouched.
    src = json.loads((scratch / f"{exp.key}.json").read_text())
    src["settings"]["train"]["lr"] = 0.5
    (scratch / "other.json").write_text(json.dumps(src))
    text = dst.read_text()
    assert merge.main([str(scratch / "other.json"), "--into", str(page)]) == 2
    err = capsys.readouterr().err
    assert "were run with other settings (train.lr: 0.5 in the first" in err  # names what differs
    assert dst.read_text() == text
    # Not a result file: refused too.
    (scratch / "bad.json").write_text("{")
    assert merge.main([str(scratch / "bad.json"), "--into", str(page)]) == 2
    assert "cannot read result file" in capsys.readouterr().err


def test_merge_refuses_a_run_directory_that_is_gone(tmp_path):
    merge = _load("merge")
    with pytest.raises(merge.ConfigError, match="does not exist"):
        merge._copy_run(tmp_path / "exp3" / "arm", "exp3", tmp_path / "runs")
