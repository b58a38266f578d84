"""benchmarks/act_quant_speed.py --quick: both quantizer forms are timed inside real training steps
(the autograd form really runs in the model: the patch reaches the nested quantizers), and the
library's quantizer is back in place afterwards."""

from __future__ import annotations

import fn3.nn.base as nested_base
from fn3.nn.functional import fake_quant_act


def test_quick_act_quant_speed_runs_both_forms(tmp_path, monkeypatch, benchmark_script):
    bench = benchmark_script("act_quant_speed")
    calls = {"lsq": 0, "pact": 0}
    reference = bench.fake_quant_act_autograd

    def counted(*args, **kwargs):
        calls[args[-1] if len(args) == 7 else kwargs.get("learn", "pact")] += 1
        return reference(*args, **kwargs)

    monkeypatch.setattr(bench, "fake_quant_act_autograd", counted)
    bench.main(["--quick", "--out", str(tmp_path)])
    assert calls["pact"] > 0 and calls["lsq"] > 0  # the shared level and the level per bit-width
    assert nested_base.fake_quant_act is fake_quant_act
    md = (tmp_path / "act_quant_speed.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| shared") or line.startswith("| level")]
    assert len(rows) == 6 and all(float(r.split(" | ")[-1].rstrip("x |")) > 0 for r in rows)
    assert (tmp_path / "act_quant_speed.png").stat().st_size > 0
