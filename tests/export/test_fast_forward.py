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
from fn3.export import ActQuant, QuantConv2d, export, float_twin
from fn3.nn.act_quant import QuantInput, plan_in_place
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


# -- quantizers in the input's own memory (fn3.nn.act_quant.plan_in_place) -------------------------
def _pairs(module: torch.nn.Module) -> dict[str, QuantInput]:
    return {n: m for n, m in module.named_modules() if isinstance(m, QuantInput)}


def test_only_inputs_read_by_their_quantizer_alone_are_overwritten():
    """In a ResNet the second convolution of a block reads a BatchNorm output nothing else reads:
    its quantizer may overwrite it. The first reads the block input, which the shortcut reads too,
    and a downsampling shortcut's convolution reads that same input: neither may."""
    model = make_model("resnet20")
    q = export(model, fn3.space(model).uniform({"bits": 4}))
    x = torch.randn(2, *INPUT)
    with torch.no_grad(), fn3.active(model, fn3.space(model).uniform({"bits": 4})):
        ref = model(x)
    with torch.no_grad():
        assert torch.equal(q(x), ref)  # the first call plans; the values are the nested model's
    marked = sorted(n.split(".")[-1] for n, p in _pairs(q).items() if p.inplace)
    assert marked == ["conv2"] * 9, marked
    assert all(not p.inplace for n, p in _pairs(q).items() if not n.endswith("conv2"))


class _Twice(torch.nn.Module):
    """A BatchNorm output read by a quantized convolution and by the output too."""

    def __init__(self, traceable: bool = True):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(3).eval()
        self.conv = QuantInput(ActQuant(torch.tensor(2.0), planes=range(4)), torch.nn.Conv2d(3, 4, 1))
        self.conv2 = QuantInput(ActQuant(torch.tensor(2.0), planes=range(4)), torch.nn.Conv2d(4, 4, 1))
        self.traceable = traceable

    def forward(self, x):
        h = self.bn(x)
        if not self.traceable and bool(x.sum() > 0):  # data-dependent: torch.fx cannot trace it
            h = h + 0
        y = self.conv2(self.conv(h))
        return y + h.mean()


def test_a_shared_input_or_an_untraceable_forward_is_never_overwritten():
    net = _Twice()
    assert plan_in_place(net) == 1 and net.conv2.inplace and not net.conv.inplace
    assert plan_in_place(_Twice(traceable=False)) == 0
    x = torch.randn(2, 3, 4, 4)
    plain = _Twice()  # never planned: out of place everywhere
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))


def test_in_place_only_without_autograd():
    pair = QuantInput(ActQuant(torch.tensor(2.0), planes=range(4)), torch.nn.Linear(4, 2))
    pair.inplace = True
    x = torch.randn(3, 4, requires_grad=True)
    kept = x.detach().clone()
    pair(x).sum().backward()  # autograd needs x: the pair must not write into it
    assert torch.equal(x.detach(), kept) and x.grad is not None
    y = x.detach().clone()
    with torch.no_grad():
        out = pair(y)
    assert not torch.equal(y, kept) and torch.equal(out, pair[1](pair[0](kept)))


def test_the_float_twin_applies_its_relu_in_place_at_the_same_sites():
    model = make_model("resnet20")
    q = export(model, fn3.space(model).uniform({"bits": 4}))
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        q(x)
    twin = float_twin(q)
    assert {n for n, p in _pairs(twin).items() if p.inplace} == {n for n, p in _pairs(q).items() if p.inplace}
    relus = [p for p in _pairs(twin).values() if p.inplace and isinstance(p[0], torch.nn.ReLU)]
    assert len(relus) == 9
    fresh = float_twin(export(model, fn3.space(model).uniform({"bits": 4})))
    for p in _pairs(fresh).values():
        p.inplace = False
    fresh._planned = True  # never planned: every ReLU out of place
    with torch.no_grad():
        assert torch.equal(twin(x), fresh(x))
