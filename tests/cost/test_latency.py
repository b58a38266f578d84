"""Latency tables: real measurements on both back-ends, predictions, JSON files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fn3
from fn3.cost import LatencyTable, cost, load_latency_table, measure_latency_table
from fn3.cost._plain import float_submodel
from fn3.cost.latency import prediction_quality
from fn3.cost.plan import cost_plan
from fn3.cost.units import latency_units
from fn3.errors import ConfigError, FileFormatError

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    # Small enough to time every unit at every size in about a second.
    return fn3.create_model("resnet20", input_size=8, width=8, width_blocks=2).eval()


@pytest.fixture(scope="module")
def torch_table(net: torch.nn.Module) -> LatencyTable:
    return measure_latency_table(net, SHAPE, backend="torch", repeats=5, threads=1, clock="cpu",
                                 references=3)


def test_table_covers_every_unit_at_every_size(net: torch.nn.Module, torch_table: LatencyTable) -> None:
    assert torch_table.missing(net, SHAPE) == []
    # Stage widths and block widths each have 2 sizes: a 3x3 conv inside a block has 2 x 2 entries.
    sigs = [s for s in torch_table.entries if s.startswith("conv2d(") and ",k=3,s=1," in s and "h=8" in s]
    assert {(s.split("in=")[1].split(",")[0], s.split("out=")[1].split(",")[0]) for s in sigs} >= {
        ("4", "4"), ("4", "8"), ("8", "4"), ("8", "8")}
    assert all(e["median_us"] >= 0 and e["iqr_us"] >= 0 for e in torch_table.entries.values())
    assert torch_table.batch_size == 1 and torch_table.threads == 1 and torch_table.backend == "torch"
    assert torch_table.versions["torch"] == torch.__version__
    assert torch_table.measurement["clock"] == "cpu"


def test_prediction_is_overhead_plus_the_kept_units(net: torch.nn.Module, torch_table: LatencyTable) -> None:
    space = fn3.space(net)
    plan = cost_plan(net, SHAPE)
    for spec in (space.largest(), space.smallest(), space.uniform({"layers": 0.34})):
        sizes = plan.resolve(spec)
        by_hand = torch_table.overhead_us
        for unit in latency_units(plan):
            if sizes.runs(unit.gate):
                us = torch_table.entries[unit.signature(unit.sizes(sizes.units))]["median_us"]
                by_hand += max(us - torch_table.overhead_us, 0.0)
        got = cost(net, spec, "latency", table=torch_table, input_shape=SHAPE)
        assert got == pytest.approx(by_hand / 1000.0)
        assert torch_table.predict(net, spec, SHAPE) == got
    # Dropping residual blocks removes their units: never slower.
    full = torch_table.predict(net, space.largest(), SHAPE)
    assert torch_table.predict(net, space.uniform({"layers": 0.34}), SHAPE) < full


def test_reference_sub_models_are_timed_with_the_table(net: torch.nn.Module,
                                                      torch_table: LatencyTable) -> None:
    space = fn3.space(net)
    rows = torch_table.check(net, SHAPE)
    assert [s for s, _, _ in rows][:2] == [space.smallest(), space.largest()] and len(rows) == 3
    for spec, predicted, measured in rows:
        assert predicted == torch_table.predict(net, spec, SHAPE) and measured > 0
    rho, err = prediction_quality([(None, 1.0, 1.0), (None, 2.0, 2.5), (None, 3.0, 2.0)])
    assert rho == pytest.approx(0.5) and err == pytest.approx(0.2)


def test_float_submodel_computes_what_the_nested_model_computes() -> None:
    model = fn3.create_model("resnext_tiny", input_size=8, levels=("channels", "paths", "layers")).eval()
    space = fn3.space(model)
    x = torch.randn(2, *SHAPE)
    for spec in (space.largest(), space.uniform({"channels": 0.5, "paths": 0.25, "layers": 0.5})):
        with torch.no_grad(), fn3.active(model, spec):
            want = model(x)
        sub = float_submodel(model, spec)
        assert torch.allclose(sub(x), want, atol=1e-5)
        assert sum(p.numel() for p in sub.parameters()) == cost(model, spec, "params", input_shape=SHAPE)
    assert fn3.current_spec(model) == space.largest()  # the model itself is untouched


def test_onnxruntime_table_records_its_session_settings(net: torch.nn.Module) -> None:
    space = fn3.space(net)
    specs = [space.largest(), space.smallest()]
    table = measure_latency_table(net, SHAPE, backend="onnxruntime", repeats=3, threads=1, specs=specs)
    assert table.backend == "onnxruntime" and table.threads == 1
    assert "onnxruntime" in table.versions and table.measurement["ort_optimization"] == "all"
    assert table.overhead_us > 0  # one session.run of an Identity graph
    # No order between the two predictions is asserted: on an 8x8 input every entry is a few
    # microseconds beside a ~25 us session overhead, and a busy machine reorders them (a timing is a
    # benchmark, not a test). What is deterministic: a prediction is the overhead plus each unit's
    # time beyond it, so it is at least the overhead and moves by what one entry moves.
    before = [table.predict(net, s, SHAPE) for s in specs]
    assert all(p >= table.overhead_us / 1000 for p in before)
    data = table.to_dict()
    for entry in data["entries"].values():
        entry["median_us"] = float(entry["median_us"]) + 1000.0  # every unit 1 ms slower
    slower = LatencyTable.from_dict(data)
    after = [slower.predict(net, s, SHAPE) for s in specs]
    assert after[0] - before[0] > after[1] - before[1] >= 1.0  # the largest model has more units
    # Measured for two specs only: another one may need entries the table lacks.
    half = space.uniform({"channels": 0.5, "layers": 1.0})
    with pytest.raises(ConfigError, match="latency table has no entry conv2d"):
        table.predict(net, half, SHAPE)


def test_json_round_trip_is_atomic_and_exact(tmp_path: Path, torch_table: LatencyTable) -> None:
    path = torch_table.save(tmp_path / "sub" / "table.json")
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]  # no temp file left behind
    data = json.loads(path.read_text())
    assert data["format"] == "fn3.latency-table" and data["version"] == 1
    again = load_latency_table(path)
    assert again.to_dict() == torch_table.to_dict()
    assert again == torch_table and len(again.references) == 3
    assert again.check(fn3.create_model("resnet20", input_size=8, width=8, width_blocks=2), SHAPE)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="other"), "not an fn3 latency table"),
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d.update(backend="tvm"), "backend 'tvm' is not one of"),
    (lambda d: d.update(batch_size=0), '"batch_size" must be a positive integer'),
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d["entries"].update({"relu(c=1,h=1,w=1)": {"median_us": -1}}), "entry 'relu"),
    (lambda d: d.update(entries={}), '"entries" must be a non-empty object'),
    (lambda d: d.update(references=[{"spec": {}}]), '"references" must be a list'),
])
def test_bad_table_files_name_the_file(tmp_path: Path, torch_table: LatencyTable, mutate, message) -> None:
    data = torch_table.to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match=f"{path}: .*{message}"):
        load_latency_table(path)


def test_unreadable_table_files(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such latency table file"):
        load_latency_table(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(FileFormatError, match=f"{broken}: the latency table is not valid JSON"):
        load_latency_table(broken)


def test_bad_measurement_arguments(net: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="unknown latency backend 'tensorrt'"):
        measure_latency_table(net, SHAPE, backend="tensorrt")
    with pytest.raises(ConfigError, match="clock='cpu' .* needs threads=1"):
        measure_latency_table(net, SHAPE, clock="cpu", threads=2)
    with pytest.raises(ConfigError, match="batch_size and repeats must be >= 1"):
        measure_latency_table(net, SHAPE, batch_size=0)


def test_cli_writes_a_table_without_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import fn3.cli.cost  # noqa: F401  (registers the command until the lead imports it in fn3.cli)
    from fn3.cli._app import main

    out = tmp_path / "t.json"
    code = main(["latency-table", "--model", "mlp", "--input-shape", "1,8,8", "--out", str(out),
                 "--repeats", "2", "--threads", "1", "--batch-size", "4", "--check", "0"])
    assert code == 0, capsys.readouterr()
    table = load_latency_table(out)
    assert table.batch_size == 4 and table.measurement["model"] == "mlp"
    assert "predicted latency" in capsys.readouterr().out
    assert main(["latency-table", "--model", "mlp", "--input-shape", "1,8", "--out", str(out)]) == 2
    assert "expected C,H,W" in capsys.readouterr().err
    assert main(["latency-table", "--out", str(out)]) == 2
    assert "give either a run directory or --model" in capsys.readouterr().err


def test_cli_reads_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import fn3.cli.cost  # noqa: F401
    from fn3.cli._app import main
    from fn3.run import load_run

    run = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--batch-size", "128",
                 "--model-arg", "hidden=[16]", "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "table.json"
    assert main(["latency-table", str(run), "--out", str(out), "--repeats", "2", "--threads", "1",
                 "--backend", "onnxruntime", "--check", "3"]) == 0, capsys.readouterr().err
    assert "check on 3 measured sub-models: rank correlation" in capsys.readouterr().out
    table = load_latency_table(out)
    model = load_run(run).model
    assert table.backend == "onnxruntime" and table.missing(model) == []
    assert cost(model, fn3.space(model).largest(), "latency", table=table) > 0
    assert main(["latency-table", str(run), "--model", "mlp", "--out", str(out)]) == 2
