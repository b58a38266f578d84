"""Assemble ``docs/benchmarks.md`` from the per-benchmark pages each script writes.

Every benchmark script writes ``docs/benchmarks/<name>.md`` (its table, the command that produced it,
and its plot beside it); this script puts them in one page, in a fixed order, so the page always shows
the last measured numbers of every benchmark.

    python benchmarks/assemble.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["train_cost", "act_quant_speed", "mnist_neurons", "pretrained_nest", "latency", "search_quality",
         "export", "act_drop", "distributed"]  # fmt: skip

HEADER = """# Benchmarks

Measured on this project's machines (2 shared CPU cores, no GPU). Absolute times on shared machines
are noisy; each benchmark runs fn3 and its baseline side by side in one process and reports ratios.
Every section names the command that produced it; a missed target is reported as missed.
"""


def main() -> None:
    parts = [HEADER]
    pages = {p.stem: p for p in sorted((ROOT / "docs" / "benchmarks").glob("*.md"))}
    for name in ORDER + sorted(set(pages) - set(ORDER)):
        if name in pages:
            text = pages[name].read_text().strip()
            # Plots live beside the page in docs/benchmarks/: rewrite relative links for this level.
            text = text.replace("](" + name, "](benchmarks/" + name)
            if text.startswith("# "):  # a page with its own title becomes a section of this one
                text = "\n".join("#" + ln if ln.startswith("#") else ln for ln in text.splitlines())
            parts.append(text)
        else:
            parts.append(f"### {name}\n\nNot run yet: `python benchmarks/{name}.py`.")
    (ROOT / "docs" / "benchmarks.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
