"""benchmarks/quant_error.py: the two bounds it prints beside fn3's schemes are what they claim.

``cell means`` reads every cell of the stored bits at the mean of its weights, the least squared error
any reading of those bits can have: it must be at most the centred reading and the per-channel
least-squares multiple of it, which in turn is at most the centred reading (``a = 1`` is one of the
multiples it chooses from). Checked against a brute-force reading cell by cell."""

from __future__ import annotations

import pytest
import torch

from fn3.nn.functional import weight_codes, weight_scale


@pytest.mark.parametrize("keep", [2, 3, 4])
def test_the_bounds_order_and_match_a_cell_by_cell_reading(keep, benchmark_script):
    bench = benchmark_script("quant_error")
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(8, 4, 3, 3, generator=g) * 0.1, torch.randn(6, 16, generator=g).exp()]
    centred = bench.relative_errors(ws, keep)["centred"]
    scaled, means = bench.bounds(ws, keep)
    assert means <= scaled + 1e-9 and scaled <= centred + 1e-9
    if keep == 2:  # cells of a quarter of max|w|: the centres sit too far out, a multiple < 1 wins
        assert scaled < 0.9 * centred

    # Cell means, brute force: per output channel, per kept top code, the mean of its weights.
    err = norm = 0.0
    for w in ws:
        top = torch.floor(weight_codes(w, weight_scale(w, 8), 8).flatten(1) / 2 ** (8 - keep))
        flat = w.flatten(1)
        for row, codes in zip(flat, top, strict=True):
            for code in codes.unique():
                cell = row[codes == code]
                err += float(((cell - cell.mean()) ** 2).sum())
        norm += float((w**2).sum())
    assert means == pytest.approx(err / norm, rel=1e-5)
