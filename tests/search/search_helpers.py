"""Shared pieces of the search tests: a tiny nested MLP, an analytic cost and a synthetic score.

The synthetic score is additive over kept blocks with importance decreasing along each axis (what
ordered dropout trains for) plus a small deterministic jitter, so the true optimum under any budget
can be found by brute force and compared with what the strategies return.
"""

from __future__ import annotations

import itertools
import zlib

import fn3
from fn3.evaluate import accuracy, bn_recalibrated
from fn3.spec import Space, Spec


def tiny_mlp(hidden=(16, 16), blocks: int = 4):
    """A nested MLP on 8x8 inputs, neurons only, ``blocks`` blocks per hidden layer."""
    return fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=hidden,
                            levels=("neurons",), width_blocks=blocks)


class Synthetic:
    """``units`` cost (weighted kept neurons) and an additive score with deterministic jitter."""

    def __init__(self, space: Space):
        self.space = space
        self.weights = {a.name: 3.0 - i for i, a in enumerate(space)}  # earlier layers cost more
        self.calls = 0

    def units(self, spec: Spec) -> float:
        return sum(self.weights[a.name] * spec.size(a.name, self.space) for a in self.space)

    def score(self, spec: Spec) -> float:
        self.calls += 1
        acc = 0.2
        for i, a in enumerate(self.space):
            for j in spec.kept(a.name):
                acc += (0.5 / len(self.space)) * 0.6 ** j * (1.0 + 0.3 * i) / 1.3
        jitter = (zlib.crc32(repr(spec).encode()) % 1000) * 2e-6
        return min(acc, 1.0) + jitter


def prefix_specs(space: Space) -> list[Spec]:
    ranges = [range(a.min_blocks, a.num_blocks + 1) for a in space]
    return [space.prefix(dict(zip(space.names, c, strict=True))) for c in itertools.product(*ranges)]


def per_spec_scores(model, specs, val, calib=None) -> list[float]:
    """The reference the Evaluator must match: one accuracy per spec, BatchNorm statistics
    re-estimated on ``calib`` for each when given."""
    out = []
    for s in specs:
        if calib is None:
            out.append(accuracy(model, val, s))
        else:
            with bn_recalibrated(model, s, calib):
                out.append(accuracy(model, val, s))
    return out
