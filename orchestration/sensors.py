"""Sensors: retraining on drift.

``drift_sensor`` watches the landing folder. Each tick it judges the landed files it has not judged yet
against the reference profile of the window the champion was trained on (the ``reference_profile.json``
artifact of the champion's MLflow run; before any champion exists, a profile of the current validated
training data) and either requests a ``retrain`` run, with the drift report in the run's tags, or skips
saying which metric was below which threshold. The plain logic lives in ``data_checks.drift_trigger``;
every decision is also appended to ``DriftPolicy.decisions_log`` (JSON lines). Landed user ids are
pseudonymised with the ingestion key first, so they compare with the pseudonyms in the champion's profile.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import dagster as dg

from data_checks.cleaning import clean
from data_checks.drift import DriftThresholds, interaction_profile
from data_checks.drift_trigger import Evaluation, WatchState, evaluate_landing
from data_checks.landing import LandedLayout, list_landed
from data_checks.privacy import pseudonymize_tables
from data_checks.readers import RawTables
from data_checks.sources import SourceSpec, read_source
from orchestration.resources import (MLflowRegistry, Pseudonymizer, StoragePath, latest_materialized_path,
                                     read_output)
from cobuy_files.storage import atomic_path
from training.families import SERVED

RETRAIN_JOB = "retrain"
REFERENCE_ARTIFACT = "reference_profile.json"
VALIDATED_INTERACTIONS = dg.AssetKey("validated_interactions")


class DriftPolicy(dg.ConfigurableResource):
    """Where data lands, what the retraining run reads, and when drift is worth a retraining run.

    Thresholds: a metric above its threshold requests a run (``volume_change`` compares its absolute
    value); ``None`` switches a metric off; a window under ``min_rows`` valid rows waits for more files.
    ``champion_families``: the registered families whose ``@champion`` run's ``reference_profile.json``
    is the reference (the first one found; default every served family, ``training.families.SERVED``). When no
    champion exists yet, the validated interactions are profiled: ``reference_fallback`` when set (a Parquet
    file), else the file of ``validated_interactions``' latest materialization in the Dagster instance (else the
    configured source is read and cleaned)."""

    landing_dir: str
    landing_glob: str = "*"
    landed_layout: LandedLayout = "canonical"
    landed_columns: dict[str, str] = {}
    source_kind: str = "synthetic"
    source_path: str = ""
    reference_fallback: str = ""
    decisions_log: str = ""
    champion_families: list[str] = list(SERVED)
    cooldown_seconds: float = 6 * 3600.0
    item_js: Optional[float] = DriftThresholds.item_js
    item_psi: Optional[float] = DriftThresholds.item_psi
    new_item_rate: Optional[float] = DriftThresholds.new_item_rate
    new_user_rate: Optional[float] = DriftThresholds.new_user_rate
    basket_size_shift: Optional[float] = DriftThresholds.basket_size_shift
    volume_change: Optional[float] = DriftThresholds.volume_change
    min_rows: int = DriftThresholds.min_rows

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(item_js=self.item_js, item_psi=self.item_psi, new_item_rate=self.new_item_rate,
                               new_user_rate=self.new_user_rate, basket_size_shift=self.basket_size_shift,
                               volume_change=self.volume_change, min_rows=self.min_rows)


def reference_profile(policy: DriftPolicy, mlflow: MLflowRegistry, prepare: Callable[[RawTables], RawTables],
                      materialized: Optional[Callable[[], Optional[StoragePath]]] = None
                      ) -> tuple[dict[str, Any], str]:
    """The champion's reference profile and where it came from; the fallback when no champion has one.
    ``prepare``: what ingestion does to raw tables before cleaning (pseudonymising user ids);
    ``materialized``: gives the latest materialized validated interactions file (None when there is none)."""
    with tempfile.TemporaryDirectory(prefix="cobuy-reference-") as tmp:
        for family in policy.champion_families:
            path = mlflow.download_run_artifact(family, "champion", REFERENCE_ARTIFACT, Path(tmp, family))
            if path is not None:
                version = mlflow.version_for(family, "champion")
                return json.loads(Path(path).read_text()), f"champion {mlflow.model_name(family)} v{version}"
    fallback = Path(policy.reference_fallback) if policy.reference_fallback else \
        (materialized() if materialized is not None else None)
    if fallback is not None and fallback.exists():
        return (interaction_profile(read_output(fallback)),
                f"fallback (no champion yet): validated training data {fallback}")
    raw = read_source(SourceSpec(kind=policy.source_kind, path=policy.source_path))  # type: ignore[arg-type]
    return (interaction_profile(clean(prepare(raw)).interactions),
            f"fallback (no champion yet, no validated data materialised): source {policy.source_kind} "
            f"{policy.source_path}".rstrip())


def append_decision(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line to the decisions log, atomically (the old log plus the line replaces it)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    with atomic_path(path) as tmp:
        tmp.write_text(old + json.dumps(record, default=str) + "\n")


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def run_tags(ev: Evaluation) -> dict[str, str]:
    """The drift report as run tags (Dagster tag values are strings)."""
    metrics = (ev.report or {}).get("metrics", {})
    tags = {"drift/decision": ev.status, "drift/reason": ev.reason, "drift/reference": ev.reference,
            "drift/window": ", ".join(f.name for f in ev.window), "drift/exceeded": ",".join(ev.decision.exceeded)
            if ev.decision else "", **{f"drift/{k}": _fmt(v) for k, v in metrics.items()}}
    if ev.report:
        tags["drift/report"] = json.dumps(ev.report, default=str)
    return tags


@dg.sensor(job_name=RETRAIN_JOB, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Requests a retrain run when newly landed data drifts from the champion's training window "
                       "(item popularity JS/PSI, new items/users, basket sizes, volume); tick history shows "
                       "every skip with the metric that stayed below its threshold.")
def drift_sensor(context: dg.SensorEvaluationContext, drift_policy: DriftPolicy, mlflow: MLflowRegistry,
                 pseudonymizer: Pseudonymizer):
    policy = drift_policy
    key = pseudonymizer.key()

    def prepare(raw: RawTables) -> RawTables:  # as raw_tables does: landed ids compare with the champion's
        return pseudonymize_tables(raw, key)

    state = WatchState.from_json(context.cursor)
    files = list_landed(policy.landing_dir, policy.landing_glob, known=state.known(policy.landing_dir))
    now = time.time()

    def validated() -> Optional[StoragePath]:  # the file the latest materialization recorded (per run, not a fixed path)
        return latest_materialized_path(context.instance, VALIDATED_INTERACTIONS)

    ev = evaluate_landing(state, files, lambda: reference_profile(policy, mlflow, prepare, validated),
                          policy.thresholds(), policy.cooldown_seconds, now, policy.landed_layout,
                          source=policy.source_kind, columns=policy.landed_columns or None, prepare=prepare)
    if ev.status != "no_new_data":
        context.log.info(f"drift sensor: {ev.status}: {ev.reason} (reference: {ev.reference})")
        if policy.decisions_log:
            append_decision(policy.decisions_log, ev.record(now))
    if ev.fire:
        config = {"kind": policy.source_kind, "path": policy.source_path, "landed_files": ev.landed_files,
                  "landed_layout": policy.landed_layout, "landed_columns": dict(policy.landed_columns)}
        request = dg.RunRequest(run_key=ev.run_key, run_config={"ops": {"raw_tables": {"config": config}}},
                                tags=run_tags(ev))
        return dg.SensorResult(run_requests=[request], cursor=ev.state.to_json())
    reference = f" (reference: {ev.reference})" if ev.reference else ""
    return dg.SensorResult(skip_reason=f"{ev.status}: {ev.reason}{reference}", cursor=ev.state.to_json())
