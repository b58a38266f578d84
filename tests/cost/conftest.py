"""Helpers shared by the cost tests: random specs that are prefixes or arbitrary kept sets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fn3.spec import Space, Spec


def random_subset_spec(space: Space, gen: torch.Generator, keep: float = 0.5) -> Spec:
    """A spec keeping the mandatory blocks of every axis and each other block with prob. ``keep``.

    Most such specs are not prefixes: they exercise the "count the kept units" path.
    """
    blocks = {}
    for ax in space:
        rest = torch.rand(ax.num_blocks, generator=gen) < keep
        blocks[ax.name] = [b for b in range(ax.num_blocks) if b < ax.min_blocks or bool(rest[b])]
    return space.validate(Spec(blocks))


@pytest.fixture
def subset_spec() -> Callable[..., Spec]:
    """:func:`random_subset_spec`, as a fixture (test folders are not packages)."""
    return random_subset_spec


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tests run many tiny forwards, which threads only slow down on a
    shared 2-core machine (and the latency tests time single-threaded runs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
