"""The export benchmark's --quick mode runs end to end (so the script cannot rot)."""

from __future__ import annotations


def test_quick_benchmark_runs(capsys, tmp_path, benchmark_script):
    bench = benchmark_script("export")
    assert bench.main(["--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Latency against FLOPs" in out and "Bytes read from the nested file" in out
    assert "MISSED" not in out.split("## File size")[1]  # size and nested-read targets hold


def test_quick_inplace_benchmark_runs(capsys, tmp_path, benchmark_script):
    """benchmarks/export_inplace.py --quick: every sub-model has pairs in place and the same outputs
    in place and out of place."""
    bench = benchmark_script("export_inplace")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| bits=") and " of " in line]
    assert len(rows) == 4
    assert all(r.rstrip(" |").endswith("yes") and "| 9 of 20 |" in r for r in rows), rows
    # The profile table: one row per operator group per sub-model, quantizer time only in q.
    groups = [line for line in lines if line.startswith("| bits=") and " of " not in line]
    assert len(groups) >= 4 and any("convolutions" in g for g in groups), groups
