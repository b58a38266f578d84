"""Latency tables measured on your own device, and sub-model latency predicted from them.

:func:`measure_latency_table` times every *unit* of a nested model (a convolution with its batch norm
and ReLU, a residual addition, a pooling, a dense layer: see :mod:`fn3.cost.units`) at every size the
model's space allows (every number of kept blocks of the axes that set its channels, neurons or
paths), on the PyTorch or ONNX Runtime back-end, at a given batch size. Runs are interleaved
(every round visits every unit in a new random order) and each entry is the median of its rounds.
Bits are not measured: on these float back-ends a sub-model's weights are float tensors whatever
bit-width they are quantized to, so bits do not change latency.

A sub-model's predicted latency is ``overhead + sum over its kept units of (entry - overhead)``,
where ``overhead`` is the measured time of running an *empty* model (``nn.Identity`` for PyTorch, a
one-node ``Identity`` graph for ONNX Runtime) on the model's input. Every entry is timed through the
same call path, so each one includes that fixed cost once; the model pays it once too.

The table is a JSON file (``"format": "fn3.latency-table", "version": 1``) holding the device, the
back-end and its versions, the batch size and thread count, and the entries keyed by unit signature.

Example:
    >>> import fn3
    >>> from fn3.cost.latency import measure_latency_table
    >>> model = fn3.create_model("mlp", input_size=8, in_channels=1, hidden=(32,))
    >>> table = measure_latency_table(model, (1, 8, 8), repeats=3)
    >>> spec = fn3.space(model).largest()
    >>> fn3.cost(model, spec, "latency", table=table) > 0
    True
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fn3._io import atomic_write_text, loads_untrusted
from fn3.cost._plain import float_submodel, spread_specs
from fn3.cost._timing import (
    BACKENDS,
    check_clock,
    device_info,
    make_backend,
    time_interleaved,
    torch_threads,
)
from fn3.cost.plan import CostPlan, Sizes, cost_plan
from fn3.cost.units import Unit, latency_units
from fn3.errors import ConfigError, FileFormatError
from fn3.models.info import model_info
from fn3.nest import space as model_space
from fn3.spec import Spec

__all__ = ["LatencyTable", "load_latency_table", "measure_latency_table", "prediction_quality"]

FORMAT = "fn3.latency-table"
VERSION = 1
EMPTY = "empty"  # the entry of the empty model
_KEYS = {"format", "version", "backend", "batch_size", "threads", "device", "versions", "measurement",
         "overhead_us", "entries", "references"}


@dataclass(frozen=True)
class LatencyTable:
    """Measured unit latencies of one device and back-end (times in microseconds).

    Attributes:
        backend: ``"torch"`` or ``"onnxruntime"``.
        batch_size: the batch every entry was measured at (predictions are for this batch size).
        threads: intra-op threads used (torch ``set_num_threads`` / ORT ``intra_op_num_threads``).
        overhead_us: median time of the empty model (the fixed cost of one call).
        entries: unit signature -> ``{"median_us": ..., "iqr_us": ...}``.
        device, versions, measurement: where, with what, and how the table was measured.
        references: whole sub-models timed in the same rounds as the units, to check predictions on
            this device: ``{"spec": spec JSON, "median_us": ..., "iqr_us": ...}`` (see :meth:`check`).
    """

    backend: str
    batch_size: int
    threads: int
    overhead_us: float
    entries: Mapping[str, Mapping[str, float]]
    device: Mapping[str, object] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    measurement: Mapping[str, object] = field(default_factory=dict)
    references: tuple[Mapping[str, object], ...] = ()
    # plan -> [(unit, gate, {unit sizes: net us})]: lookups resolved once per plan, not per call
    _compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, model: nn.Module, spec: Spec, input_shape: Sequence[int] | None = None) -> float:
        """Predicted latency in milliseconds of sub-model ``spec`` (same as ``cost(..., "latency")``)."""
        plan = cost_plan(model, input_shape)
        return self.predict_sizes(plan, plan.resolve(spec))

    def predict_sizes(self, plan: CostPlan, sizes: Sizes) -> float:
        """Predicted milliseconds for a spec already resolved against ``plan``."""
        units = self._compiled.get(plan)
        if units is None:
            units = self._compiled[plan] = [(u, u.gate, {}) for u in latency_units(plan)]
        u_counts, blocks = sizes.units, sizes.blocks
        total = self.overhead_us
        for unit, gate, cache in units:
            if gate and not all(i in blocks[a] for a, i in gate):
                continue
            key = unit.sizes(u_counts)
            net = cache.get(key)
            if net is None:
                net = cache[key] = max(self.entry(unit.signature(key)) - self.overhead_us, 0.0)
            total += net
        return total / 1000.0

    def entry(self, signature: str) -> float:
        """Median microseconds of one unit; a ConfigError if the table does not have it."""
        got = self.entries.get(signature)
        if got is None:
            raise ConfigError(f"the latency table has no entry {signature}: it was measured for another "
                              "model or input shape; measure one for this model (fn3 latency-table)")
        return float(got["median_us"])

    def check(self, model: nn.Module, input_shape: Sequence[int] | None = None,
              ) -> list[tuple[Spec, float, float]]:
        """``(spec, predicted ms, measured ms)`` for every reference sub-model timed with the table."""
        space = model_space(model)
        out = []
        for ref in self.references:
            spec = Spec.from_dict(ref["spec"], space)  # type: ignore[arg-type]
            out.append((spec, self.predict(model, spec, input_shape), float(ref["median_us"]) / 1000.0))
        return out

    def missing(self, model: nn.Module, input_shape: Sequence[int] | None = None) -> list[str]:
        """Signatures some sub-model of ``model`` needs that this table lacks (empty: it covers all)."""
        have = set(self.entries)
        return [s for s in _all_signatures(cost_plan(model, input_shape)) if s not in have]

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {"format": FORMAT, "version": VERSION, "backend": self.backend,
                "batch_size": self.batch_size, "threads": self.threads, "device": dict(self.device),
                "versions": dict(self.versions), "measurement": dict(self.measurement),
                "overhead_us": self.overhead_us,
                "entries": {k: dict(v) for k, v in sorted(self.entries.items())},
                "references": [dict(r) for r in self.references]}

    @classmethod
    def from_dict(cls, data: object, source: str = "latency table") -> LatencyTable:
        """Validate and build; every problem is a :class:`FileFormatError` naming ``source``."""

        def bad(msg: str) -> FileFormatError:
            return FileFormatError(f"{source}: {msg}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f'not an fn3 latency table (expected "format": "{FORMAT}")')
        if data.get("version") != VERSION:
            raise bad(f"latency table version {data.get('version')!r} is not supported (expected {VERSION})")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise bad(f"unknown keys {unknown}; expected {', '.join(sorted(_KEYS))}")
        if data.get("backend") not in BACKENDS:
            raise bad(f"backend {data.get('backend')!r} is not one of {', '.join(BACKENDS)}")
        for key in ("batch_size", "threads"):
            v = data.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(f'"{key}" must be a positive integer, got {v!r}')
        overhead = data.get("overhead_us")
        if not _is_time(overhead):
            raise bad(f'"overhead_us" must be a non-negative number, got {overhead!r}')
        entries = data.get("entries")
        if not isinstance(entries, dict) or not entries:
            raise bad('"entries" must be a non-empty object {signature: {"median_us": ..., "iqr_us": ...}}')
        for sig, e in entries.items():
            if not (isinstance(e, dict) and _is_time(e.get("median_us")) and _is_time(e.get("iqr_us", 0))):
                raise bad(f"entry {sig!r} must be {{\"median_us\": t, \"iqr_us\": t}} with t >= 0, got {e!r}")
        for key in ("device", "versions", "measurement"):
            if not isinstance(data.get(key, {}), dict):
                raise bad(f'"{key}" must be an object')
        refs = data.get("references", [])
        if not isinstance(refs, list) or not all(
                isinstance(r, dict) and isinstance(r.get("spec"), dict) and _is_time(r.get("median_us"))
                for r in refs):
            raise bad('"references" must be a list of {"spec": {...}, "median_us": t}')
        return cls(data["backend"], data["batch_size"], data["threads"], float(overhead),
                   {k: {"median_us": float(v["median_us"]), "iqr_us": float(v.get("iqr_us", 0.0))}
                    for k, v in entries.items()},
                   data.get("device", {}), data.get("versions", {}), data.get("measurement", {}),
                   tuple(refs))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON atomically (a temp file in the same directory, then a rename)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")  # temp, fsync, rename
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read and validate a table file (a FileFormatError naming the file if it is not one)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise FileFormatError(f"{path}: no such latency table file") from None
        except OSError as err:
            raise FileFormatError(f"{path}: cannot read the latency table ({err})") from None
        data = loads_untrusted(raw, path, "the latency table")  # not UTF-8, too deep, bad JSON
        return cls.from_dict(data, str(path))


def prediction_quality(rows: Sequence[tuple[object, float, float]]) -> tuple[float, float]:
    """``(Spearman rank correlation, median absolute relative error)`` of ``(_, predicted, measured)``
    rows, e.g. :meth:`LatencyTable.check`'s (ties share their mean rank; NaN below 2 rows)."""
    if len(rows) < 2:
        return float("nan"), float("nan")
    pred = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    real = torch.tensor([r[2] for r in rows], dtype=torch.float64)

    def ranks(x: torch.Tensor) -> torch.Tensor:
        r = torch.empty_like(x)
        r[torch.argsort(x, stable=True)] = torch.arange(len(x), dtype=torch.float64)
        for v in torch.unique(x):  # ties: the mean of their ranks
            r[x == v] = r[x == v].mean()
        return r

    a, b = ranks(pred) - ranks(pred).mean(), ranks(real) - ranks(real).mean()
    denom = float(a.norm() * b.norm())
    rho = float((a * b).sum()) / denom if denom > 0 else float("nan")
    return rho, float(((pred - real).abs() / real).median())


def load_latency_table(path: str | os.PathLike[str]) -> LatencyTable:
    """Read a latency table written by :meth:`LatencyTable.save` or ``fn3 latency-table``."""
    return LatencyTable.load(path)


def _is_time(v: object) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v) and v >= 0
    except OverflowError:  # an int too large for a float (10**400) is not a time either
        return False


# -- measuring -----------------------------------------------------------------------------------


def _all_signatures(plan: CostPlan) -> dict[str, tuple[Unit, tuple[int, ...]]]:
    """Every unit signature any sub-model can need: each unit at every size of its axes."""
    out: dict[str, tuple[Unit, tuple[int, ...]]] = {}
    for unit in latency_units(plan):
        axes = unit.axes
        choices = [plan.achievable_units(a) for a in axes]
        for combo in itertools.product(*choices):
            key = unit.sizes(dict(zip(axes, combo, strict=True)))
            out.setdefault(unit.signature(key), (unit, key))
    return out


def _spec_signatures(plan: CostPlan, specs: Iterable[Spec]) -> dict[str, tuple[Unit, tuple[int, ...]]]:
    out: dict[str, tuple[Unit, tuple[int, ...]]] = {}
    for spec in specs:
        sizes = plan.resolve(spec)
        for unit in latency_units(plan):
            if not unit.gate or sizes.runs(unit.gate):
                key = unit.sizes(sizes.units)
                out.setdefault(unit.signature(key), (unit, key))
    return out


def measure_latency_table(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                          backend: str = "torch", batch_size: int = 1, repeats: int = 30, seed: int = 0,
                          threads: int | None = None, specs: Iterable[Spec] | None = None,
                          optimization: str = "all", clock: str = "wall",
                          references: int | Iterable[Spec] = 0,
                          progress: Callable[[str, int, int], None] | None = None) -> LatencyTable:
    """Measure a latency table for ``model`` on this machine.

    Args:
        model: the nested model (only its structure matters: units are built with random weights).
        input_shape: ``(C, H, W)`` of one sample; default: the model's creation arguments.
        backend: ``"torch"`` or ``"onnxruntime"`` (CPU).
        batch_size: batch size of every measurement.
        repeats: interleaved rounds; each entry is the median of its ``repeats`` samples.
        seed: seeds the random unit weights and the visiting order.
        threads: intra-op threads (default: ``torch.get_num_threads()``); recorded in the table.
        specs: measure only the units these sub-models need (default: every size the space allows).
        optimization: ONNX Runtime graph optimization level (``disable|basic|extended|all``).
        references: whole sub-models (specs, or a number of them spread from the smallest to the
            largest) to time, physically sliced, in the same rounds as the units; stored in the table
            so that :meth:`LatencyTable.check` compares predicted and measured latency on this device.
        clock: ``"wall"`` (default) or ``"cpu"``, the calling thread's CPU time, for a shared machine
            where other processes preempt the measurements (needs ``threads=1``; see
            :func:`fn3.cost._timing.time_interleaved`).
        progress: ``progress(stage, done, total)`` callback (stages ``"build"``, ``"time"``).
    """
    if batch_size < 1 or repeats < 1:
        raise ConfigError(f"batch_size and repeats must be >= 1, got {batch_size} and {repeats}")
    threads = torch.get_num_threads() if threads is None else int(threads)
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    check_clock(clock, threads)
    plan = cost_plan(model, input_shape)
    todo = _all_signatures(plan) if specs is None else _spec_signatures(plan, specs)
    space = model_space(model)
    refs = (spread_specs(space, references, seed) if isinstance(references, int)
            else [space.validate(s) for s in references])
    engine = make_backend(backend, threads, optimization)
    names = [EMPTY, *todo]
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = torch.randn(batch_size, *plan.input_shape)
        runs = [engine.prepare(nn.Identity(), (x,))]
        for i, (unit, key) in enumerate(todo.values()):
            runs.append(engine.prepare(*unit.build(key, batch_size)))
            if progress is not None:
                progress("build", i + 1, len(todo) + len(refs))
        for i, spec in enumerate(refs):
            runs.append(engine.prepare(float_submodel(model, spec), (x,)))
            if progress is not None:
                progress("build", len(todo) + i + 1, len(todo) + len(refs))
        report = None if progress is None else lambda d, t: progress("time", d, t)
        timed = time_interleaved(runs, repeats, seed, progress=report, clock=clock)
    stats = [{"median_us": round(med * 1e6, 3), "iqr_us": round(iqr * 1e6, 3)} for med, iqr in timed]
    entries = dict(zip(names, stats[: len(names)], strict=True))
    measured_refs = tuple({"spec": s.to_dict(), **st}
                          for s, st in zip(refs, stats[len(names):], strict=True))
    overhead = entries.pop(EMPTY)["median_us"]
    info = model_info(model)
    measurement = {"repeats": repeats, "seed": seed, "statistic": "median of interleaved rounds",
                   "clock": clock,
                   "model": type(model).__name__ if info is None else info.name,
                   "input_shape": list(plan.input_shape),
                   "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if backend == "onnxruntime":
        measurement["ort_optimization"] = optimization
        measurement["exporter"] = "torch.onnx.export(dynamo=False, opset_version=17)"
    return LatencyTable(backend, batch_size, threads, overhead, entries, device_info(), engine.versions(),
                        measurement, measured_refs)
