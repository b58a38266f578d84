"""Int8 kernels for an export's quantized convolutions (``fn3.export.integer``).

The conversion must keep the export's values (the centre offset of a weight below 8 bits is an
exact extra term, not dropped), convert only what an int8 kernel computes, and, compiled, really run
oneDNN's int8 convolution (the generated code calls ``qconv``): a graph Inductor did not recognise
would run in float and measure nothing.
"""

from __future__ import annotations

import pytest
import torch
from export_helpers import INPUT, make_model
from test_compiled import SmallUserNet
from torch import nn

import fn3
from fn3.errors import ConfigError
from fn3.export import export
from fn3.export.fast import compiled
from fn3.export.integer import IntConv2d, integer
from fn3.nn.act_quant import QuantInput


def _export(bits: int, channels: float = 1.0):
    model = make_model("resnet20")
    return export(model, fn3.space(model).uniform({"bits": bits, "channels": channels}))


def _converted(module: nn.Module) -> set[str]:
    return {n for n, m in module.named_modules() if isinstance(m, IntConv2d)}


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_an_int8_layer_computes_the_quantizer_and_convolution_it_replaces(bits):
    q = _export(bits)
    pair = q.module.get_submodule("stages.1.1.conv1")
    layer = IntConv2d(pair[0], pair[1], q.quant["stages.1.1.conv1.1.weight"])
    assert bool(layer.offset) == (bits < 8)  # a weight below 8 bits sits at its cell's centre
    assert layer.codes.dtype == torch.int8 and int(layer.codes.abs().max()) <= 2 ** (bits - 1)
    # continuous inputs: no activation on a rounding tie, so the values agree to float rounding
    x = torch.rand(4, pair[1].in_channels, 8, 8, generator=torch.Generator().manual_seed(bits)) * 3
    with torch.no_grad():
        want, got = pair(x.clone()), layer(x)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_a_row_with_a_zero_step_converts_to_zero_codes():
    q = _export(4)
    pair = q.module.get_submodule("stages.1.1.conv1")
    quant = q.quant["stages.1.1.conv1.1.weight"]
    pair[1].weight.data[3] = 0.0
    quant.scale[3] = 0.0
    layer = IntConv2d(pair[0], pair[1], quant)
    assert not layer.codes[3].any() and layer.w_scale[3] == 0 and layer.centre[3] == 0
    x = torch.rand(2, pair[1].in_channels, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(layer(x), pair(x.clone()), atol=1e-5, rtol=1e-5)


def test_integer_converts_the_quantized_convolutions_wide_enough_and_keeps_the_values():
    q = _export(4, channels=0.5)  # ResNet-20 at half width: stages of 8, 16 and 32 channels
    convs = {n: m for n, m in q.module.named_modules() if isinstance(m, QuantInput)}
    fast = integer(q)
    converted = _converted(fast)
    wide = {n for n, m in convs.items() if min(m[1].in_channels, m[1].out_channels) >= 16}
    assert converted == wide and 0 < len(wide) < len(convs)
    assert _converted(integer(q, min_channels=1)) == set(convs)
    x = torch.rand(8, *INPUT, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = q(x), fast(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, IntConv2d) for m in q.modules())  # the export itself is untouched


@pytest.mark.parametrize("bits", [8, 4])
def test_a_quantized_linear_layer_runs_on_int8_kernels_with_the_export_values(bits):
    from torch._inductor.utils import run_and_get_code

    from fn3.export.integer import IntLinear

    model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=28).eval()
    q = export(model, fn3.space(model).uniform({"bits": bits}))
    fast = integer(q)
    assert [n for n, m in fast.named_modules() if isinstance(m, IntLinear)] == ["layers.1"]
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(bits))
    with torch.no_grad():
        want = q(x)
        assert torch.allclose(fast(x), want, atol=1e-5, rtol=1e-5)
        torch._dynamo.reset()
        out, code = run_and_get_code(compiled(q, integer=True), x)
    assert "torch.ops.onednn.qlinear" in "\n".join(code)
    assert torch.linalg.norm(out - want) <= 1e-3 * torch.linalg.norm(want)


def test_a_users_network_converts_too():
    torch.manual_seed(0)
    net = SmallUserNet().eval()
    fn3.nest_(net, torch.zeros(1, *INPUT), levels="channels,bits", verbose=False)
    q = export(net, fn3.space(net).uniform({"bits": 4}))  # 8 channels: converted only when asked
    assert not any(isinstance(m, IntConv2d) for m in integer(q).modules())
    fast = integer(q, min_channels=1)
    assert sum(isinstance(m, IntConv2d) for m in fast.modules()) >= 1
    x = torch.randn(4, *INPUT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(fast(x), q(x), atol=1e-5, rtol=1e-5)


def test_integer_rejects_what_it_cannot_convert():
    with pytest.raises(ConfigError, match=r"integer\(\) converts an exported sub-model .* got Sequential"):
        integer(nn.Sequential(nn.Conv2d(3, 16, 3)))
    with pytest.raises(ConfigError, match="min_channels 0: expected a positive channel count"):
        integer(_export(8), min_channels=0)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN is not in this torch build")
def test_compiled_integer_export_runs_int8_kernels_and_keeps_the_values():
    from torch._inductor.utils import run_and_get_code

    q = _export(2)
    x = torch.rand(16, *INPUT, generator=torch.Generator().manual_seed(3))
    torch._dynamo.reset()
    fast = compiled(q, integer=True)
    with torch.no_grad():
        eager = q(x)
        out, code = run_and_get_code(fast, x)
    source = "\n".join(code)
    assert source.count("torch.ops.onednn.qconv") >= 20, "Inductor did not lower to int8 convolutions"
    # 1/step multiplied where the export divides: an activation on a rounding tie may take the next
    # step (the step-boundary tolerance); everything else agrees to float rounding.
    assert torch.linalg.norm(out - eager) <= 2e-2 * torch.linalg.norm(eager)
    assert (out.argmax(1) == eager.argmax(1)).float().mean() >= 0.9


@pytest.mark.parametrize(
    "conv, signed, convertible",
    [
        (nn.Conv2d(16, 16, 3, padding=1), False, True),
        (nn.Conv2d(16, 16, 1, padding=1), False, False),  # the window sum pads at most half its window
        (nn.Conv2d(16, 16, 3, padding=1, groups=2), False, False),  # int8 path: dense convolutions only
        (nn.Conv2d(16, 16, 3, padding=2, dilation=2), False, False),
        (nn.Conv2d(16, 16, 3, padding=1), True, False),  # a signed quantizer is not a uint8 input
        (nn.Linear(16, 16), False, True),
        (nn.Linear(16, 16), True, False),
    ],
)
def test_only_what_an_int8_convolution_computes_is_converted(conv, signed, convertible):
    from fn3.export.integer import _convertible
    from fn3.nn.act_quant import ActQuant
    from fn3.nn.protocol import QuantWeight

    pair = QuantInput(ActQuant(torch.tensor(2.0), planes=(0, 1, 2, 3), signed=signed), conv)
    quant = QuantWeight(torch.ones(16), 8, (0, 1, 2, 3), "centred")
    assert (_convertible(pair, quant, min_channels=16) is not None) is convertible
    assert _convertible(pair, quant, min_channels=32) is None
