"""What one model family's MLflow run records: metrics at K from the evaluation table, the metric-vs-K
plot, the Optuna files of its study, the quarantine summary, the training window and its drift reference
profile, and the ONNX export. Builds a :class:`training.tracking.TrainingRun`; logging it is the
tracking module's job."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from cobuy_files.storage import write_bytes, write_text
from training.plots import metrics_vs_k_png
from training.tracking import TrainingRun

METRICS = ("recall", "ndcg", "precision", "hit_rate", "coverage")


def metrics_at_k(table: pd.DataFrame, model_name: str) -> dict[str, float]:
    """Flat ``{"recall@10": ..., "ndcg@20": ...}`` of one model from the evaluation table (rows of model, k,
    metrics...). Raises KeyError naming the models present when ``model_name`` is missing."""
    rows = table[table["model"] == model_name]
    if rows.empty:
        raise KeyError(f"model_metrics has no rows for model {model_name!r}; it has {sorted(table['model'].unique())}")
    return {f"{m}@{int(r['k'])}": float(r[m]) for _, r in rows.iterrows() for m in METRICS if m in rows.columns}


def quarantine_summary(quarantine: pd.DataFrame) -> dict[str, Any]:
    """Rows quarantined, by table and by reason (``quarantine``: the validation stage's rejected rows)."""
    out: dict[str, Any] = {"rows": int(len(quarantine))}
    if len(quarantine) and "reason" in quarantine.columns:
        keys = ["table", "reason"] if "table" in quarantine.columns else ["reason"]
        counts = quarantine.groupby(keys, dropna=False).size().sort_values(ascending=False)
        out["by_reason"] = [{**dict(zip(keys, k if isinstance(k, tuple) else (k,))), "rows": int(v)}
                            for k, v in counts.items()]
    return out


def training_window(train: pd.DataFrame) -> tuple[str, str]:
    """(first, last) timestamp of the training rows as ISO strings ('' when the rows carry no time)."""
    ts = pd.to_datetime(train["timestamp"], errors="coerce").dropna() if "timestamp" in train.columns else []
    if len(ts) == 0:
        return "", ""
    return ts.min().isoformat(), ts.max().isoformat()


def study_folder(tuning_files: Mapping[str, str]) -> str | None:
    """The folder of an Optuna study's files (``trials.csv`` and friends), or None when it was not tuned."""
    trials = tuning_files.get("trials")
    return str(Path(trials).parent) if trials and Path(trials).exists() else None


def build_training_run(family: str, model_name: str, params: Mapping[str, Any], metrics: pd.DataFrame,
                       folder: str | Path, tags: Mapping[str, str], quarantine: Mapping[str, Any],
                       reference_profile: Mapping[str, Any] | None, export: Mapping[str, Any],
                       tuning_files: Mapping[str, str] | None = None) -> TrainingRun:
    """The run of ``family`` (``model_name`` as in the evaluation table ``metrics``). Files it logs are
    written under ``folder``: ``plots/metrics_vs_k.png``, ``data/quarantine_summary.json`` and, at the
    run's root, ``reference_profile.json`` (the drift sensor reads it from the champion's run).
    ``export``: the verified ONNX export (``path``, ``kind``, ``n_items``, ``k``)."""
    folder = Path(folder)
    rows = metrics[metrics["model"] == model_name]
    values = metrics_at_k(metrics, model_name)
    plot = write_bytes(metrics_vs_k_png(rows), folder / "metrics_vs_k.png")
    qsum = write_text(json.dumps(quarantine, indent=2, default=str), folder / "quarantine_summary.json")
    artifacts = {"plots": [str(plot)], "data": [str(qsum)]}
    if reference_profile is not None:
        artifacts[""] = [str(write_text(json.dumps(reference_profile), folder / "reference_profile.json"))]
    return TrainingRun(family=family, params=dict(params), metrics=values, tags=dict(tags), artifacts=artifacts,
                       tuning_dir=study_folder(tuning_files or {}), onnx_path=str(export["path"]),
                       onnx_kind=str(export["kind"]), onnx_n_items=int(export["n_items"]), onnx_k=int(export["k"]))
