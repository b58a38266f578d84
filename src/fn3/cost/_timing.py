"""Timing plumbing for latency tables: back-ends that run a module, interleaved medians, device info.

Back-ends turn ``(module, inputs)`` into a zero-argument ``run()``:

* ``torch``: ``module(*inputs)`` in eval and inference mode, with ``torch.set_num_threads(threads)``.
* ``onnxruntime``: the module exported with ``torch.onnx.export(..., dynamo=False)`` (the TorchScript
  exporter: about 10 ms per small graph, against seconds for the dynamo exporter, and it folds batch
  norm into the convolution as a deployment would) and run by an ``InferenceSession`` on the CPU
  provider with ``intra_op_num_threads=threads``, sequential execution, all graph optimizations.

:func:`time_interleaved` measures many runs in rounds: each round visits every run once in a fresh
random order, so a slow period of the machine (another process, a frequency change) spreads over
all entries instead of biasing the ones measured during it; the statistic is the median per entry.
"""

from __future__ import annotations

import io
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from fn3.errors import ConfigError

BACKENDS = ("torch", "onnxruntime")
Run = Callable[[], object]


@contextmanager
def torch_threads(threads: int):
    """Run the block with ``torch.set_num_threads(threads)``; restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TorchBackend:
    name = "torch"

    def __init__(self, threads: int):
        self.threads = threads

    def prepare(self, module: nn.Module, inputs: Sequence[torch.Tensor]) -> Run:
        module.eval()

        def run() -> object:
            with torch.inference_mode():
                return module(*inputs)

        return run

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, threads: int, optimization: str = "all"):
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError("backend 'onnxruntime' needs the onnxruntime package") from None
        self.ort, self.threads, self.optimization = ort, threads, optimization
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if optimization not in levels:
            raise ConfigError(f"unknown ONNX Runtime optimization {optimization!r}; use {', '.join(levels)}")
        self.level = levels[optimization]

    def session(self, onnx_bytes: bytes) -> Any:
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self.level
        so.log_severity_level = 3
        return self.ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])

    def prepare(self, module: nn.Module, inputs: Sequence[torch.Tensor]) -> Run:
        sess = self.session(export_onnx(module.eval(), inputs))
        feed = {f"x{i}": t.numpy() for i, t in enumerate(inputs)}
        return lambda: sess.run(None, feed)

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__, "onnxruntime": self.ort.__version__}


def export_onnx(module: nn.Module, inputs: Sequence[torch.Tensor]) -> bytes:
    """``module`` as ONNX bytes (inputs named ``x0, x1, ...``; TorchScript exporter, opset 17)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, tuple(inputs), buf, dynamo=False, opset_version=17,
                          input_names=[f"x{i}" for i in range(len(inputs))], output_names=["y"])
    return buf.getvalue()


def make_backend(name: str, threads: int, optimization: str = "all") -> TorchBackend | OrtBackend:
    if name == "torch":
        return TorchBackend(threads)
    if name == "onnxruntime":
        return OrtBackend(threads, optimization)
    raise ConfigError(f"unknown latency backend {name!r}; use one of {', '.join(BACKENDS)}")


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def check_clock(clock: str, threads: int) -> None:
    if clock not in CLOCKS:
        raise ConfigError(f"unknown clock {clock!r}; use 'wall' (latency) or 'cpu' (this thread's CPU time)")
    if clock == "cpu" and threads != 1:
        raise ConfigError("clock='cpu' measures the calling thread only: it needs threads=1")


def time_interleaved(runs: Sequence[Run], repeats: int, seed: int, warmup: int = 3,
                     progress: Callable[[int, int], None] | None = None,
                     clock: str = "wall") -> list[tuple[float, float]]:
    """``(median, interquartile range)`` in seconds per call of each run; see the module docstring.

    Every sample is *one* call, and consecutive samples belong to different runs (a random order per
    round): each unit then starts with the caches as another layer left them, as it does inside a
    model. Timing many back-to-back calls of the same unit instead keeps its weights and input hot
    and underestimates it (by about 10-15% for ResNet-20 units on our test machine).

    ``clock="wall"`` is latency as a user sees it. ``clock="cpu"`` is the calling thread's CPU time:
    with one thread (PyTorch and ONNX Runtime then compute in the calling thread) it equals the
    latency the run would have with the core to itself, and it is immune to other processes
    preempting it, which on a shared machine bias wall-clock times: a 5 ms run is almost always
    interrupted, a 50 us one rarely, so short entries look relatively faster than whole models.
    """
    now = CLOCKS[clock]
    for run in runs:
        for _ in range(warmup):
            run()
    samples: list[list[float]] = [[] for _ in runs]
    gen = torch.Generator().manual_seed(seed)
    total = repeats * len(runs)
    for r in range(repeats):
        for i in torch.randperm(len(runs), generator=gen).tolist():
            run = runs[i]
            t0 = now()
            run()
            samples[i].append(now() - t0)
        if progress is not None:
            progress((r + 1) * len(runs), total)
    out = []
    for s in samples:
        q = torch.tensor(s, dtype=torch.float64)
        q1, med, q3 = torch.quantile(q, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
        out.append((med, q3 - q1))
    return out


def device_info() -> dict[str, object]:
    """What machine a table was measured on (CPU model, cores, OS)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu or "unknown", "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "system": platform.platform(), "python": platform.python_version()}
