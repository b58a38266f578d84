"""What `fn3.nest_` does with what it cannot nest: strict mode, untraceable code, bad arguments;
and that a nested model keeps its state_dict keys, trains with `fn3.fit`, and ranks units by importance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from archs import build
from torch import nn

import fn3
from fn3.config import TrainConfig
from fn3.data import load_dataset


class Moody(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this forward."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 8, 3, padding=1))

    def forward(self, x):
        return self.body(x) if x.sum() > 0 else -self.body(x)


class WithMoody(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.moody = Moody()
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.moody(F.relu(self.stem(x))).mean((2, 3)))


def test_an_untraceable_submodule_is_kept_and_its_children_are_nested():
    net, x = WithMoody().eval(), torch.rand(2, 3, 8, 8)
    before = net(x)
    report = fn3.nest_(net, x, levels=("channels",), verbose=False)
    rows = {r.group: r for r in report.rows}
    assert rows["moody.body.0.width"].axis == "moody.body.0.width"  # traced on its own
    assert "opaque" in rows["stem.width"].frozen  # the stem's output feeds the opaque module
    assert any("moody could not be traced" in n for n in report.notes)
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-5)
    with pytest.raises(fn3.NestingError, match="moody"):
        fn3.nest_(WithMoody().eval(), x, levels=("channels",), strict=True, verbose=False)


def test_a_model_that_cannot_be_traced_at_all_is_a_clear_error():
    class Hopeless(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(fn3.NestingError, match=r"^Hopeless\.forward cannot be traced by torch\.fx"):
        fn3.nest_(Hopeless(), torch.ones(1, 4), verbose=False)


def test_strict_raises_with_the_table_and_changes_nothing():
    net, x = build("concat")
    keys = dict(net.named_modules())
    with pytest.raises(fn3.NestingError, match="channel concatenation") as err:
        fn3.nest_(net, x, strict=True, verbose=False)
    assert "group" in str(err.value) and "why frozen" in str(err.value)
    assert dict(net.named_modules()) == keys  # nothing was replaced
    mlp, x = build("mlp")
    assert fn3.nest_(mlp, x, strict=True, verbose=False).axes  # nothing frozen but its ends


def test_bad_arguments_are_one_line_errors():
    net, x = build("mlp")
    with pytest.raises(fn3.ConfigError, match="unknown level 'width'"):
        fn3.nest_(net, x, levels="width", verbose=False)
    with pytest.raises(fn3.NestingError, match="fails on the example inputs"):
        fn3.nest_(net, torch.zeros(1, 5), verbose=False)
    fn3.nest_(net, x, verbose=False)
    with pytest.raises(fn3.NestingError, match="already holds nested layers"):
        fn3.nest_(net, x, verbose=False)


def test_state_dict_keys_survive_and_pretrained_weights_load(capsys):
    net, x = build("resnet18")
    keys = set(net.state_dict())
    fn3.nest_(net, x, levels=("channels", "layers"))
    assert "layer1.1.conv1.width (channels)" in capsys.readouterr().out  # the report is printed
    assert set(net.state_dict()) == keys
    fresh, _ = build("resnet18", seed=5)
    fn3.nest_(fresh, x, levels=("channels", "layers"), reorder=False, verbose=False)
    fresh.load_state_dict(net.state_dict())  # a nested checkpoint loads into the same nesting
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x))


def test_reordering_puts_the_most_important_units_first():
    net, x = build("mlp")
    fn3.nest_(net, x, levels=("neurons",), verbose=False)
    # fc1's output neurons are ranked by the L1 norm of fc2's columns that read them.
    importance = net.fc2.weight.abs().sum(0)
    assert torch.all(importance[:-1] >= importance[1:])


def test_a_nested_user_model_trains_with_fit():
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 16, 3, padding=1)
            self.bn = nn.BatchNorm2d(16)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))

    net = Small()
    fn3.nest_(net, torch.zeros(2, 1, 8, 8), verbose=False)
    train = load_dataset("digits", "train")
    result = fn3.fit(net, train, TrainConfig(epochs=1, batch_size=32), progress=False, max_steps=3)
    assert result.step == 3
    assert set(fn3.space(net).kinds()) == {"bits", "channels"}
