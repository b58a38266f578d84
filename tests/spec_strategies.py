"""Hypothesis strategies for sub-models: ``specs(space)`` draws any valid spec of a space.

Each axis keeps a prefix or (unless ``prefix_only``) any set of blocks that holds the mandatory first
ones. Every choice shrinks toward keeping *more* (a dropped flag shrinks to False, a removed count to
0), so a failing spec shrinks to the one closest to the full model: the axes that matter stay cut and
the others return to full, which names the axis at fault.

``SPECS`` is the profile the model-invariant tests use: few examples, no deadline, derandomized (the
same specs on every run and machine) and no example database, so the suite stays fast and repeatable.

Example:
    >>> from hypothesis import given
    >>> from fn3.spec import Axis, Space
    >>> space = Space([Axis("fc1.width", "neurons", 8, step=2), Axis("fc1.wbits", "bits", 4)])
    >>> @SPECS
    ... @given(spec=specs(space))
    ... def check(spec):
    ...     assert space.validate(spec) is spec
    >>> check()
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fn3.spec import Space, Spec

__all__ = ["SPECS", "seeded_specs", "specs"]

SPECS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def specs(draw: st.DrawFn, space: Space, *, prefix_only: bool = False) -> Spec:
    """A valid spec of ``space`` (a prefix per axis, or any kept set holding the mandatory blocks)."""
    keep: dict[str, list[int]] = {}
    for ax in space:
        optional = ax.num_blocks - ax.min_blocks
        subset = not prefix_only and optional > 1 and draw(st.booleans())
        if subset:
            dropped = draw(st.lists(st.booleans(), min_size=optional, max_size=optional))
            extra = [ax.min_blocks + i for i, drop in enumerate(dropped) if not drop]
        else:
            removed = draw(st.integers(0, optional))
            extra = list(range(ax.min_blocks, ax.num_blocks - removed))
        keep[ax.name] = list(range(ax.min_blocks)) + extra
    return space.validate(Spec(keep))


def seeded_specs(space: Space, n: int, seed: int, *, prefix_first: bool = True) -> list[Spec]:
    """``n`` seeded specs, without Hypothesis (for tests that pin values per spec): they alternate
    a random prefix spec (``space.sample``) and an arbitrary kept set per axis holding its mandatory
    blocks, starting with a prefix spec when ``prefix_first``. The same list on every run."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        if (i % 2 == 0) == prefix_first:
            out.append(space.sample(gen))
            continue
        keep = {}
        for ax in space:
            rest = torch.rand(ax.num_blocks, generator=gen) < 0.5
            keep[ax.name] = [b for b in range(ax.num_blocks) if b < ax.min_blocks or bool(rest[b])]
        out.append(space.validate(Spec(keep)))
    return out
