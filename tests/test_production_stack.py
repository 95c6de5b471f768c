"""The production configuration against a real PostgreSQL on loopback: Dagster's instance from
``infra/production/dagster.yaml`` running ``full_pipeline`` with ``COBUY_ENV=production`` (Optuna and
MLflow on Postgres too), and MLflow tracking + registry on a ``postgresql://`` URI."""
from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from tests.services import postgres  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.heavy(35)]
ROOT = Path(__file__).resolve().parent.parent


def _production_env(monkeypatch, postgres, tmp_path: Path) -> dict[str, str]:
    """The environment variables infra/compose/env.example names, pointed at the test server."""
    env = {
        "COBUY_ENV": "production",
        "DAGSTER_PG_HOST": postgres.host, "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_DB": postgres.create_database("dagster"),
        "POSTGRES_USER": postgres.user, "POSTGRES_PASSWORD": "unused-with-trust-auth",
        "OPTUNA_STORAGE_URL": postgres.url(postgres.create_database("optuna"), "postgresql+psycopg2"),
        "MLFLOW_TRACKING_URI": postgres.url(postgres.create_database("mlflow")),
        "MLFLOW_ARTIFACT_LOCATION": (tmp_path / "mlartifacts").as_uri(),
        "COBUY_PSEUDONYM_KEY": "integration-test-secret",  # production reads the pseudonymisation key too
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _storage_config(config: dict) -> dict:
    """test_privacy's smaller run (80 users, 1 trial, 2 epochs; it passes there), the text encoder as packaged
    (steps 0: fine-tuning is tested in tests/test_assets.py and tests/test_text_encoder.py), itemknn still tuned
    with 3 trials (the Optuna storage check below counts them). This test checks where the run is stored."""
    from tests.test_privacy import _fast

    cfg = _fast(config)
    cfg["ops"]["itemknn_model"]["config"]["tune_trials"] = 3
    cfg["ops"]["text_encoder"]["config"]["steps"] = 0
    return cfg


def test_full_pipeline_with_postgres_instance_storage(postgres, tmp_path, monkeypatch):
    import optuna

    from orchestration.definitions import all_assets, all_checks, build_resources, full_pipeline
    from tests.test_assets import SMALL

    env = _production_env(monkeypatch, postgres, tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "infra" / "production" / "dagster.yaml", home / "dagster.yaml")
    resources = build_resources(str(tmp_path / "data"))  # production: servers named by the environment
    defs = dg.Definitions(assets=all_assets, asset_checks=all_checks, jobs=[full_pipeline], resources=resources)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = defs.resolve_job_def("full_pipeline").execute_in_process(run_config=_storage_config(SMALL),
                                                                          instance=instance)
        assert result.success
        run_id = result.run_id

    # a new instance (another process would do the same) reads the run and its materialisations from Postgres
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        for key in ("validated_interactions", "model_metrics", "related_items"):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.run_id == run_id
    with postgres.connect(env["DAGSTER_PG_DB"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] > 50
    conn.close()
    # the tuned families kept their studies in the Postgres Optuna storage
    studies = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(env["OPTUNA_STORAGE_URL"])}
    assert any(name.startswith("itemknn-") and n == 3 for name, n in studies.items()), studies


def test_mlflow_tracking_and_registry_on_postgres(postgres, tmp_path, shop_data):
    from mlflow import MlflowClient

    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender
    from serving.registry import CHALLENGER, alias_version, download_version, register_challenger
    from training.models import ItemKNN
    from training.tracking import TrainingRun, log_training_run

    uri = postgres.url(postgres.create_database("mlflow"))
    model = ItemKNN().fit(shop_data)
    path = tmp_path / "itemknn.onnx"
    info = export_recommender(model, path, k=10, user_ids=shop_data.user_ids, item_ids=shop_data.item_ids)
    run = TrainingRun(model.name, {"k": model.k}, metrics={"recall@20": 0.25}, tags={"dagster_run_id": "pytest"},
                      onnx_path=str(path), onnx_kind=info.kind, onnx_n_items=info.n_items, onnx_k=info.k)
    logged = log_training_run(uri, "cobuy-pg", run, artifact_location=(tmp_path / "artifacts").as_uri())
    version = register_challenger(uri, "cobuy-pg-itemknn", logged.model_uri, logged.run_id)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("cobuy-pg-itemknn", "champion", version)

    assert alias_version(uri, "cobuy-pg-itemknn", CHALLENGER) == version
    assert alias_version(uri, "cobuy-pg-itemknn", "champion") == version
    assert client.get_run(logged.run_id).data.metrics["recall_at_20"] == 0.25
    got = download_version(uri, "cobuy-pg-itemknn", version, tmp_path / "download")
    users = np.arange(20)
    ours = OnnxRecommender(path, provider="cpu").top_k(users, shop_data.user_items[users])
    theirs = OnnxRecommender(got, provider="cpu").top_k(users, shop_data.user_items[users])
    assert np.array_equal(ours[0], theirs[0]) and np.allclose(ours[1], theirs[1])
    # the records are in Postgres, not in a file next to the test
    with postgres.connect(uri.rsplit("/", 1)[1]) as conn, conn.cursor() as cur:
        cur.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s ORDER BY alias",
                    ("cobuy-pg-itemknn",))
        assert cur.fetchall() == [("challenger", int(version)), ("champion", int(version))]
    conn.close()
