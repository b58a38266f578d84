"""Fixtures of the conversion tests: the test architectures, nested once per module."""

from __future__ import annotations

import copy

import pytest
import torch
from archs import ARCHS, build

import fn3

NO_BITS = ("neurons", "channels", "paths", "layers")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nested_float() -> dict:
    """``name -> (original, nested without bits, x, report)``."""
    out = {}
    for name in ARCHS:
        model, x = build(name)
        orig = copy.deepcopy(model)
        report = fn3.nest_(model, x, levels=NO_BITS, verbose=False)
        out[name] = (orig, model, x, report)
    return out


@pytest.fixture(scope="module")
def nested_all() -> dict:
    """``name -> (nested with every level, x)``."""
    out = {}
    for name in ARCHS:
        model, x = build(name, seed=1)
        fn3.nest_(model, x, verbose=False)
        out[name] = (model, x)
    return out
