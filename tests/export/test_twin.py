"""float_twin: the float sub-model of the same spec has the float export's structure and cost."""

from __future__ import annotations

import torch
from export_helpers import INPUT, make_model

import fn3
from fn3.export import export
from fn3.export.bench import count_flops
from fn3.export.qmodules import ActQuant, QuantConv2d, QuantLinear
from fn3.export.twin import float_twin


def _leaves(model: torch.nn.Module) -> list[type]:
    """The layers with weights or statistics, in order (activations may be modules or functions)."""
    skip = (torch.nn.Identity, torch.nn.ReLU)
    return [type(m) for m in model.modules() if not list(m.children()) and type(m) not in skip]


def test_twin_is_the_float_export_of_the_same_spec():
    quant = make_model("resnet20")
    plain = make_model("resnet20", levels=("channels", "layers"))
    qs, fs = fn3.space(quant), fn3.space(plain)
    for kept in ({"channels": 0.5}, {"channels": 0.25, "layers": 0.5}, {}):
        q = export(quant, qs.uniform({**kept, "bits": 4}))
        twin, ref = float_twin(q), export(plain, fs.uniform(kept) if kept else None)
        assert _leaves(twin) == _leaves(ref)  # the same layers in the same order
        assert count_flops(twin, INPUT) == count_flops(ref, INPUT) == count_flops(q, INPUT)
        assert not any(isinstance(m, (ActQuant, QuantConv2d, QuantLinear)) for m in twin.modules())
    x = torch.randn(2, *INPUT)
    qs = [m.weight for m in q.modules() if isinstance(m, torch.nn.Conv2d)]
    convs = [m for m in twin.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.equal(a.weight, b) for a, b in zip(convs, qs, strict=True))
    assert twin(x).shape == q(x).shape
    # the quantizers' inputs are >= 0 (after a ReLU): the twin is the float model, not a clip
    ref = export(plain, fs.largest())
    ref.load_state_dict(dict(zip(ref.state_dict(), twin.state_dict().values(), strict=True)))  # same order
    assert torch.allclose(twin(x), ref(x), atol=1e-5)


def test_twin_of_the_module_tree_vocabulary():
    """A format-1/2 file loads into fn3's module tree: its twin drops the quantizers the same way."""
    from legacy import export_tree

    quant = make_model("resnet20")
    q = export_tree(quant, fn3.space(quant).uniform({"channels": 0.5, "bits": 4}))
    twin = float_twin(q)
    assert not any(isinstance(m, (ActQuant, QuantConv2d, QuantLinear)) for m in twin.modules())
    conv = next(m for m in q.modules() if isinstance(m, QuantConv2d))
    assert any(torch.equal(m.weight, conv.weight()) for m in twin.modules() if isinstance(m, torch.nn.Conv2d))


def _relu_calls(model: torch.nn.Module, x: torch.Tensor) -> int:
    """How many ReLUs a forward runs (modules and functions alike)."""
    from torch.overrides import TorchFunctionMode

    class Count(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "").rstrip("_") == "relu":
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        model(x)
    return Count.n


def test_twin_runs_each_relu_once_like_the_float_model():
    """The speed baseline must not run a ReLU twice where the float model runs it once (a quantizer
    replaced by nn.ReLU after the forward's own ReLU would flatter the quantized/float ratio)."""
    quant, plain = make_model("resnet20"), make_model("resnet20", levels=("channels", "layers"))
    x = torch.randn(2, *INPUT)
    for b in (8, 2):
        q = export(quant, fn3.space(quant).uniform({"bits": b, "channels": 0.5}))
        ref = export(plain, fn3.space(plain).uniform({"channels": 0.5}))
        assert _relu_calls(float_twin(q), x) == _relu_calls(ref, x) > 0
