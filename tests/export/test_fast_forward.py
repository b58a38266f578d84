"""The exported model's fast PyTorch forward: weights dequantized once, quantizers in fewer passes.

An export holds plain float layers (each quantized weight dequantized once, at export or load); the
module-tree vocabulary of format-1/2 files (:class:`~fn3.export.ExportedModel`, what such a file
loads into) keeps codes and dequantizes them once, on the first forward.
"""

from __future__ import annotations

import pytest
import torch
from export_helpers import INPUT, make_model
from legacy import export_tree

import fn3
from fn3.export import ActQuant, QuantConv2d, export
from fn3.nn.functional import act_values, clip_act


def test_an_export_holds_its_quantized_weights_as_plain_float_layers():
    model = make_model("resnet20")
    q = export(model, fn3.space(model).uniform({"bits": 4}))
    params = q.module.state_dict()
    assert q.quant and not any(isinstance(m, QuantConv2d) for m in q.modules())
    for key, coding in q.quant.items():
        layer = q.module.get_submodule(key.rsplit(".", 1)[0])
        assert type(layer) in (torch.nn.Conv2d, torch.nn.Linear) and params[key].dtype == torch.float32
        levels = torch.unique(params[key] / coding.scale.reshape(-1, *([1] * (params[key].dim() - 1))))
        assert len(levels) <= 2 ** len(coding.planes) * params[key].shape[0]  # on the 4-bit grid


def test_weights_are_dequantized_once_and_again_after_a_change(monkeypatch):
    model = make_model("resnet20")
    q = export_tree(model, fn3.space(model).uniform({"bits": 4}))
    conv = next(m for m in q.modules() if isinstance(m, QuantConv2d))
    calls = []
    original = QuantConv2d.grid_codes
    monkeypatch.setattr(QuantConv2d, "grid_codes", lambda self: calls.append(1) or original(self))
    x = torch.randn(2, *INPUT)
    q(x)
    first = len(calls)
    q(x)
    assert len(calls) == first  # the second forward dequantizes nothing
    w = conv.weight().clone()
    conv.codes[0].neg_()  # as loading fills the codes in place
    assert not torch.equal(conv.weight(), w) and len(calls) == first + 1


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8])
def test_quantizer_fast_path_equals_the_formula(bits, signed):
    """div, round_, clamp_, mul_ on the codes: bit for bit clip_act + act_values (ties included)."""
    x = torch.cat([torch.randn(20000) * 3, torch.linspace(-5, 5, 20001)])
    for alpha in (0.7, 2.5, 4.0, 6.1234, -3.0):
        q = ActQuant(torch.tensor(alpha), planes=range(bits), signed=signed)
        step = q.step()
        ties = (torch.arange(-300, 300) + 0.5) * step  # exactly between two steps
        for v in (x, ties):
            ref = act_values(clip_act(v, q.alpha, signed), q.alpha, 8, bits, signed)
            assert torch.equal(q(v), ref), alpha


def test_quantizer_follows_a_changed_alpha():
    q = ActQuant(torch.tensor(2.0), planes=range(4))
    x = torch.linspace(0, 3, 50)
    q(x)
    q.alpha.fill_(1.0)  # loading fills alpha in place: the cached step must follow
    assert torch.equal(q(x), act_values(clip_act(x, q.alpha, False), q.alpha, 8, 4, False))


def test_no_relu_right_before_an_unsigned_quantizer():
    model = make_model("resnet20")
    spec = fn3.space(model).uniform({"bits": 2, "channels": 0.5})
    q = export_tree(model, spec)

    def first(m: torch.nn.Module) -> torch.nn.Module:
        while isinstance(m, torch.nn.Sequential):
            m = m[0]
        return m

    seqs = [m for m in q.modules() if isinstance(m, torch.nn.Sequential)]
    pairs = [(a, first(b)) for s in seqs for a, b in zip(s, list(s)[1:], strict=False)]
    assert any(isinstance(b, ActQuant) for _, b in pairs)  # the check sees the quantizers
    assert not any(isinstance(a, torch.nn.ReLU) and isinstance(b, ActQuant) for a, b in pairs)
    x = torch.randn(4, *INPUT)
    with torch.no_grad(), fn3.active(model, spec):
        assert (q(x) - model(x)).abs().max() <= 1e-5
