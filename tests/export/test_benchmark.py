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
