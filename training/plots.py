"""Plots people would rather look at than read (PNG bytes; matplotlib's Agg backend, no display)."""
from __future__ import annotations

import io

import pandas as pd


def metrics_vs_k_png(table: pd.DataFrame, metrics: tuple[str, ...] = ("recall", "ndcg", "precision", "coverage")
                     ) -> bytes:
    """One panel per metric, one line per model, K on the x axis. ``table``: rows of (model, k, metrics...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), constrained_layout=True)
    for ax, metric in zip(axes, metrics):
        for model, rows in table.sort_values("k").groupby("model", sort=False):
            ax.plot(rows["k"], rows[metric], marker="o", label=model)
        ax.set_title(f"{metric}@K")
        ax.set_xlabel("K")
        ax.set_xticks(sorted(table["k"].unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def curves_vs_time_png(curves: dict[str, list[dict]], metrics: tuple[str, ...] = ("recall@20", "ndcg@20"),
                       title: str = "validation") -> bytes:
    """One panel per metric, one line per run, wall minutes on the x axis. ``curves``: run label -> points with
    ``seconds`` and the metrics (e.g. LightGCN's ``fit_facts.curve``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4), constrained_layout=True)
    for ax, metric in zip(axes, metrics):
        for label, points in curves.items():
            ax.plot([p["seconds"] / 60 for p in points], [p[metric] for p in points], marker=".", label=label)
        ax.set_title(f"{title} {metric}")
        ax.set_xlabel("wall minutes")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
