"""What every benchmark shares: where results go, the machine a figure was measured on, the per-dataset settings
over the families' defaults, the published figures, and peak-memory sampling. Imports no other benchmark."""
from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import BenchmarkDataset, dataset_name

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"  # committed results: written only when --out names this folder
DEFAULT_OUT = ROOT / "data" / "benchmark-results"
DEFAULT_WORK = ROOT / "data"
COLD_START_FOLDS = DEFAULT_WORK / "cold_start_folds"  # each rolling fold's result and embeddings

# Settings per built-in dataset, over each family's defaults (its class's signature, training/families.py);
# item-kNN's were picked on Gowalla's validation split (carved from train). A source file's data starts from the
# families' defaults.
MODEL_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "gowalla": {"itemknn": {"k": 200, "alpha": 0.7, "shrink": 10.0, "weighting": "tfidf"},
                "association_rules": {"min_support": 0.01, "min_confidence": 0.1},
                "gf_cf": {"alpha": 0.3, "n_factors": 256},  # as published
                # ChebyCF's published Gowalla configuration (Kim et al., SIGIR 2025; the authors' config)
                "chebycf": {"order": 8, "flatness": 1.5, "n_factors": 512, "alpha": 0.2, "beta": 0.4, "targets": "extrema"},
                "ease": {"l2": 500.0},
                "mf": {"dim": 64, "lr": 2e-3, "l2": 1e-4, "batch_size": 4096, "max_epochs": 300, "patience": 5},
                "ials": {"dim": 128, "alpha0": 0.02, "l2": 1e-3, "nu": 1.0, "max_epochs": 30, "patience": 2},
                "lightgcn": {"dim": 64, "n_layers": 3, "lr": 5e-3, "l2": 1e-4, "batch_size": 16384, "init": "svd",
                             "max_epochs": 1000, "max_minutes": 60.0, "patience": 10, "check_val_every_n_epoch": 2}},
    "online_retail": {"itemknn": {"k": 200, "alpha": 0.5, "shrink": 10.0, "weighting": "none"},
                      "association_rules": {"min_support": 0.005, "min_confidence": 0.05},
                      "gf_cf": {"alpha": 0.3, "n_factors": 256}, "ease": {"l2": 200.0}},
    "synthetic": {"association_rules": {"min_support": 0.002, "min_confidence": 0.05}},
}
# ChebyCF (authors' configuration) plus item-kNN, both with their Gowalla parameters above; item-kNN's weight
# is tuned on validation
MODEL_PARAMS["gowalla"]["blend"] = {
    "components": [[family, dict(MODEL_PARAMS["gowalla"][family])] for family in ("chebycf", "itemknn")],
    "weights": [1.0, 0.3]}


def machine() -> dict:
    """The machine, the code's commit and the load average a figure was measured at."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "git_commit": commit,
            "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def default_params(dataset: str | BenchmarkDataset, model_name: str) -> dict[str, Any]:
    """The tuned defaults of a built-in dataset (a source file's data starts from each family's own defaults)."""
    if isinstance(dataset, BenchmarkDataset) and not dataset.builtin:
        return {}
    return dict(MODEL_PARAMS.get(dataset_name(dataset), {}).get(model_name, {}))


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.base = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


def factor_model_for(dataset: str, dim: int, seed: int):
    """A 64-d factor model of the dataset's train split (truncated SVD: user = U S, item = V), and the
    train data. The scoring cost depends only on the shapes, not on how the factors were learned."""
    from sklearn.utils.extmath import randomized_svd

    from benchmarks.data import load_dataset
    from training.models.base import FactorForm

    _, _, train, _ = load_dataset(dataset)
    u, s, vt = randomized_svd(train.user_items.astype(np.float32), n_components=dim, random_state=seed)
    return FactorForm((u * s).astype(np.float32), vt.T.astype(np.float32).copy()), train


class FormModel:
    """Just enough of the model contract to export and check parity for a bare ``FactorForm``."""

    name = "svd_factors"

    def __init__(self, form) -> None:
        self.form, self.n_items = form, form.item_factors.shape[0]

    def serving_form(self):
        return self.form

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.form.user_factors[users] @ self.form.item_factors.T
