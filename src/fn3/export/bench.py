"""Measure an exported model: latency with PyTorch and ONNX Runtime, FLOPs, parameters, file size.

Latency is the median of ``repeats`` timed forward passes after ``warmup`` untimed ones, in eval mode
without gradients, on a fixed random input; ONNX Runtime runs the graph :func:`fn3.export.to_onnx`
writes, with its default optimisations. FLOPs are counted by ``torch.utils.flop_counter`` on the
exported module (a multiply-add counts 2).

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> from fn3.export.bench import count_flops, torch_latency
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = export(net, fn3.space(net).uniform({"channels": 0.5}))
    >>> count_flops(small, (3, 32, 32)) < count_flops(export(net), (3, 32, 32)) / 3
    True
    >>> torch_latency(small, (3, 32, 32), batch=1, repeats=3) > 0
    True
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fn3.export.qmodules import QuantConv2d, QuantLinear

__all__ = [
    "count_flops",
    "count_params",
    "interleaved_latency",
    "ort_latency",
    "ort_parity",
    "ort_session",
    "torch_latency",
]


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on one input of shape ``input_shape`` (C, H, W)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Weights and biases (quantized codes count one each), BatchNorm affine parameters included."""
    n = sum(p.numel() for p in model.parameters())
    return n + sum(m.codes.numel() for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear)))


def _median_time(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def torch_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    seed: int = 0,
) -> float:
    """Median seconds of one PyTorch forward pass of a batch of ``batch`` inputs."""
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(seed))
    model.eval()
    return _median_time(lambda: model(x), warmup, repeats)


def ort_session(
    model: nn.Module | str | Path,
    input_shape: Sequence[int] | None = None,
    *,
    threads: int = 0,
    **onnx_options: object,
):
    """An ONNX Runtime session for an exported module (written to a temporary file) or an .onnx file.

    ``threads``: intra-op threads (0: ONNX Runtime's default, one per core); ``onnx_options``: passed
    to :func:`fn3.export.to_onnx` (e.g. ``rounding="float"``).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if isinstance(model, nn.Module):
        from fn3.export.onnx import to_onnx

        with tempfile.TemporaryDirectory() as d:
            path = to_onnx(model, Path(d) / "model.onnx", input_shape, **onnx_options)
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def ort_latency(
    session, input_shape: Sequence[int], *, batch: int = 1, warmup: int = 3, repeats: int = 20, seed: int = 0
) -> float:
    """Median seconds of one ONNX Runtime run of a batch of ``batch`` inputs."""
    x = np.random.default_rng(seed).standard_normal((batch, *input_shape), dtype=np.float32)
    name = session.get_inputs()[0].name
    return _median_time(lambda: session.run(None, {name: x}), warmup, repeats)


@torch.no_grad()
def interleaved_latency(fns: dict[str, Callable[[], object]], *, warmup: int = 3, repeats: int = 20) -> dict:
    """Median seconds of each callable, the repeats interleaved (one call of each in turn), so that a
    change of machine load between measurements hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def ort_parity(
    session, model: nn.Module, input_shape: Sequence[int], *, batch: int = 8, seed: int = 0
) -> float:
    """Largest ``|ONNX Runtime output - PyTorch output|`` of ``model`` on a random batch.

    Float models agree to ~1e-6; where activations are quantized, a value within float rounding of
    a step boundary may take the neighbouring step in one of them (see :mod:`fn3.export.onnx`).
    """
    x = np.random.default_rng(seed).standard_normal((batch, *input_shape), dtype=np.float32)
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(y - model.eval()(torch.from_numpy(x)).numpy()).max())
