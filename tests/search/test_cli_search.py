"""`fn3 search RUN` on a real (briefly trained) digits run: files, budgets, errors; and the heuristic
against exhaustive search with real validation accuracy."""

from __future__ import annotations

import csv
import json

import pytest

import fn3
import fn3.cli.search  # noqa: F401  (registers the command until fn3.cli imports it)
import fn3.cost
from fn3.cli import main
from fn3.config import TrainConfig
from fn3.run import load_run, train_run
from fn3.search import Evaluator, Heuristic, search
from fn3.search.result import load_results
from fn3.spec import Spec


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "mlp"
    cfg = TrainConfig(model="mlp", model_kwargs={"hidden": [32, 32]}, data="digits", epochs=6, lr=0.1,
                      batch_size=64)
    train_run(cfg, out, progress=False)
    return out


def test_search_writes_front_files_and_picks_under_budget(run_dir, tmp_path, capsys):
    r = load_run(run_dir)
    smallest = fn3.cost(r.model, r.space.smallest(), "flops")
    limit = 4 * smallest
    out = tmp_path / "s"
    rc = main(["search", str(run_dir), "--metric", "flops", "--strategy", "heuristic", "--strategy",
               "random", "--budget", f"flops={limit:.0f}", "--budget", "bits=1M", "--max-evals", "40",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "best sub-model under flops<=" in printed and "Pareto front" in printed
    results = load_results(out / "front.json")
    assert [res.strategy for res in results] == ["heuristic", "random"]
    for res in results:
        assert 1 <= res.evals <= 40
        best = res.best_under({"flops": limit, "bits": 1e6})
        assert best.cost("flops") <= limit and best.cost("bits") <= 1e6
        assert all(p.test_accuracy is not None for p in res.front)
    rows = list(csv.DictReader((out / "front.csv").open()))
    assert len(rows) == sum(len(res.front) for res in results)
    assert all(0 <= float(row["test_accuracy"]) <= 1 for row in rows)
    spec = Spec.from_json((out / "best.json").read_text(), r.space)
    assert fn3.cost(r.model, spec, "flops") <= limit
    assert (out / "front.png").stat().st_size > 1000
    data = json.loads((out / "front.json").read_text())
    assert data["format"] == "fn3.search-fronts" and set(data["chosen"]) == {"heuristic", "random"}


@pytest.mark.parametrize("args,message", [
    (["--metric", "speed"], "unknown metric 'speed'; known metrics: bitops"),
    (["--budget", "flops=10"], "budget flops=10 is below the smallest sub-model (flops="),
    (["--budget", "flops=abc"], "'abc' is not a number"),
    (["--strategy", "annealing"], "unknown search strategy 'annealing'"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, capsys, args, message):
    rc = main(["search", str(run_dir), "--no-progress", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_heuristic_near_exhaustive_on_real_accuracy(run_dir):
    r = load_run(run_dir)
    train, val, _ = r.datasets()
    ev = Evaluator(r.model, r.batches(val, 512))
    kw = dict(axes=["neurons"], seed=0)
    ex = search(r.model, ev, "flops", "exhaustive", **kw)
    h = search(r.model, ev, "flops", Heuristic(beam=1, candidates=4, step=0.125), **kw)
    floor = 0.1  # chance on ten classes
    ratio = h.hypervolume(ref_accuracy=floor) / ex.hypervolume(ref_accuracy=floor)
    assert ex.evals == 256 and h.evals <= 0.5 * ex.evals
    assert ratio >= 0.97, ratio
