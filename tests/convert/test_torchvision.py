"""torchvision's own networks, when torchvision is installed (an optional extra: ``pip install
fn3[torchvision]``; fn3 itself never imports it). Skipped otherwise: torchvision wheels are built for
one torch release each, and this machine's torch has none, so the op-pattern copies in ``archs.py``
(``test_nest.py``) stand in for them in every run here.

For each network, built as ``fn3 train --model torchvision:NAME`` builds it (a recipe naming the
factory): the full nested model computes the original, and over random specs the export equals the
nested model, the analytic FLOPs equal ``torch.utils.flop_counter`` on the export, and the nested file
serves the spec.
"""

from __future__ import annotations

import pytest
import torch
from test_nest import counted_flops

import fn3
from fn3.convert.factory import build_factory
from fn3.convert.user import UserModel, build_user_model
from fn3.cost.leaves import leaf_costs

pytest.importorskip("torchvision")

NAMES = ["resnet18", "resnet50", "resnext50_32x4d", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_small",
         "efficientnet_b0"]  # fmt: skip
SHAPE = (3, 64, 64)


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_network_nests_exports_and_serves(name, tmp_path):
    desc = UserModel(f"torchvision:{name}", {"num_classes": 10}, SHAPE, ("channels", "layers", "bits"))
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    model = build_user_model(desc, x)[0].eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(desc.seed)
        orig = build_factory(desc.factory, desc.model_kwargs).eval()
    space = fn3.space(model)
    with torch.no_grad(), fn3.active(model, space.largest()):
        full, ref = model(x), orig(x)
    assert (full - ref).abs().max() <= 0.05 * (1 + ref.abs().max())  # the original, at 8 bits
    nested = fn3.export.save_nested(model, tmp_path / "n.safetensors")
    g = torch.Generator().manual_seed(1)
    for spec in [space.smallest(), *(space.sample(g) for _ in range(2))]:
        sub = fn3.export.export(model, spec)
        with torch.no_grad(), fn3.active(model, spec):
            want = model(x)
        assert (sub(x) - want).abs().max() <= 1e-5 * (1 + want.abs().max())
        assert leaf_costs(model, spec, x[:1])["flops"] == counted_flops(sub, x[:1])
        served = fn3.export.load(nested, spec)
        assert torch.equal(served(x), sub(x))
