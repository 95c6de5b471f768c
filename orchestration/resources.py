"""External systems behind Dagster resources: file storage for asset outputs, artifacts and studies."""

import os
from pathlib import Path
from typing import Any, Callable, Optional

import dagster as dg
import pandas as pd

from data_checks.privacy import key_from_secret, load_or_create_key
from serving import registry
from serving.onnx_scoring import OnnxRecommender
from serving.storage import read_pickle, write_parquet, write_pickle
from training.tracking import LoggedRun, TrainingRun, log_training_run


def default_data_dir() -> str:
    return os.environ.get("COBUY_DATA_DIR", "data")


class TableIOManager(dg.ConfigurableIOManager):
    """Asset outputs under ``base_dir``: DataFrames as Parquet, everything else pickled; writes are
    atomic (temporary file, then rename)."""

    base_dir: str

    def _stem(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir, "assets", *key.path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        stem = self._stem(context.asset_key)
        if isinstance(obj, pd.DataFrame):
            path = write_parquet(obj, stem.with_suffix(".parquet"))
            stem.with_suffix(".pkl").unlink(missing_ok=True)
        else:
            path = write_pickle(obj, stem.with_suffix(".pkl"))
            stem.with_suffix(".parquet").unlink(missing_ok=True)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path.resolve()))})

    def load_input(self, context: dg.InputContext) -> Any:
        stem = self._stem(context.asset_key)
        if stem.with_suffix(".parquet").exists():
            return pd.read_parquet(stem.with_suffix(".parquet"))
        return read_pickle(stem.with_suffix(".pkl"))


class ArtifactStore(dg.ConfigurableResource):
    """Run artifacts (Great Expectations Data Docs, plots, Optuna files, fine-tuned encoders), one
    folder per run so concurrent runs never overwrite each other's files."""

    base_dir: str

    def run_dir(self, run_id: str, *parts: str) -> Path:
        path = Path(self.base_dir, "runs", run_id, *parts).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path


class ValidationPolicy(dg.ConfigurableResource):
    """Thresholds the blocking data checks enforce."""

    max_quarantine_rate: float = 0.10


class Pseudonymizer(dg.ConfigurableResource):
    """The key that pseudonymises customer ids at ingestion (HMAC-SHA256, ``data_checks.privacy``).

    ``secret``: the key itself, from the environment (``dg.EnvVar("COBUY_PSEUDONYM_KEY")``; production).
    ``key_file``: else a per-install random key kept in this file (mode 0600), created on first use
    (the embedded local default). Same key, same pseudonyms in every run."""

    secret: Optional[str] = None
    key_file: Optional[str] = None

    def key(self) -> bytes:
        if self.secret is not None or not self.key_file:
            return key_from_secret(self.secret)
        return load_or_create_key(self.key_file)


class OptunaStorage(dg.ConfigurableResource):
    """Where Optuna studies live: SQLite under the data folder by default; a Postgres URL shares
    studies between parallel workers unchanged."""

    url: str


class MLflowRegistry(dg.ConfigurableResource):
    """MLflow tracking and model registry. Embedded default: SQLite under the data folder with a local
    artifact folder; a server (Postgres backend, S3 artifacts) is just another ``tracking_uri``.

    One registered model per served family, named ``<model_prefix><family>``; new versions get the
    alias ``challenger``, the promotion gate moves ``champion``."""

    tracking_uri: str
    artifact_location: Optional[str] = None
    experiment: str = "cobuy"
    model_prefix: str = "cobuy-"
    ui_url: str = "http://127.0.0.1:5000"  # where ``mlflow ui`` (or the server) shows this tracking URI

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The run's page in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_url(self, family: str, version: str) -> str:
        """The registered version's page in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name(family)}/versions/{version}"

    def model_name(self, family: str) -> str:
        return f"{self.model_prefix}{family}"

    def log_run(self, run: TrainingRun) -> LoggedRun:
        """Log one training run (params, metrics, artifacts, Optuna trials, ONNX model)."""
        return log_training_run(self.tracking_uri, self.experiment, run, self.artifact_location)

    def register_challenger(self, family: str, logged: LoggedRun, tags: Optional[dict[str, str]] = None) -> str:
        """Register the run's ONNX model as a new version with alias ``challenger``; returns the version."""
        if logged.model_uri is None:
            raise ValueError(f"run {logged.run_id} logged no ONNX model; nothing to register for {family}")
        return registry.register_challenger(self.tracking_uri, self.model_name(family), logged.model_uri,
                                            logged.run_id, tags)

    def version_for(self, family: str, alias: str) -> Optional[str]:
        """The version ``alias`` (``champion``/``challenger``) names, or None."""
        return registry.alias_version(self.tracking_uri, self.model_name(family), alias)

    def download(self, family: str, version: str, dst: str | Path) -> Path:
        """A registered version's ``model.onnx`` downloaded into ``dst``."""
        return registry.download_version(self.tracking_uri, self.model_name(family), version, dst)

    def download_run_artifact(self, family: str, alias: str, artifact_path: str, dst: str | Path
                              ) -> Optional[Path]:
        """An artifact (e.g. ``reference_profile.json``) of the run behind ``@alias`` downloaded into ``dst``;
        None when the alias or the artifact does not exist."""
        return registry.download_run_artifact(self.tracking_uri, self.model_name(family), alias, artifact_path, dst)

    def run_gate(self, family: str, evaluate: Callable[[dict[str, Path]], dict[str, dict]], metric: str,
                 margin: float, decided_by: str, workdir: str | Path) -> registry.GateDecision:
        """Challenger vs champion on the same held-out data; moves ``champion`` only when better by ``margin``."""
        return registry.run_gate(self.tracking_uri, self.model_name(family), evaluate, metric, margin, decided_by,
                                 workdir)


class OnnxRuntimeResource(dg.ConfigurableResource):
    """ONNX Runtime sessions for batch scoring: ``provider`` ``auto`` takes CUDA where available, else CPU."""

    provider: str = "auto"
    threads: Optional[int] = None

    def recommender(self, path: str | Path) -> OnnxRecommender:
        """An exported recommender opened with the configured provider (``.active_provider`` says which ran)."""
        return OnnxRecommender(Path(path), provider=self.provider, threads=self.threads)
