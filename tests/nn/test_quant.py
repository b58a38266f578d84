"""Nested quantization: c-bit grids are nested and the c-bit code is the top c bits of the B-bit code."""

from __future__ import annotations

import pytest
import torch

from fn3.nn.functional import (
    act_codes,
    act_step,
    fake_quant_act,
    fake_quant_weight,
    truncate_codes,
    weight_codes,
    weight_scale,
)


@pytest.mark.parametrize("total", [4, 8])
def test_weight_codes_truncate_to_top_bits(total):
    w = torch.randn(16, 9) * 3
    s = weight_scale(w, total)
    c = weight_codes(w, s, total).to(torch.int64)
    assert c.abs().max() <= 2 ** (total - 1) - 1
    for keep in range(1, total + 1):
        t = truncate_codes(c.float(), total, keep).to(torch.int64)
        shift = total - keep
        assert torch.equal(t >> shift, c >> shift)  # top `keep` bits (arithmetic shift = two's complement)
        assert torch.equal(t & ((1 << shift) - 1), torch.zeros_like(t))  # low bits dropped
        assert bool((t <= c).all())  # truncation rounds toward -inf


@pytest.mark.parametrize("signed", [False, True])
def test_grids_are_nested(signed):
    x = torch.linspace(-5, 5, 2001)
    alpha = torch.tensor(3.0)
    step = act_step(alpha, 8, signed)
    codes8 = act_codes(x, alpha, 8, signed).to(torch.int64)

    def grid(c: int) -> set[int]:  # representable c-bit values, on the 8-bit code scale
        lo, hi = (-(2 ** (c - 1)), 2 ** (c - 1) - 1) if signed else (0, 2**c - 1)
        return {k * 2 ** (8 - c) for k in range(lo, hi + 1)}

    for c in range(1, 9):
        values = torch.round(fake_quant_act(x, alpha, 8, c, signed) / step).to(torch.int64)
        assert set(values.tolist()) <= grid(c)  # every c-bit output is a c-bit grid point
        assert torch.equal(values >> (8 - c), codes8 >> (8 - c))  # = top c bits of the 8-bit code
        if c < 8:
            assert grid(c) <= grid(c + 1)  # the grids are nested


def test_mask_equals_prefix_truncation_and_handles_signs():
    c = torch.arange(-127, 128).float()
    for keep in range(1, 9):
        mask = sum(1 << (7 - b) for b in range(keep))
        assert torch.equal(truncate_codes(c, 8, keep, mask), truncate_codes(c, 8, keep))
    # dropping a middle plane (bit 5) of a negative code keeps its sign
    mask = 0xFF ^ (1 << 5)
    out = truncate_codes(torch.tensor([-1.0, -33.0, 33.0]), 8, 7, mask)
    assert out.tolist() == [-33.0, -33.0, 1.0]


def test_straight_through_gradients():
    w = torch.randn(4, 5, requires_grad=True)
    fake_quant_weight(w, weight_scale(w, 8), 8, 3).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    x = torch.tensor([-1.0, 0.5, 2.0, 5.0], requires_grad=True)
    alpha = torch.tensor(4.0, requires_grad=True)
    fake_quant_act(x, alpha, 8, 4, signed=False).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # identity inside [0, alpha]
    assert alpha.grad.item() == 1.0  # PACT: one element above alpha


def test_act_codes_range():
    x = torch.randn(1000) * 4
    u = act_codes(x, torch.tensor(2.0), 8, signed=False)
    s = act_codes(x, torch.tensor(2.0), 8, signed=True)
    assert u.min() >= 0 and u.max() <= 255
    assert s.min() >= -127 and s.max() <= 127
