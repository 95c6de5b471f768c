"""Hyper-parameter search with Optuna: TPE with a seed, SQLite storage by default (any database URL
works unchanged, so several workers can share a study), budgets in trials and/or seconds.

Tuning only ever sees the ``fit`` matrices and the ``validation`` split carved from train; the test
split is evaluated once, by the caller, with the best parameters refitted on the whole train set.
Each study leaves files for the lifecycle to log: ``best_params.json``, ``trials.csv``, ``summary.json``,
``optimization_history.png`` and ``param_importances.png``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.metrics import evaluate_scores


@dataclass
class Param:
    """One dimension of a search space."""

    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(name, self.choices)


@dataclass
class TuningConfig:
    n_trials: int | None = 20
    timeout_seconds: float | None = None
    storage: str = "sqlite:///data/optuna.db"
    study_name: str = "cobuy"
    seed: int = 42
    metric: str = "ndcg@20"
    max_eval_users: int | None = 10_000  # validation users sampled per trial (None: all)
    output_dir: str = "data/tuning"


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_value: float
    n_trials: int
    study_name: str
    storage: str
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def sample_users(validation: sp.csr_matrix, max_users: int | None, seed: int) -> sp.csr_matrix:
    """Keep at most ``max_users`` users with validation items (the rest emptied), deterministically."""
    users = np.flatnonzero(np.diff(validation.indptr) > 0)
    if max_users is None or len(users) <= max_users:
        return validation
    keep = np.zeros(validation.shape[0], np.float32)
    keep[np.random.default_rng(seed).choice(users, max_users, replace=False)] = 1.0
    out = (sp.diags(keep) @ validation).tocsr()
    out.eliminate_zeros()
    return out


def tune(
    build: Callable[[dict[str, Any]], Any],
    space: dict[str, Param],
    fit_data: InteractionData,
    validation: sp.csr_matrix,
    cfg: TuningConfig,
    objective_hook: Callable[[Any, Any, dict[str, Any]], float] | None = None,
) -> TuningResult:
    """Search ``space``; ``build(params)`` returns an unfitted model.

    ``objective_hook(trial, model, params)``, when given, fits and scores the model itself (trained
    models use it to report intermediate values for pruning); otherwise the model is fitted on
    ``fit_data`` and scored on ``validation`` with ``cfg.metric``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.storage.startswith("sqlite:///"):
        Path(cfg.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    val = sample_users(validation, cfg.max_eval_users, cfg.seed)
    k = int(cfg.metric.split("@")[1])

    def objective(trial: optuna.Trial) -> float:
        params = {name: p.suggest(trial, name) for name, p in space.items()}
        model = build(params)
        if objective_hook is not None:
            return objective_hook(trial, model, params)
        model.fit(fit_data)
        res = evaluate_scores(model.score_users, fit_data.user_items, val, ks=(k,))
        trial.set_user_attr("fit_seconds", model.fit_seconds)
        return res[cfg.metric]

    t0 = time.perf_counter()
    study = optuna.create_study(study_name=cfg.study_name, storage=cfg.storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3), load_if_exists=True)
    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = None if cfg.n_trials is None else max(cfg.n_trials - done, 0)
    if remaining != 0:
        study.optimize(objective, n_trials=remaining, timeout=cfg.timeout_seconds, show_progress_bar=False)
    result = TuningResult(dict(study.best_params), float(study.best_value),
                          len([t for t in study.trials if t.state.is_finished()]), cfg.study_name, cfg.storage,
                          seconds=time.perf_counter() - t0)
    result.files = write_study_files(study, Path(cfg.output_dir) / cfg.study_name, result)
    return result


def write_study_files(study: Any, folder: Path, result: TuningResult) -> dict[str, str]:
    """best_params.json, trials.csv, summary.json and the two plots (PNG)."""
    from serving.storage import atomic_path, write_text

    folder.mkdir(parents=True, exist_ok=True)
    files = {"best_params": str(write_text(json.dumps(result.best_params, indent=2), folder / "best_params.json"))}
    with atomic_path(folder / "trials.csv") as tmp:
        study.trials_dataframe().to_csv(tmp, index=False)
    files["trials"] = str(folder / "trials.csv")
    files["summary"] = str(write_text(json.dumps({k: v for k, v in asdict(result).items() if k != "files"},
                                                 indent=2, default=str), folder / "summary.json"))
    files.update(_plots(study, folder))
    return files


def _plots(study: Any, folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    from serving.storage import atomic_path

    out = {}
    plots = {"optimization_history": ovm.plot_optimization_history}
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) >= 2 and len(study.best_params) >= 2:
        plots["param_importances"] = ovm.plot_param_importances
    for name, fn in plots.items():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = fn(study)
        fig = ax.figure if hasattr(ax, "figure") else ax
        fig.set_size_inches(7, 4)
        fig.tight_layout()
        with atomic_path(folder / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        out[name] = str(folder / f"{name}.png")
    return out
