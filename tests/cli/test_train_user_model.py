"""``fn3 train --model package.module:factory --init weights.safetensors``: a model of your own, from
pretrained weights, through train, resume, eval and load_run (no pickle: JSON and safetensors)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors.torch import save_file

import fn3
from fn3.cli import main
from fn3.run import load_run

NETS = textwrap.dedent(
    """
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=16):
            super().__init__()
            self.conv = nn.Conv2d(1, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.fc = nn.Linear(width, 10)

        def forward(self, x):
            return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))

    def make(width=16):
        return Net(width)
    """
)


@pytest.fixture
def user_package(user_module) -> str:
    return user_module("usertrain", NETS)


def test_train_resume_eval_a_pretrained_user_model(user_package, tmp_path, capsys):
    import usertrain

    pretrained = usertrain.make(width=12)
    weights = tmp_path / "pretrained.safetensors"
    save_file(pretrained.state_dict(), str(weights))
    run = tmp_path / "run"
    common = ["--data", "digits", "--epochs", "1", "--batch-size", "64", "--no-progress"]
    args = ["train", "--model", "usertrain:make", "--model-arg", "width=12", "--init", str(weights),
            "--levels", "channels,bits", "--out", str(run), "--max-steps", "3", *common]
    assert main(args) == 0
    nesting = json.loads((run / "nesting.json").read_text())
    assert nesting["model"]["name"] == "usertrain:make" and nesting["model"]["init"] == str(weights)
    assert any(g["axis"] == "conv.width" for g in nesting["report"]["groups"])
    assert nesting["report"]["orders"]["conv.width"]  # pretrained units were ranked
    assert nesting["model"]["signed"] == ["conv"]  # the normalised images are negative too
    weights.unlink()  # resuming and loading never read the pretrained file again
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    loaded = load_run(run)
    assert set(loaded.space.kinds()) == {"bits", "channels"} and loaded.step > 3
    assert loaded.model.conv.act_quant.signed and not loaded.model.fc.act_quant.signed
    x = torch.randn(2, 1, 8, 8)
    with fn3.active(loaded.model, loaded.space.smallest()):
        assert loaded.model(x).shape == (2, 10)
    capsys.readouterr()
    assert main(["eval", str(run), "--spec", "smallest"]) == 0
    assert "smallest" in capsys.readouterr().out


def test_init_needs_a_factory_model(tmp_path, capsys):
    assert main(["train", "--model", "mlp", "--init", "w.safetensors", "--out", str(tmp_path / "o")]) == 2
    assert "needs a model given as package.module:factory" in capsys.readouterr().err


def test_a_model_of_your_own_trains_resumes_and_exports_with_a_level_per_bit_width(user_package, tmp_path):
    """`--act-clip per-bits` on a factory model: the levels are added after nesting, kept through the
    checkpoint, resume and load_run (rebuilt from the run's config), and an exported 2-bit sub-model
    written to a file reads back equal to the run's own."""
    from fn3.nn.base import NestedActQuant

    run = tmp_path / "run"
    common = ["--data", "digits", "--epochs", "1", "--batch-size", "64", "--no-progress"]
    args = ["train", "--model", "usertrain:make", "--levels", "bits", "--act-clip", "per-bits",
            "--out", str(run), "--max-steps", "3", *common]
    assert main(args) == 0
    assert main(["train", "--resume", str(run), "--max-steps", "5", "--no-progress"]) == 0
    loaded = load_run(run)
    quantizers = [m for m in loaded.model.modules() if isinstance(m, NestedActQuant)]
    assert quantizers and all(q.alpha_bits is not None for q in quantizers)
    spec = loaded.space.uniform({"bits": 2})
    x = torch.randn(3, 1, 8, 8)
    with fn3.active(loaded.model, spec), torch.no_grad():
        ref = loaded.model(x)
    path = fn3.export.save(fn3.export.export(loaded.model, spec), tmp_path / "sub.safetensors")
    assert (fn3.export.load(path)(x) - ref).abs().max() <= 1e-5
    nested = fn3.export.save_nested(loaded.model, tmp_path / "nested.safetensors")
    assert (fn3.export.load_nested(nested, spec).model(x) - ref).abs().max() <= 1e-5
