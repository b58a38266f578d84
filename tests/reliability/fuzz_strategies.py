"""Hypothesis strategies that damage files, and the one check every loader must pass.

:func:`corrupted` turns the bytes of a real, valid file into a damaged copy (flipped bytes, a
truncation, a run of zeros or 0xFF over a length field, inserted garbage, or random bytes).
:func:`expect_only` runs a loader under a time bound and fails the test unless it either succeeds or
raises the one documented :class:`fn3.errors.Fn3Error` subclass with a one-line message: right for a
fuzzed input, which a random edit may have left valid. A test that feeds one fixed, known-bad input
uses :func:`expect_error` instead, which also fails the test when the loader *accepts* the input (with
``expect_only`` such a test would pass against a loader that accepts every file).
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st

T = TypeVar("T")

# Fuzzing budget: every example is derandomized (the same examples on every run).
FUZZ = {"derandomize": True, "deadline": None, "database": None}


class Hang(BaseException):
    """Raised by the time bound. A BaseException, so a loader's ``except Exception`` cannot eat it."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM; main thread only)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def expect_only(
    error: type[Exception] | tuple[type[Exception], ...],
    load: Callable[[], T],
    *,
    names: str | Path | None = None,
    seconds: float = 10.0,
) -> T | Exception:
    """``load()``'s result, or the documented ``error`` it raised; anything else fails the test.

    Args:
        error: the allowed exception type(s).
        load: the loader call.
        names: if given, an error message must mention it (the file the user has to look at).
        seconds: the per-example time bound (a loader must never hang on a bad file).
    """
    try:
        with time_bound(seconds):
            return load()
    except Hang as err:
        pytest.fail(f"loader hung on a bad file: {err}")
    except error as err:
        message = str(err)
        assert message and "\n" not in message, f"error is not one line: {message!r}"
        if names is not None:
            assert str(names) in message, f"error does not name {names}: {message!r}"
        return err
    except Exception as err:  # the point of these tests: no other exception type may escape
        pytest.fail(f"{type(err).__name__} escaped instead of {error}: {err!r}")


def expect_error(
    error: type[Exception] | tuple[type[Exception], ...],
    load: Callable[[], object],
    *,
    names: str | Path | None,
    seconds: float = 10.0,
) -> Exception:
    """The documented ``error`` that ``load()`` must raise on a fixed, known-bad input.

    Fails the test if ``load()`` returns (the bad input was accepted), hangs, or raises anything else,
    or if the message is not one line or does not name ``names``.

    Args:
        error: the documented exception type(s) (docs/errors.md).
        load: the loader call.
        names: what the message must mention: the file the user has to look at, where docs/errors.md
            promises it (data files, exported models, nested files, checkpoints, run directories,
            tables, config files). ``None`` only for an input that is not a file (a spec string, a
            config value), said explicitly at the call.
        seconds: the time bound (a loader must never hang on a bad file).

    Example:
        >>> expect_error(ValueError, lambda: int("x"), names="'x'")
        ValueError("invalid literal for int() with base 10: 'x'")
    """
    out = expect_only(error, load, names=names, seconds=seconds)
    if not isinstance(out, Exception):
        pytest.fail(f"a known-bad input was accepted: the loader returned {type(out).__name__}")
    return out


@st.composite
def corrupted(draw: st.DrawFn, base: bytes, header: int = 64) -> bytes:
    """A damaged copy of ``base``.

    ``header`` is the length of the prefix that parsers branch on; a share of the byte flips lands
    there, where a random position would rarely reach for a large file.
    """
    n = len(base)
    kind = draw(
        st.sampled_from(["flip", "flip_header", "truncate", "run", "insert", "delete", "random"])
    )
    data = bytearray(base)
    if kind in ("flip", "flip_header"):
        hi = min(header, n) - 1 if kind == "flip_header" else n - 1
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, hi))
            data[pos] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[draw(st.integers(0, n - 1)) :]
    elif kind == "run":  # zeros or 0xFF over a length/offset field
        start = draw(st.integers(0, n - 1))
        length = draw(st.integers(1, 16))
        data[start : start + length] = bytes([draw(st.sampled_from([0, 0xFF]))]) * len(
            data[start : start + length]
        )
    elif kind == "insert":
        pos = draw(st.integers(0, n))
        data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
    elif kind == "delete":
        start = draw(st.integers(0, n - 1))
        del data[start : start + draw(st.integers(1, 64))]
    else:
        return draw(st.binary(max_size=max(64, min(n, 4096))))
    return bytes(data)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (what a hand-edited or hostile JSON file may hold)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12)
    )
    return st.recursive(
        scalars,
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def deep_json(depth: int = 100_000) -> str:
    """JSON nested ``depth`` levels deep (``[[[...]]]``): Python's parser raises RecursionError."""
    return "[" * depth + "]" * depth


@st.composite
def edited_json(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one value somewhere replaced by an arbitrary JSON value (a plausible bad edit)."""
    paths: list[tuple] = []

    def walk(node: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(doc, ())
    path = draw(st.sampled_from(paths))
    value = draw(json_values())
    if not path:
        return value
    doc = json.loads(json.dumps(doc))  # a deep copy
    node = doc
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict) and draw(st.booleans()) and draw(st.booleans()):
        del node[path[-1]]  # sometimes drop the key instead
    else:
        node[path[-1]] = value
    return doc


def leftovers(directory: Path) -> list[str]:
    """Temporary files an interrupted atomic write would leave behind in ``directory``."""
    return sorted(p.name for p in Path(directory).rglob("*") if p.name.endswith(".tmp"))
