"""Nested layers: the sliced forward equals a masked reference forward, for prefix and non-prefix sets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fn3.nn import AxisSlot, BasicBlock, NestedBatchNorm2d, NestedConv2d, NestedLinear, NestedStage
from fn3.nn.functional import fake_quant_weight, weight_scale
from fn3.spec import Axis

SETS = [(0,), (0, 1), (0, 2, 3), (0, 1, 2, 3)]


def _mask(slot: AxisSlot, n: int, per_unit: int = 1) -> torch.Tensor:
    sel = slot.select(per_unit)
    m = torch.zeros(n)
    m[torch.arange(sel.n) if sel.index is None else sel.index] = 1
    return m


@pytest.mark.parametrize("blocks_in", SETS)
@pytest.mark.parametrize("blocks_out", SETS)
def test_linear_sliced_equals_masked(blocks_in, blocks_out):
    a_in = AxisSlot(Axis("in", "neurons", 16, step=4))
    a_out = AxisSlot(Axis("out", "neurons", 12, step=3))
    layer = NestedLinear(16, 12, in_axis=a_in, out_axis=a_out)
    a_in.set(blocks_in)
    a_out.set(blocks_out)
    x_full = torch.randn(5, 16)
    m_in, m_out = _mask(a_in, 16), _mask(a_out, 12)
    ref = F.linear(x_full * m_in, layer.weight, layer.bias)[:, m_out.bool()]  # masked reference
    sliced = layer(x_full[:, m_in.bool()])
    assert sliced.shape == (5, int(m_out.sum()))
    torch.testing.assert_close(sliced, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blocks", SETS)
def test_conv_and_bn_sliced_equal_masked(blocks):
    a = AxisSlot(Axis("c", "channels", 8, step=2))
    conv = NestedConv2d(8, 8, 3, padding=1, in_axis=a, out_axis=a)
    bn = NestedBatchNorm2d(8, axis=a)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.eval()
    a.set(blocks)
    m = _mask(a, 8).bool()
    x = torch.randn(2, 8, 5, 5)
    ref = F.conv2d(x * m[None, :, None, None].float(), conv.weight, None, 1, 1)
    ref = F.batch_norm(ref, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)[:, m]
    torch.testing.assert_close(bn(conv(x[:, m])), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("paths", [(0,), (0, 1), (0, 3), (0, 1, 2, 3)])
def test_grouped_conv_paths_equal_masked(paths):
    p = AxisSlot(Axis("p", "paths", 4))
    conv = NestedConv2d(8, 12, 3, padding=1, groups=4, path_axis=p)
    p.set(paths)
    m_in, m_out = _mask(p, 8, 2).bool(), _mask(p, 12, 3).bool()
    x = torch.randn(2, 8, 6, 6)
    ref = F.conv2d(x * m_in[None, :, None, None].float(), conv.weight, None, 1, 1, 1, 4)[:, m_out]
    out = conv(x[:, m_in])
    assert out.shape[1] == 3 * len(paths)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_sliced_layer_does_less_work():
    a = AxisSlot(Axis("c", "channels", 64, step=16))
    conv = NestedConv2d(64, 64, 3, padding=1, in_axis=a, out_axis=a)
    a.set((0,))
    w, _ = conv.active_weight()
    assert w.shape == (16, 16, 3, 3)  # sliced, not masked: 1/16 of the weights take part


def test_quantized_slice_uses_full_weight_scale():
    a = AxisSlot(Axis("c", "neurons", 8, step=2))
    wb = AxisSlot(Axis("w", "bits", 8, min_size=2))
    layer = NestedLinear(8, 8, bias=False, in_axis=a, wbits=wb)
    a.set((0, 2))
    wb.set((0, 1, 2))
    w, _ = layer.active_weight()
    idx = a.select().index
    full_q = fake_quant_weight(layer.weight, weight_scale(layer.weight, 8), 8, 3)
    torch.testing.assert_close(w, full_q[:, idx])  # the same codes as in the full model


@pytest.mark.parametrize("kept", [(0,), (0, 1), (0, 2), (0, 1, 2)])
def test_stage_depth_skips_blocks(kept):
    d = AxisSlot(Axis("d", "layers", 3))
    blocks = [BasicBlock(4, 4, 4) for _ in range(3)]
    stage = NestedStage(blocks, depth=d).eval()
    d.set(kept)
    x = torch.randn(1, 4, 5, 5)
    ref = x
    for i in kept:
        ref = blocks[i](ref)
    torch.testing.assert_close(stage(x), ref)


def test_stage_rejects_projection_after_first_block():
    with pytest.raises(ValueError, match="projection"):
        NestedStage([BasicBlock(4, 4, 4), BasicBlock(4, 8, 8, stride=2)])


def test_bn_training_updates_only_active_statistics():
    a = AxisSlot(Axis("c", "channels", 8, step=2))
    bn = NestedBatchNorm2d(8, axis=a)
    a.set((0, 2))
    bn.train()(torch.randn(4, 4, 3, 3) + 5)
    touched = bn.running_mean != 0
    assert touched.tolist() == [True, True, False, False, True, True, False, False]
