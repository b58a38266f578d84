"""The search journal: scores survive a kill (torn last line dropped), belong to one model and data,
and a resumed Evaluator re-scores nothing the journal holds."""

from __future__ import annotations

import json

import pytest
import torch
from search_helpers import tiny_mlp

import fn3
from fn3.errors import ConfigError, FileFormatError
from fn3.search import Evaluator, search
from fn3.search.journal import ScoreJournal


def _val(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))]


def test_torn_last_line_is_dropped_and_appending_continues(tmp_path):
    space = fn3.space(tiny_mlp())
    path = tmp_path / "scores.jsonl"
    a, b, c = space.largest(), space.smallest(), space.uniform({"neurons": 0.5})
    with ScoreJournal.open(path, space, "k") as j:
        j.append([a, b], [0.5, 0.25])
    with path.open("a") as f:
        f.write('{"spec":{"fc1.wid')  # a kill in the middle of a write
    with ScoreJournal.open(path, space, "k", resume=True) as j:
        assert j.scores == {a: 0.5, b: 0.25}
        j.append([c], [0.125])
    assert ScoreJournal.open(path, space, "k", resume=True, write=False).scores == {a: 0.5, b: 0.25, c: 0.125}


def test_journal_of_another_model_or_a_damaged_one_is_refused(tmp_path):
    space = fn3.space(tiny_mlp())
    path = tmp_path / "scores.jsonl"
    with ScoreJournal.open(path, space, "k") as j:
        j.append([space.largest(), space.smallest()], [0.5, 0.25])
    with pytest.raises(ConfigError, match="another model"):
        ScoreJournal.open(path, space, "other", resume=True)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", lines[2]]) + "\n")
    with pytest.raises(FileFormatError, match="line 2"):
        ScoreJournal.open(path, space, "k", resume=True)
    path.write_bytes(b"\xff\xfe not a journal")
    with pytest.raises(FileFormatError, match=str(path)):
        ScoreJournal.open(path, space, "k", resume=True)
    # Without resume the damaged file is simply replaced.
    assert ScoreJournal.open(path, space, "k").scores == {}


def test_resumed_evaluator_rescores_nothing_and_search_is_identical(tmp_path):
    torch.manual_seed(0)
    model = tiny_mlp()
    path = tmp_path / "scores.jsonl"
    first = Evaluator(model, _val())
    first.attach_journal(path)
    full = search(model, first, "params", "random", seed=3, max_evals=30)
    first.close()
    # A "killed" search: keep the header and the first 12 scores only.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:13]) + "\n")
    again = Evaluator(model, _val())
    assert again.attach_journal(path, resume=True) == 12
    resumed = search(model, again, "params", "random", seed=3, max_evals=30)
    assert again.evals == full.evals - 12
    assert [(p.spec, p.accuracy) for p in resumed.points] == [(p.spec, p.accuracy) for p in full.points]
    assert len(path.read_text().splitlines()) == 1 + full.evals
    # Other validation data -> another fingerprint -> refused.
    with pytest.raises(ConfigError, match="another model"):
        Evaluator(model, _val(1)).attach_journal(path, resume=True)
    assert json.loads(path.read_text().splitlines()[0])["format"] == "fn3.search-journal"
