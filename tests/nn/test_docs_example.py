"""The worked example of docs/nested_layers.md runs as written (a new nested layer type in one class)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "nested_layers.md"


def test_the_worked_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
    assert namespace["small"][0].weight.shape == (100, 16)
    assert namespace["report"].orders["emb.width"] != list(range(32))  # ranked by importance
    from fn3.convert.rules import conversion_for

    assert conversion_for(namespace["nn"].Embedding(2, 2)) is None  # unregistered again
