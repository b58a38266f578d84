"""`ScoreJournal`: a search's scores on disk, so a killed search resumes without re-scoring.

Scoring sub-models is the whole cost of a search; choosing the next candidates is cheap and, given the
scores, deterministic (every strategy draws from a generator seeded by ``seed``). So a search is made
resumable by persisting *the scores*, not the strategy's state: the journal is an append-only JSON
Lines file, one line per scored spec, written and fsynced after every scored batch. A resumed search
preloads the :class:`~fn3.search.Evaluator`'s cache from it and replays the same strategy; every
decision comes out the same, the specs already scored are answered from the cache, and only the rest
are scored. The front is identical to an uninterrupted search's (JSON floats round-trip exactly).

Why a journal rather than a checkpoint of the strategy: it needs no cooperation from the strategies
(user-registered ones included), it survives SIGKILL at any byte (a torn last line is dropped), and one
journal serves every strategy, metric and budget run over the same model and data.

The first line is a header naming what the scores depend on (a fingerprint of the model's weights and
the validation/calibration tensors, and the scoring settings); a journal written for anything else is
refused rather than silently reused.

Example:
    >>> import tempfile, pathlib, fn3
    >>> from fn3.search.journal import ScoreJournal
    >>> space = fn3.Space([fn3.Axis("w", "neurons", 4)])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scores.jsonl"
    >>> with ScoreJournal.open(path, space, "abc123") as j:
    ...     j.append([space.largest()], [0.75])
    >>> ScoreJournal.open(path, space, "abc123", resume=True).scores == {space.largest(): 0.75}
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from fn3._io import atomic_write_text, one_line
from fn3.errors import ConfigError, FileFormatError, SpecError
from fn3.spec import Space, Spec

__all__ = ["JOURNAL_FORMAT", "ScoreJournal", "fingerprint"]

JOURNAL_FORMAT = "fn3.search-journal"
JOURNAL_VERSION = 1
# A line longer than this cannot be one spec's score (specs have at most a few thousand blocks).
_MAX_LINE = 1 << 20


def fingerprint(*parts: Any) -> str:
    """SHA-256 (hex) of tensors, modules' state, numbers and strings, in order.

    Used to tie a journal to the exact model weights and data it scored.

    Example:
        >>> import torch
        >>> fingerprint(torch.ones(2), "x") == fingerprint(torch.ones(2), "x") != fingerprint(torch.zeros(2))
        True
    """
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.nn.Module):
            for name, t in x.state_dict().items():
                h.update(name.encode())
                feed(t)
        elif isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, list | tuple):
            h.update(b"[")
            for item in x:
                feed(item)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    for p in parts:
        feed(p)
    return h.hexdigest()


class ScoreJournal:
    """Append-only record of ``spec -> score`` for one model, data and scoring setup.

    Use :meth:`open`; :attr:`scores` holds what a resumed journal already had.
    """

    def __init__(self, path: Path, space: Space, key: str, scores: dict[Spec, float],
                 handle: IO[str] | None):
        self.path, self.space, self.key = path, space, key
        self.scores = scores
        self._f = handle

    @classmethod
    def open(cls, path: str | Path, space: Space, key: str, *, resume: bool = False,
             meta: Mapping[str, Any] | None = None, write: bool = True) -> ScoreJournal:
        """Open ``path`` for appending.

        Args:
            path: the journal file (conventionally ``<out>/scores-val.jsonl``).
            space: the model's space (specs are validated against it on reading).
            key: what the scores depend on (e.g. :func:`fingerprint` of model and data); a journal
                with another key is refused.
            resume: read the existing journal's scores; otherwise start a new, empty journal.
            meta: JSON-ready notes stored in the header (never compared).
            write: ``False`` reads only (the other ranks of a distributed search: rank 0 writes).

        Raises:
            ConfigError: ``resume`` and the journal was written for another model, data or setup.
            FileFormatError: ``resume`` and the file is not a journal (names the file).
        """
        path = Path(path)
        scores: dict[Spec, float] = {}
        header = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "key": key, "meta": dict(meta or {})}
        if resume and path.exists():
            header, scores = _read(path, space, key)
        if write:
            # Rewrite what was read (header + complete entries): a line torn by a kill mid-write is
            # dropped here, so appending never glues new entries to it.
            lines = [json.dumps(header, sort_keys=True), *(_line(s, a) for s, a in scores.items())]
            atomic_write_text(path, "\n".join(lines) + "\n")
        handle = open(path, "a", encoding="utf-8") if write else None  # noqa: SIM115  (see close())
        return cls(path, space, key, scores, handle)

    def append(self, specs: Sequence[Spec], scores: Sequence[float]) -> None:
        """Record one scored batch and make it durable (flush + fsync) before returning."""
        lines = []
        for s, a in zip(specs, scores, strict=True):
            lines.append(_line(s, a))
            self.scores[s] = float(a)
        if lines and self._f is not None:
            self._f.write("\n".join(lines) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def __enter__(self) -> ScoreJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(spec: Spec, acc: float) -> str:
    keep = {name: list(blocks) for name, blocks in spec}
    return json.dumps({"spec": keep, "acc": float(acc)}, separators=(",", ":"))


def _read(path: Path, space: Space, key: str) -> tuple[dict[str, Any], dict[Spec, float]]:
    """The scores of a journal; a torn (partial) line is skipped, anything else wrong is an error."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FileFormatError(f"cannot read search journal {path}: {err.strerror}") from None
    lines = raw.split(b"\n")
    try:
        header = json.loads(lines[0].decode("utf-8")) if len(lines[0]) <= _MAX_LINE else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        header = None
    if not (isinstance(header, dict) and header.get("format") == JOURNAL_FORMAT):
        raise FileFormatError(f"{path} is not an fn3 search journal (bad first line); delete it or run "
                              "without --resume")
    if header.get("version") != JOURNAL_VERSION:
        raise FileFormatError(f"{path}: journal version {header.get('version')!r} is not supported "
                              f"(expected {JOURNAL_VERSION}); run without --resume")
    if header.get("key") != key:
        raise ConfigError(f"{path} holds scores of another model, data or scoring setup than this "
                          "search's; run without --resume to start over (it will be replaced)")
    scores: dict[Spec, float] = {}
    body = lines[1:]
    for i, line in enumerate(body, start=2):
        if not line.strip():
            continue
        entry = _entry(line, space)
        if entry is None:
            if i == len(lines) or all(not rest.strip() for rest in lines[i:]):
                break  # the last line was torn by a kill mid-write: that batch is scored again
            raise FileFormatError(f"{path}: line {i} is not a journal entry; delete the file or run "
                                  "without --resume")
        scores[entry[0]] = entry[1]
    return header, scores


def _entry(line: bytes, space: Space) -> tuple[Spec, float] | None:
    if len(line) > _MAX_LINE:
        return None
    try:
        d = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not (isinstance(d, dict) and set(d) == {"spec", "acc"} and isinstance(d["spec"], dict)):
        return None
    acc = d["acc"]
    if not (isinstance(acc, float | int) and not isinstance(acc, bool)):
        return None
    try:
        acc = float(acc)
    except OverflowError:
        return None
    if not math.isfinite(acc):
        return None
    keep = d["spec"]
    if not all(isinstance(v, list) and all(type(b) is int for b in v) for v in keep.values()):
        return None
    try:
        return space.validate(Spec(keep)), acc
    except (SpecError, ValueError, TypeError) as err:
        raise FileFormatError(f"search journal entry does not fit the model ({one_line(err)}); run "
                              "without --resume") from None
