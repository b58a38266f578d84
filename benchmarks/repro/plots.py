"""PNG plots of one experiment's results: accuracy against the budget and against its cost."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_experiment(res: Mapping[str, Any], figs: Path, mode: str) -> list[Path]:
    """Write ``<figs>/<experiment>.png``; returns the files written."""
    plt = _pyplot()
    key = res["experiment"]
    path = figs / f"{key}.png"
    if key.startswith("exp6"):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
        _front(axes[0], res, mode, "bitops")
        _front(axes[1], res, mode, "flops")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        metric = "bitops" if res["level"] == "bits" else "flops"
        _lines(axes[0], res, mode, None)
        _lines(axes[1], res, mode, metric)
        axes[0].set_xlabel(res["x_label"])
        axes[1].set_xlabel(f"{'BitOPs' if metric == 'bitops' else 'FLOPs'} of the sub-model")
        axes[1].set_xscale("log")
        if res["level"] in ("neurons", "paths"):
            axes[0].set_xscale("log", base=2)
    title = res["title"] + (" (QUICK smoke run)" if res.get("quick") else "")
    sub = {"bn_aug": "BN re-estimated per sub-model (augmented batches)",
           "bn_recal": "BN re-estimated per sub-model (clean batches)"}.get(mode, "no BatchNorm")
    fig.suptitle(f"{title}\n{res['settings']['train_images']:,} train images, "
                 f"{res['settings']['train']['epochs']} epochs; test accuracy ({sub})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _lines(ax: Any, res: Mapping[str, Any], mode: str, metric: str | None) -> None:
    xs = {b["label"]: b["x"] for b in res["budgets"]}
    for i, (name, arm) in enumerate(res["arms"].items()):
        color = f"C{i}"
        for md, style in ((mode, "-"), ("plain", ":")):
            if md == "plain" and mode == "plain" and style == ":":
                continue
            accs = arm["accuracy"].get(md, {})
            labels = [lb for lb in xs if lb in accs]
            if not labels:
                continue
            x = [arm["costs"][lb][metric] if metric else xs[lb] for lb in labels]
            y = [accs[lb] * 100 for lb in labels]
            label = name if style == "-" else None
            draws = arm.get("draws", {}).get(md)
            if draws and style == "-":
                lo = [y_ - min(draws[lb]) * 100 for lb, y_ in zip(labels, y, strict=True)]
                hi = [max(draws[lb]) * 100 - y_ for lb, y_ in zip(labels, y, strict=True)]
                ax.errorbar(x, y, yerr=[lo, hi], color=color, ls=style, marker="o", ms=4,
                            capsize=3, label=label)
            else:
                ax.plot(x, y, color=color, ls=style, marker="o" if style == "-" else ".", ms=4,
                        label=label, alpha=1.0 if style == "-" else 0.6)
    ax.set_ylabel("test accuracy (%)" + ("; dotted: shared BN" if mode != "plain" else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _front(ax: Any, res: Mapping[str, Any], mode: str, metric: str) -> None:
    for i, (name, arm) in enumerate(res["arms"].items()):
        s = arm.get("search")
        if s:
            pts = sorted((p["costs"][metric], p["test_accuracy"].get(mode, 0.0) * 100)
                         for p in s["front"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], f"C{i}-", drawstyle="steps-post",
                    marker=".", label=f"{name} (test acc. of the val-searched front)")
            continue
        accs = arm["accuracy"].get(mode, {})
        pts = sorted((arm["costs"][lb][metric], v * 100) for lb, v in accs.items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], f"C{i}o--", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"{'BitOPs' if metric == 'bitops' else 'FLOPs'} of the sub-model"
                  + (" (BitOPs front; float layers count 32 bits)" if metric == "bitops" else ""))
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
