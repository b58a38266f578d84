"""Every command-line error in docs/errors.md: exit 2, one line, no traceback, nothing written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from fn3.cli import main

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\d+) \| `fn3 ([^`]*)` \| ([^|]+) \| [^|]+ \|$")


def _catalogue() -> list[tuple[str, str, str]]:
    rows = []
    for line in (ROOT / "docs" / "errors.md").read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            rows.append((m.group(1), m.group(2), m.group(3).strip()))
    return rows


CATALOGUE = _catalogue()


def test_catalogue_has_at_least_30_distinct_inputs():
    assert len({cmd for _, cmd, _ in CATALOGUE}) >= 30


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("errors")
    run = base / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "mlp",
                "--data",
                "digits",
                "--epochs",
                "1",
                "--model-arg",
                "hidden=[64,64]",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    (base / "bad.json").write_text("garbage")
    (base / "bad.toml").write_text('epochs = "ten"\n')
    (base / "unk.toml").write_text("nonsense = 1\n")
    (base / "trunc.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:100])
    (base / "bad-journal").mkdir()
    (base / "bad-journal" / "scores-val.jsonl").write_text("garbage\n")
    (base / "other-journal").mkdir()
    header = {"format": "fn3.search-journal", "version": 1, "key": "0" * 64, "meta": {}}
    (base / "other-journal" / "scores-val.jsonl").write_text(json.dumps(header) + "\n")
    return {
        "run": str(run),
        "bad_json": str(base / "bad.json"),
        "bad_toml": str(base / "bad.toml"),
        "unk_toml": str(base / "unk.toml"),
        "trunc": str(base / "trunc.safetensors"),
        "bad_journal": str(base / "bad-journal"),
        "other_journal": str(base / "other-journal"),
    }


@pytest.mark.parametrize(("number", "command", "message"), CATALOGUE, ids=[r[0] for r in CATALOGUE])
def test_error(places, tmp_path, capsys, number, command, message):
    # In-process through the CLI's own entry point (the same code `python -m fn3` runs); a few of these
    # also run as real subprocesses in tests/cli/test_cli.py.
    args = [a.format(tmp=tmp_path, **places) for a in shlex.split(command)]
    before = {p.name for p in tmp_path.iterdir()}
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (number, err)
    assert len(lines) == 1 and lines[0].startswith("error:"), (number, err)
    assert message in lines[0], (number, lines[0])
    assert "Traceback" not in err
    assert {p.name for p in tmp_path.iterdir()} == before  # nothing written
