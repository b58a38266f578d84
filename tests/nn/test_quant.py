"""Nested quantization: c-bit grids are nested and the c-bit code is the top c bits of the B-bit code."""

from __future__ import annotations

import pytest
import torch

from fn3.errors import ConfigError
from fn3.nn.functional import (
    act_codes,
    act_step,
    check_scheme,
    fake_quant_act,
    fake_quant_weight,
    grid_values,
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
def test_truncate_scheme_grids_are_nested(signed):
    x = torch.linspace(-5, 5, 2001)
    alpha = torch.tensor(3.0)
    step = act_step(alpha, 8, signed)
    codes8 = act_codes(x, alpha, 8, signed).to(torch.int64)

    def grid(c: int) -> set[int]:  # representable c-bit values, on the 8-bit code scale
        lo, hi = (-(2 ** (c - 1)), 2 ** (c - 1) - 1) if signed else (0, 2**c - 1)
        return {k * 2 ** (8 - c) for k in range(lo, hi + 1)}

    for c in range(1, 9):
        values = torch.round(fake_quant_act(x, alpha, 8, c, signed, scheme="truncate") / step)
        values = values.to(torch.int64)
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


def test_centred_weights_are_read_at_the_cell_centre_from_the_same_bits():
    w = torch.randn(32, 50)
    s = weight_scale(w, 8)
    c8 = weight_codes(w, s, 8)
    for keep in range(1, 9):
        unit = 2 ** (8 - keep)
        t = truncate_codes(c8, 8, keep)
        v = grid_values(c8, 8, keep)
        assert torch.equal(v, t + (unit - 1) / 2)  # centre of the cell [t, t + unit - 1]
        assert torch.equal(torch.floor(v / unit), t / unit)  # same top bits: a prefix of the file
    assert torch.equal(grid_values(c8, 8, 8), c8)  # every bit kept: the 8-bit code itself


@pytest.mark.parametrize("keep", [2, 3, 4])
def test_centred_weights_have_a_quarter_of_the_floor_error(keep):
    w = torch.randn(64, 288)
    s = weight_scale(w, 8)
    err = {
        scheme: float((fake_quant_weight(w, s, 8, keep, scheme=scheme) - w).pow(2).mean())
        for scheme in ("centred", "truncate")
    }
    assert err["centred"] < 0.35 * err["truncate"]  # u^2/12 against u^2/3 for a uniform cell
    bias = float((fake_quant_weight(w, s, 8, keep) - w).mean() / w.std())
    assert abs(bias) < 0.02  # unbiased (floor is off by half a cell)


def test_centred_mask_adds_back_half_of_the_dropped_planes():
    c = torch.tensor([-1.0, -33.0, 33.0, 127.0])
    mask = 0xFF ^ (1 << 5)  # drop plane 2 (weight 32)
    assert grid_values(c, 8, 7, mask).tolist() == [-17.0, -17.0, 17.0, 111.0]
    prefix = sum(1 << (7 - b) for b in range(3))
    assert torch.equal(grid_values(c, 8, 3, prefix), grid_values(c, 8, 3))


@pytest.mark.parametrize("signed", [False, True])
def test_centred_activations_round_on_the_c_bit_grid(signed):
    x = torch.linspace(-5, 5, 2001)
    alpha = torch.tensor(3.0)
    for c in range(2, 9):
        step = act_step(alpha, c, signed)
        y = fake_quant_act(x, alpha, 8, c, signed)
        codes = y / step
        assert torch.allclose(codes, torch.round(codes), atol=1e-4)  # on the c-bit grid
        levels = set(torch.round(codes).to(torch.int64).tolist())
        top = 2 ** (c - 1) - 1 if signed else 2**c - 1
        assert levels == set(range(-top if signed else 0, top + 1))  # every level used, none more
        clipped = x.clamp(-3.0 if signed else 0.0, 3.0)
        assert float((y - clipped).abs().max()) <= float(step) / 2 + 1e-6  # rounding, not floor
    # a non-prefix plane set of the same size gives the same rule (only the count matters)
    mask = 0xFF ^ (1 << 6) ^ (1 << 3) ^ (1 << 2) ^ (1 << 1) ^ 1
    assert torch.equal(fake_quant_act(x, alpha, 8, 3, signed, mask), fake_quant_act(x, alpha, 8, 3, signed))


def test_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown; expected one of centred, truncate"):
        check_scheme("nearest")


@pytest.mark.parametrize("scheme", ["centred", "truncate"])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("blocks", [(0,), (0, 1), (0, 1, 2, 3), tuple(range(8)), (0, 2, 5)])
def test_extracted_act_quant_equals_the_nested_one(scheme, signed, blocks):
    """The extracted quantizer (ActQuant: the deployed model's fewer passes) gives exactly the nested
    quantizer's forward values, values on and between the steps included."""
    from fn3.nn import AxisSlot, NestedActQuant
    from fn3.nn.act_quant import ActQuant
    from fn3.nn.base import set_quant_scheme
    from fn3.spec import Axis

    slot = AxisSlot(Axis("q.abits", "bits", 8, min_size=1))
    q = NestedActQuant(slot, 8, signed, alpha=2.5).eval()
    set_quant_scheme(q, scheme)
    slot.set(blocks)
    g = torch.Generator().manual_seed(len(blocks))
    x = torch.randn(4, 3, 5, 5, generator=g) * 3
    x.view(-1)[:20] = torch.arange(-10, 10) * q.alpha.item() / 20  # on grid points and cell edges
    ex = q.extract()
    assert isinstance(ex, ActQuant) and ex.bits == len(blocks)
    with torch.no_grad():
        d = (ex(x) - q(x)).abs().max().item()
        assert d <= 1e-6 * q.alpha.item(), d  # training adds (q - x) to x: an ulp of rounding


def test_weight_range_caps_at_k_rms_and_every_bit_width_still_nests():
    """``clip=k``: each channel's range is ``min(max|w|, k * rms)``; the weights beyond it take the top
    code, and every kept bit-width is still the top bits of the one 8-bit code."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 144, generator=g) * torch.rand(32, 1, generator=g)  # (out, in*k*k)
    w[3, 0] = 40 * w[3].abs().max()  # one outlier: its channel's range at max|w| is all outlier
    rms = w.pow(2).mean(1).sqrt()
    assert torch.allclose(weight_scale(w, 8, 0.0), w.abs().amax(1) / 127)
    s = weight_scale(w, 8, 3.0)
    assert torch.allclose(s, torch.minimum(w.abs().amax(1), 3 * rms) / 127)
    assert float(s[3]) < 0.3 * float(w[3].abs().max()) / 127  # the outlier's channel: 3 rms, far below
    c = weight_codes(w, s, 8).to(torch.int64)
    assert int(c[3, 0]) == 127 and int(c.max()) == 127 and int(c.min()) == -128  # clipped to the range
    for keep in range(1, 9):
        t = truncate_codes(c.float(), 8, keep).to(torch.int64)
        assert torch.equal(t >> (8 - keep), c >> (8 - keep))
    # At 2 bits the range of 3 rms leaves fewer weights in the two inner cells than max|w| does, and
    # a smaller error on the weights: what the range is for.
    err = {k: (fake_quant_weight(w, weight_scale(w, 8, k), 8, 2) - w).norm() for k in (0.0, 3.0)}
    assert err[3.0] < 0.8 * err[0.0], err
    with pytest.raises(ConfigError, match="weight_clip=-1"):
        from fn3.nn.base import set_weight_clip

        set_weight_clip(torch.nn.Linear(2, 2), -1)
