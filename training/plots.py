"""Plots people would rather look at than read (PNG bytes; matplotlib's Agg backend, no display)."""
from __future__ import annotations

import io

import pandas as pd


def _panels(n: int, width: float, height: float):
    """A figure with ``n`` side-by-side axes (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), constrained_layout=True, squeeze=False)
    return fig, axes[0]


def _png(fig, axes, legend: bool = True) -> bytes:
    """The figure as PNG bytes, with ``legend`` the legend on its first panel; the figure is closed."""
    import matplotlib.pyplot as plt

    if legend:
        axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def model_styles(models: list[str]) -> dict[str, dict]:
    """A distinct colour (tab20: 20 colours, dark and light of ten hues) and marker per model, in the order given,
    so eleven or more models never share a colour the way the default ten-colour cycle makes them."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    markers = "osD^v<>Pp*hX"
    # dark shades first, then the light ones: neighbours in the legend differ in hue, not just shade
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {m: {"color": colours[order[i % 20]], "marker": markers[i % len(markers)]} for i, m in enumerate(models)}


def metrics_vs_k_png(table: pd.DataFrame, metrics: tuple[str, ...] = ("recall", "ndcg", "precision", "coverage")
                     ) -> bytes:
    """A 2x2 grid (one panel per metric; one line per model, each its own colour and marker; K on the x axis) with
    one legend beside it, about 760 x 500 pixels so it fits the UI's dialog. ``table``: rows of (model, k,
    metrics...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8.4, 2.6 * rows + 0.3), squeeze=False, constrained_layout=True)
    models = list(dict.fromkeys(table["model"]))
    styles = model_styles(models)
    for ax, metric in zip(axes.ravel(), metrics):
        for model, rows_ in table.sort_values("k").groupby("model", sort=False):
            ax.plot(rows_["k"], rows_[metric], label=model, markersize=4, linewidth=1.2, **styles[model])
        ax.set_title(f"{metric}@K", fontsize=9)
        ax.set_xticks(sorted(table["k"].unique()))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def curves_vs_time_png(curves: dict[str, list[dict]], metrics: tuple[str, ...] = ("recall@20", "ndcg@20"),
                       title: str = "validation") -> bytes:
    """One panel per metric, one line per run, wall minutes on the x axis. ``curves``: run label -> points with
    ``seconds`` and the metrics (e.g. LightGCN's ``fit_facts.curve``)."""
    fig, axes = _panels(len(metrics), 5, 3.4)
    for ax, metric in zip(axes, metrics):
        for label, points in curves.items():
            ax.plot([p["seconds"] / 60 for p in points], [p[metric] for p in points], marker=".", label=label)
        ax.set_title(f"{title} {metric}")
        ax.set_xlabel("wall minutes")
        ax.grid(alpha=0.3)
    return _png(fig, axes)


def differences_png(differences: dict[str, dict[str, dict[str, float]]],
                    metrics: tuple[str, ...] = ("recall@20", "ndcg@20"), title: str = "") -> bytes:
    """A forest plot: one panel per metric, one row per compared pair, the mean difference as a dot and its
    bootstrap interval as a bar, a line at 0. ``differences``: pair label -> metric -> ``paired_bootstrap`` dict
    (``mean_difference``, ``ci_low``, ``ci_high``). A bar clear of 0 is a difference told apart from noise."""
    labels = list(differences)
    fig, axes = _panels(len(metrics), 4.5, 0.5 + 0.32 * len(labels))
    for ax, metric in zip(axes, metrics):
        for y, label in enumerate(labels):
            d = differences[label][metric]
            clear = d["ci_low"] > 0 or d["ci_high"] < 0
            colour = "tab:green" if d["ci_low"] > 0 else "tab:red" if d["ci_high"] < 0 else "tab:gray"
            ax.plot([d["ci_low"], d["ci_high"]], [y, y], color=colour, lw=2.5 if clear else 1.5)
            ax.plot([d["mean_difference"]], [y], "o", color=colour, ms=4)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if ax is axes[0] else [""] * len(labels), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{title} {metric} difference".strip(), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    return _png(fig, axes, legend=False)


def prior_weight_curve_png(curve: dict[float, float], chosen: float) -> bytes:
    """The validation value (Recall@20 + NDCG@20) against each prior weight tried, on a symmetric-log x axis (0 is
    no prior), the chosen weight marked. ``curve``: weight -> validation value."""
    weights = sorted(curve)
    fig, axes = _panels(1, 5, 3.2)
    ax = axes[0]
    ax.plot(weights, [curve[w] for w in weights], marker="o", label="validation Recall@20 + NDCG@20")
    ax.axvline(chosen, color="tab:red", lw=1, ls="--", label=f"chosen: {chosen:g}")
    linthresh = min((w for w in weights if w > 0), default=1e-3)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(-linthresh / 2, max(weights[-1], linthresh) * 2)
    ax.set_xlabel("weight of log popularity (0 = twins' partners alone)")
    ax.set_title("new items' partners: prior weight on the validation window", fontsize=9)
    ax.grid(alpha=0.3)
    return _png(fig, axes)
