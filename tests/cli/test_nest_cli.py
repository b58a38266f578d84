"""``fn3 nest package.module:factory`` prints the report of a user's model, and errors are one line."""

from __future__ import annotations

import json
import textwrap

import pytest

from fn3.cli import main

NETS = textwrap.dedent(
    """
    from torch import nn

    def make(width=16):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def not_a_model():
        return 3
    """
)


@pytest.fixture
def user_package(user_module) -> str:
    return user_module("usernets", NETS)


def test_nest_prints_the_table_and_writes_the_plan(user_package, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    rc = main(["nest", f"{user_package}:make", "--model-arg", "width=24", "--input-shape", "3,8,8",
               "--levels", "channels", "--plan", str(plan)])
    out = capsys.readouterr().out
    assert rc == 0 and "0.width (channels)" in out and "the model output" in out
    data = json.loads(plan.read_text())
    assert data["model"] == "usernets:make" and data["groups"][1]["size"] == 24


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nocolon", "expected package.module:factory"),
        ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
        ("usernets:missing", "has no 'missing'"),
        ("usernets:not_a_model", "returned int, not a torch.nn.Module"),
    ],
)
def test_bad_references_are_one_line_errors(user_package, capsys, ref, message):
    assert main(["nest", ref, "--input-shape", "3,8,8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
