"""The code location: every asset, check, job and resource. The environment is chosen here, once."""
from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from orchestration.assets import (answers, evaluation, hybrid, ingestion, models, registry, scoring, splits, text,
                                  validation)
from orchestration.console import outcome_console
from orchestration.resources import (ArtifactStore, CountingEngine, MLflowRegistry, OnnxRuntimeResource, OptunaStorage,
                                     TableIOManager, Pseudonymizer, TrainingPlan, ValidationPolicy, default_data_dir)
from orchestration.sensors import DriftPolicy, drift_sensor

ASSET_MODULES = [ingestion, validation, splits, models, hybrid, text, evaluation, scoring, registry, answers]
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PSEUDONYM_KEY_ENV = "COBUY_PSEUDONYM_KEY"
ASSET_BASE_ENV = "COBUY_ASSET_BASE"  # production: where asset outputs go (s3://bucket/prefix or a folder)
COUNTING_ENGINE_ENV = "COBUY_COUNTING_ENGINE"  # local | spark: where rules' and item-kNN's counts are taken
SPARK_MASTER_ENV = "COBUY_SPARK_MASTER"  # the Spark master URL (spark://..., k8s://...); production: spark when set

all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)


# Runs of jobs that train carry this tag; the instance's run queue (infra/*/dagster.yaml, Helm values) admits
# one of them at a time, so two runs never train the same asset at once. Scoring runs may overlap them: every
# asset output and run artifact is a file of its own run (TableIOManager, ArtifactStore.run_dir).
TRAINING_TAGS = {"cobuy/trains": "true"}


def _preset(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


full_pipeline = dg.define_asset_job(
    "full_pipeline", selection=dg.AssetSelection.all(), tags=TRAINING_TAGS,
    description="Ingest, validate, split, fit, evaluate and publish related items (synthetic shop by default).")
ingest_job = dg.define_asset_job(
    "ingest_and_validate", selection=dg.AssetSelection.groups(ingestion.GROUP, validation.GROUP),
    description="Read the source and validate it; nothing is trained.")
train_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.groups(splits.GROUP, models.GROUP, text.GROUP, evaluation.GROUP), tags=TRAINING_TAGS,
    description="Split, fit every model family and evaluate on the test split.")
retrain_job = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.groups(ingestion.GROUP, validation.GROUP, splits.GROUP, models.GROUP, text.GROUP,
                                       evaluation.GROUP, registry.GROUP,
                                       "scoring",  # "scoring": batch scoring with whatever is champion after the gate
                                       answers.GROUP),
    tags=TRAINING_TAGS,
    description="Read the source and the landed files (raw_tables.landed_files), validate, retrain every family, "
                "export and parity-check ONNX, register challengers, run the promotion gate and re-score with the "
                "champion. The drift sensor requests it.")
promote_job = dg.define_asset_job(
    "promote", selection=dg.AssetSelection.assets(registry.champion_decisions),
    description="The promotion gate only: judge each family's @challenger against @champion on held-out data.")
serve_job = dg.define_asset_job(
    "publish_related_items", selection=dg.AssetSelection.assets(scoring.related_items),
    description="Rebuild related_items from cobuy-serving@champion (what the live service answers from), or, where "
                "it cannot relate items or there is none, from a family's @champion (item-kNN, else association "
                "rules, else a factor model) with ONNX Runtime.")
score_job = dg.define_asset_job(
    "score", selection=dg.AssetSelection.groups(scoring.GROUP),
    description="Batch scoring with whatever MLflow's @champion names now: user recommendations, related items "
                "(ONNX Runtime, CUDA when available) and text neighbours of new items.")
nightly_score = dg.ScheduleDefinition(
    name="nightly_score", job=score_job, cron_schedule="0 3 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-score every night at 03:00 UTC with the current champions (start it in the UI).")
preset_jobs = [
    dg.define_asset_job(f"{name}_pipeline", selection=dg.AssetSelection.all(), config=_preset(name), tags=TRAINING_TAGS,
                        description=f"The full pipeline on the {name.replace('_', ' ')} preset (configs/{name}.yaml).")
    for name in ("online_retail", "gowalla", "demo")
]


def build_resources(data_dir: "str | None" = None, environment: "str | None" = None) -> dict:
    """Every resource, for one environment; the one place where local and production differ.

    ``local`` (default): the embedded set-up, files under ``data_dir`` (``COBUY_DATA_DIR``, else ``data/``),
    MLflow on SQLite with a local artifact folder, Optuna on SQLite.
    ``production`` (``COBUY_ENV=production``): the same code against servers named by environment variables
    (``MLFLOW_TRACKING_URI``, ``OPTUNA_STORAGE_URL``, optional ``MLFLOW_ARTIFACT_LOCATION``); asset outputs go to
    ``COBUY_ASSET_BASE`` when set (``s3://cobuy/assets``; S3-compatible endpoint from ``AWS_ENDPOINT_URL``, else
    ``MLFLOW_S3_ENDPOINT_URL``, which MLflow itself reads for ``s3://`` artifacts), else under ``data_dir``;
    run artifacts stay under ``data_dir``. See ``infra/``.
    The counting stages of rules and item-kNN run in the step's process unless ``COBUY_COUNTING_ENGINE=spark``
    (master ``COBUY_SPARK_MASTER``, default ``local[2]``); in production ``COBUY_SPARK_MASTER`` alone selects Spark
    (``infra/spark/``, docs/spark.md). Run config may override it: ``resources: counting: config: ...``.
    Customer ids are pseudonymised with ``COBUY_PSEUDONYM_KEY`` (required in production; locally, when unset,
    a random key generated once under ``<data_dir>/secrets/``).
    """
    base = Path(data_dir or default_data_dir()).resolve()
    env = environment or os.environ.get("COBUY_ENV", "local")
    common = {"io_manager": TableIOManager(base_dir=str(base)), "artifacts": ArtifactStore(base_dir=str(base)),
              "policy": ValidationPolicy(), "onnx_runtime": OnnxRuntimeResource(),
              # which families a run trains and the memory they may take (run config: resources: training_plan)
              "training_plan": TrainingPlan(),
              "counting": counting_engine(env),
              # before any champion, drift is judged against validated_interactions' latest materialization
              "drift_policy": DriftPolicy(landing_dir=str(base / "landing"),
                                          decisions_log=str(base / "drift_decisions.jsonl"))}
    if env == "local":
        local_key = (Pseudonymizer(secret=dg.EnvVar(PSEUDONYM_KEY_ENV)) if os.environ.get(PSEUDONYM_KEY_ENV)
                     else Pseudonymizer(key_file=str(base / "secrets" / "pseudonym.key")))
        return {**common, "pseudonymizer": local_key,
                "optuna": OptunaStorage(url=f"sqlite:///{base / 'optuna.db'}"),
                "mlflow": MLflowRegistry(tracking_uri=f"sqlite:///{base / 'mlflow.db'}",
                                         artifact_location=(base / "mlartifacts").as_uri())}
    if env == "production":
        assets = TableIOManager(
            base_dir=os.environ.get(ASSET_BASE_ENV) or str(base),
            s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL"))
        return {**common, "io_manager": assets, "pseudonymizer": Pseudonymizer(secret=dg.EnvVar(PSEUDONYM_KEY_ENV)),
                "optuna": OptunaStorage(url=dg.EnvVar("OPTUNA_STORAGE_URL")),
                "mlflow": MLflowRegistry(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"),
                                         artifact_location=os.environ.get("MLFLOW_ARTIFACT_LOCATION"))}
    raise ValueError(f"COBUY_ENV must be 'local' or 'production', not {env!r}")


def counting_engine(env: str) -> CountingEngine:
    """The counting engine for ``env``: in process by default; Spark when ``COBUY_COUNTING_ENGINE=spark``, or in
    production when a master is named (``COBUY_SPARK_MASTER``). The tests' twin is Spark on ``local[2]``."""
    master = os.environ.get(SPARK_MASTER_ENV)
    default = "spark" if env == "production" and master else "local"
    return CountingEngine(engine=os.environ.get(COUNTING_ENGINE_ENV, default), master=master or "local[2]")


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[full_pipeline, ingest_job, train_job, retrain_job, promote_job, serve_job, score_job, *preset_jobs],
    sensors=[drift_sensor],
    schedules=[nightly_score],
    resources=build_resources(),
    loggers={"console": outcome_console},  # each step's outcome and the assets' messages (orchestration/console.py)
)
