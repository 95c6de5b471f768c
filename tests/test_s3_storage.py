"""Asset outputs and MLflow artifacts on S3-compatible storage, against a real S3 server on loopback.

MinIO cannot run on this machine (no Docker; not on PyPI or Debian), so moto's standalone server
(``moto[server]``, ``ThreadedMotoServer``: S3's HTTP API on a free loopback port) stands in for it. The
resources are the production ones (``build_resources(environment="production")``) with asset outputs on
``COBUY_ASSET_BASE=s3://cobuy/shop1`` and MLflow tracking on a local SQLite file whose artifacts go to
``MLFLOW_ARTIFACT_LOCATION=s3://mlflow/cobuy`` (endpoint ``MLFLOW_S3_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL``).

Run 1 materializes ingestion, validation and splits; run 2 materializes ``popularity_model`` (its input
``interaction_matrices`` read back from run 1's object) and a test asset that exports it to ONNX and
registers it through the ``MLflowRegistry`` resource. Every object is checked in the bucket with boto3,
independently of the fsspec layer the code writes with."""

import io
import json
import logging
import pickle
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from orchestration.resources import ArtifactStore, MLflowRegistry

pytestmark = pytest.mark.integration

ASSET_BUCKET, MLFLOW_BUCKET = "cobuy", "mlflow"
PREFIX = "shop1"  # COBUY_ASSET_BASE = s3://cobuy/shop1: outputs under s3://cobuy/shop1/assets/<key>/<run id>.*
USERS = 150  # a small synthetic shop, as tests/test_assets.py


@pytest.fixture()
def s3(tmp_path, monkeypatch):
    """moto's S3 server on a free loopback port with the two buckets; credentials and endpoints are set
    for this test only. Yields (endpoint URL, a boto3 S3 client)."""
    pytest.importorskip("s3fs", reason="s3fs (asset outputs on s3://) is not installed: make install")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] (the S3 stand-in) is not installed: "
                                                            "make install")
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "cobuy-test", "AWS_SECRET_ACCESS_KEY": "cobuy-test-secret",
                        "AWS_DEFAULT_REGION": "us-east-1",
                        # no profile or credentials of this machine's user may leak in
                        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}.items():
        monkeypatch.setenv(name, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
        _, port = server.get_host_and_port()
    except Exception as exc:  # noqa: BLE001 - any failure to serve means: no S3 here
        pytest.skip(f"moto's S3 server could not start on 127.0.0.1: {exc.__class__.__name__}: {exc}")
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)  # MLflow's S3 artifact repository
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # everything else (s3fs for asset outputs, boto3)
    client = boto3.client("s3", endpoint_url=endpoint)
    for bucket in (ASSET_BUCKET, MLFLOW_BUCKET):
        client.create_bucket(Bucket=bucket)
    try:
        yield endpoint, client
    finally:
        server.stop()


def _objects(client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix`` in ``bucket``: key -> content."""
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def _read(objects: dict[str, bytes], key: str):
    """The asset output stored as ``key`` (a Parquet table or a pickle), from the bytes boto3 fetched."""
    blob = objects[key]
    return pd.read_parquet(io.BytesIO(blob)) if key.endswith(".parquet") else pickle.loads(blob)


@dg.asset
def registered_popularity(context: dg.AssetExecutionContext, interaction_matrices, popularity_model,
                          mlflow: MLflowRegistry, artifacts: ArtifactStore) -> dict:
    """Export ``popularity_model`` to ONNX and register it as ``challenger`` through the resource (with a
    plain artifact beside it), as ``model_versions`` does for every family."""
    from serving.exports import export_family
    from training.tracking import TrainingRun, dataset_fingerprint

    folder = artifacts.run_dir(context.run.run_id, "s3-test")
    info = export_family(popularity_model, interaction_matrices.train, folder / "popularity.onnx")
    note = folder / "note.json"
    note.write_text(json.dumps({"dagster_run_id": context.run.run_id, "items": info.n_items}))
    fingerprint = dataset_fingerprint(interaction_matrices.train)
    run = TrainingRun("popularity", {"k": info.k}, tags={"dataset_fingerprint": fingerprint},
                      artifacts={"": [str(note)]}, onnx_path=str(folder / "popularity.onnx"), onnx_kind=info.kind,
                      onnx_n_items=info.n_items, onnx_k=info.k)
    logged = mlflow.log_run(run)
    version = mlflow.register_challenger("popularity", logged)
    return {"version": version, "mlflow_run_id": logged.run_id, "note": str(note), "onnx": str(run.onnx_path),
            "fingerprint": fingerprint}


def test_asset_outputs_and_mlflow_artifacts_live_in_s3(s3, tmp_path, monkeypatch):
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
    from orchestration.assets import ingestion, splits, validation
    from orchestration.definitions import all_assets, all_checks, build_resources
    from orchestration.resources import TableIOManager, latest_materialized_path, read_output
    from orchestration.sensors import VALIDATED_INTERACTIONS
    from serving.exports import verify_export
    from serving.onnx_scoring import OnnxRecommender
    from serving.registry import CHALLENGER, alias_version, download_run_artifact, download_version
    from training.tracking import dataset_fingerprint

    endpoint, client = s3
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name, value in {"COBUY_ASSET_BASE": f"s3://{ASSET_BUCKET}/{PREFIX}", "MLFLOW_TRACKING_URI": tracking_uri,
                        "MLFLOW_ARTIFACT_LOCATION": f"s3://{MLFLOW_BUCKET}/cobuy",
                        "OPTUNA_STORAGE_URL": f"sqlite:///{tmp_path / 'optuna.db'}",
                        "COBUY_PSEUDONYM_KEY": "s3-integration-test-key-0123456789"}.items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    resources = build_resources(str(data_dir), environment="production")
    io_manager = resources["io_manager"]
    assert isinstance(io_manager, TableIOManager)
    assert (io_manager.base_dir, io_manager.s3_endpoint_url) == (f"s3://{ASSET_BUCKET}/{PREFIX}", endpoint)
    assert isinstance(resources["mlflow"], MLflowRegistry)
    assert resources["mlflow"].artifact_location == f"s3://{MLFLOW_BUCKET}/cobuy"

    with dg.instance_for_test() as instance:
        # ---- run 1: ingestion -> validation -> splits, every output an object in the bucket
        first = dg.materialize(
            [*all_assets, *all_checks], resources=resources, instance=instance,
            selection=dg.AssetSelection.groups(ingestion.GROUP, validation.GROUP, splits.GROUP),
            run_config={"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": USERS}}}})
        assert first.success
        recorded = {e.event_specific_data.materialization.asset_key.to_user_string():
                    e.event_specific_data.materialization.metadata["path"].value
                    for e in first.get_asset_materialization_events()}
        expected = {"raw_interactions": "parquet", "raw_items": "parquet", "validated_interactions": "parquet",
                    "validated_items": "parquet", "quarantine": "parquet", "training_split": "pkl",
                    "interaction_matrices": "pkl"}
        assert set(recorded) == set(expected)
        objects = _objects(client, ASSET_BUCKET)
        per_run = {f"{PREFIX}/assets/{key}/{first.run_id}.{ext}" for key, ext in expected.items()}
        latest = {f"{PREFIX}/assets/{key}.{ext}" for key, ext in expected.items()}
        assert set(objects) == per_run | latest  # the per-run layout, plus the latest copies, nothing else
        for key, ext in expected.items():
            assert recorded[key] == f"s3://{ASSET_BUCKET}/{PREFIX}/assets/{key}/{first.run_id}.{ext}"
            assert objects[f"{PREFIX}/assets/{key}.{ext}"] == objects[f"{PREFIX}/assets/{key}/{first.run_id}.{ext}"]
        shop = generate_shop(SyntheticShopConfig(n_users=USERS))  # known answer: every raw row went to S3
        raw = _read(objects, f"{PREFIX}/assets/raw_interactions/{first.run_id}.parquet")
        assert len(raw) == len(shop.tables.interactions)
        clean = _read(objects, f"{PREFIX}/assets/validated_interactions/{first.run_id}.parquet")
        quarantined = _read(objects, f"{PREFIX}/assets/quarantine/{first.run_id}.parquet")
        assert len(clean) + int((quarantined["table"] == "interactions").sum()) == len(raw)
        assert 0 < len(quarantined) < 0.05 * len(raw)  # the shop's ~1% dirty rows
        assert not (data_dir / "assets").exists(), "no asset output may land in the local data folder"
        # the drift sensor's fallback reads the latest validated interactions as recorded (endpoint from the env)
        path = latest_materialized_path(instance, VALIDATED_INTERACTIONS)
        assert str(path) == recorded["validated_interactions"] and read_output(path).equals(clean)

        # ---- run 2: popularity_model reads run 1's matrices from S3 (cross-run), registered via MLflow
        second = dg.materialize([*all_assets, registered_popularity], resources=resources, instance=instance,
                                selection=["popularity_model", "registered_popularity"])
        assert second.success
        matrices = _read(objects, f"{PREFIX}/assets/interaction_matrices/{first.run_id}.pkl")
        objects = _objects(client, ASSET_BUCKET)  # after run 2
        model_key = f"{PREFIX}/assets/popularity_model/{second.run_id}.pkl"
        assert {model_key, f"{PREFIX}/assets/registered_popularity/{second.run_id}.pkl"} <= set(objects)
        assert not any(k.startswith(f"{PREFIX}/assets/interaction_matrices/{second.run_id}") for k in objects)
        done = _read(objects, f"{PREFIX}/assets/registered_popularity/{second.run_id}.pkl")
        assert done["fingerprint"] == dataset_fingerprint(matrices.train)  # it read run 1's object
        model = _read(objects, model_key)
        assert np.array_equal(model.counts, np.asarray(matrices.train.user_items.sum(axis=0)).ravel())

    # ---- MLflow: the run's artifact and the registered model are objects in the MLflow bucket
    artifacts = _objects(client, MLFLOW_BUCKET, "cobuy/")
    note_keys = [k for k in artifacts if k.endswith(f"{done['mlflow_run_id']}/artifacts/note.json")]
    assert len(note_keys) == 1 and artifacts[note_keys[0]] == Path(done["note"]).read_bytes()
    onnx_keys = [k for k in artifacts if k.endswith("/model.onnx")]
    assert len(onnx_keys) == 1, sorted(artifacts)
    assert alias_version(tracking_uri, "cobuy-popularity", CHALLENGER) == done["version"]
    downloaded = download_version(tracking_uri, "cobuy-popularity", done["version"], tmp_path / "download")
    assert downloaded.read_bytes() == artifacts[onnx_keys[0]]
    note = download_run_artifact(tracking_uri, "cobuy-popularity", CHALLENGER, "note.json", tmp_path / "note")
    assert note is not None and note.read_bytes() == Path(done["note"]).read_bytes()
    check = verify_export("popularity", model, downloaded, matrices.train.user_items,
                          lambda p: OnnxRecommender(Path(p), provider="cpu"), n_users=50, seed=0)
    assert check.passed, check.error
    assert not list(tmp_path.rglob("mlruns")) and not (data_dir / "mlartifacts").exists()
