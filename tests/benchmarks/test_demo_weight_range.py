"""benchmarks/demo_weight_range.py: each arm trains on the weight range it names, and the page reads it.

One epoch at one seed (the script's ``--quick``, about 10 s): both arms train, every sub-model is
scored, and the two ranges give different models (a range the config dropped would train the same
network twice, bit-identically, and every difference would be 0)."""

from __future__ import annotations

import re


def test_both_ranges_train_different_models_and_the_page_has_every_row(tmp_path, benchmark_script):
    bench = benchmark_script("demo_weight_range")
    out = tmp_path / "page.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    labels = ["8 bits", "4 bits", "3 bits", "2 bits", "half, 4 bits", "half, 2 bits", "smallest"]
    rows = re.findall(r"^\| 0 \| ([^|]+) \| ([\d.]+)% \| ([\d.]+)% \| ([+-][\d.]+) pt \|$", text, re.M)
    assert [r[0].strip() for r in rows] == labels
    for _, a, b, diff in rows:
        assert abs(float(diff) - (float(b) - float(a))) <= 0.011  # the column is 3 rms - largest
    assert any(float(diff) != 0.0 for *_, diff in rows)  # the two arms are different networks
    assert "Mean over the seeds" in text and "359 test images" in text
