"""Faults on the synthetic shop: a run SIGKILLed in the middle of a file write and re-executed from failure
in Dagster gives what an uninterrupted run gives; two concurrent runs of the same assets keep their own
files and read their own upstream; leftovers of killed writers are swept and never read.

Each test keeps a persistent Dagster instance (SQLite) in a temporary ``DAGSTER_HOME`` and a data folder
of its own. Killed runs execute in a child process (``tests/faults_support.py``) with the in-process
executor, so that the patched writer runs in the process that dies."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from orchestration.resources import TableIOManager
from cobuy_files.storage import HOST, is_temp_name, read_pickle, sweep_stale_temps, write_parquet
from tests.faults_support import run

pytestmark = pytest.mark.heavy(33)  # seconds on 2 quiet cores: make test starts the heaviest files first

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


def _instance(home: Path) -> dg.DagsterInstance:
    """A persistent instance (SQLite run, event-log and schedule storage) in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def _stand_in_upstream(data_dir: Path, instance: dg.DagsterInstance, shop_data, shop_clean, shop_split):
    """The scoring job's upstream assets (``tests.test_scoring.upstream_assets``) materialized from the session's
    synthetic shop (a run of their own: the jobs below load them across runs, from the event log)."""
    from orchestration.definitions import build_resources
    from tests.test_scoring import UPSTREAM_CONFIG, upstream_assets

    upstream, _ = upstream_assets(shop_data, shop_clean, shop_split)
    assert dg.materialize(upstream, resources=build_resources(str(data_dir)), instance=instance,
                          run_config=UPSTREAM_CONFIG).success


def _child_env(home: Path, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), "COBUY_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT),
            "GX_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "MLFLOW_ENABLE_TELEMETRY": "false"}


def _kill_in_child(plan: dict, home: Path, data_dir: Path) -> None:
    """Run ``plan`` (``tests.faults_support.main``) in a child process; it must end by SIGKILL."""
    env = _child_env(home, data_dir)
    proc = subprocess.run([sys.executable, "-c", "from tests.faults_support import main; main()",
                           json.dumps({k: v for k, v in plan.items() if k != "job_fn"})],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"the child was not killed (rc {proc.returncode}): {proc.stderr[-4000:]}"


def _step_keys(instance: dg.DagsterInstance, run_id: str, event: dg.DagsterEventType) -> set[str]:
    return {e.step_key for e in instance.all_logs(run_id, of_type=event)}


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and is_temp_name(p.name)]


def _kill(instance: dg.DagsterInstance, plan: dict, home: Path, data_dir: Path) -> tuple[str, list[Path]]:
    """SIGKILL a run of ``plan`` mid-write; returns its run id and the temporary files it left."""
    before = {r.run_id for r in instance.get_runs()}
    _kill_in_child(plan, home, data_dir)
    [killed] = [r for r in instance.get_runs() if r.run_id not in before]
    assert killed.status == dg.DagsterRunStatus.STARTED  # a SIGKILLed run cannot say it failed
    leftovers = _temps(data_dir)
    assert leftovers, "the kill plan left no half-written temporary file"
    return killed.run_id, leftovers


def _reexecute_from_failure(instance: dg.DagsterInstance, plan: dict, killed: str) -> dg.JobExecutionResult:
    """Mark the dead run failed as Dagster's run monitoring does for a run whose worker is gone, then
    re-execute it from failure (in-process, the parent run's config): only the steps that had not
    succeeded run again."""
    instance.report_run_failed(instance.get_run_by_id(killed), message="run worker was SIGKILLed (test)")
    assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
    again = dg.execute_job(dg.reconstructable(plan["job_fn"]), instance=instance,
                           reexecution_options=dg.ReexecutionOptions.from_failure(killed, instance))
    assert again.success
    assert again.dagster_run.parent_run_id == killed
    done_before = _step_keys(instance, killed, dg.DagsterEventType.STEP_SUCCESS)
    assert _step_keys(instance, again.run_id, dg.DagsterEventType.STEP_START) == set(plan["assets"]) - done_before
    return again


def _output(data_dir: Path, key: str, run_id: str):
    path = TableIOManager(base_dir=str(data_dir)).run_file(dg.AssetKey(key), run_id)
    assert path is not None, f"{key}: no output file of run {run_id}"
    return pd.read_parquet(path) if path.suffix == ".parquet" else read_pickle(path)


def _producer(instance: dg.DagsterInstance, run_id: str, key: str) -> str:
    """The run whose output ``key`` a run used: itself, or the run it was re-executed from."""
    while key not in _step_keys(instance, run_id, dg.DagsterEventType.STEP_SUCCESS):
        run_id = instance.get_run_by_id(run_id).parent_run_id
    return run_id


# ---------------------------------------------------------------- SIGKILL, then re-execute from failure


def test_scoring_run_killed_mid_write_reexecutes_to_the_uninterrupted_result(tmp_path, monkeypatch, shop_data,
                                                                              shop_clean, shop_split):
    """``user_recommendations`` (score job, the champion's ONNX export) is SIGKILLed after its 3rd
    Parquet row group reached the temporary file; ``related_items`` is in the same run."""
    from orchestration.definitions import build_resources
    from tests.faults_support import scoring_job
    from tests.test_scoring import register_champion
    from training.models import ItemKNN

    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    monkeypatch.setenv("COBUY_DATA_DIR", str(data_dir))
    instance = _instance(home)
    _stand_in_upstream(data_dir, instance, shop_data, shop_clean, shop_split)
    register_champion(build_resources(str(data_dir))["mlflow"], "itemknn", ItemKNN(k=50).fit(shop_data), shop_data,
                      tmp_path, "knn")
    assets = ["user_recommendations", "related_items"]
    config = {"ops": {"user_recommendations": {"config": {"family": "itemknn", "chunk_size": 64}},
                      "related_items": {"config": {"family": "itemknn", "k": 10, "chunk_size": 64}}}}

    clean = run("score", config, assets, instance)  # the uninterrupted run
    assert clean.success
    clean_table = _output(data_dir, "user_recommendations", clean.run_id)
    clean_bytes = Path(clean_table.path).read_bytes()
    latest = data_dir / "assets" / "user_recommendations.pkl"  # the copy of the latest output, for people
    assert read_pickle(latest).path == clean_table.path

    plan = {"job": "score", "job_fn": scoring_job, "run_config": config, "assets": assets,
            "kill": {"folder": "scoring", "prefix": ".user_recommendations.parquet.", "nth": 3, "how": "parquet"}}
    killed, [torn] = _kill(instance, plan, home, data_dir)
    assert torn.parent == data_dir / "runs" / killed / "scoring" and torn.stat().st_size > 0
    with pytest.raises(Exception):  # torn: row groups but no footer
        pd.read_parquet(torn)
    assert not (torn.parent / "user_recommendations.parquet").exists(), "the killed write reached its final name"
    assert Path(clean_table.path).read_bytes() == clean_bytes, "the previous good output changed"
    assert read_pickle(latest).path == clean_table.path

    again = _reexecute_from_failure(instance, plan, killed)
    assert not torn.exists(), "the killed writer's temporary file was not swept by the next run"

    # the re-executed result equals the uninterrupted one
    redone = _output(data_dir, "user_recommendations", again.run_id)
    assert redone.path != clean_table.path and redone.rows == clean_table.rows == shop_data.n_users * 10
    a, b = pd.read_parquet(clean_table.path), pd.read_parquet(redone.path)
    pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"))
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6)
    related = _output(data_dir, "related_items", _producer(instance, again.run_id, "related_items"))
    pd.testing.assert_frame_equal(related, _output(data_dir, "related_items", clean.run_id))
    assert read_pickle(latest).path == redone.path


def test_training_run_killed_mid_write_reexecutes_to_the_uninterrupted_result(tmp_path, monkeypatch, shop_data,
                                                                               shop_clean, shop_split):
    """``itemknn_model`` (tuned by Optuna, 3 seeded trials, then fitted) is SIGKILLed with half of its
    pickle written; ``popularity_model`` is in the same run."""
    from tests.faults_support import training_job

    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    monkeypatch.setenv("COBUY_DATA_DIR", str(data_dir))
    instance = _instance(home)
    _stand_in_upstream(data_dir, instance, shop_data, shop_clean, shop_split)
    assets = ["itemknn_model", "popularity_model"]
    config = {"ops": {"itemknn_model": {"config": {"tune_trials": 3, "tune_max_eval_users": 200}}}}

    clean = run("train_and_evaluate", config, assets, instance)
    assert clean.success
    clean_file = TableIOManager(base_dir=str(data_dir)).run_file(dg.AssetKey("itemknn_model"), clean.run_id)
    clean_bytes = clean_file.read_bytes()
    latest = data_dir / "assets" / "itemknn_model.pkl"
    assert latest.read_bytes() == clean_bytes

    plan = {"job": "train_and_evaluate", "job_fn": training_job, "run_config": config, "assets": assets,
            "kill": {"folder": "itemknn_model", "prefix": ".", "nth": 1, "how": "pickle"}}
    killed, [torn] = _kill(instance, plan, home, data_dir)
    assert torn.parent == data_dir / "assets" / "itemknn_model" and 0 < torn.stat().st_size < len(clean_bytes)
    with pytest.raises(Exception):  # half a pickle
        read_pickle(torn)
    assert not (torn.parent / f"{killed}.pkl").exists(), "the killed write reached its final name"
    assert clean_file.read_bytes() == clean_bytes and latest.read_bytes() == clean_bytes, \
        "the previous good output changed"

    again = _reexecute_from_failure(instance, plan, killed)
    assert not torn.exists(), "the killed writer's temporary file was not swept by the next write"

    clean_model = read_pickle(clean_file)
    model = _output(data_dir, "itemknn_model", again.run_id)
    assert model.training_params == clean_model.training_params  # the same tuned parameters
    assert (model.similarity != clean_model.similarity).nnz == 0  # the same fitted weights, exactly
    users = np.arange(shop_data.n_users)
    np.testing.assert_array_equal(model.score_users(users), clean_model.score_users(users))
    popularity = _output(data_dir, "popularity_model", _producer(instance, again.run_id, "popularity_model"))
    np.testing.assert_array_equal(popularity.score_users(users),
                                  _output(data_dir, "popularity_model", clean.run_id).score_users(users))
    assert read_pickle(latest).similarity.nnz == model.similarity.nnz  # the copy follows the newest output


# ---------------------------------------------------------------- two runs at the same time


def test_two_concurrent_runs_keep_their_own_files_and_read_their_own_upstream(tmp_path):
    """Two processes materialize ``fault_table`` -> ``fault_summary`` at the same time (each loads its input
    only after both wrote their table); then a third run reads the downstream across runs."""
    from tests.faults_support import FAULT_ASSETS

    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    instance = _instance(home)
    env = {**_child_env(home, data_dir), "COBUY_FAULT_SYNC": str(tmp_path / "sync")}
    procs = {label: subprocess.Popen([sys.executable, "-c", "from tests.faults_support import concurrent_main; "
                                      "concurrent_main()", label, "2"], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE) for label in "AB"}
    runs = {}
    for label, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
        runs[label] = json.loads(out.strip().splitlines()[-1])
        assert runs[label]["success"]
    io = TableIOManager(base_dir=str(data_dir))
    for label, r in runs.items():
        table = pd.read_parquet(io.run_file(dg.AssetKey("fault_table"), r["run_id"]))
        assert (table["label"] == label).all() and (table["run_id"] == r["run_id"]).all() and len(table) == 200
        summary = read_pickle(io.run_file(dg.AssetKey("fault_summary"), r["run_id"]))
        assert summary == {"run_id": r["run_id"], "read_label": label, "read_run": r["run_id"], "rows": 200}
    assert runs["A"]["run_id"] != runs["B"]["run_id"]
    assert not _temps(data_dir)
    # the copy for people is one complete output, never a mix
    latest = pd.read_parquet(data_dir / "assets" / "fault_table.parquet")
    assert latest["run_id"].nunique() == 1 and latest["run_id"].iloc[0] in {r["run_id"] for r in runs.values()}

    # a later run of the downstream asset alone reads the latest materialization (Dagster's event log)
    newest = instance.get_latest_materialization_event(dg.AssetKey("fault_table")).run_id
    third = dg.materialize(FAULT_ASSETS, selection=["fault_summary"], instance=instance,
                           resources={"io_manager": TableIOManager(base_dir=str(data_dir))})
    assert third.output_for_node("fault_summary")["read_run"] == newest


def test_training_jobs_are_limited_to_one_run_at_a_time_by_the_run_queue():
    """Every job that trains carries the tag the instance configs limit to one run; scoring does not.
    (Dagster's implicit ``__ASSET_JOB``, behind *Materialize* on an asset page, carries no job tags: such
    ad-hoc runs are not queued behind a training run; their files are still their own.)"""
    from orchestration.assets import models
    from orchestration.definitions import TRAINING_TAGS, defs

    [(key, value)] = TRAINING_TAGS.items()
    model_keys = {k for a in dg.load_assets_from_modules([models]) for k in a.keys}
    for job in [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]:
        trains = bool(model_keys & set(job.asset_layer.selected_asset_keys))
        assert (job.tags.get(key) == value) == trains, job.name
    for path in ("infra/local/dagster.yaml", "infra/production/dagster.yaml"):
        limits = yaml.safe_load((ROOT / path).read_text())["run_coordinator"]["config"]["tag_concurrency_limits"]
        assert {"key": key, "value": value, "limit": 1} in limits, path
    helm = yaml.safe_load((ROOT / "infra/helm/values.yaml").read_text())
    limits = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": key, "value": value, "limit": 1} in limits


# ---------------------------------------------------------------- leftovers of killed writers


def test_leftovers_of_dead_writers_are_swept_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited and reaped: no such process now
    folder = tmp_path / "assets" / "t"
    folder.mkdir(parents=True)
    names = {"dead": f".r1.parquet.{HOST}.{dead_pid}.abc_1.tmp",
             "live": f".r2.parquet.{HOST}.{os.getppid()}.abc_2.tmp",       # a running process on this host
             "old_foreign": ".r3.parquet.otherhost.123.abc_3.tmp",          # another host: by age only
             "new_foreign": ".r4.parquet.otherhost.124.abc_4.tmp",
             "old_unnamed": ".r5.parquet.x8k2.tmp",                         # the former naming: by age only
             "output": "r6.parquet"}                                        # never a temporary file
    for name in names.values():
        (folder / name).write_bytes(b"PAR1 half")
    two_days_ago = time.time() - 2 * 86400
    for key in ("old_foreign", "old_unnamed", "output"):
        os.utime(folder / names[key], (two_days_ago, two_days_ago))
    write_parquet(pd.DataFrame({"x": [1]}), folder / "r7.parquet")  # the next write into the folder sweeps
    left = {p.name for p in folder.iterdir()}
    assert left == {names["live"], names["new_foreign"], names["output"], "r7.parquet"}
    assert sweep_stale_temps(folder) == []


def test_a_new_run_folder_sweeps_the_runs_it_reexecutes_and_no_others(tmp_path):
    """``ArtifactStore.run_dir`` of a re-execution sweeps its parent's and root's folders only: its cost does not
    grow with the run history, and a plain id (no lineage) sweeps nothing."""
    from types import SimpleNamespace

    from orchestration.resources import ArtifactStore

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runs = tmp_path / "runs"
    torn = {}
    for run_id in ("root", "parent", "unrelated"):
        (runs / run_id / "scoring").mkdir(parents=True)
        torn[run_id] = runs / run_id / "scoring" / f".t.parquet.{HOST}.{int(dead.stdout)}.x_1.tmp"
        torn[run_id].write_bytes(b"PAR1 half")
    store = ArtifactStore(base_dir=str(tmp_path))
    store.run_dir("plain", "scoring")
    assert all(p.exists() for p in torn.values())
    again = SimpleNamespace(run_id="again", parent_run_id="parent", root_run_id="root")
    assert store.run_dir(again, "scoring") == (runs / "again" / "scoring").resolve()
    assert not torn["parent"].exists() and not torn["root"].exists()
    assert torn["unrelated"].exists()
