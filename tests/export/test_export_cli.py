"""``fn3 export`` / ``fn3 bench`` on a real (tiny) trained run, and the evaluation of the export."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import fn3
import fn3.cli.export  # noqa: F401  (registers the commands until the lead imports it in fn3.cli)
from fn3.cli import main
from fn3.export import evaluate_exported, load


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from fn3.config import TrainConfig
    from fn3.run import load_run, train_run

    out = tmp_path_factory.mktemp("run") / "r20"
    cfg = TrainConfig(
        model="resnet20",
        model_kwargs={"width": 8},
        data="digits",
        limit=20,
        epochs=1,
        batch_size=32,
        recalibrate_batches=2,
        eval_specs=("largest",),
    )
    train_run(cfg, out, progress=False)
    return load_run(out)


def test_export_matches_eval_of_the_run(run, tmp_path):
    from fn3.train import evaluate_specs

    spec_text = "channels=0.5,bits=4"
    out = tmp_path / "e"
    assert main(["export", str(run.path), "--spec", spec_text, "--out", str(out), "--format", "onnx"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.safetensors", "spec.json"]
    spec = fn3.spec.parse_spec(spec_text, run.space)
    train, _, test = run.datasets()
    want = evaluate_specs(run.model, {"s": spec}, test, run.config, train)["s"]
    assert evaluate_exported(out) == pytest.approx(want, abs=1e-6)  # same BN re-estimation as fn3 eval
    model = load(out)
    x = torch.randn(2, *model.meta["input_shape"])
    y = ort.InferenceSession(str(out / "model.onnx")).run(None, {"input": x.numpy()})[0]
    assert np.linalg.norm(y - model(x).numpy()) <= 0.15 * np.linalg.norm(y)
    fast = tmp_path / "f"  # the same sub-model, quantizers as float rounding: the same outputs
    args = ["export", str(run.path), "--spec", spec_text, "--out", str(fast), "--format", "onnx"]
    assert main([*args, "--rounding", "float"]) == 0
    n_q = [
        [n.op_type for n in onnx.load(str(d / "model.onnx")).graph.node].count("QuantizeLinear")
        for d in (out, fast)
    ]
    assert n_q[0] > n_q[1]  # only the classifier's quantizer (before a Linear) stays QDQ
    y2 = ort.InferenceSession(str(fast / "model.onnx")).run(None, {"input": x.numpy()})[0]
    assert np.linalg.norm(y2 - model(x).numpy()) <= 0.15 * np.linalg.norm(y)


def test_nested_then_sub_model(run, tmp_path, capsys):
    nested = tmp_path / "n"
    assert main(["export", str(run.path), "--nested", "--out", str(nested)]) == 0
    small = tmp_path / "s"
    assert (
        main(["export", str(nested / "nested.safetensors"), "--spec", "smallest", "--out", str(small)]) == 0
    )
    assert "bytes of" in capsys.readouterr().out
    direct = fn3.export(run.model, run.space.smallest())
    x = torch.randn(2, *direct.meta["input_shape"])
    assert torch.equal(load(small)(x), direct(x))
    assert main(["bench", str(nested), "--spec", "smallest", "--repeats", "2", "--batches", "1,4"]) == 0
    printed = capsys.readouterr().out
    assert "MFLOPs" in printed and "ONNX Runtime" in printed
    assert "float sub-model of the same spec" in printed
    assert len(re.findall(r"\b\d+\.\d\dx\b", printed)) == 4  # 2 batches x (PyTorch, ORT) ratios
    parity = float(printed.split("max |ORT - PyTorch| = ")[1].split()[0])
    assert 0 <= parity < 0.5
    args = ["bench", str(nested), "--spec", "smallest", "--repeats", "1", "--batches", "2", "--compile"]
    assert main(args) == 0  # torch.compile of both models (Inductor, freezing)
    printed = capsys.readouterr().out
    assert "torch.compile" in printed and len(re.findall(r"\b\d+\.\d\dx\b", printed)) == 3, printed


def test_budget_through_a_search_front(run, tmp_path):
    from fn3.search import SearchResult
    from fn3.search.pareto import Point

    specs = [run.space.largest(), run.space.uniform({"channels": 0.5}), run.space.smallest()]
    pts = [
        Point(s, acc, {"flops": f}) for s, acc, f in zip(specs, (0.9, 0.8, 0.5), (3e6, 1e6, 2e5), strict=True)
    ]
    res = SearchResult("flops", pts, run.space, min_costs={"flops": 2e5}, max_costs={"flops": 3e6})
    res.save(tmp_path / "front.json")
    out = tmp_path / "b"
    args = ["export", str(run.path), "--budget", "flops=1.5M", "--front", str(tmp_path / "front.json")]
    assert main([*args, "--out", str(out)]) == 0
    assert fn3.Spec.from_dict(load(out).meta["spec"]) == specs[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spec", "neurons=0.5"], "neurons"),
        (["--spec", "largest", "--budget", "flops=1M"], "not both"),
        (["--budget", "flops=1M"], "--front"),
        (["--format", "tflite"], "tflite"),
        (["--activations", "int4"], "use one of quantized, float"),
        (["--nested", "--activations", "float"], "applies to one sub-model"),
    ],
)
def test_bad_input_one_line_exit_2(run, tmp_path, capsys, args, message):
    assert main(["export", str(run.path), "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_activations_float_drops_the_quantizers_and_shows_the_cost(run, tmp_path, capsys):
    """``--activations float``: the c-bit weights of the quantized export without its activation
    quantizers, in the file (as small), in PyTorch and in ONNX Runtime, and the accuracy of both printed."""
    from fn3.export.qmodules import ActQuant
    from fn3.export.twin import float_twin

    spec = ["--spec", "channels=0.5,bits=2"]
    quant_dir, fast_dir = tmp_path / "q", tmp_path / "f"
    assert main(["export", str(run.path), *spec, "--out", str(quant_dir)]) == 0
    capsys.readouterr()
    args = ["export", str(run.path), *spec, "--out", str(fast_dir), "--format", "onnx"]
    assert main([*args, "--activations", "float"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    quant, fast = load(quant_dir), load(fast_dir)
    assert any(isinstance(m, ActQuant) for m in quant.modules())
    assert not any(isinstance(m, ActQuant) for m in fast.modules())
    x = torch.randn(8, *quant.meta["input_shape"], generator=torch.Generator().manual_seed(0))
    assert torch.equal(fast(x), float_twin(quant)(x))  # same weights, same re-estimated BatchNorm
    assert not torch.allclose(fast(x), quant(x), atol=1e-3)  # 2-bit activations do change the outputs
    y = ort.InferenceSession(str(fast_dir / "model.onnx")).run(None, {"input": x.numpy()})[0]
    assert np.abs(y - fast(x).numpy()).max() <= 1e-4 * np.abs(y).max()
    drop = fast.meta["activation_drop"]
    assert drop["quantized"] == pytest.approx(evaluate_exported(quant_dir), abs=1e-9)
    assert drop["float"] == pytest.approx(evaluate_exported(fast_dir), abs=1e-9)
    assert f"{drop['float'] * 100:.2f}% without them, {drop['quantized'] * 100:.2f}% with them" in printed
    # the file keeps the 2-bit codes: the quantized export's bytes plus the recorded accuracies
    sizes = [(d / "model.safetensors").stat().st_size for d in (quant_dir, fast_dir)]
    assert sizes[0] <= sizes[1] <= sizes[0] + 200
    assert main(["bench", str(fast_dir), "--repeats", "1", "--batches", "2"]) == 0
    assert "--activations float" in " ".join(capsys.readouterr().out.split())
    assert main(["info", str(fast_dir)]) == 0
    info = " ".join(capsys.readouterr().out.split())
    assert f"without its activation quantizers (--activations float): {drop['float'] * 100:.2f}%" in info
    assert load(fast_dir, as_stored=True).meta["activations"] == "float"
    assert any(isinstance(m, ActQuant) for m in load(fast_dir, as_stored=True).modules())


def test_bench_compile_without_a_working_compiler_is_one_line(run, tmp_path, capsys, monkeypatch):
    import torch._dynamo.exc

    import fn3.export.fast

    def broken(model, **kwargs):
        def forward(x):
            raise torch._dynamo.exc.BackendCompilerFailed(None, RuntimeError("cc: not found\nmore"), None)
        return forward

    monkeypatch.setattr(fn3.export.fast, "compiled", broken)  # as Inductor fails without a compiler
    out = tmp_path / "e"
    assert main(["export", str(run.path), "--spec", "smallest", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["bench", str(out), "--repeats", "1", "--batches", "2", "--compile"]) == 2
    err = capsys.readouterr().err
    assert "--compile/--integer: torch.compile failed (RuntimeError: cc: not found)" in " ".join(err.split())
    assert "Traceback" not in err


def test_bench_integer_times_the_int8_kernels_beside_the_compiled_float_model(run, tmp_path, capsys):
    import re

    out = tmp_path / "e"
    assert main(["export", str(run.path), "--spec", "largest", "--out", str(out)]) == 0
    capsys.readouterr()
    torch._dynamo.reset()
    assert main(["bench", str(out), "--repeats", "1", "--batches", "2", "--integer"]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if "int8 kernels" in line]
    assert len(rows) == 1 and re.search(r"\d+\.\d+x", rows[0]), printed
    assert "torch.compile" not in printed  # --integer alone times no fake-quantized compiled model


def test_missing_inputs(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert main(["bench", str(tmp_path)]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
