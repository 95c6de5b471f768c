"""Optuna studies shared by worker processes (Postgres) and resumed after a worker is killed (SQLite).

Workers are forked processes that call ``training.tuning.tune`` with the same storage URL and study
name, as separate machines would. Objectives sleep a little on top of their real work so that the
workers' trials overlap (the synthetic shop fits in milliseconds)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

from tests.services import postgres  # noqa: F401 - fixture
from training.tuning import Param, TuningConfig, tune

pytestmark = pytest.mark.integration
FORK = mp.get_context("fork")


def _study(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _states(storage: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in _study(storage, name).get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _warm_imports(cfg: TuningConfig) -> None:
    """Create the storage's tables and import what workers import (SQLAlchemy, alembic, matplotlib) in
    the parent, so the forked workers start in a second instead of each compiling them again."""
    import matplotlib.pyplot  # noqa: F401
    import optuna.visualization.matplotlib  # noqa: F401

    from training.tuning import open_study

    open_study(TuningConfig(**{**cfg.__dict__, "study_name": "warm-up"}))


# --- two workers, one Postgres study -------------------------------------------------------------------

def _itemknn_worker(cfg: TuningConfig, fit, validation, barrier, results) -> None:
    from training.models import ItemKNN
    from training.families import FAMILIES

    def hook(trial, model, params):
        from training.metrics import evaluate_scores

        model.fit(fit)
        time.sleep(0.15)  # stands in for a longer fit, so both workers hold trials at the same time
        return evaluate_scores(model.score_users, fit.user_items, validation, ks=(20,))["ndcg@20"]

    barrier.wait(timeout=120)
    res = tune(lambda p: ItemKNN(**p), dict(FAMILIES["itemknn"].search_space), fit, validation, cfg, objective_hook=hook)
    results.put((os.getpid(), res.n_trials, res.best_value))


def test_two_worker_processes_share_one_postgres_study(postgres, shop_clean, shop_split, tmp_path):
    from optuna.trial import TrialState

    from training.data import build_interaction_data

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    validation = fit.matrix_for(shop_split.validation)
    url = postgres.url(postgres.create_database("optuna"), driver="postgresql+psycopg2")
    n = 10
    cfg = TuningConfig(n_trials=n, storage=url, study_name="itemknn-shared", seed=7, output_dir=str(tmp_path))
    _warm_imports(cfg)
    barrier, results = FORK.Barrier(2), FORK.Queue()
    workers = [FORK.Process(target=_itemknn_worker, args=(cfg, fit, validation, barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0]
    reports = [results.get(timeout=5) for _ in workers]

    trials = _study(url, cfg.study_name).trials
    assert sorted(t.number for t in trials) == list(range(n)), "every trial number once: none lost, none extra"
    assert all(t.state == TrialState.COMPLETE for t in trials)
    by_worker: dict[str, int] = {}
    for t in trials:
        by_worker[t.user_attrs["worker"]] = by_worker.get(t.user_attrs["worker"], 0) + 1
    assert len(by_worker) == 2 and min(by_worker.values()) >= 2, f"both workers took trials: {by_worker}"
    pids = {int(w.split(":")[-1]) for w in by_worker}
    assert pids == {w.pid for w in workers}
    params = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(params) == n, "no parameter set evaluated twice"
    # each worker returns once the whole study is done, with the same best trial
    assert [r[1] for r in reports] == [n, n]
    best = max(t.value for t in trials)
    assert all(abs(r[2] - best) < 1e-12 for r in reports)


# --- a worker killed mid-study; the study resumes -----------------------------------------------------------

SPACE = {"x": Param("float", 0.0, 1.0), "depth": Param("int", 1, 8)}
EMPTY = sp.csr_matrix((2, 2), dtype=np.float32)


def _value(params: dict) -> float:
    return -(params["x"] - 0.3) ** 2 - 0.01 * abs(params["depth"] - 5)


def _slow_worker(cfg: TuningConfig, seconds: float) -> None:
    def hook(trial, model, params):
        time.sleep(seconds)
        return _value(params)

    tune(lambda p: None, SPACE, None, EMPTY, cfg, objective_hook=hook)


def test_killed_worker_study_resumes_without_repeating_finished_trials(tmp_path):
    import optuna
    from optuna.trial import TrialState

    n = 6
    cfg = TuningConfig(n_trials=n, storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="resume", seed=3,
                       output_dir=str(tmp_path / "files"), heartbeat_seconds=1, grace_seconds=2)
    _warm_imports(cfg)
    worker = FORK.Process(target=_slow_worker, args=(cfg, 0.6))
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            trials = _study(cfg.storage, cfg.study_name).get_trials(deepcopy=False)
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            # kill inside the objective: the running trial already holds its parameters
            if complete >= 3 and any(t.state == TrialState.RUNNING and t.params for t in trials):
                break
        except Exception:  # noqa: BLE001 - the study or its tables do not exist yet
            pass  # study not created yet
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)  # mid-trial: trial 3 is RUNNING with no one to finish it
    worker.join(timeout=30)
    before = {t.number: t for t in _study(cfg.storage, cfg.study_name).trials}
    done_before = {k: t for k, t in before.items() if t.state == TrialState.COMPLETE}
    orphaned = [t for t in before.values() if t.state == TrialState.RUNNING]
    assert len(done_before) >= 3 and len(orphaned) == 1

    calls = []

    def hook(trial, model, params):
        calls.append(dict(params))
        return _value(params)

    result = tune(lambda p: None, SPACE, None, EMPTY, cfg, objective_hook=hook)

    after = {t.number: t for t in _study(cfg.storage, cfg.study_name).trials}
    complete = [t for t in after.values() if t.state == TrialState.COMPLETE]
    assert len(complete) == n == result.n_trials
    assert len(calls) == n - len(done_before), "only the missing trials ran"
    for k, t in done_before.items():  # finished trials are kept as they were, not re-run
        assert after[k].params == t.params and after[k].value == t.value
        assert after[k].datetime_complete == t.datetime_complete
    assert after[orphaned[0].number].state == TrialState.FAIL  # found by its missed heartbeats...
    assert orphaned[0].params in calls  # ...and run again with the same parameters
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == n

    # the same study uninterrupted evaluates the same parameter sets and finds the same best
    calm = TuningConfig(**{**cfg.__dict__, "storage": f"sqlite:///{tmp_path / 'calm.db'}"})
    uninterrupted = tune(lambda p: None, SPACE, None, EMPTY, calm, objective_hook=lambda t, m, p: _value(p))
    ref = _study(calm.storage, calm.study_name).trials
    assert ({json.dumps(t.params, sort_keys=True) for t in ref}
            == {json.dumps(t.params, sort_keys=True) for t in complete})
    assert uninterrupted.best_value == result.best_value


def test_worker_command_tops_up_a_stopped_study(tmp_path):
    """``python -m training.tuning_worker``: a study stopped after 3 trials is extended to 5 by a second
    call; the first 3 are kept and only 2 run."""
    from optuna.trial import TrialState

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    from training.tuning_worker import main

    args = ["--family", "itemknn", "--synthetic-users", "120", "--storage", storage, "--study", "cli",
            "--output-dir", str(tmp_path / "files"), "--trials"]
    out = subprocess.run([sys.executable, "-m", "training.tuning_worker", *args, "3"], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    first = json.loads(out.stdout.strip().splitlines()[-1])
    kept = {t.number: t.params for t in _study(storage, "cli").trials}
    second = main([*args, "5"])  # a second worker, here in this process
    trials = _study(storage, "cli").trials
    assert first["trials"] == 3 and second["trials"] == 5
    assert sorted(t.number for t in trials) == list(range(5))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {k: trials[k].params for k in kept} == kept
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert (tmp_path / "files" / "cli" / "trials.csv").exists()


def test_first_params_are_trial_zero_so_small_budgets_never_end_below_the_defaults(tmp_path):
    """``tune(first_params=...)``: the configured defaults are evaluated first, and the best found is at
    least as good as they are even with a budget of 2 trials."""
    cfg = TuningConfig(n_trials=2, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="defaults-first",
                       output_dir=str(tmp_path / "out"), seed=0)
    defaults = {"x": 0.3, "depth": 5}  # the optimum of _value
    calls = []
    result = tune(lambda p: None, SPACE, None, EMPTY, cfg, first_params=defaults,
                  objective_hook=lambda t, m, p: calls.append(dict(p)) or _value(p))
    assert calls[0] == defaults and len(calls) == 2
    assert result.best_params == defaults and result.best_value == _value(defaults)
