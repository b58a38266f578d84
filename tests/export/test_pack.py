"""Bit packing: c-bit codes take c bits, round-trip exactly; bit-planes give the top bits."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fn3.export.pack import from_planes, keep_planes, pack_codes, packed_size, to_planes, unpack_codes
from fn3.export.qmodules import plane_values
from fn3.nn.functional import grid_values, truncate_codes


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), n=st.integers(0, 300), seed=st.integers(0, 2**31 - 1))
def test_pack_round_trip_and_size(bits, n, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(-(2 ** (bits - 1)), 2 ** (bits - 1), (n,), generator=g, dtype=torch.int64)
    data = pack_codes(codes, bits)
    assert len(data) == packed_size(n, bits) == (n * bits + 7) // 8
    assert torch.equal(unpack_codes(data, bits, n).to(torch.int64), codes)


def test_pack_rejects_codes_that_do_not_fit():
    import pytest

    with pytest.raises(ValueError):
        pack_codes(torch.tensor([4]), 3)


@settings(max_examples=60, deadline=None)
@given(planes=st.sets(st.integers(1, 7), max_size=7), seed=st.integers(0, 2**31 - 1))
def test_planes_are_the_truncated_codes(planes, seed):
    """For any kept plane set (plane 0 always kept), planes -> c-bit code -> value = truncate_codes."""
    kept = (0, *sorted(planes))
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(-128, 128, (50,), generator=g)
    mask = sum(1 << (7 - p) for p in kept)
    want = truncate_codes(codes.float(), 8, len(kept), mask)
    c = keep_planes(codes, 8, kept)
    assert torch.equal(plane_values(kept, 8, "truncate")[c.long() + 2 ** (len(kept) - 1)], want)
    centred = grid_values(codes.float(), 8, len(kept), mask)  # the nested layer's reading
    assert torch.equal(plane_values(kept, 8)[c.long() + 2 ** (len(kept) - 1)], centred)
    assert torch.equal(from_planes(to_planes(codes, 8)[list(kept)], kept), c)


def test_top_bits_are_floor_division():
    codes = torch.arange(-128, 128)
    for c in range(1, 9):
        assert torch.equal(
            keep_planes(codes, 8, tuple(range(c))).long(),
            torch.div(codes, 2 ** (8 - c), rounding_mode="floor"),
        )
    assert to_planes(codes, 8).dtype == np.uint8
