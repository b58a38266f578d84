"""Space / Spec: construction, validation, JSON round-trip, parsing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fn3
from fn3.errors import SpecError
from fn3.spec import Axis, Space, Spec, parse_spec

SPACE = Space(
    [
        Axis("fc1.width", "neurons", 64, step=16),
        Axis("fc1.wbits", "bits", 8, min_size=2),
        Axis("stage1.width", "channels", 16, step=4, min_size=8),
        Axis("stage1.depth", "layers", 3),
        Axis("block.paths", "paths", 8),
    ]
)


def test_axis_blocks_and_units():
    ax = Axis("w", "channels", 10, step=4)
    assert ax.num_blocks == 3
    assert [len(ax.block_units(b)) for b in range(3)] == [4, 4, 2]
    assert ax.units((0, 2)) == 6
    with pytest.raises(fn3.SpecError, match="kind"):
        Axis("w", "width", 10)
    with pytest.raises(fn3.SpecError, match="min_size"):
        Axis("w", "channels", 10, min_size=11)


def test_largest_smallest_and_sizes():
    big, small = SPACE.largest(), SPACE.smallest()
    assert big.size("fc1.width", SPACE) == 64 and small.size("fc1.width", SPACE) == 16
    assert small.size("fc1.wbits", SPACE) == 2
    assert small.size("stage1.width", SPACE) == 8
    assert big.is_prefix and small.is_prefix
    assert SPACE.validate(big) is big


def test_spec_is_frozen_hashable_and_order_free():
    a = Spec({"x": [1, 0], "y": (0,)})
    b = Spec([("y", [0]), ("x", (0, 1))])
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.keep = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fc1.width": (0, 9)}, "fc1.width"),
        ({"stage1.width": (0, 2)}, "first 2 block"),
        ({"fc1.wbits": (1, 2)}, "fc1.wbits"),
    ],
)
def test_validation_names_the_axis(change, message):
    spec = SPACE.largest().replace(**{}).as_dict()
    spec.update(change)
    with pytest.raises(fn3.SpecError, match=message):
        SPACE.validate(Spec(spec))


def test_validation_missing_and_unknown_axes():
    d = SPACE.largest().as_dict()
    del d["fc1.width"]
    with pytest.raises(fn3.SpecError, match="no entry for axis 'fc1.width'"):
        SPACE.validate(Spec(d))
    d = SPACE.largest().as_dict()
    d["nope"] = (0,)
    with pytest.raises(fn3.SpecError, match="'nope' is not in the model"):
        SPACE.validate(Spec(d))


def test_non_prefix_sets_are_valid_and_serialised_as_blocks():
    spec = SPACE.largest().with_blocks("fc1.width", (0, 2, 3))
    assert not spec.is_prefix
    SPACE.validate(spec)
    data = spec.to_dict(SPACE)
    assert data["axes"]["fc1.width"] == {"blocks": [0, 2, 3]}
    assert data["axes"]["fc1.wbits"] == {"size": 8}
    assert Spec.from_dict(data, SPACE) == spec


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_json_round_trip(seed, with_space):
    spec = SPACE.sample(torch.Generator().manual_seed(seed))
    text = spec.to_json(SPACE if with_space else None)
    assert Spec.from_json(text, SPACE) == spec
    assert Spec.from_json(spec.to_json(SPACE), SPACE).to_json(SPACE) == text or not with_space


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "not an fn3 spec"),
        ('{"format": "fn3.spec", "version": 99, "axes": {}}', "version 99"),
        ('{"format": "fn3.spec", "version": 1, "axes": {}, "x": 1}', "unknown keys"),
        ('{"format": "fn3.spec", "version": 1, "axes": {"fc1.width": {"size": 100}}}', "larger than"),
        ('{"format": "fn3.spec", "version": 1, "axes": {"fc1.width": {"size": 20}}}', "multiple of its step"),
        ('{"format": "fn3.spec", "version": 1, "axes": {"fc1.width": {"bogus": 1}}}', "bad entry"),
    ],
)
def test_bad_json(text, message):
    with pytest.raises(fn3.SpecError, match=message):
        Spec.from_json(text, SPACE)


def test_uniform_and_parse():
    spec = SPACE.uniform({"neurons": 0.5, "bits": 4, "layers": 0.34})
    assert spec.size("fc1.width", SPACE) == 32
    assert spec.size("fc1.wbits", SPACE) == 4
    assert spec.size("stage1.depth", SPACE) == 1
    assert parse_spec("neurons=0.5,bits=4,layers=0.34", SPACE) == spec
    assert parse_spec("largest", SPACE) == SPACE.largest()
    assert parse_spec("smallest", SPACE) == SPACE.smallest()
    mixed = parse_spec("bits=4,fc1.width=16", SPACE)
    assert mixed.size("fc1.width", SPACE) == 16 and mixed.size("fc1.wbits", SPACE) == 4
    for bad, msg in [
        ("bits=9", "bits"),
        ("neurons=1.5", r"\(0, 1\]"),
        ("foo=1", "neither a kind"),
        ("neurons", "expected largest"),
        ("neurons=abc", "not a number"),
    ]:
        with pytest.raises(fn3.SpecError, match=msg):
            parse_spec(bad, SPACE)


def test_spec_file(tmp_path):
    spec = SPACE.uniform({"channels": 0.5})
    path = tmp_path / "s.json"
    path.write_text(spec.to_json(SPACE))
    assert parse_spec(str(path), SPACE) == spec


def test_space_json_round_trip():
    assert Space.from_dict(SPACE.to_dict()) == SPACE


def test_parse_spec_sets_weight_and_activation_bits_apart():
    """``wbits=`` / ``abits=`` set every weight / activation bits axis over ``bits``; a named axis wins;
    a model without such axes, or a bit count out of range, is a clear SpecError."""
    space = Space([Axis("a.width", "channels", 8, step=2), Axis("a.wbits", "bits", 8, min_size=2),
                   Axis("a.abits", "bits", 8, min_size=2), Axis("b.wbits", "bits", 8, min_size=2),
                   Axis("b.abits", "bits", 8, min_size=2)])
    spec = parse_spec("bits=2,abits=4", space)
    assert {n: spec.size(n, space) for n in spec.names() if "bits" in n} == {
        "a.wbits": 2, "b.wbits": 2, "a.abits": 4, "b.abits": 4}
    assert spec.size("a.width", space) == 8
    spec = parse_spec("wbits=3,b.wbits=5,channels=0.5", space)
    assert [spec.size(n, space) for n in ("a.wbits", "b.wbits", "a.abits", "a.width")] == [3, 5, 8, 4]
    assert parse_spec("wbits=4,abits=4", space) == parse_spec("bits=4", space)
    with pytest.raises(SpecError, match=r"abits=9.*whole number of bits in 2\.\.8"):
        parse_spec("abits=9", space)
    with pytest.raises(SpecError, match=r"abits=1.*2\.\.8"):
        parse_spec("abits=1", space)
    plain = Space([Axis("a.width", "channels", 8, step=2)])
    with pytest.raises(SpecError, match="no wbits axes.*nests channels"):
        parse_spec("wbits=2", plain)
