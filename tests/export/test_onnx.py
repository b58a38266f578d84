"""ONNX: one self-contained file that ONNX Runtime runs with PyTorch's outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import INPUT, NAMES, make_model, specs_for
from legacy import export_tree

import fn3
from fn3.export import ActQuant, QuantConv2d, export, float_twin, to_onnx


def _run(path, x: torch.Tensor, optimize: bool = True) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:  # ORT's graph rewrites (BatchNorm folding, ...) change the float rounding
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts).run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("name", fn3.list_models())
def test_float_models_match(name, tmp_path):
    levels = [lv for lv in fn3.models.model_levels(name) if lv != "bits"]
    model = make_model(name, levels=levels)
    x = torch.randn(4, *INPUT)
    for spec in specs_for(fn3.space(model), 2, seed=31):
        exported = export(model, spec)
        y = _run(to_onnx(exported, tmp_path / "m.onnx", INPUT), x)
        ref = exported(x).detach().numpy()
        assert np.abs(y - ref).max() <= 1e-4 * (1 + np.abs(ref).max())


@pytest.mark.parametrize("rounding", ["qdq", "float"])
@pytest.mark.parametrize("name", NAMES)
def test_quantized_models_match(models, name, tmp_path, rounding):
    """ONNX Runtime's convolutions round differently from PyTorch's (and BatchNorm is folded into
    them), and a quantized activation within that rounding of a step boundary takes the next step (at
    8 bits a step is alpha/255): outputs then differ by a few steps' worth, not 1e-5. Exactness of each
    quantizer is tested on its own below; here the whole graph must agree to 2% (relative L2), with
    and without ORT's own graph optimisations (a wiring error gives ~100%). Measured on these untrained
    models with random specs: at most 0.4% either way. (The earlier graph was off by up to 19% with ORT's
    optimisations: ORT requantized the float weights of non-prefix specs to per-tensor int8.)"""
    model = models[name]
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(0))
    for spec in specs_for(fn3.space(model), 4, seed=41):
        exported = export(model, spec)
        path = to_onnx(exported, tmp_path / "m.onnx", INPUT, rounding=rounding)
        ref = exported(x).detach().numpy()
        for optimize, tol in ((False, 2e-2), (True, 2e-2)):
            y = _run(path, x, optimize)
            assert np.linalg.norm(y - ref) <= tol * np.linalg.norm(ref), (spec, optimize)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("planes", [(0, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2), (0, 1), (0, 1, 4, 6)])
def test_activation_quantizer_is_exact(tmp_path, planes, signed):
    """Each quantizer alone: ORT (QDQ + integer bit clearing, or the float formula) equals PyTorch."""
    q = ActQuant(torch.tensor(2.5), planes=planes, signed=signed)
    m = fn3.export.ExportedModel(q)
    x = torch.cat([torch.linspace(-3, 3, 2 * 3 * 8 * 8), torch.randn(2 * 3 * 8 * 8) * 2]).reshape(4, *INPUT)
    y = _run(to_onnx(m, tmp_path / "a.onnx", INPUT), x)
    assert np.array_equal(y, m(x).numpy())


def test_single_file_with_int8_qdq_weights(models, tmp_path):
    """compact=True: every quantized weight as int8 codes (DequantizeLinear), in one file (fn3's own
    writer, on the module tree a format-1/2 file loads into; an export goes through the graph pass,
    tests/export/test_torch_onnx.py)."""
    model = models["resnet20"]
    spec = fn3.space(model).uniform({"channels": 0.5, "bits": 4})
    with pytest.raises(fn3.ConfigError, match="need an export of fn3.export.export"):
        to_onnx(fn3.export.extract_submodel(model, spec), tmp_path / "no.onnx", INPUT, compact=True)
    exported = export_tree(model, spec)
    path = to_onnx(exported, tmp_path / "m.onnx", INPUT, compact=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    proto = onnx.load(str(path))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    ops = [n.op_type for n in proto.graph.node]
    n_quant = sum(isinstance(m, QuantConv2d) for m in exported.modules())
    assert ops.count("DequantizeLinear") >= n_quant and "QuantizeLinear" in ops
    int8 = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8) == n_quant
    assert {p.key for p in proto.metadata_props} == {"fn3.spec"}


def test_bad_opset_and_missing_shape(models, tmp_path):
    exported = export(models["mlp"])
    with pytest.raises(fn3.ConfigError, match="opset"):
        to_onnx(exported, tmp_path / "m.onnx", INPUT, opset=13)
    exported.meta.pop("input_shape")
    with pytest.raises(fn3.ConfigError, match="input_shape"):
        to_onnx(exported, tmp_path / "m.onnx")


def test_signed_input_quantizer_model(tmp_path):
    """quantize_ends=True: the network input goes through a signed (Clip + int8 QDQ) quantizer."""
    model = make_model("resnet20", quantize_ends=True)
    exported = export(model, fn3.space(model).uniform({"bits": 8}))
    x = torch.randn(8, *INPUT)
    y, ref = _run(to_onnx(exported, tmp_path / "m.onnx", INPUT), x, optimize=False), exported(x).numpy()
    assert np.linalg.norm(y - ref) <= 2e-2 * np.linalg.norm(ref)


def _act_ops(q: ActQuant, tmp_path) -> list[str]:
    proto = onnx.load(str(to_onnx(fn3.export.ExportedModel(q), tmp_path / "a.onnx", INPUT)))
    return [n.op_type for n in proto.graph.node if n.op_type != "Identity"]  # fn3's writer names the output


def test_activation_quantizer_node_count(tmp_path):
    """The fewest nodes: QuantizeLinear's saturation is the clip at 8 bits unsigned; below 8 bits (or
    signed) the integer codes are clipped; a ReLU right before an unsigned quantizer is dropped."""
    assert _act_ops(ActQuant(torch.tensor(2.5), planes=range(8)), tmp_path) == [
        "QuantizeLinear",
        "DequantizeLinear",
    ]
    for planes, signed in (((0, 1, 2, 3), False), ((0, 1), False), (range(8), True), ((0, 1, 2), True)):
        ops = _act_ops(ActQuant(torch.tensor(2.5), planes=planes, signed=signed), tmp_path)
        assert ops == ["QuantizeLinear", "Clip", "DequantizeLinear"], (planes, signed)
    relu_q = fn3.export.ExportedModel(torch.nn.ReLU(), ActQuant(torch.tensor(2.5), planes=(0, 1)))
    proto = onnx.load(str(to_onnx(relu_q, tmp_path / "r.onnx", INPUT)))
    assert [n.op_type for n in proto.graph.node if n.op_type != "Identity"] == [
        "QuantizeLinear", "Clip", "DequantizeLinear"]
    x = torch.randn(4, *INPUT) * 3
    assert np.array_equal(_run(tmp_path / "r.onnx", x), relu_q(x).numpy())


def _quantized_conv(wplanes, aplanes) -> fn3.export.ExportedModel:
    """ActQuant -> QuantConv2d -> BatchNorm -> ReLU -> ActQuant (8 bits): one layer between two
    quantizers, the pattern ONNX Runtime turns into an integer QLinearConv."""
    from fn3.export.pack import keep_planes
    from fn3.nn.functional import weight_codes, weight_scale

    g = torch.Generator().manual_seed(5)
    w = torch.randn(6, 3, 3, 3, generator=g)
    scale = weight_scale(w, 8)
    codes = keep_planes(weight_codes(w, scale, 8), 8, tuple(wplanes))
    conv = QuantConv2d(codes, scale, torch.randn(6, generator=g), padding=1, planes=tuple(wplanes))
    norm = torch.nn.BatchNorm2d(6).eval()
    norm.running_mean.normal_(generator=g)
    norm.running_var.uniform_(0.5, 2.0, generator=g)
    norm.weight.data.uniform_(0.5, 1.5, generator=g)
    first, last = (
        ActQuant(torch.tensor(2.0), planes=tuple(aplanes)),
        ActQuant(torch.tensor(3.0), planes=range(8)),
    )
    return fn3.export.ExportedModel(first, conv, norm, torch.nn.ReLU(), last).eval().requires_grad_(False)


@pytest.mark.parametrize(
    ("wplanes", "aplanes"),
    [
        ((0, 1, 2, 3), (0, 1, 2, 3)),
        ((0, 1), range(8)),
        ((0, 2, 5), (0, 1, 2)),
        (range(8), (0, 1)),
        (range(8), range(8)),
    ],
)
@pytest.mark.parametrize("rounding", ["qdq", "float"])
def test_ort_optimised_graph_keeps_the_weights(tmp_path, wplanes, aplanes, rounding):
    """ONNX Runtime quantizes a float weight between a per-tensor DequantizeLinear and a QuantizeLinear
    to per-tensor int8 (its WeightBiasQuantization pass): with fn3's weights that is another model
    (measured: a third of these outputs off, by up to 3.0). fn3 writes that DequantizeLinear per
    channel, and int8 codes only where they are exact (8-bit weights: ORT's QLinearConv). Optimised
    or not, ORT then equals PyTorch but for a rare step-boundary flip (at most one 8-bit step)."""
    m = _quantized_conv(wplanes, aplanes)
    x = torch.randn(8, *INPUT, generator=torch.Generator().manual_seed(1)) * 2
    ref = m(x).numpy()
    path = to_onnx(m, tmp_path / "m.onnx", INPUT, rounding=rounding)
    for optimize in (False, True):
        d = np.abs(_run(path, x, optimize) - ref)
        assert (d > 1e-5).mean() <= 0.01 and d.max() <= 3.0 / 255 + 1e-5, (
            optimize,
            (d > 1e-5).mean(),
            d.max(),
        )


@pytest.mark.parametrize("rounding", ["qdq", "float"])
def test_integer_kernels_where_exact_enough(tmp_path, rounding):
    """integer=True: an 8-bit weight after a 7-bit quantizer becomes ORT's QLinearConv (int8 codes in
    the file); after an 8-bit quantizer it stays float (u8 x s8 pairs would saturate int16 on AVX2)."""
    x = torch.randn(64, *INPUT, generator=torch.Generator().manual_seed(1)) * 2
    for aplanes, fused in ((range(7), True), (range(8), False)):
        m = _quantized_conv(range(8), aplanes)
        path = to_onnx(m, tmp_path / "m.onnx", INPUT, integer=True, rounding=rounding)
        inits = onnx.load(str(path)).graph.initializer
        assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4 for t in inits) == fused
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
        y = ort.InferenceSession(str(path), opts).run(None, {"input": x.numpy()})[0]
        ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
        assert ("QLinearConv" in ops) == fused
        d = np.abs(y - m(x).numpy())
        assert (d > 1e-5).mean() <= 0.01 and d.max() <= 3.0 / 255 + 1e-5, ((d > 1e-5).mean(), d.max())


def test_float_rounding_stays_in_the_blocked_layout(tmp_path):
    """rounding="float": a 4-bit quantizer between two convolutions has no QuantizeLinear; its Clip
    is fused into the convolution and ONNX Runtime runs the chain without leaving its blocked
    (NCHWc) layout (no Reorder node inside, which QDQ needs twice per quantizer); values as PyTorch's."""
    g = torch.Generator().manual_seed(7)
    conv1, conv2 = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(16, 16, 3, padding=1)
    for conv in (conv1, conv2):
        conv.weight.data.normal_(0, 0.3, generator=g)
    m = fn3.export.ExportedModel(
        conv1, torch.nn.BatchNorm2d(16), torch.nn.ReLU(), ActQuant(torch.tensor(2.0), planes=range(4)), conv2
    )
    m = m.eval().requires_grad_(False)
    x = torch.randn(16, *INPUT, generator=g)

    def run(model, rounding: str) -> tuple[np.ndarray, int]:
        path = to_onnx(model, tmp_path / "m.onnx", INPUT, rounding=rounding)
        ops = [n.op_type for n in onnx.load(str(path)).graph.node]
        assert ("QuantizeLinear" in ops) == (rounding == "qdq" and model is m)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
        y = ort.InferenceSession(str(path), opts).run(None, {"input": x.numpy()})[0]
        opt_ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
        return y, sum(op.startswith("Reorder") for op in opt_ops)

    _, float_reorders = run(float_twin(m), "qdq")
    _, qdq_reorders = run(m, "qdq")
    assert qdq_reorders == float_reorders + 2  # out of the blocked layout and back in
    for rounding in ("qdq", "float"):
        y, reorders = run(m, rounding)
        assert reorders == (float_reorders if rounding == "float" else qdq_reorders)
        d = np.abs(y - m(x).numpy())
        assert (d > 1e-4).mean() <= 0.01, (rounding, (d > 1e-4).mean())


def test_float_rounding_folds_the_step_into_every_producing_conv(tmp_path):
    """In a chain conv -> quantizer -> conv -> quantizer -> conv, the middle convolution is both the
    consumer of the first quantizer (its weight takes that step) and the producer of the second (its
    weight takes 1 / that step): both rewrites land, so no depthwise Conv scales (every ``+ M`` one
    has weight 1). Each quantizer is then one depthwise pass: the clip fused into the convolution
    before it, ``+ M`` rounding, and a ``HardSigmoid`` that ONNX Runtime fuses into that pass
    subtracting M (exactly: its slope is a power of two); the values still match PyTorch's."""
    g = torch.Generator().manual_seed(3)
    convs = [torch.nn.Conv2d(c, 16, 3, padding=1) for c in (3, 16, 16)]
    for conv in convs:
        conv.weight.data.normal_(0, 0.3, generator=g)
    m = fn3.export.ExportedModel(
        convs[0], ActQuant(torch.tensor(2.0), planes=range(4)), convs[1],
        ActQuant(torch.tensor(3.0), planes=range(4)), convs[2],
    ).eval().requires_grad_(False)
    path = to_onnx(m, tmp_path / "m.onnx", INPUT, rounding="float")
    model = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    depthwise = [n for n in model.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]  # fmt: skip
    assert len(depthwise) == 2  # + M of each quantizer; no - M pass
    assert all(np.all(inits[n.input[1]] == 1.0) for n in depthwise)
    assert [n.op_type for n in model.graph.node].count("HardSigmoid") == 2
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), opts)
    optimized = onnx.load(str(tmp_path / "opt.onnx")).graph.node
    assert sum(n.op_type.endswith("Conv") for n in optimized) == 5  # 3 convolutions + 2 passes
    assert not any(n.op_type in ("HardSigmoid", "Clip") for n in optimized)  # all fused
    x = torch.randn(16, *INPUT, generator=g)
    d = np.abs(_run(path, x) - m(x).numpy())
    assert (d > 1e-4).mean() <= 0.01, (d > 1e-4).mean()


def test_integer_kernel_keeps_its_quantizer_under_float_rounding(tmp_path):
    """integer=True with rounding="float": the quantizer after a QLinearConv-fused layer stays the
    QuantizeLinear the fusion needs, even when a float convolution follows it."""
    m = _quantized_conv(range(8), range(7))
    m = fn3.export.ExportedModel(*m, torch.nn.Conv2d(6, 4, 1)).eval().requires_grad_(False)
    path = to_onnx(m, tmp_path / "m.onnx", INPUT, integer=True, rounding="float")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), opts)
    assert "QLinearConv" in [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
