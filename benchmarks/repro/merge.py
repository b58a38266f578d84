"""Move arms trained in a scratch directory into the reproduction's results tree.

Long arms are trained beside each other in scratch directories (``--results-dir``/``--runs-dir``), so
that two runs never write the same result file at once. This script then adds the arms of one
scratch result file to the page's file of the same experiment (``benchmarks/results/<key>.json``, or
``benchmarks/results/seed<N>/`` with ``--seed N``) and copies their run directories (trained models,
kept for ``heldout.py``) to ``runs/<key>/`` beside it:

    python benchmarks/repro/exp5_bits.py --only exp5_bits --results-dir /tmp/a --runs-dir /tmp/a/runs \\
        --arms "independent" --rerun
    python benchmarks/repro/merge.py /tmp/a/exp5_bits.json

An arm the page already holds is replaced, keeping its earlier timings (``earlier_runs``: the page's
cost of an arm is its smallest CPU time) and printing the accuracies that changed (a rerun with
unchanged code should be the same model). The scratch command is recorded without its directories.
Both files must hold the same settings (the runner's rule, which lets older files match): otherwise
nothing is written. The result file is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from runner import RESULT_FORMAT, RESULT_VERSION, RESULTS, _as_old, earlier_runs, setting_difference

from fn3._io import atomic_write_text
from fn3.errors import ConfigError


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read result file {path}: {e}") from None
    if data.get("format") != RESULT_FORMAT or data.get("version") != RESULT_VERSION:
        raise ConfigError(f"{path} is not a {RESULT_FORMAT} v{RESULT_VERSION} result file")
    return data


def _copy_run(src: Path, key: str, runs: Path) -> Path:
    """Copy run directory ``src`` (``.../<key>/<arm>[/<budget>]``) to the same place under ``runs``
    (``runs/<key>/...``): into a temporary sibling first, renamed over any earlier copy."""
    if key not in src.parts:
        raise ConfigError(f"run directory {src} is not under a folder named {key}")
    at = len(src.parts) - 1 - src.parts[::-1].index(key)
    to = runs.joinpath(*src.parts[at:])
    if not src.is_dir():
        raise ConfigError(f"run directory {src} does not exist; rerun the arm to train it again")
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(to.name + ".merging")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if to.exists():
        shutil.rmtree(to)
    tmp.rename(to)
    return to


def merge(src_path: Path, into: Path) -> tuple[Path, list[str]]:
    """Add the arms of result file ``src_path`` to ``into/<key>.json`` (created if missing), their run
    directories copied to ``into/runs/<key>/``; returns the file written and the arms whose
    accuracies changed (arms the page held before and that came back different)."""
    new = _read(src_path)
    key = new["experiment"]
    dst = into / f"{key}.json"
    old = _read(dst) if dst.is_file() else None
    if old is not None and (ours := _as_old(new["settings"], old["settings"])) != old["settings"]:
        differ = setting_difference(ours, old["settings"], ("in the first", "in the second"))
        raise ConfigError(f"{src_path} and {dst} were run with other settings ({differ}); they cannot be "
                          "merged")
    new["commands"] = [re.sub(r" --(results|runs)-dir \S+", "", c) for c in new["commands"]]
    for arm in new["arms"].values():
        for run in arm.get("runs", {}).values():
            run["run_dir"] = str(_copy_run(Path(run["run_dir"]), key, into / "runs"))
    changed: list[str] = []
    if old is None:
        out = new
    else:
        out = old
        for name, arm in new["arms"].items():
            prev = out["arms"].get(name)
            if prev is not None:
                if prev.get("accuracy") != arm.get("accuracy"):
                    changed.append(name)
                arm.setdefault("earlier_runs", earlier_runs(prev))
            out["arms"][name] = arm
        out["commands"] += [c for c in new["commands"] if c not in out["commands"]]
        out["updated_at"] = max(old["updated_at"], new["updated_at"])
        out["notes"] = new["notes"]
    into.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dst, json.dumps(out, indent=1) + "\n")
    return dst, changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="the scratch result file (<results-dir>/<key>.json)")
    p.add_argument("--seed", type=int, default=None,
                   help="the runner's --seed the arms were trained with (benchmarks/results/seed<N>)")
    p.add_argument("--into", type=Path, default=None,
                   help="the results folder to merge into (default: the page's, per --seed)")
    args = p.parse_args(argv)
    into = args.into or (RESULTS / f"seed{args.seed}" if args.seed is not None else RESULTS)
    try:
        dst, changed = merge(args.source, into)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in changed:
        print(f"CHANGED accuracy: {name} (the page's numbers for it are now the new run's)")
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
