"""`fn3 demo` does what it promises: a front with cost and size columns, a PNG, a run directory the
next commands work on, and an exported file with the accuracy of the nested model.

One short demo (1 epoch on 20 images per class, 10 sub-models scored: about 10 s) serves every test.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from fn3.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo folder and what the demo printed (rich writes to whatever sys.stdout is)."""
    out = tmp_path_factory.mktemp("demo") / "fn3-demo"
    args = ["--out", str(out), "--epochs", "1", "--limit", "20", "--max-evals", "10", "--no-progress"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", *args]) == 0
    return out, printed.getvalue()


def test_prints_the_front_with_cost_and_size_columns(demo) -> None:
    out, text = demo
    from fn3.search.result import load_results

    (result,) = load_results(out / "run" / "search" / "front.json")
    header = next(ln for ln in text.splitlines() if "MFLOPs" in ln)
    assert re.search(r"val\W+test\W+MFLOPs\W+bytes\W+kept", header), header
    # One table row per front point: val %, test %, MFLOPs, bytes of the exported file.
    cell = r"\s*(\*?)\s*│\s*([0-9.]+)%\s*│\s*([0-9.]+)%\s*│\s*([0-9.]+)\s*│\s*([0-9,]+)\s*│"
    rows = [m.groups() for m in (re.match("│" + cell, ln) for ln in text.splitlines()) if m]
    assert len(rows) == len(result.front) >= 1, text
    assert sum(1 for r in rows if r[0] == "*") == 1  # the chosen one is marked
    flops = sorted(p.costs["flops"] / 1e6 for p in result.front)
    assert sorted(float(r[3]) for r in rows) == pytest.approx(flops, abs=1e-3)
    assert all(int(r[4].replace(",", "")) > 1000 for r in rows)
    assert re.search(r"best under flops=[0-9.]+M", text)
    assert re.search(r"whole model at 8 bits [0-9.]+%, at 2 bits [0-9.]+%", text)


def test_writes_the_plot_and_a_run_directory(demo) -> None:
    out, text = demo
    run = out / "run"
    png = run / "search" / "front.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert f"plot of the front: {png}" in text and f"run directory: {run}" in text
    for name in ("config.json", "model.safetensors", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["model"] == "resnext_tiny"


def test_exported_file_gives_the_accuracy_of_the_nested_model(demo) -> None:
    """Recomputed here, not read from the demo's output: the file against the sub-model in the run."""
    out, text = demo
    from fn3.export import evaluate_exported
    from fn3.run import load_run
    from fn3.spec import Spec
    from fn3.train import evaluate_specs

    run = load_run(out / "run")
    spec = Spec.from_json((out / "run" / "export" / "spec.json").read_text(), run.space)
    train, _, test = run.datasets()
    in_model = evaluate_specs(run.model, {"s": spec}, test, run.config, train)["s"]
    from_file = evaluate_exported(out / "run" / "export")
    assert round(in_model * len(test)) == round(from_file * len(test))
    assert f"{from_file:.2%}" in text and "the same" in text


def test_the_next_commands_work_on_its_run(demo, tmp_path, capsys) -> None:
    """Every printed follow-up command but the (slow, already run) search succeeds as printed."""
    out, text = demo
    commands = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("fn3 ")]
    assert [c.split()[1] for c in commands] == ["info", "eval", "search", "export", "bench"]
    for cmd in commands:
        if cmd.split()[1] == "search":
            continue
        args = shlex.split(cmd)[1:]
        if args[0] == "bench":
            args += ["--repeats", "2"]
        assert main(args) == 0, cmd
    assert (out / "export-onnx" / "model.onnx").is_file()
