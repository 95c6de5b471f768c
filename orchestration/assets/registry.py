"""The model registry: ONNX exports guarded by blocking parity checks, one MLflow run and registered
version (alias ``challenger``) per served family, and the promotion gate that moves ``champion``; then the
serving gate (``serving_champion``): one serving model across families, ``<prefix>serving@champion``, which the
live service answers from.

Scoring resolves ``@champion`` through ``MLflowRegistry.version_for(family, "champion")`` after
``champion_decisions``; a person may move the alias by hand in the MLflow UI at any time."""
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd

from data_checks.drift import interaction_profile
from orchestration.assets.models import FamilyModel
from orchestration.assets.splits import SplitMatrices
from orchestration.assets.text import TextEncoderArtifact, catalog_in_order
from orchestration.metadata import markdown_table
from orchestration.resources import ArtifactStore, MLflowRegistry, OnnxRuntimeResource, TrainingPlan
from serving.exports import (MAX_ABS_TOLERANCE, MIN_IDENTICAL_FRACTION, ExportCheck, export_family, export_refusal,
                             serving_model, verify_export)
from serving.heldout import heldout_evaluator
from serving.serving_gate import TEST_PREFIX, TextAssets, bundle_evaluator, bundle_model, rank_candidates
from training.cold_start import PartnerPolicy
from training.families import FAMILIES, PLANNED, SERVED
from training.models.base import Recommender, SkippedFamily
from training.run_record import build_training_run, quarantine_summary, training_window
from training.splits import Split
from training.tracking import dataset_fingerprint, git_commit

GROUP = "registry"
PARITY_CHECKS = {family: f"{family}_onnx_parity" for family in SERVED}
# the served families' model assets, taken as keyword arguments (by asset name) by the assets that need them all
MODEL_INS = {FAMILIES[family].asset: dg.AssetIn() for family in SERVED}
GATE_METRIC = re.compile(r"^(recall|ndcg|precision|hit_rate|coverage)@(10|20|50)$")


class ExportConfig(dg.Config):
    """``families``: which served families to export (and then register and judge); the parity check
    compares scores and top-``k`` ids on ``parity_users`` users drawn with ``seed``."""

    families: list[str] = list(SERVED)
    k: int = 20
    parity_users: int = 1000
    seed: int = 0


class GateConfig(dg.Config):
    """Promote the challenger when it beats the champion on ``metric`` (held-out, same users) by ``margin``."""

    metric: str = "ndcg@20"
    margin: float = 0.0


def _families(models: dict[str, FamilyModel]) -> dict[str, "Recommender | SkippedFamily"]:
    """The served families' model assets by family name (``models``: the asset inputs by asset name)."""
    return {family: models[FAMILIES[family].asset] for family in SERVED}


def exportable(models: dict[str, "Recommender | SkippedFamily"], chosen: list[str], n_users: int, n_items: int,
               plan: TrainingPlan) -> tuple[list[str], dict[str, str]]:
    """The families of ``chosen`` to export (in ``SERVED`` order), and why each other served family is not:
    skipped in training, left out of ``model_exports.families``, or an export too large for the memory."""
    todo, why_not = [], {}
    budget = plan.budget()
    for family in SERVED:
        model = models[family]
        if isinstance(model, SkippedFamily):
            why_not[family] = f"not trained: {model.reason}"
        elif family not in chosen:
            why_not[family] = f"not in model_exports.families {chosen}"
        else:
            refusal = export_refusal(family, n_users, n_items, budget, form=plan.serving_form(family, n_items),
                                     top_n=plan.item_item_top_n)
            if refusal is not None:
                why_not[family] = refusal
            else:
                todo.append(family)
    return todo, why_not


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """``rows`` as a table that keeps its columns when there are no rows."""
    return pd.DataFrame(rows, columns=columns)


@dg.multi_asset(
    outs={"model_exports": dg.AssetOut(description="Every served family as an ONNX file, with its parity report.")},
    group_name=GROUP,
    ins=MODEL_INS,
    can_subset=True,  # families left out by config have no check result in that run
    check_specs=[dg.AssetCheckSpec(
        name, asset="model_exports", blocking=True,
        description=f"ONNX Runtime vs native {family}: max |score diff| <= {MAX_ABS_TOLERANCE}, identical "
                    f"top-20 ids for >= {MIN_IDENTICAL_FRACTION:.1%} of a fixed seeded sample of users.")
        for family, name in PARITY_CHECKS.items()],
)
def model_exports(context: dg.AssetExecutionContext, config: ExportConfig, interaction_matrices: SplitMatrices,
                  training_plan: TrainingPlan, artifacts: ArtifactStore, onnx_runtime: OnnxRuntimeResource,
                  **family_models: FamilyModel):
    """Export each selected family the run trained under the run's folder, then read every file back with ONNX
    Runtime and compare it with the native model (blocking: a failed file stops registration and scoring). A
    family skipped in training, or whose export would not fit the memory (estimate against what is available),
    is not exported and has no parity result; ``not_exported`` says why."""
    unknown = sorted(set(config.families) - set(SERVED))
    if unknown or not config.families:
        raise ValueError(f"config families {config.families}: choose from {list(SERVED)} (unknown: {unknown})")
    models = _families(family_models)
    data, folder = interaction_matrices.train, artifacts.run_dir(context.run, "onnx")
    todo, why_not = exportable(models, list(config.families), data.n_users, data.n_items, training_plan)
    for family, why in why_not.items():
        context.log.warning(f"{family}: not exported ({why})")
    reports = []
    for family in todo:
        path = folder / f"{family}.onnx"
        # a large catalogue's item-item family is served as its top-N neighbours, checked against that native form
        served = serving_model(models[family], training_plan.serving_form(family, data.n_items),
                               training_plan.item_item_top_n)
        export_family(served, data, path, k=config.k)
        reports.append(verify_export(family, served, path, data.user_items, onnx_runtime.recommender,
                                     n_users=config.parity_users, seed=config.seed))
        context.log.info(f"{family}: parity {'passed' if reports[-1].passed else 'FAILED'} "
                         f"(max diff {reports[-1].max_abs_diff:.2e}) {reports[-1].error}")
    table = _frame([r.as_dict() for r in reports], [f.name for f in fields(ExportCheck)])
    shown = table[["family", "kind", "n_items", "passed", "max_abs_diff", "top_k_identical_fraction",
                   "top_k_equivalent_fraction", "n_users"]]
    not_exported = _frame([{"family": f, "reason": why} for f, why in why_not.items()], ["family", "reason"])
    yield dg.Output(table, output_name="model_exports", metadata={
        "families": len(table), "failed": int((~table["passed"].astype(bool)).sum()),
        "folder": dg.MetadataValue.path(str(folder)),
        "parity": dg.MetadataValue.md(markdown_table(shown) if len(shown) else "no family exported"),
        "not_exported": dg.MetadataValue.md(markdown_table(not_exported) if len(not_exported) else "none")})
    for r in reports:
        yield dg.AssetCheckResult(
            check_name=PARITY_CHECKS[r.family], asset_key="model_exports", passed=r.passed,
            description=r.error or None,
            metadata={"path": dg.MetadataValue.path(r.path), "max_abs_diff": r.max_abs_diff,
                      "top_k_identical_fraction": r.top_k_identical_fraction,
                      "top_k_equivalent_fraction (swaps within score noise)": r.top_k_equivalent_fraction,
                      "users_sampled": r.n_users,
                      "max_abs_tolerance": r.max_abs_tolerance, "min_identical_fraction": r.min_identical_fraction})


@dg.asset(group_name=GROUP, ins=MODEL_INS)
def model_versions(context: dg.AssetExecutionContext, model_exports: pd.DataFrame, model_metrics: pd.DataFrame,
                   training_split: Split, interaction_matrices: SplitMatrices, quarantine: pd.DataFrame,
                   mlflow: MLflowRegistry, artifacts: ArtifactStore, **family_models: FamilyModel
                   ) -> dg.Output[pd.DataFrame]:
    """One MLflow run per exported family (params, metrics at K, plots, Optuna files and trials, the quarantine
    summary, the training window's reference profile, the ONNX model with its signature), registered as a
    new version with alias ``challenger``."""
    failed = model_exports.loc[~model_exports["passed"].astype(bool), "family"].tolist()
    if failed:
        raise ValueError(f"model_exports holds exports that failed their parity check: {failed}; nothing registered")
    models = _families(family_models)
    run_id, train = context.run.run_id, training_split.train
    start, end = training_window(train)
    tags = {"dagster_run_id": run_id, "dagster_job": context.run.job_name, "git_commit": git_commit(),
            "dataset_fingerprint": dataset_fingerprint(interaction_matrices.train), "train_start": start,
            "train_end": end}
    summary, profile = quarantine_summary(quarantine), interaction_profile(train)
    rows: list[dict[str, Any]] = []
    for export in model_exports.to_dict("records"):
        family = export["family"]
        model = models[family]
        run = build_training_run(family, model.name, getattr(model, "training_params", {}), model_metrics,
                                 artifacts.run_dir(context.run, "mlflow", family), tags, summary, profile, export,
                                 getattr(model, "tuning_files", {}))
        logged = mlflow.log_run(run)
        version = mlflow.register_challenger(family, logged, tags={"dagster_run_id": run_id,
                                                                   "dataset_fingerprint": tags["dataset_fingerprint"]})
        rows.append({"family": family, "registered_model": mlflow.model_name(family), "version": version,
                     "mlflow_run_id": logged.run_id, "experiment_id": logged.experiment_id,
                     "run_url": mlflow.run_url(logged.experiment_id, logged.run_id),
                     "model_uri": logged.model_uri, "onnx_path": export["path"],
                     "tuned": run.tuning_dir is not None, **{k: run.metrics.get(k) for k in ("recall@20", "ndcg@20")}})
        context.log.info(f"{family}: MLflow run {logged.run_id}, registered {mlflow.model_name(family)} v{version}")
    table = _frame(rows, ["family", "registered_model", "version", "mlflow_run_id", "experiment_id", "run_url",
                          "model_uri", "onnx_path", "tuned", "recall@20", "ndcg@20"])
    if table.empty:
        context.log.warning("model_exports holds no export: nothing registered")
    versions = table[["family", "version", "mlflow_run_id", "tuned", "recall@20", "ndcg@20"]]
    return dg.Output(table, metadata={
        "versions": dg.MetadataValue.md(markdown_table(versions) if len(versions) else "none registered"),
        "tracking_uri": mlflow.tracking_uri, "experiment": mlflow.experiment,
        "dataset_fingerprint": tags["dataset_fingerprint"], "train_window": f"{start} .. {end}",
        **{f"mlflow_run_{r['family']}": dg.MetadataValue.url(r["run_url"]) for r in rows}})


@dg.asset(group_name=GROUP)
def champion_decisions(context: dg.AssetExecutionContext, config: GateConfig, model_versions: pd.DataFrame,
                       interaction_matrices: SplitMatrices, mlflow: MLflowRegistry,
                       onnx_runtime: OnnxRuntimeResource, artifacts: ArtifactStore) -> dg.Output[pd.DataFrame]:
    """The promotion gate, per family: ``@challenger`` and ``@champion`` scored on the same held-out test split;
    ``champion`` moves only when the challenger is better by ``margin``. Every decision is recorded as tags
    on the challenger version and in the registered model's ``gate.history``."""
    if not GATE_METRIC.match(config.metric):
        raise ValueError(f"gate metric {config.metric!r} must look like 'ndcg@20' (recall, ndcg, precision, "
                         "hit_rate or coverage at 10, 20 or 50)")
    m, run_id = interaction_matrices, context.run.run_id
    evaluate = heldout_evaluator(onnx_runtime.recommender, m.train.user_ids, m.train.item_ids, m.train.user_items,
                                 m.test)
    decided_by = f"dagster job {context.run.job_name}, run {run_id}"
    rows = []
    for registered in model_versions.to_dict("records"):
        family = registered["family"]
        current = mlflow.version_for(family, "challenger")
        if current != registered["version"]:
            context.log.warning(f"{family}: @challenger is v{current}, not v{registered['version']} registered by "
                                "model_versions (moved since); judging the alias")
        d = mlflow.run_gate(family, evaluate, config.metric, config.margin, decided_by,
                            artifacts.run_dir(context.run, "gate", family))
        rows.append({"family": family, "registered_model": d.model, "challenger_version": d.challenger_version,
                     "champion_version_before": d.champion_version,
                     "champion_version_after": mlflow.version_for(family, "champion"), "metric": d.metric,
                     "margin": d.margin, "challenger_value": d.challenger_value, "champion_value": d.champion_value,
                     "promoted": d.promoted, "reason": d.reason, "decided_by": d.decided_by,
                     "decided_at": d.decided_at})
        context.log.info(f"{family}: {'PROMOTED' if d.promoted else 'kept champion'} ({d.reason})")
    table = _frame(rows, ["family", "registered_model", "challenger_version", "champion_version_before",
                          "champion_version_after", "metric", "margin", "challenger_value", "champion_value",
                          "promoted", "reason", "decided_by", "decided_at"])
    shown = table[["family", "challenger_version", "champion_version_before", "champion_version_after",
                   "challenger_value", "champion_value", "promoted", "reason"]]
    return dg.Output(table, metadata={
        "promoted": int(table["promoted"].astype(bool).sum()), "metric": config.metric, "margin": config.margin,
        "decisions": dg.MetadataValue.md(markdown_table(shown) if len(shown) else "no registered version to judge"),
        **{f"champion_{r['family']}": dg.MetadataValue.url(mlflow.version_url(r["family"], r["champion_version_after"]))
           for r in rows if r["champion_version_after"]}})


class ServingGateConfig(dg.Config):
    """The serving gate: of the families this run trained and ``families`` names (each registered export, the
    blend, the hybrid), the best on ``metric`` in ``model_metrics`` is bundled as the serving model's challenger
    (``<prefix>serving``); it becomes ``champion`` when it beats the served champion on the same validation split
    by ``margin``, whatever the two families (the test split is scored beside it and reported, not decided on).
    ``text_precision``: the text encoder export bundled for new items."""

    metric: str = "ndcg@20"
    margin: float = 0.0
    families: list[str] = list(PLANNED)
    text_precision: Literal["fp32", "int8"] = "int8"


@dg.asset(group_name=GROUP, deps=[dg.AssetKey("champion_decisions")])
def serving_champion(context: dg.AssetExecutionContext, config: ServingGateConfig, model_versions: pd.DataFrame,
                     model_metrics: pd.DataFrame, blend_model: FamilyModel, hybrid_model: Any,
                     interaction_matrices: SplitMatrices, validated_items: pd.DataFrame,
                     text_encoder: TextEncoderArtifact, cold_partner_policy: PartnerPolicy,
                     training_plan: TrainingPlan, mlflow: MLflowRegistry,
                     onnx_runtime: OnnxRuntimeResource, artifacts: ArtifactStore) -> dg.Output[pd.DataFrame]:
    """One serving champion across families (what ``make serve`` answers from): the run's best family on the
    gate metric is bundled (its parity-checked ONNX export; the blend exported and checked here; the hybrid as
    native Python, which ONNX cannot express) with the catalog, histories and the text encoder, registered as
    ``<prefix>serving`` @challenger, and judged against @champion on the validation split through the service's
    own scoring code (every customer folded in from the fit part, as a cart: a bundle fitted on train holds the
    validation pairs in its own histories); the test split is scored beside it, reported as the unbiased figure
    and never decided on. Per-family champions stay as history."""
    if not GATE_METRIC.match(config.metric):
        raise ValueError(f"serving gate metric {config.metric!r} must look like 'ndcg@20'")
    m, data = interaction_matrices, interaction_matrices.train
    registered = {r["family"]: r for r in model_versions.to_dict("records")}
    natives = {"blend": blend_model, "hybrid": hybrid_model}
    trained_here = [f for f in config.families if f in registered or
                    (f in natives and not isinstance(natives[f], SkippedFamily))]
    ranking = rank_candidates(model_metrics, config.metric, trained_here)
    if ranking.empty:
        context.log.warning(f"serving gate: no candidate among {config.families} was trained and evaluated; nothing "
                            "registered")
        return dg.Output(pd.DataFrame(columns=SERVING_COLUMNS), metadata={"serving": "nothing to register"})
    family = str(ranking["family"].iloc[0])
    folder = artifacts.run_dir(context.run, "serving")
    onnx_path, note = (registered[family]["onnx_path"] if family in registered else None), ""
    source = ({"registered_model": registered[family]["registered_model"], "version": str(registered[family]["version"])}
              if family in registered else {"dagster_asset": f"{family}_model"})
    if family == "blend":
        refusal = export_refusal("itemknn", data.n_users, data.n_items, training_plan.budget())
        if refusal is None:
            path = folder / "blend-export" / "model.onnx"
            export_family(blend_model, data, path)
            check = verify_export("blend", blend_model, path, data.user_items, onnx_runtime.recommender)
            onnx_path = path if check.passed else None
            note = "" if check.passed else f"blend ONNX parity failed ({check.error or check.max_abs_diff}): native"
        else:
            note = f"blend served natively: {refusal}"
    text = _serving_text(text_encoder, validated_items, data, folder / "text", config.text_precision,
                         onnx_runtime, cold_partner_policy)
    model = natives.get(family)
    info = bundle_model(model, family, data, validated_items, folder / "bundle", onnx_path=onnx_path, text=text,
                        source=source)
    tags = {"family": family, "format": info.format, "dagster_run_id": context.run.run_id,
            "candidate_metric": config.metric, "candidate_value": f"{float(ranking['value'].iloc[0]):.6f}",
            **({"native_because": info.source.get("native_because", note)[:500]} if info.format == "native" else {})}
    version, _ = mlflow.register_serving(folder / "bundle", f"serving-{family}", tags)
    evaluate = bundle_evaluator(data.user_ids, data.item_ids, m.fit.user_items, m.validation, data.user_items,
                                m.test)
    d = mlflow.run_serving_gate(evaluate, config.metric, config.margin,
                                f"dagster job {context.run.job_name}, run {context.run.run_id}", folder / "gate")
    on_test = {role: r.get(f"{TEST_PREFIX}{config.metric}") for role, r in evaluate.results.items()}
    _tag_split(mlflow, version, on_test)
    champion = mlflow.version_for("serving", "champion")
    served = _version_tags(mlflow, champion)
    row = {"registered_model": mlflow.serving_name(), "challenger_version": version, "challenger_family": family,
           "challenger_format": info.format, "champion_version_before": d.champion_version,
           "champion_version_after": champion, "serving_family": served.get("family"),
           "serving_format": served.get("format"), "metric": d.metric, "split": "validation",
           "challenger_value": d.challenger_value, "champion_value": d.champion_value,
           "challenger_test_value": on_test.get("challenger"), "champion_test_value": on_test.get("champion"),
           "promoted": d.promoted, "reason": d.reason}
    context.log.info(f"serving gate: {family} ({info.format}) v{version} {'PROMOTED' if d.promoted else 'not promoted'}"
                     f" ({d.reason}); serving {mlflow.serving_name()} v{champion} = {served.get('family')}")
    return dg.Output(pd.DataFrame([row], columns=SERVING_COLUMNS), metadata={
        "serving": f"{mlflow.serving_name()} v{champion}: {served.get('family')} ({served.get('format')})",
        "serving_version": dg.MetadataValue.url(mlflow.serving_version_url(str(champion))),
        "candidates": dg.MetadataValue.md(markdown_table(ranking)), "promoted": d.promoted, "reason": d.reason,
        "decided_on": f"validation split ({config.metric}; every customer folded in from the fit part)",
        **{f"{role}_validation_{config.metric}": v for role, v in
           (("challenger", d.challenger_value), ("champion", d.champion_value)) if v is not None},
        **{f"{role}_test_{config.metric} (reported, not decided on)": float(v) for role, v in on_test.items()
           if v is not None},
        **({"native_because": info.source.get("native_because", note)} if info.format == "native" else {}),
        **({"note": note} if note else {})})


SERVING_COLUMNS = ["registered_model", "challenger_version", "challenger_family", "challenger_format",
                   "champion_version_before", "champion_version_after", "serving_family", "serving_format", "metric",
                   "split", "challenger_value", "champion_value", "challenger_test_value", "champion_test_value",
                   "promoted", "reason"]


def _tag_split(mlflow: MLflowRegistry, version: str, on_test: dict) -> None:
    """Tags on the judged version beside the gate's own: the split decided on, and the test figures reported."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow.tracking_uri, registry_uri=mlflow.tracking_uri)
    client.set_model_version_tag(mlflow.serving_name(), version, "gate.split", "validation")
    for role, value in on_test.items():
        if value is not None:
            client.set_model_version_tag(mlflow.serving_name(), version, f"gate.test_{role}_value", f"{value:.6f}")


def _version_tags(mlflow: MLflowRegistry, version: "str | None") -> dict:
    if version is None:
        return {}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow.tracking_uri, registry_uri=mlflow.tracking_uri)
    return dict(client.get_model_version(mlflow.serving_name(), version).tags)


def _serving_text(text_encoder: TextEncoderArtifact, validated_items: pd.DataFrame, data, folder, precision: str,
                  onnx_runtime: OnnxRuntimeResource, policy: PartnerPolicy) -> TextAssets:
    """The text encoder exported to ONNX and the catalog embedded by it (ORT), for the bundle's new-item endpoint,
    with the partner policy ``cold_item_partners`` serves (twins, temperature, prior chosen on validation)."""
    policy.aligned_to(data.item_ids)
    # torch and transformers load here, when the bundle is built, not when the code location is loaded
    from serving.text_onnx import OnnxTextEncoder, export_text_encoder
    from training.text_encoder import item_texts

    export = export_text_encoder(text_encoder.path, folder, quantize=precision == "int8",
                                 max_length=text_encoder.max_length)
    path = export.int8 if precision == "int8" else export.fp32
    encoder = OnnxTextEncoder(path, export.tokenizer_dir, provider="cpu", max_length=text_encoder.max_length,
                              threads=onnx_runtime.threads)
    embeddings = encoder.embed(item_texts(catalog_in_order(validated_items, data.item_ids)))
    return TextAssets(Path(folder), path.name, embeddings, text_encoder.max_length, policy.n_twins,
                      policy.temperature, policy.prior_weight, policy.prior)
