"""Every loader's fixed-input rejection tests, and the training-rule tests, fail when it is broken.

``mutants.py`` replaces one loader at a time by a function that accepts every file (and each training
rule by one that does not train), runs the tests that claim to guard it, and restores it. One
subprocess runs all mutants (about 40 s on 2 cores: one torch import, then a short pytest session per
mutant). The same tests run unmutated in the normal suite, where they must pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mutants import MUTANTS, ROOT


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("mutants") / "outcomes.json"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("mutants.py")), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0 and out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_broken_loader_or_rule_fails_its_tests(outcomes: dict[str, dict], mutant) -> None:  # noqa: ANN001
    seen = outcomes[mutant.name]["outcomes"]
    for wanted in mutant.tests:
        ran = {node: o for node, o in seen.items() if node == wanted or node.startswith(wanted + "[")}
        assert ran, f"{wanted} did not run under {mutant.name}"
        survived = sorted(node for node, o in ran.items() if o != "failed")
        assert not survived, f"with {mutant.name}, these tests did not fail: {survived}"
