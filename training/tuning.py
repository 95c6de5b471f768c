"""Hyper-parameter search with Optuna: TPE with a seed, SQLite storage by default (any database URL
works unchanged, so several workers can share a study), budgets in trials and/or seconds.

Tuning only ever sees the ``fit`` matrices and the ``validation`` split carved from train; the test
split is evaluated once, by the caller, with the best parameters refitted on the whole train set.
Each study leaves files for the lifecycle to log: ``best_params.json``, ``trials.csv``, ``summary.json``,
``optimization_history.png`` and ``param_importances.png``.

Parallel workers and resumption: ``n_trials`` is the study's total, not each caller's. Any number of
processes (on any hosts) that call ``tune`` with the same ``storage`` URL and ``study_name`` share the
work; each new trial is claimed under a lock kept in the storage itself, so the finished trials add up
to exactly ``n_trials`` (none lost, none run twice). A study whose worker died is resumed by calling
``tune`` again: finished trials are kept, the dead worker's trial is found by its missed heartbeats and
run again with the same parameters, and only the missing trials run. The sampler is re-seeded from
``seed + k`` (k: the trials before it that did not fail) so a trial's parameters do not depend on which
worker, or which attempt, ran it.
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.metrics import evaluate_scores
from training.tracking import redact_url


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
    heartbeat_seconds: int = 10  # a running trial's worker proves it is alive this often
    grace_seconds: int = 30  # a trial without a heartbeat this long is failed and run again


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
    first_params: dict[str, Any] | None = None,
) -> TuningResult:
    """Search ``space``; ``build(params)`` returns an unfitted model. ``first_params`` (e.g. the family's
    configured defaults), when given, is trial 0 of a new study, so a small budget never ends below them.

    ``objective_hook(trial, model, params)``, when given, fits and scores the model itself (trained
    models use it to report intermediate values for pruning); otherwise the model is fitted on
    ``fit_data`` and scored on ``validation`` with ``cfg.metric``.
    """
    import optuna

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
    study = open_study(cfg)
    run_trials(study, objective, cfg, first_params=first_params)
    result = TuningResult(dict(study.best_params), float(study.best_value), finished_trials(study), cfg.study_name,
                          redact_url(cfg.storage), seconds=time.perf_counter() - t0)
    result.files = write_study_files(study, Path(cfg.output_dir) / cfg.study_name, result)
    return result


def open_study(cfg: TuningConfig) -> Any:
    """Create the study named ``cfg.study_name`` in ``cfg.storage``, or load it when it exists.

    The storage is an RDB URL (SQLite, Postgres, MySQL) with heartbeats on, so that trials of a dead worker
    are detected (after ``cfg.grace_seconds``) and queued again with their parameters."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.storage.startswith("sqlite:///"):
        Path(cfg.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.x
    last_error: Exception | None = None
    for attempt in range(5):  # workers started together may race creating the tables of a fresh database
        try:
            storage = optuna.storages.RDBStorage(
                cfg.storage, heartbeat_interval=cfg.heartbeat_seconds, grace_period=cfg.grace_seconds,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            return optuna.create_study(study_name=cfg.study_name, storage=storage, direction="maximize",
                                       sampler=optuna.samplers.TPESampler(seed=cfg.seed),
                                       pruner=optuna.pruners.MedianPruner(n_startup_trials=3), load_if_exists=True)
        except Exception as e:  # noqa: BLE001 - retried, then raised with the storage named
            last_error = e
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"cannot open Optuna study {cfg.study_name!r} in {redact_url(cfg.storage)}: {last_error}") \
        from last_error


def finished_trials(study: Any) -> int:
    """Trials that count towards the budget: COMPLETE or PRUNED (FAILed ones are run again)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class _ClaimLock:
    """A mutex kept in the study's own storage, so it holds across processes and hosts: a study named
    ``<study>.claim-lock`` exists while some worker holds it (creating a study with a taken name fails
    atomically in every RDB backend). Held for milliseconds (count trials, create one); a lock older than
    ``stale_seconds`` belongs to a worker that died holding it and is broken."""

    def __init__(self, storage: Any, study_name: str, stale_seconds: float = 60.0) -> None:
        self.storage, self.name, self.stale_seconds, self.held = storage, f"{study_name}.claim-lock", stale_seconds, False

    def acquire(self) -> None:
        import optuna

        waited_since = time.monotonic()
        while True:
            try:
                self.storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], self.name)
                self.held = True
                return
            except optuna.exceptions.DuplicatedStudyError:
                if time.monotonic() - waited_since > self.stale_seconds:
                    self._delete()
                    waited_since = time.monotonic()
                time.sleep(0.02)

    def release(self) -> None:
        if self.held:
            self.held = False
            self._delete()

    def _delete(self) -> None:
        try:
            self.storage.delete_study(self.storage.get_study_id_from_name(self.name))
        except KeyError:
            pass

    def __enter__(self) -> "_ClaimLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _slot(trial: Any) -> int:
    """The number of trials before ``trial`` that did not FAIL: its place in an uninterrupted study."""
    from optuna.trial import TrialState

    return sum(t.number < trial.number and t.state != TrialState.FAIL
               for t in trial.study.get_trials(deepcopy=False))


def run_trials(study: Any, objective: Callable[[Any], float], cfg: TuningConfig,
               first_params: dict[str, Any] | None = None, poll_seconds: float = 0.5) -> None:
    """Run trials of ``study`` until it holds ``cfg.n_trials`` finished ones (COMPLETE or PRUNED), or until
    ``cfg.timeout_seconds``; safe to call from several processes at once and to call again after a crash.

    Each trial is claimed under :class:`_ClaimLock`: count the trials, and start one only when queued ones
    (a dead worker's, requeued) exist or finished + running + queued < ``n_trials``. When the rest are
    running elsewhere, wait for them, so a trial whose worker died (no heartbeat for ``cfg.grace_seconds``)
    is taken over rather than lost. ``first_params``, when given, is queued as trial 0 of a new study."""
    import optuna
    from optuna.trial import TrialState

    deadline = None if cfg.timeout_seconds is None else time.monotonic() + cfg.timeout_seconds
    lock = _ClaimLock(optuna.storages.RDBStorage(cfg.storage, skip_compatibility_check=True), study.study_name)

    def claimed(trial: optuna.Trial) -> float:
        lock.release()  # the trial exists now (RUNNING): others may claim the next one
        # the parameters of the k-th trial depend on (seed, k, finished history), not on the worker that runs
        # it: k counts the trials before this one that did not FAIL, so a failed trial (requeued with its
        # parameters under a new number) does not shift the seeds of the trials after it
        trial.study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + _slot(trial))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return objective(trial)

    while deadline is None or time.monotonic() < deadline:
        with lock:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial -> FAIL, requeued as WAITING
            states = [t.state for t in study.get_trials(deepcopy=False)]
            if first_params is not None and not states:
                study.enqueue_trial(first_params)
                states = [TrialState.WAITING]
            finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
            running, queued = states.count(TrialState.RUNNING), states.count(TrialState.WAITING)
            if cfg.n_trials is not None and finished >= cfg.n_trials:
                return
            start = queued > 0 or cfg.n_trials is None or finished + running < cfg.n_trials
            if start:
                study.optimize(claimed, n_trials=1, show_progress_bar=False)
                continue
            if running == 0:
                return
        time.sleep(poll_seconds)  # the last trials run in other workers: wait, and take over any that die


def write_study_files(study: Any, folder: Path, result: TuningResult) -> dict[str, str]:
    """best_params.json, trials.csv, summary.json and the two plots (PNG)."""
    from cobuy_files.storage import atomic_path, write_text

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

    from cobuy_files.storage import atomic_path

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
