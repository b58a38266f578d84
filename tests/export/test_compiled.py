"""An exported model under ``torch.compile``: one graph, the eager values, fused quantizers.

The quantizer's eager fast path reads its step as a Python float (``.item()``), which would cut the
compiled graph at every quantizer; under the compiler it keeps the step a tensor instead.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from export_helpers import INPUT, make_model
from torch import nn

import fn3
from fn3.export import ActQuant, export, extract_submodel
from fn3.export.fast import compiled


class SmallUserNet(nn.Module):
    """A network of a user's own: the ReLUs live in ``forward``, where fn3 does not look."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _user_export() -> nn.Module:
    torch.manual_seed(0)
    net = SmallUserNet().eval()
    fn3.nest_(net, torch.zeros(1, *INPUT), levels="channels,bits", verbose=False)
    return extract_submodel(net, fn3.space(net).uniform({"channels": 0.5, "bits": 4}))


@pytest.mark.parametrize("which", ["resnet20", "user"])
def test_a_quantized_export_compiles_to_one_graph(which):
    if which == "user":
        q = _user_export()
    else:
        model = make_model("resnet20")
        q = export(model, fn3.space(model).uniform({"channels": 0.5, "bits": 4}))
    assert any(isinstance(m, ActQuant) for m in q.modules())
    torch._dynamo.reset()
    with torch.no_grad():
        report = torch._dynamo.explain(q)(torch.randn(2, *INPUT))
    assert report.graph_break_count == 0 and report.graph_count == 1, report.break_reasons


@pytest.mark.parametrize("bits, signed", [(8, False), (4, False), (2, False), (4, True), (2, True)])
def test_the_compiled_quantizer_computes_the_eager_values(bits, signed):
    q = ActQuant(torch.tensor(2.5), planes=tuple(range(bits)), signed=signed)
    x = torch.randn(4096, generator=torch.Generator().manual_seed(bits)) * 2
    torch._dynamo.reset()
    traced = torch.compile(q, backend="eager", fullgraph=True)  # the compile branch, run eagerly
    with torch.no_grad():
        eager = q(x.clone())
        assert torch.equal(traced(x.clone()), eager)
    codes = eager / q.step()
    assert torch.allclose(codes, codes.round(), atol=1e-4) and len(eager.unique()) > 2 ** bits // 2


def test_compiled_export_runs_with_inductor_and_keeps_the_values():
    model = make_model("resnet20")
    q = export(model, fn3.space(model).uniform({"bits": 4}))
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(3))
    torch._dynamo.reset()
    fast = compiled(q)
    with torch.no_grad():
        eager, out = q(x), fast(x)
    # A folded BatchNorm rounds differently: an activation at a step boundary may take the next step.
    assert torch.linalg.norm(out - eager) <= 2e-2 * torch.linalg.norm(eager)
    assert (out.argmax(1) == eager.argmax(1)).float().mean() >= 0.9
