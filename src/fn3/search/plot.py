"""A PNG of accuracy against cost: every strategy's points (faint) and its Pareto front (a staircase).

Example:
    >>> import tempfile, pathlib
    >>> from fn3.spec import Axis, Space
    >>> from fn3.search import Point, SearchResult
    >>> space = Space([Axis("w", "neurons", 4)])
    >>> pts = [Point(space.prefix({"w": k}), 0.5 + 0.1 * k, {"flops": 1e6 * k}) for k in range(1, 5)]
    >>> res = SearchResult("flops", pts, space, strategy="exhaustive")
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "front.png"
    >>> plot_fronts([res], out)
    >>> out.stat().st_size > 1000
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fn3._io import atomic_path
from fn3.search.result import SearchResult

__all__ = ["plot_fronts"]

_MARKERS = "osD^v<>ph*"


def plot_fronts(results: Sequence[SearchResult], path: str | Path, *, title: str | None = None,
                budgets: Mapping[str, float] | None = None, log_x: bool | None = None) -> None:
    """Write a PNG with each result's points and front over (its metric, validation accuracy).

    Args:
        results: one per strategy (their ``strategy`` names label the legend).
        path: the PNG to write (atomically).
        title: figure title.
        budgets: a vertical line at the limit on the plotted metric, if any.
        log_x: logarithmic cost axis; default when costs span more than 30x.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    metric = results[0].metric if results else "cost"
    lo, hi = float("inf"), 0.0
    for i, r in enumerate(results):
        xs = [p.cost(metric) for p in r.points]
        ys = [100 * p.accuracy for p in r.points]
        if xs:
            lo, hi = min(lo, min(xs)), max(hi, max(xs))
        color = f"C{i % 10}"
        ax.scatter(xs, ys, s=8, alpha=0.18, color=color, linewidths=0)
        front = r.pareto_front(metric)
        fx = [p.cost(metric) for p in front]
        fy = [100 * p.accuracy for p in front]
        ax.step(fx, fy, where="post", color=color, linewidth=1.4, alpha=0.9,
                marker=_MARKERS[i % len(_MARKERS)], markersize=3.5,
                label=f"{r.strategy or 'search'} ({r.evals} evals, {len(front)} on front)")
    if budgets and metric in budgets:
        ax.axvline(budgets[metric], color="k", linestyle="--", linewidth=0.8, label=f"{metric} budget")
    if log_x if log_x is not None else (lo > 0 and hi / lo > 30):
        ax.set_xscale("log")
    ax.set_xlabel(metric)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
