"""Never trust a text file: spec JSON and command-line specs, TOML/JSON train configs.

A bad spec is a :class:`fn3.errors.SpecError`, a bad config a :class:`fn3.errors.ConfigError`,
whatever the file holds (random text, a damaged valid file, a value of the wrong type, nesting deep
enough to overflow Python's parser); an accepted one is fully valid.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
from fuzz_strategies import FUZZ, corrupted, deep_json, edited_json, expect_error, expect_only, json_values
from hypothesis import example, given, settings
from hypothesis import strategies as st

import fn3
from fn3.config import TrainConfig, load_config_file
from fn3.errors import ConfigError, SpecError
from fn3.spec import KINDS, Spec, parse_spec


@pytest.fixture(scope="module")
def space() -> fn3.Space:
    """A space with every kind of axis (channels, paths, layers, bits)."""
    model = fn3.create_model("resnext_tiny", num_classes=10, in_channels=3)
    return fn3.space(model)


def _specs(space: fn3.Space) -> list[Spec]:
    ax = next(a for a in space if a.num_blocks - a.min_blocks >= 2)
    some = space.fill({ax.name: [*range(ax.min_blocks), ax.num_blocks - 1]})  # not a prefix
    return [space.largest(), space.smallest(), space.uniform({"channels": 0.5}), some]


# -- spec JSON ----------------------------------------------------------------------------------------


@settings(max_examples=250, **FUZZ)
@given(data=st.data())
def test_spec_json_damaged(space: fn3.Space, data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from(_specs(space)))
    text = spec.to_json(space) if data.draw(st.booleans()) else spec.to_json()
    damaged = data.draw(corrupted(text.encode(), header=32)).decode("utf-8", "replace")
    out = expect_only(SpecError, lambda: Spec.from_json(damaged, space), seconds=5)
    if isinstance(out, Spec):
        assert space.validate(out) is out


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_spec_json_edited(space: fn3.Space, data: st.DataObject) -> None:
    """A structurally plausible edit: any value of the spec document replaced by any JSON value."""
    spec = data.draw(st.sampled_from(_specs(space)))
    doc = data.draw(edited_json(spec.to_dict(space if data.draw(st.booleans()) else None)))
    text = json.dumps(doc)
    for sp in (space, None):
        out = expect_only(SpecError, lambda sp=sp: Spec.from_json(text, sp), seconds=5)
        if isinstance(out, Spec) and sp is not None:
            assert sp.validate(out) is out


@pytest.mark.parametrize("value", [10**12, 2**62, 10**30])
@pytest.mark.parametrize("with_space", [True, False])
def test_spec_huge_prefix_is_quick(space: fn3.Space, value: int, with_space: bool) -> None:
    """``{"prefix": 10**30}`` must not try to build a tuple of 10**30 block indices."""
    name = space.axes[0].name
    doc = space.largest().to_dict()
    doc["axes"][name] = {"prefix": value}
    expect_error(  # the spec is a string here, not a file: the message names the axis
        SpecError,
        lambda: Spec.from_json(json.dumps(doc), space if with_space else None),
        names=name,
        seconds=2,
    )


def test_spec_json_too_deep(space: fn3.Space) -> None:
    # A string, not a file: nothing to name.
    expect_error(SpecError, lambda: Spec.from_json(deep_json(), space), names=None)
    expect_error(SpecError, lambda: Spec.from_json('{"axes": ' + deep_json() + "}", space), names=None)


_SPEC_WORDS = [
    "largest",
    "smallest",
    "full",
    *KINDS,
    "=",
    ",",
    ".",
    "0.5",
    "1",
    "4",
    "-1",
    "1e400",
    "nan",
    "inf",
    "0x10",
    "stage1.width",
    "stem.width",
    ".json",
    "/",
    " ",
    "\x00",
    "é",
]


@settings(max_examples=300, **FUZZ)
@given(
    text=st.one_of(
        st.lists(st.sampled_from(_SPEC_WORDS), max_size=12).map("".join),
        st.text(max_size=40),
        st.text(alphabet="ab/.", min_size=300, max_size=5000),  # longer than a file name may be
    )
)
@example(text="a" * 5000)
@example(text="x" * 300 + ".json")
@example(text="a\x00.json")
def test_parse_spec_text(space: fn3.Space, text: str) -> None:
    out = expect_only(SpecError, lambda: parse_spec(text, space), seconds=5)
    if isinstance(out, Spec):
        assert space.validate(out) is out


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_parse_spec_file_damaged(
    tmp_path_factory: pytest.TempPathFactory, space: fn3.Space, data: st.DataObject
) -> None:
    """A spec JSON file given on the command line: any bytes (including invalid UTF-8)."""
    spec = data.draw(st.sampled_from(_specs(space)))
    path = tmp_path_factory.mktemp("spec") / "spec.json"
    path.write_bytes(data.draw(corrupted(spec.to_json(space).encode(), header=32)))
    out = expect_only(SpecError, lambda: parse_spec(str(path), space), seconds=5)
    if isinstance(out, Spec):
        assert space.validate(out) is out


def test_parse_spec_unreadable_file(tmp_path: Path, space: fn3.Space) -> None:
    (tmp_path / "dir.json").mkdir()
    expect_error(SpecError, lambda: parse_spec(str(tmp_path / "dir.json"), space), names="dir.json")
    (tmp_path / "latin1.json").write_bytes(b'{"format": "fn3.spec\xe9"}')
    latin1 = str(tmp_path / "latin1.json")
    expect_error(SpecError, lambda: parse_spec(latin1, space), names="latin1.json")


# -- train configs ------------------------------------------------------------------------------------

_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
_GOOD = TrainConfig(model="mlp", model_kwargs={"hidden": [32]}, epochs=2, mean=(0.5,), std=(0.25,))


def _well_typed(cfg: TrainConfig) -> None:
    """An accepted config has values of the declared types (so training cannot trip over them)."""
    for name in (
        "epochs",
        "batch_size",
        "warmup_steps",
        "sandwich_n",
        "draws",
        "recalibrate_batches",
        "checkpoint_every",
        "seed",
    ):
        assert type(getattr(cfg, name)) is int, name
    for name in ("val_fraction", "momentum", "weight_decay", "label_smoothing", "rho",
                 "distill_start", "full_first"):
        assert type(getattr(cfg, name)) in (int, float), name
    assert cfg.lr is None or type(cfg.lr) in (int, float)  # None: the measured rate (resolved_lr)
    for name in ("model", "data", "augment", "optimizer", "rule"):
        assert type(getattr(cfg, name)) is str, name
    for name in ("dist", "tie"):  # None: the rule's own (TrainConfig.sampler)
        assert getattr(cfg, name) is None or type(getattr(cfg, name)) is str, name
    assert all(type(v) is str for v in cfg.sampler)
    assert type(cfg.distill) is bool
    assert all(type(s) is str for s in cfg.eval_specs)
    assert cfg.levels is None or all(type(s) is str for s in cfg.levels)
    assert isinstance(cfg.model_kwargs, dict)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@settings(max_examples=400, **FUZZ)
@given(field=st.sampled_from(_FIELDS), value=json_values(max_leaves=4))
@example(field="epochs", value="3")
@example(field="lr", value="0.1")
@example(field="levels", value=5)
@example(field="model_kwargs", value=[1])
@example(field="seed", value=2**70)
@example(field="epochs", value=float("nan"))
def test_config_wrong_type(field: str, value: object) -> None:
    """Any JSON value for any field: a ConfigError naming the field, or a well-typed config."""
    out = expect_only(ConfigError, lambda: _GOOD.merged({field: value}))
    if isinstance(out, ConfigError):
        assert field in str(out) or "rule=fixed" in str(out) or ">= 0" in str(out)
    else:
        _well_typed(out)


_TOML = """model = "mlp"
data = "digits"
epochs = 3
lr = 0.05
levels = ["neurons", "bits"]
eval_specs = ["largest", "smallest"]
mean = [0.5]
[model_kwargs]
hidden = [32, 32]
"""


@settings(max_examples=250, **FUZZ)
@given(
    suffix=st.sampled_from([".toml", ".json"]),
    data=st.data(),
)
@example(suffix=".json", data=None)
def test_config_file_damaged(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, data: st.DataObject | None
) -> None:
    base = _TOML if suffix == ".toml" else json.dumps(tomllib.loads(_TOML))
    path = tmp_path_factory.mktemp("cfg") / f"train{suffix}"
    path.write_bytes(base.encode() if data is None else data.draw(corrupted(base.encode(), 48)))

    def load() -> TrainConfig:
        return TrainConfig().merged(load_config_file(path))

    out = expect_only(ConfigError, load, seconds=5)
    if isinstance(out, TrainConfig):
        _well_typed(out)


@settings(max_examples=150, **FUZZ)
@given(doc=edited_json(tomllib.loads(_TOML)))
def test_config_file_edited(tmp_path_factory: pytest.TempPathFactory, doc: object) -> None:
    path = tmp_path_factory.mktemp("cfg") / "train.json"
    path.write_text(json.dumps(doc))
    out = expect_only(ConfigError, lambda: TrainConfig().merged(load_config_file(path)))
    if isinstance(out, TrainConfig):
        _well_typed(out)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_file_too_deep(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text(deep_json() if suffix == ".json" else "a = " + deep_json(20_000))
    expect_error(ConfigError, lambda: load_config_file(path), names=path)


@pytest.mark.parametrize("doc", [[], "epochs", 3, None, [["epochs", 3]]])
def test_config_not_a_table(doc: object) -> None:
    # A value, not a file (load_config_file names the file: test_config_file_too_deep).
    expect_error(ConfigError, lambda: TrainConfig.from_dict(doc), names=None)
    expect_error(ConfigError, lambda: TrainConfig().merged(doc), names=None)
