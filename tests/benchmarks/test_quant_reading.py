"""benchmarks/quant_reading.py: its ``fitted`` reading really reaches the model's weights while the
block is open (a least-squares multiple of the centred values per output channel, the 8-bit weights
untouched), fn3's reading is back afterwards, and a quick run pairs the two readings' hits."""

from __future__ import annotations

import torch

import fn3
import fn3.nn.functional as functional


def test_the_fitted_reading_is_the_least_squares_multiple_and_is_undone(benchmark_script):
    bench = benchmark_script("quant_reading")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, 3, 3, generator=g)
    scale = functional.weight_scale(w, 8)
    codes = functional.weight_codes(w, scale, 8)
    centred = functional.grid_values(codes, 8, 2)
    with bench.reading("fitted"):
        fitted = functional.grid_values(codes, 8, 2)
        assert torch.equal(functional.grid_values(codes, 8, 8), codes)  # 8 bits: a = 1, unchanged
        # The multiple minimises ||codes - a * centred|| per row: a tiny step either way is worse.
        for row in range(6):
            a = float((fitted[row].flatten() @ centred[row].flatten()) / (centred[row] ** 2).sum())
            c, q = codes[row], centred[row]
            err = [float(((c - k * q) ** 2).sum()) for k in (a, a * 1.01, a * 0.99)]
            assert err[0] < err[1] and err[0] < err[2]
            assert a < 1  # at 2 bits the centres sit too far out on Gaussian weights
    assert torch.equal(functional.grid_values(codes, 8, 2), centred)  # fn3's reading is back

    # It reaches a real model's forward: the 2-bit outputs change, the 8-bit ones do not.
    torch.manual_seed(0)
    net = fn3.create_model("resnet20", num_classes=10, levels=("bits",)).eval()
    x = torch.randn(2, 3, 32, 32)
    sp = fn3.space(net)

    def outputs() -> dict[int, torch.Tensor]:
        out = {}
        for bits in (8, 2):
            with torch.no_grad(), fn3.active(net, fn3.parse_spec(f"bits={bits}", sp)):
                out[bits] = net(x)
        return out

    before = outputs()
    with bench.reading("fitted"):
        during = outputs()
    assert torch.equal(during[8], before[8]) and not torch.allclose(during[2], before[2])
    assert all(torch.equal(a, b) for a, b in zip(outputs().values(), before.values(), strict=True))


def test_a_quick_run_pairs_both_readings(tmp_path, capsys, data_root, benchmark_script):
    bench = benchmark_script("quant_reading")  # trains on the CIFAR-10 copy under data_root
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    page = capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"centred_quickep_seed0.json", "fitted_quickep_seed0.json"}
    assert "| network alone at 2 bits | 2 |" in page and "| fitted |" in page
