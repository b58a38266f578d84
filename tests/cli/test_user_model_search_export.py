"""``fn3 train --model mypkg.net:make`` -> ``fn3 search RUN`` -> ``fn3 export RUN --budget ...``: a model
of your own through the whole command line, its exports equal to the nested model they came from."""

from __future__ import annotations

import textwrap

import pytest
import torch

import fn3
from fn3.cli import main
from fn3.export import load
from fn3.run import load_run
from fn3.search.result import load_results

NETS = textwrap.dedent(
    """
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=12):
            super().__init__()
            self.conv = nn.Conv2d(1, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(width)
            self.fc = nn.Linear(width, 10)

        def forward(self, x):
            x = F.relu(self.bn(self.conv(x)))
            x = F.relu(x + self.bn2(self.conv2(x)))   # a residual join
            return self.fc(x.mean((2, 3)))            # a mean the traced cost plan does not model

    def make(width=12):
        return Net(width)
    """
)


@pytest.fixture
def user_package(user_module) -> str:
    return user_module("e2enet", NETS)


def test_train_search_export_a_model_of_your_own(user_package, tmp_path, capsys):
    run, exp, nest, small = (tmp_path / n for n in ("run", "exp", "nest", "small"))
    assert main(["train", "--model", "e2enet:make", "--levels", "channels,bits", "--data", "digits",
                 "--epochs", "1", "--batch-size", "64", "--max-steps", "3", "--no-progress",
                 "--out", str(run)]) == 0  # fmt: skip
    assert main(["search", str(run), "--strategy", "random", "--max-evals", "6", "--no-recalibrate",
                 "--no-progress"]) == 0  # fmt: skip
    (result,) = load_results(run / "search" / "front.json")
    assert len(result.points) >= 3 and len({p.cost("flops") for p in result.points}) >= 3
    middle = sorted(p.cost("flops") for p in result.points)[1]
    want = result.best_under({"flops": middle}).spec
    assert main(["export", str(run), "--budget", f"flops={middle:.0f}", "--no-recalibrate",
                 "--out", str(exp)]) == 0  # fmt: skip
    assert main(["export", str(run), "--nested", "--out", str(nest)]) == 0
    nested_file = nest / "nested.safetensors"
    assert main(["export", str(nested_file), "--spec", "smallest", "--out", str(small)]) == 0
    capsys.readouterr()

    r = load_run(run)
    x = torch.randn(5, 1, 8, 8)
    exported = load(exp)
    assert exported.meta["spec"] == want.to_dict()
    assert fn3.cost(r.model, want, "flops", input_shape=(1, 8, 8)) <= middle
    for spec, got in ((want, exported), (want, load(nested_file, want)),
                      (r.space.smallest(), load(small)), (r.space.largest(), load(nested_file))):  # fmt: skip
        with torch.no_grad(), fn3.active(r.model, spec):
            ref = r.model(x)
        assert (got(x) - ref).abs().max().item() <= 1e-5
    assert main(["export", str(exp / "model.safetensors"), "--out", str(tmp_path / "x")]) == 2
    assert "dedicated export" in capsys.readouterr().err
    # ONNX of a model of your own goes through torch.onnx.export; ONNX Runtime computes the sub-model
    # (measured 1.5e-8 here; activation quantizers could put a value within rounding of a step one
    # step off on another CPU, so the bound is 1e-3 of the output scale, far below any wrong graph).
    assert main(["export", str(run), "--budget", f"flops={middle:.0f}", "--no-recalibrate",
                 "--format", "onnx", "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad(), fn3.active(r.model, want):
        ref = r.model(x)
    assert onnx_out.shape == tuple(ref.shape)
    gap = (torch.from_numpy(onnx_out) - ref).abs().max().item()
    assert gap <= 1e-3 * ref.abs().max().item()
    # --activations float: the c-bit weights stay in the file, loading gives the model without its
    # activation quantizers (in the user's own classes), and both accuracies are recorded
    assert main(["export", str(run), "--budget", f"flops={middle:.0f}", "--no-recalibrate",
                 "--activations", "float", "--format", "onnx", "--out", str(tmp_path / "f")]) == 0
    assert "activation quantizers dropped at deployment" in capsys.readouterr().out
    stored, deployed = load(tmp_path / "f", as_stored=True), load(tmp_path / "f")
    drop = stored.meta["activation_drop"]
    assert drop["quantized"] == fn3.export.evaluate_exported(exported)
    assert drop["float"] == fn3.export.evaluate_exported(deployed)
    assert any(isinstance(m, fn3.export.ActQuant) for m in stored.modules())
    assert not any(isinstance(m, fn3.export.ActQuant) for m in deployed.modules())
    assert type(deployed.module).__name__ == "Net"
    sess = ort.InferenceSession(str(tmp_path / "f" / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_f,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert abs(onnx_f - deployed(x).numpy()).max() <= 1e-4 * (1 + abs(onnx_f).max())
    assert main(["info", str(nested_file)]) == 0 and "model e2enet:make" in capsys.readouterr().out
    assert main(["eval", str(exp)]) == 0 and "%" in capsys.readouterr().out
