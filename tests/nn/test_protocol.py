"""The nested-leaf protocol: each leaf's extracted form computes what the leaf computes, its analytic
FLOPs equal the flop counter's, and its axes say which dimension they slice."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fn3.nn import AxisSlot, NestedBatchNorm2d, NestedConv2d, NestedLinear
from fn3.nn.gate import NestedSequential
from fn3.nn.norm import NestedLayerNorm
from fn3.nn.protocol import AxisUse, is_gate, is_leaf
from fn3.spec import Axis

SETS = [(0,), (0, 2), (0, 1, 2, 3)]


def _bits(name: str) -> AxisSlot:
    return AxisSlot(Axis(name, "bits", 8, min_size=2))


def _flops(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        module(x)
    return c.get_total_flops()


def _check(leaf: nn.Module, x: torch.Tensor, full_shape: tuple[int, ...]) -> None:
    leaf.eval()
    plain = leaf.extract()
    assert not isinstance(plain, type(leaf))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), leaf(x), rtol=0, atol=1e-6)
    assert leaf.fn3_cost(full_shape).flops == _flops(plain, x)


@pytest.mark.parametrize("blocks", SETS)
def test_linear_and_conv_extract_and_cost(blocks):
    a = AxisSlot(Axis("a", "channels", 8, step=2))
    b = AxisSlot(Axis("b", "channels", 12, step=3))
    conv = NestedConv2d(8, 12, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(2, 1), bias=True,
                        in_axis=a, out_axis=b, wbits=_bits("w"), abits=_bits("x"))
    a.set(blocks)
    b.set(blocks)
    conv.wbits.set((0, 1, 2))
    _check(conv, torch.randn(1, a.units, 9, 7), (1, 8, 9, 7))
    fc = NestedLinear(8, 12, in_axis=a, out_axis=b, wbits=_bits("fw"))
    _check(fc, torch.randn(1, 5, a.units), (1, 5, 8))  # tokens: (B, T, features)
    assert fc.fn3_axes() == (AxisUse("a", "in"), AxisUse("b", "out"), AxisUse("fw", "wbits"))


@pytest.mark.parametrize("blocks", SETS)
def test_depthwise_conv_ties_input_and_output_channels(blocks):
    c = AxisSlot(Axis("c", "channels", 8, step=2))
    dw = NestedConv2d(8, 8, 3, padding=1, groups=8, path_axis=c)
    c.set(blocks)
    _check(dw, torch.randn(1, c.units, 5, 5), (1, 8, 5, 5))
    assert dw.extract().groups == c.units and dw.fn3_axes() == (AxisUse("c", "groups"),)


@pytest.mark.parametrize("blocks", SETS)
def test_norms_slice_their_features(blocks):
    c = AxisSlot(Axis("c", "channels", 8, step=2))
    bn = NestedBatchNorm2d(8, axis=c)
    bn.running_mean.uniform_(-1, 1)
    ln = NestedLayerNorm(8, axis=c)
    nn.init.uniform_(ln.weight)
    c.set(blocks)
    _check(bn, torch.randn(2, c.units, 3, 3), (1, 8, 3, 3))
    _check(ln, torch.randn(2, 4, c.units), (1, 4, 8))
    assert bn.fn3_cost((1, 8, 3, 3)).params == 2 * c.units == ln.fn3_cost((1, 4, 8)).params
    c.set(None)
    ref = nn.LayerNorm(8)
    ref.load_state_dict(ln.state_dict())
    x = torch.randn(3, 8)
    torch.testing.assert_close(ln(x), ref(x))


def test_sequential_gate_drops_children_and_keeps_names():
    depth = AxisSlot(Axis("d", "layers", 3))
    seq = NestedSequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), gates={1: (depth, 1), 2: (depth, 2)})
    assert is_gate(seq) and not is_leaf(seq) and seq.fn3_axes() == (AxisUse("d", "blocks"),)
    depth.set((0, 2))
    assert seq.fn3_skipped() == [seq[1]]
    plain = seq.extract()
    x = torch.randn(2, 4)
    torch.testing.assert_close(plain(x), seq(x))
    assert isinstance(plain[1], nn.Identity) and set(plain.state_dict()) == set(seq.state_dict())
