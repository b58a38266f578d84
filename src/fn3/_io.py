"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Write to a temporary file in the destination's directory, flush and fsync it, then ``os.replace`` it
over the destination (atomic on POSIX), and fsync the directory so the rename itself survives a power
loss.

:func:`loads_untrusted` is the read-side companion: JSON from a file fn3 did not necessarily write
(damaged, edited or crafted), with every way ``json.loads`` can fail turned into one
:class:`~fn3.errors.FileFormatError` that names the file.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "out.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "out.txt").read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from fn3.errors import FileFormatError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "loads_untrusted", "one_line", "or_list"]


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def one_line(text: object, limit: int = 160) -> str:
    """``text`` (e.g. a library's exception message quoting file content) on one shortened line.

    fn3's errors are one line; a message that embeds what a corrupt file holds must not break that.

    Example:
        >>> one_line("bad header:\\n  - gz: empty file")
        'bad header: - gz: empty file'
    """
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def or_list(names: Sequence[str]) -> str:
    """The choices of a setting for an error message's "expected ...".

    Example:
        >>> or_list(("auto", "even", "ends"))
        'auto, even or ends'
    """
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def loads_untrusted(data: str | bytes, path: str | Path, what: str) -> object:
    """Parse JSON ``data`` read from the file ``path``; any failure is a one-line FileFormatError.

    ``json.loads`` fails in more ways than ``JSONDecodeError`` on a damaged or crafted file: bytes that
    are not UTF-8 (``UnicodeDecodeError``), nesting deeper than the interpreter's recursion limit
    (``RecursionError``, e.g. ``[[[[...`` 100,000 levels deep), an integer of more than 4,300 digits
    (``ValueError``). Each becomes ``FileFormatError("<path>: <what> is not valid JSON (<reason>)")``,
    so a loader needs one call and no ``except`` list of its own. The result is any JSON value: the
    caller still checks that it has the expected structure.

    Example:
        >>> loads_untrusted(b'{"bits": [2, 4]}', "front.json", "search front")
        {'bits': [2, 4]}
        >>> loads_untrusted("[" * 100_000, "front.json", "search front")
        Traceback (most recent call last):
        ...
        fn3.errors.FileFormatError: front.json: search front is not valid JSON (nested too deeply)
        >>> loads_untrusted(b"\\xff", "front.json", "search front")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fn3.errors.FileFormatError: front.json: search front is not valid JSON ('utf-8' codec can't ...)
    """
    try:
        return json.loads(data)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        reason = one_line(err, 100)
    raise FileFormatError(f"{path}: {what} is not valid JSON ({reason})")
