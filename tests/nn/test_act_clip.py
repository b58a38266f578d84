"""act_clip="per-bits": one learned activation clipping level per bit-width, end to end.

Training reads the kept bit count's level, gradients reach only the levels of the bit-widths a step
trained, and every deployed form (exported sub-model, its file, the nested file, ONNX Runtime) uses
the same level as the nested model.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fn3
from fn3.errors import ConfigError
from fn3.nn.base import NestedActQuant, act_clip_of, set_act_clip

INPUT = (3, 8, 8)


def _model(clip: str = "per-bits") -> torch.nn.Module:
    """A ResNet-20 nested in bits whose clipping levels all differ (as after training)."""
    model = fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=8, levels="bits",
                             act_clip=clip)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, NestedActQuant):
                m.alpha.fill_(4.0)
                if m.alpha_bits is not None:
                    m.alpha_bits.copy_(torch.rand(m.alpha_bits.shape, generator=g) * 2 + 0.5)
    return model.eval()


def _quantizers(model: torch.nn.Module) -> list[NestedActQuant]:
    return [m for m in model.modules() if isinstance(m, NestedActQuant)]


def test_each_bit_width_rounds_on_its_own_level():
    q = _quantizers(_model())[0]
    x = torch.linspace(0, 8, 8001)  # finer than an 8-bit step: every level is hit
    for c in (2, 3, 8):
        q.slot.set(tuple(range(c)))
        level = float((q.alpha if c == 8 else q.alpha_bits[c - 1]).detach())
        values = torch.unique(q(x).detach())
        expected = torch.linspace(0, level, 2**c)
        assert len(values) == 2**c and torch.allclose(values, expected, atol=1e-5), c


def test_a_step_trains_only_the_levels_of_its_bit_widths():
    model = _model().train()
    sp = fn3.space(model)
    x = torch.randn(4, *INPUT, generator=torch.Generator().manual_seed(0))
    with fn3.active(model, sp.uniform({"bits": 2})):
        model(x).square().sum().backward()
    q = _quantizers(model)[1]  # a quantizer after a ReLU: its clamp passes gradient to the level
    grads = q.alpha_bits.grad
    assert grads is not None and grads[1] != 0  # the 2-bit level learned
    assert torch.count_nonzero(grads) == 1  # ... and no other bit-width's
    assert q.alpha.grad is None or q.alpha.grad == 0  # nor the 8-bit one


def test_shared_clip_has_no_levels_per_bits_and_reads_as_before():
    model = _model("shared")
    assert all(q.alpha_bits is None for q in _quantizers(model)) and act_clip_of(model) == "shared"
    assert "act_clip" not in model.fn3_config  # a shared model's config is the one of before
    per = _model()
    assert act_clip_of(per) == "per-bits" and per.fn3_config["act_clip"] == "per-bits"
    x = torch.randn(2, *INPUT)
    spec = fn3.space(per).uniform({"bits": 2})
    with fn3.active(per, spec):
        y_per = per(x)
    set_act_clip(per, "shared")  # back on alpha: the 2-bit output changes
    with fn3.active(per, spec):
        assert (per(x) - y_per).abs().max() > 1e-3


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_exported_files_and_onnx_use_the_bit_widths_level(tmp_path, bits):
    model = _model()
    sp = fn3.space(model)
    spec = sp.uniform({"bits": bits})
    x = torch.randn(8, *INPUT, generator=torch.Generator().manual_seed(1))
    with fn3.active(model, spec), torch.no_grad():
        ref = model(x)
    exported = fn3.export.export(model, spec)
    assert (exported(x) - ref).abs().max() <= 1e-5
    sub = fn3.export.load(fn3.export.save(exported, tmp_path / "sub.safetensors"))
    assert (sub(x) - ref).abs().max() <= 1e-5
    read = fn3.export.load_nested(fn3.export.save_nested(model, tmp_path / "nested.safetensors"), spec)
    assert (read.model(x) - ref).abs().max() <= 1e-5
    path = fn3.export.to_onnx(exported, tmp_path / "m.onnx", INPUT)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    y = ort.InferenceSession(str(path), opts).run(None, {"input": x.numpy()})[0]
    # ONNX Runtime rounds convolutions differently: a few activations cross a step boundary (the
    # tolerance of tests/export/test_onnx.py); a level read wrongly is off by far more.
    assert np.linalg.norm(y - ref.numpy()) <= 2e-2 * np.linalg.norm(ref.numpy())


def test_bad_choices_are_refused():
    with pytest.raises(ConfigError, match="act_clip='bogus': choose shared or per-bits"):
        fn3.create_model("mlp", input_size=8, in_channels=1, act_clip="bogus")
    with pytest.raises(ConfigError, match="needs quant_scheme='centred'"):
        fn3.create_model("mlp", input_size=8, in_channels=1, act_clip="per-bits", quant_scheme="truncate")


def test_a_model_of_your_own_keeps_its_levels_in_the_nested_file(tmp_path):
    from fn3.convert.user import UserModel, build_user_model

    desc = UserModel("fn3.export.user:example_net", {"width": 8}, (1, 8, 8), ("channels", "bits"))
    model = set_act_clip(build_user_model(desc)[0], "per-bits").eval()
    with torch.no_grad():
        for q in _quantizers(model):
            q.alpha_bits.copy_(torch.linspace(0.5, 2.0, q.alpha_bits.numel()))
    spec = fn3.space(model).uniform({"channels": 0.5, "bits": 2})
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with fn3.active(model, spec), torch.no_grad():
        ref = model(x)
    read = fn3.export.load_nested(fn3.export.save_nested(model, tmp_path / "nested.safetensors"), spec)
    assert (read.model(x) - ref).abs().max() <= 1e-5
    sub = fn3.export.load(fn3.export.save(fn3.export.export(model, spec), tmp_path / "sub.safetensors"))
    assert (sub(x) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("learn", ["pact", "lsq"])
def test_lsq_moves_a_level_to_its_bit_width_and_pact_does_not(learn):
    """Half-normal activations (after BatchNorm and ReLU) at 2 bits from a level of 4: the rounding
    error wants the 4 levels on a narrower range (~2). LSQ's gradient takes the level there; PACT's
    clamp gradient cannot (no activation exceeds 4), which is why per-bits levels learn with LSQ.
    The forward value is the same under both."""
    from fn3.nn.functional import fake_quant_act

    x = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0)).relu()
    alpha = torch.nn.Parameter(torch.tensor(4.0))
    opt = torch.optim.SGD([alpha], lr=0.05)
    ref = fake_quant_act(x, alpha, 8, 2, False, None, "centred", "pact")
    assert torch.equal(fake_quant_act(x, alpha, 8, 2, False, None, "centred", learn), ref)
    err0 = (ref - x).square().mean().item()
    for _ in range(100):
        opt.zero_grad()
        (fake_quant_act(x, alpha, 8, 2, False, None, "centred", learn) - x).square().mean().backward()
        opt.step()
    err = (fake_quant_act(x, alpha, 8, 2, False, None, "centred", learn) - x).square().mean().item()
    if learn == "lsq":
        assert 1.5 < alpha.item() < 3.0 and err < 0.5 * err0, (alpha.item(), err, err0)
    else:
        assert alpha.item() == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize("learn", ["pact", "lsq"])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_one_pass_quantizer_has_the_gradients_of_its_autograd_form(learn, signed, bits):
    """The one-pass activation quantizer gives the value and the gradients of the quantizer written
    as autograd of clamps and detached surrogates: the straight-through identity inside the range
    for x; for alpha, PACT's clamp gradient, or LSQ's step gradient (round(v) - v inside, the top code
    where clipped, scaled by LSQ_GAIN / sqrt(top)); for a negative level too (its magnitude is used)."""
    from fn3.nn.functional import fake_quant_act, fake_quant_act_autograd

    gen = torch.Generator().manual_seed(bits)
    x = (torch.randn(8, 16, 6, 6, generator=gen) * 2).requires_grad_()  # some clipped either side
    alpha = torch.nn.Parameter(torch.tensor(-1.7 if signed else 2.3))
    ref = fake_quant_act_autograd(x, alpha, 8, bits, signed, None, learn)
    grad = torch.randn(ref.shape, generator=gen)
    want = torch.autograd.grad(ref, (x, alpha), grad)
    out = fake_quant_act(x, alpha, 8, bits, signed, None, "centred", learn)
    got = torch.autograd.grad(out, (x, alpha), grad)
    assert torch.equal(out, ref)
    assert torch.equal(got[0], want[0])
    assert got[1].item() == pytest.approx(want[1].item(), rel=1e-5) and want[1].abs() > 1


def test_lsq_needs_the_centred_grid():
    from fn3.nn.functional import fake_quant_act

    with pytest.raises(ConfigError, match="'lsq' with 'centred'"):
        fake_quant_act(torch.ones(2, 2), torch.tensor(1.0), 8, 2, False, None, "truncate", "lsq")
