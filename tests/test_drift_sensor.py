"""The drift sensor on the synthetic shop, landed month by month (the seasonal shift starts in month five):
skips stable months, fires on the shifted one, never twice for the same data, respects the cooldown,
reads the champion's reference profile from MLflow and falls back to the validated data without one."""
from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from data_checks.cleaning import clean
from data_checks.drift import interaction_profile
from data_checks.drift_trigger import WatchState
from data_checks.landing import land_by_period
from data_checks.privacy import key_from_secret, pseudonymize_tables
from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
from orchestration.resources import MLflowRegistry, Pseudonymizer
from orchestration.sensors import DriftPolicy, drift_sensor

CFG = SyntheticShopConfig()  # six months from 2024-01; the seasonal shift from month index 4 (May)
SECRET = "drift-sensor-test-secret"


@pytest.fixture(scope="module")
def months():
    """Raw rows (dirty rows included, customer ids in clear as they land) and validated rows (pseudonymised,
    as ingestion stores them) of the default synthetic shop, by month."""
    raw = generate_shop(CFG).tables
    month = raw.interactions["timestamp"].dt.to_period("M")
    valid = clean(pseudonymize_tables(raw, key_from_secret(SECRET))).interactions
    return raw.interactions, month, valid, valid["timestamp"].dt.to_period("M")


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def land(months, folder: Path, index: int) -> Path:
    """Write month ``index`` of the raw shop into the landing folder (canonical columns, Parquet)."""
    raw, month, _, _ = months
    rows = raw[(month == pd.Period(CFG.start, "M") + index).to_numpy()]
    cols = ["user_id", "item_id", "timestamp", "basket_id", "quantity", "price"]
    [path] = land_by_period(rows[cols], folder)
    return path


def resources(tmp_path: Path, mlflow_uri: str, fallback: Path | None = None, **policy) -> dict:
    return {"drift_policy": DriftPolicy(landing_dir=str(tmp_path / "landing"), decisions_log=str(tmp_path / "log.jsonl"),
                                        reference_fallback=str(fallback or ""), **{"cooldown_seconds": 3600.0, **policy}),
            "mlflow": MLflowRegistry(tracking_uri=mlflow_uri), "pseudonymizer": Pseudonymizer(secret=SECRET)}


def tick(res: dict, cursor: str | None) -> dg.SensorResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return drift_sensor(dg.build_sensor_context(cursor=cursor, instance=instance, resources=res))


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests, [r.run_key for r in result.run_requests]
    return result.skip_reason.skip_message


def test_fires_on_the_shifted_month_only_once_and_respects_the_cooldown(months, tmp_path, mlflow_uri):
    _, _, valid, vmonth = months
    fallback = tmp_path / "data" / "assets" / "validated_interactions.parquet"
    fallback.parent.mkdir(parents=True)
    valid[vmonth.isin(pd.period_range(CFG.start, periods=2, freq="M"))].to_parquet(fallback)  # trained on Jan-Feb
    res = resources(tmp_path, mlflow_uri, fallback)
    landing = tmp_path / "landing"

    r = tick(res, None)
    assert skip_text(r).startswith("no_new_data")
    cursor = r.cursor
    for index in (2, 3):  # March, April: same shop, no shift
        land(months, landing, index)
        r = tick(res, cursor)
        text = skip_text(r)
        assert text.startswith("below_thresholds: no drift: item_js"), text
        assert "item_psi" in text and "<= 0.1" in text
        assert "fallback (no champion yet): validated training data" in text
        cursor = r.cursor
        assert skip_text(r := tick(res, cursor)).startswith("no_new_data")  # nothing new: nothing judged again
        cursor = r.cursor

    may = land(months, landing, 4)
    before_fire = cursor
    r = tick(res, cursor)
    [request] = r.run_requests
    assert request.run_key.startswith("drift-")
    tags = request.tags
    assert tags["drift/decision"] == "fire" and tags["drift/window"] == may.name
    assert {"item_psi", "new_item_rate"} <= set(tags["drift/exceeded"].split(","))
    assert float(tags["drift/new_item_rate"]) > 0.05 and float(tags["drift/item_psi"]) > 0.1
    assert float(tags["drift/new_user_rate"]) < 0.1  # landed ids pseudonymised with the same key as the reference
    assert json.loads(tags["drift/report"])["metrics"]["new_item_rate"] == pytest.approx(
        float(tags["drift/new_item_rate"]), abs=1e-4)
    config = request.run_config["ops"]["raw_tables"]["config"]
    assert [Path(p).name for p in config["landed_files"]] == [
        "interactions-2024-03.parquet", "interactions-2024-04.parquet", "interactions-2024-05.parquet"]
    cursor = r.cursor

    # never twice for the same data: later ticks skip; a replayed cursor gives the same run key (deduplicated)
    assert skip_text(tick(res, cursor)).startswith("no_new_data")
    assert tick(res, before_fire).run_requests[0].run_key == request.run_key

    land(months, landing, 5)  # June still drifts from Jan-Feb, but a run was requested a moment ago
    r = tick(res, cursor)
    assert skip_text(r).startswith("cooldown: drift:") and "cooldown 3600 s" in skip_text(r)
    state = WatchState.from_json(r.cursor)
    assert state.pending == ["interactions-2024-06.parquet"]
    assert skip_text(tick(res, r.cursor)).endswith("1 pending (cooldown))")  # waits, not judged again
    state.last_fired_at = time.time() - 3601  # the cooldown is over: the pending month fires, no new file needed
    [late] = tick(res, state.to_json()).run_requests
    assert late.run_key != request.run_key and late.tags["drift/window"] == "interactions-2024-06.parquet"

    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["status"] for e in log] == ["below_thresholds", "below_thresholds", "fire", "fire", "cooldown", "fire"]
    assert log[2]["metrics"]["new_item_rate"] > 0.05 and log[2]["quarantined_rows"] > 0  # dirty rows were validated


def test_reads_the_champions_reference_profile_from_mlflow(months, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    from training.tracking import ensure_experiment, tracking

    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # its own registry: the champion must not leak
    _, _, valid, vmonth = months
    profile = tmp_path / "reference_profile.json"
    # the champion was retrained on May, after the shift: June's seasonal taste is no news to it
    profile.write_text(json.dumps(interaction_profile(valid[vmonth == pd.Period("2024-05", "M")])))
    exp = ensure_experiment(mlflow_uri, "drift-test", (tmp_path / "artifacts").as_uri())
    with tracking(mlflow_uri), mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifact(str(profile))
    client = MlflowClient(mlflow_uri, registry_uri=mlflow_uri)
    client.create_registered_model("cobuy-ease")
    version = client.create_model_version("cobuy-ease", f"runs:/{run.info.run_id}/reference_profile.json",
                                          run_id=run.info.run_id)
    client.set_registered_model_alias("cobuy-ease", "champion", version.version)

    res = resources(tmp_path, mlflow_uri)  # no fallback given: the champion's profile must be used
    land(months, tmp_path / "landing", 5)
    text = skip_text(tick(res, None))
    assert text.startswith("below_thresholds") and f"reference: champion cobuy-ease v{version.version}" in text


def test_unreadable_file_is_reported_once_and_small_windows_wait(months, tmp_path, mlflow_uri):
    _, _, valid, vmonth = months
    fallback = tmp_path / "validated.parquet"
    valid[vmonth <= pd.Period("2024-02", "M")].to_parquet(fallback)
    res = resources(tmp_path, mlflow_uri, fallback, min_rows=6000)  # more than one month holds (~3,900 rows)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "broken.csv").write_text("sku,when\nA,2024-03-01\n")
    r = tick(res, None)
    assert skip_text(r).startswith("unreadable") and "broken.csv" in skip_text(r) and "item_id" in skip_text(r)
    assert skip_text(r := tick(res, r.cursor)).startswith("no_new_data")  # not retried until it changes
    land(months, landing, 4)
    r = tick(res, r.cursor)
    assert skip_text(r).startswith("insufficient_data") and "min_rows 6000" in skip_text(r)
    land(months, landing, 5)
    [request] = tick(res, r.cursor).run_requests  # May waited and was judged together with June
    assert request.tags["drift/window"] == "interactions-2024-05.parquet, interactions-2024-06.parquet"
    assert all("broken" not in p for p in request.run_config["ops"]["raw_tables"]["config"]["landed_files"])


def test_definitions_wire_the_sensor_to_the_retrain_job(tmp_path):
    from orchestration.definitions import build_resources, defs

    sensor = defs.get_sensor_def("drift_sensor")
    assert sensor.job_name == "retrain"
    policy = build_resources(str(tmp_path))["drift_policy"]
    assert Path(policy.landing_dir) == tmp_path.resolve() / "landing"
    assert Path(policy.decisions_log).parent == tmp_path.resolve()
    config = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "path": "", "landed_files": ["/x.parquet"],
                                                "landed_layout": "canonical", "landed_columns": {}}}}}
    retrain = defs.resolve_job_def("retrain")
    assert {"raw_tables", "validated_tables", "model_versions", "champion_decisions"} <= {
        n.name for n in retrain.graph.node_defs}
    dg.validate_run_config(retrain, config)  # what a fire requests is accepted by the job (unknown ops are not)


def test_without_a_champion_the_reference_is_the_latest_materialized_validated_data(months, tmp_path, mlflow_uri):
    """No ``reference_fallback`` configured (the default): the sensor profiles the file that the latest
    materialization of ``validated_interactions`` recorded in the Dagster instance (outputs are per run)."""
    _, _, valid, vmonth = months
    run_file = tmp_path / "data" / "assets" / "validated_interactions" / "some-run-id.parquet"
    run_file.parent.mkdir(parents=True)
    valid[vmonth.isin(pd.period_range(CFG.start, periods=2, freq="M"))].to_parquet(run_file)
    res = resources(tmp_path, f"sqlite:///{tmp_path / 'empty-mlflow.db'}")  # no champion in this registry
    land(months, tmp_path / "landing", 2)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "validated_interactions", metadata={"path": dg.MetadataValue.path(str(run_file))}))
        r = drift_sensor(dg.build_sensor_context(cursor=None, instance=instance, resources=res))
    text = skip_text(r)
    assert text.startswith("below_thresholds") and f"validated training data {run_file}" in text, text
