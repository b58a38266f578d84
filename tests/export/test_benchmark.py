"""The export benchmark's --quick mode runs end to end (so the script cannot rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "export.py"


def test_quick_benchmark_runs(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("export_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Latency against FLOPs" in out and "Bytes read from the nested file" in out
    assert "MISSED" not in out.split("## File size")[1]  # size and nested-read targets hold


def test_quick_inplace_benchmark_runs(capsys, tmp_path):
    """benchmarks/export_inplace.py --quick: every sub-model has pairs in place and the same outputs
    in place and out of place."""
    path = SCRIPT.with_name("export_inplace.py")
    spec = importlib.util.spec_from_file_location("export_inplace_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| bits=") and " of " in line]
    assert len(rows) == 4
    assert all(r.rstrip(" |").endswith("yes") and "| 9 of 20 |" in r for r in rows), rows
    # The profile table: one row per operator group per sub-model, quantizer time only in q.
    groups = [line for line in lines if line.startswith("| bits=") and " of " not in line]
    assert len(groups) >= 4 and any("convolutions" in g for g in groups), groups
