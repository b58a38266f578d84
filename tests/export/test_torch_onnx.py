"""ONNX of any model through torch.onnx.export: built-in and fn3.nest_-converted user networks."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from export_helpers import INPUT
from legacy import export_tree
from torch import nn

import fn3
from fn3.export import extract_submodel, to_onnx


def _run(path, x: torch.Tensor, optimize: bool) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts).run(None, {"input": x.numpy()})[0]


class UserCNN(nn.Module):
    """A user's own network: its own forward, functional ReLUs, a residual add, a pooled head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def user_cnn() -> nn.Module:
    torch.manual_seed(0)
    net = UserCNN()
    g = torch.Generator().manual_seed(2)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    fn3.nest_(net.eval(), torch.zeros(1, *INPUT), levels="channels,bits", verbose=False)
    return net.eval()


def _agree(y: np.ndarray, ref: np.ndarray, steps: bool) -> bool:
    """Equal to 1e-5 (relative), or, where activations are quantized (``steps``), to 2% (relative
    L2): a value within float rounding of a step boundary may take the next step (see fn3.export.onnx)."""
    if not steps:
        return bool(np.abs(y - ref).max() <= 1e-5 * (1 + np.abs(ref).max()))
    return bool(np.linalg.norm(y - ref) <= 2e-2 * np.linalg.norm(ref))


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("channels", [1.0, 0.5])
def test_user_network_exports_and_matches(user_cnn, tmp_path, bits, channels):
    space = fn3.space(user_cnn)
    spec = space.uniform({"channels": channels, "bits": bits})
    sub = extract_submodel(user_cnn, spec)
    x = torch.randn(32, *INPUT, generator=torch.Generator().manual_seed(bits))
    with torch.no_grad(), fn3.active(user_cnn, spec):
        nested = user_cnn(x).numpy()
    ref = sub(x).numpy()
    assert np.abs(ref - nested).max() <= 1e-5
    path = to_onnx(sub, tmp_path / "u.onnx", INPUT)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") >= 3  # conv2, conv3, fc inputs
    assert "BatchNormalization" not in ops  # folded into the convolutions by the exporter
    for optimize in (False, True):
        assert _agree(_run(path, x, optimize), ref, steps=True), optimize


def test_quantizer_nodes_and_exactness(user_cnn, tmp_path):
    """A 4-bit quantizer is QuantizeLinear, integer Clip, per-channel DequantizeLinear; the sub-model
    up to the first quantized convolution agrees to float rounding (no quantizer after it)."""
    spec = fn3.space(user_cnn).uniform({"bits": 4})
    sub = extract_submodel(user_cnn, spec)
    head = nn.Sequential(sub.conv1, sub.bn1, nn.ReLU(), sub.conv2).eval()  # conv2 = (quantizer, conv)
    path = to_onnx(head, tmp_path / "h.onnx", INPUT)
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type != "Constant"]
    ops = [n.op_type for n in nodes]
    i = ops.index("QuantizeLinear")
    assert ops[i : i + 4] == ["QuantizeLinear", "Clip", "DequantizeLinear", "Conv"]
    assert [a.i for a in nodes[i + 2].attribute if a.name == "axis"] == [1]
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(3))
    ref = head(x).numpy()
    for optimize in (False, True):
        y = _run(path, x, optimize)
        assert np.abs(y - ref).max() <= 1e-4 * (1 + np.abs(ref).max()), optimize


def test_builtin_model_through_torch_writer(models, tmp_path):
    model = models["resnet20"]
    sub = extract_submodel(model, fn3.space(model).uniform({"channels": 0.5, "bits": 4}))
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(4))
    path = to_onnx(sub, tmp_path / "r.onnx", INPUT)
    assert _agree(_run(path, x, True), sub(x).numpy(), steps=True)


def test_bad_writer(models, tmp_path):
    with pytest.raises(fn3.ConfigError, match="writer"):
        to_onnx(fn3.export.export(models["mlp"]), tmp_path / "m.onnx", INPUT, writer="tf")


def test_exported_model_through_torch_writer(models, tmp_path):
    """writer="torch" also takes an ExportedModel (weights dequantized, BatchNorm folded by the
    exporter, ActQuant as QDQ): the nodes and the outputs of the fn3 writer's default graph; and the
    export of the model's own classes gives that graph too."""
    model = models["resnet20"]
    spec = fn3.space(model).uniform({"channels": 0.5, "bits": 4})
    exported = export_tree(model, spec)
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(6))
    ys = [_run(to_onnx(exported, tmp_path / f"{w}.onnx", INPUT, writer=w), x, True) for w in ("fn3", "torch")]
    ops = {
        w: sorted(n.op_type for n in onnx.load(str(tmp_path / f"{w}.onnx")).graph.node)
        for w in ("fn3", "torch")
    }
    assert ops["torch"].count("QuantizeLinear") == sum(
        isinstance(m, fn3.export.ActQuant) for m in exported.modules()
    )
    skip = ("Constant", "Identity")  # torch's constants as nodes, and de-duplicated equal initializers
    assert [o for o in ops["torch"] if o not in skip] == [o for o in ops["fn3"] if o not in skip]
    own = to_onnx(fn3.export.export(model, spec), tmp_path / "own.onnx", INPUT)
    assert sorted(o for o in (n.op_type for n in onnx.load(str(own)).graph.node) if o not in skip) == [
        o for o in ops["fn3"] if o not in skip
    ]
    ys.append(_run(own, x, True))
    for y in ys:
        assert _agree(y, exported(x).numpy(), steps=True)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_user_network_float_rounding(user_cnn, tmp_path, bits):
    """rounding="float" on a user's network (fn3.export.onnx_passes, a pass over the traced graph):
    every quantizer read only by convolutions on a blocked feature map becomes float rounding; the
    one on the 3-channel input (unblocked: QDQ costs no reorder there) and the one before the
    classifier (a Gemm) keep their QDQ nodes; ONNX Runtime agrees with PyTorch to the step tolerance."""
    spec = fn3.space(user_cnn).uniform({"channels": 1.0, "bits": bits})
    sub = extract_submodel(user_cnn, spec)
    x = torch.randn(32, *INPUT, generator=torch.Generator().manual_seed(10 + bits))
    qdq = [n.op_type for n in onnx.load(str(to_onnx(sub, tmp_path / "q.onnx", INPUT))).graph.node]
    path = to_onnx(sub, tmp_path / "f.onnx", INPUT, rounding="float")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert qdq.count("QuantizeLinear") == 4 and ops.count("QuantizeLinear") == 2  # conv2-3 rewritten
    assert ops.count("Clip") == 2 + 2 * (bits < 8) and "Constant" not in ops  # + the integer Clips
    for optimize in (False, True):
        assert _agree(_run(path, x, optimize), sub(x).numpy(), steps=True), optimize


@pytest.mark.parametrize("channels", [1.0, 0.5])
def test_builtin_float_rounding_matches_fn3_writer(models, tmp_path, channels):
    """The pass over torch's graph writes the float-rounding graph fn3's own writer writes for a
    built-in export: the same ops, in ONNX Runtime the same outputs to the step tolerance. All
    channels: every quantized feature map is blocked (16-64 channels), so none keeps QuantizeLinear;
    at half width the eight reading an 8-channel map (unblocked) keep it in both writers."""
    model = models["resnet20"]
    exported = export_tree(model, fn3.space(model).uniform({"channels": channels, "bits": 4}))
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(11))
    ops, ys = {}, {}
    for w in ("fn3", "torch"):
        path = to_onnx(exported, tmp_path / f"{w}.onnx", INPUT, writer=w, rounding="float")
        ops[w] = sorted(n.op_type for n in onnx.load(str(path)).graph.node if n.op_type != "Identity")
        ys[w] = _run(path, x, True)
    assert ops["torch"].count("QuantizeLinear") == (0 if channels == 1.0 else 8), ops["torch"]
    assert ops["torch"] == ops["fn3"]
    for y in ys.values():
        assert _agree(y, exported(x).numpy(), steps=True)


def test_torch_writer_refuses_fn3_only_forms(models, tmp_path):
    exported = export_tree(models["mlp"])
    with pytest.raises(fn3.ConfigError, match="writer='fn3'"):
        to_onnx(exported, tmp_path / "m.onnx", INPUT, writer="torch", compact=True)


def test_float_twin_of_a_user_network(user_cnn):
    """float_twin of an extracted network of your own: no quantizer left anywhere in its own module
    tree (unsigned ones become ReLUs: their clip at 0), weights unchanged, and it computes what the
    sub-model computes with every quantizer replaced so."""
    from fn3.export import ActQuant, float_twin

    sub = extract_submodel(user_cnn, fn3.space(user_cnn).uniform({"channels": 0.5, "bits": 2}))
    twin = float_twin(sub)
    assert any(isinstance(m, ActQuant) for m in sub.modules())
    assert not any(isinstance(m, ActQuant) for m in twin.modules())
    assert torch.equal(twin.conv2[1].weight, sub.conv2[1].weight)
    x = torch.randn(8, *INPUT, generator=torch.Generator().manual_seed(12))
    ref = copy.deepcopy(sub)
    for name, m in list(ref.named_modules()):
        if isinstance(m, ActQuant):
            parent, _, leaf = name.rpartition(".")
            setattr(ref.get_submodule(parent), leaf, nn.Identity() if m.signed else nn.ReLU())
    assert torch.equal(twin(x), ref(x)) and not torch.equal(twin(x), sub(x))


def _int8_weights(path) -> int:
    inits = onnx.load(str(path)).graph.initializer
    return sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2 for t in inits)


@pytest.mark.parametrize("which", ["resnet20", "user"])
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_compact_is_a_pass_over_torch_graph(models, user_cnn, tmp_path, which, bits):
    """compact=True on an export (built-in or your own network): every quantized weight as int8 codes
    behind a DequantizeLinear (found by value in torch's graph, BatchNorm folded in), the file at most
    half the float-weight one, and ONNX Runtime computing what PyTorch computes."""
    model = models["resnet20"] if which == "resnet20" else user_cnn
    exported = fn3.export.export(model, fn3.space(model).uniform({"channels": 0.5, "bits": bits}))
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(bits))
    plain = to_onnx(exported, tmp_path / "f.onnx", INPUT)
    path = to_onnx(exported, tmp_path / "c.onnx", INPUT, compact=True)
    assert _int8_weights(plain) == 0 and _int8_weights(path) == len(exported.quant) > 0
    assert path.stat().st_size < plain.stat().st_size / 2  # (a tiny network: names and scales weigh)
    for optimize in (False, True):
        assert _agree(_run(path, x, optimize), exported(x).numpy(), steps=True)


@pytest.mark.parametrize("abits", [7, 8])
def test_integer_kernels_from_an_export(models, tmp_path, abits):
    """integer=True on an export: an 8-bit weight after a 7-bit quantizer and before the next one
    becomes ONNX Runtime's QLinearConv; after an 8-bit quantizer (u8 x s8 pairs would saturate int16
    on AVX2) it stays a float convolution. Outputs as PyTorch's either way."""
    model = models["resnet20"]
    space = fn3.space(model)
    spec = space.uniform({"channels": 0.5, "bits": 8}).replace(
        **{a.name: tuple(range(abits)) for a in space if a.name.endswith("abits")})
    exported = fn3.export.export(model, spec)
    path = to_onnx(exported, tmp_path / "m.onnx", INPUT, integer=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(3))
    y = ort.InferenceSession(str(path), opts).run(None, {"input": x.numpy()})[0]
    fused = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node].count("QLinearConv")
    assert (fused > 0) == (abits == 7) and (_int8_weights(path) > 0) == (abits == 7)
    assert _agree(y, exported(x).numpy(), steps=True)
