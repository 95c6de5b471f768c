"""External systems behind Dagster resources: file storage for asset outputs, artifacts and studies."""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from serving.storage import read_pickle, write_parquet, write_pickle


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


class OptunaStorage(dg.ConfigurableResource):
    """Where Optuna studies live: SQLite under the data folder by default; a Postgres URL shares
    studies between parallel workers unchanged."""

    url: str
