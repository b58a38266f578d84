"""Helpers of the export tests: small registered models and random (also non-prefix) specs."""

from __future__ import annotations

import torch

import fn3
from fn3.spec import Space, Spec

INPUT = (3, 8, 8)  # small inputs keep every registered model fast on CPU
#: A model whose quantized weights sit on a range of 2 rms (``weight_clip=2``: the largest weights of
#: nearly every channel clipped), beside every registered model at its largest magnitude.
CLIPPED = "resnet20+weight_clip=2"
#: The names the export tests build: every registered model, and :data:`CLIPPED`.
NAMES = (*fn3.list_models(), CLIPPED)


def make_model(name: str, **kwargs: object) -> torch.nn.Module:
    """A registered model for 8x8 RGB inputs, with BatchNorm statistics that are not the defaults
    (``name`` may be :data:`CLIPPED`)."""
    if name == CLIPPED:
        name, kwargs = "resnet20", {**kwargs, "weight_clip": 2.0}
    model = fn3.create_model(name, num_classes=10, in_channels=3, input_size=8, **kwargs)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def random_spec(space: Space, g: torch.Generator, prefix: bool) -> Spec:
    """A prefix spec drawn like ordered dropout, or any set of blocks holding the mandatory ones."""
    if prefix:
        return space.sample(g)
    keep = {}
    for a in space:
        extra = [b for b in range(a.min_blocks, a.num_blocks) if torch.rand((), generator=g) < 0.5]
        keep[a.name] = list(range(a.min_blocks)) + extra
    return space.validate(Spec(keep))


def specs_for(space: Space, n: int, seed: int = 0) -> list[Spec]:
    """largest, smallest, then ``n`` random specs alternating prefix / non-prefix."""
    g = torch.Generator().manual_seed(seed)
    return [space.largest(), space.smallest()] + [random_spec(space, g, i % 2 == 0) for i in range(n)]
