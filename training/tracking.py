"""MLflow tracking for training runs: params, metrics at K, dataset fingerprint, git commit, the
orchestrator's run id, plots and Optuna files as artifacts, Optuna trials as nested runs, and the ONNX
export as an MLflow model with its signature.

The tracking URI is explicit everywhere (no reliance on a process-wide default): the embedded default
is SQLite with a local artifact folder; a server (Postgres + S3) is just another URI.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from training.data import InteractionData


def redact_url(url: str) -> str:
    """``url`` without the password of its user part (``postgresql://cobuy:***@host/db``), for messages and
    records: MLflow tracking URIs and Optuna storage URLs alike."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def git_commit(cwd: str | Path | None = None) -> str:
    """The checked-out commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_fingerprint(data: InteractionData) -> str:
    """sha256 over the ids and the interaction structure: equal data gives an equal fingerprint."""
    h = hashlib.sha256()
    for arr in (np.asarray(data.user_ids).astype(str), np.asarray(data.item_ids).astype(str)):
        h.update("\x1f".join(arr.tolist()).encode())
    for arr in (data.user_items.indptr, data.user_items.indices, data.baskets.indptr, data.baskets.indices):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@contextmanager
def tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the duration of the block, then put MLflow's process state back
    exactly as it was.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` also export ``MLFLOW_TRACKING_URI`` /
    ``MLFLOW_REGISTRY_URI`` to the environment, and a client built later without an explicit registry URI
    reads that variable: restoring through the setters would pin the registry to whatever was current before
    (another store). So the module globals and both variables are saved and restored as they were, unset
    included."""
    import os

    import mlflow
    import mlflow.tracking._model_registry.utils as registry_state
    import mlflow.tracking._tracking_service.utils as tracking_state

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved_tracking, saved_registry = tracking_state._tracking_uri, registry_state._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_state._tracking_uri, registry_state._registry_uri = saved_tracking, saved_registry
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# MLflow's SQL store announces at INFO each schema creation and migration step of a new database ("Creating
# initial MLflow database tables...", alembic's "Running upgrade ..."): set-up chatter, not a run's outcome
_STORE_SETUP_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration", "alembic")


def ensure_experiment(uri: str, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, creating it (with ``artifact_location``) when missing."""
    from mlflow import MlflowClient

    for logger_name in _STORE_SETUP_LOGGERS:
        logging.getLogger(logger_name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def onnx_signature(kind: str, n_items: int, k: int):
    """The MLflow signature of a recommender export (see ``serving.onnx_export``)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    if kind == "factor":
        inputs = Schema([TensorSpec(np.dtype(np.int64), (-1,), "user_index"),
                         TensorSpec(np.dtype(np.int64), (-1, 2), "seen_index")])
    elif kind == "item_item":
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, n_items), "history")])
    elif kind == "item_item_sparse":  # the batch's (row, item) pairs and its size
        inputs = Schema([TensorSpec(np.dtype(np.int64), (-1,), "history_items"),
                         TensorSpec(np.dtype(np.int64), (-1,), "history_rows"),
                         TensorSpec(np.dtype(np.int64), (1,), "batch_size")])
    else:  # text encoder
        inputs = Schema([TensorSpec(np.dtype(np.int64), (-1, -1), "input_ids"),
                         TensorSpec(np.dtype(np.int64), (-1, -1), "attention_mask")])
        return ModelSignature(inputs, Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "embedding")]))
    outputs = Schema([TensorSpec(np.dtype(np.int64), (-1, k), "top_items"),
                      TensorSpec(np.dtype(np.float32), (-1, k), "top_scores"),
                      TensorSpec(np.dtype(np.float32), (-1, n_items), "scores")])
    return ModelSignature(inputs, outputs)


@dataclass
class TrainingRun:
    """Everything one training run logs. ``metrics`` are flat (``recall@20`` ...); ``artifacts`` maps a
    folder inside the run to local files; ``tuning_dir`` holds the Optuna files (trials.csv becomes
    nested runs)."""

    family: str
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, list[str]] = field(default_factory=dict)
    tuning_dir: str | None = None
    onnx_path: str | None = None
    onnx_kind: str | None = None
    onnx_n_items: int = 0
    onnx_k: int = 20


@dataclass
class LoggedRun:
    run_id: str
    model_uri: str | None
    experiment_id: str


def log_training_run(uri: str, experiment: str, run: TrainingRun, artifact_location: str | None = None) -> LoggedRun:
    """Log ``run`` to MLflow at ``uri``; returns the run id and the logged model's URI (None without ONNX)."""
    import mlflow
    import mlflow.onnx
    import onnx

    exp_id = ensure_experiment(uri, experiment, artifact_location)
    model_uri = None
    with tracking(uri), mlflow.start_run(experiment_id=exp_id, run_name=run.family,
                                          tags={"family": run.family, **run.tags}) as active:
        mlflow.log_params({k: _param(v) for k, v in run.params.items()})
        if run.metrics:
            mlflow.log_metrics({k.replace("@", "_at_"): float(v) for k, v in run.metrics.items()
                                if v is not None and np.isfinite(v)})
        for folder, files in run.artifacts.items():
            for f in files:  # folder "" puts the file at the run's root
                mlflow.log_artifact(f, artifact_path=folder or None)
        if run.tuning_dir and Path(run.tuning_dir).exists():
            mlflow.log_artifacts(run.tuning_dir, artifact_path="optuna")
            _log_trials(Path(run.tuning_dir) / "trials.csv", exp_id)
        if run.onnx_path:
            import onnxruntime

            proto = onnx.load(run.onnx_path)  # external data (large weights) included
            # explicit requirements: MLflow's inference imports the model in a subprocess (~15 s a model)
            info = mlflow.onnx.log_model(proto, name="model", save_as_external_data=True,
                                         signature=onnx_signature(run.onnx_kind or "factor", run.onnx_n_items,
                                                                  run.onnx_k),
                                         pip_requirements=[f"onnx=={onnx.__version__}",
                                                           f"onnxruntime=={onnxruntime.__version__}"])
            model_uri = info.model_uri
        run_id = active.info.run_id
    return LoggedRun(run_id, model_uri, exp_id)


def _param(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list, tuple)) else v


def _log_trials(trials_csv: Path, exp_id: str) -> None:
    """One nested run per Optuna trial: its parameters, state and objective value."""
    import mlflow

    if not trials_csv.exists():
        return
    trials = pd.read_csv(trials_csv)
    for row in trials.to_dict("records"):
        with mlflow.start_run(experiment_id=exp_id, run_name=f"trial-{row.get('number')}", nested=True):
            mlflow.log_params({k.removeprefix("params_"): _param(v) for k, v in row.items()
                               if k.startswith("params_") and not pd.isna(v)})
            mlflow.set_tags({"optuna_trial": str(row.get("number")), "state": str(row.get("state"))})
            if "value" in row and not pd.isna(row["value"]):
                mlflow.log_metric("objective", float(row["value"]))
