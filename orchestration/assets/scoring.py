"""Batch scoring: whatever MLflow's ``champion`` alias names when the run starts.

``user_recommendations`` and ``related_items`` come, by default (``family: serving``), from the one model the
live service answers from, ``<prefix>serving@champion`` (the serving gate's, ``serving_champion``): its bundle is
downloaded and scored by the service's own scorer and ranking (``serving.served_tables``), so a table and the
service agree on the same version. Where that model cannot give a table (no serving champion yet; popularity
asked for related items) the table falls back to a family's own ``@champion`` (``family: auto`` or a named
family: its ONNX export run by the ``onnx_runtime`` resource, CUDA when available), and says so: the metadata's
``fallback_reason`` and, for related items, the ``ranked_by`` column. Both come after the gates (``champion_decisions``
and ``serving_champion``, registry group) in any job holding them, but read the aliases themselves, so a
promotion made by hand in the MLflow UI is scored too. ``cold_item_neighbours`` places new catalog items by the
text encoder, exported to ONNX and run by ORT.
"""
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.assets.text import TextEncoderArtifact, catalog_in_order
from orchestration.metadata import frame_preview
from orchestration.resources import ArtifactStore, MLflowRegistry, OnnxRuntimeResource
from serving.onnx_scoring import OnnxRecommender
from serving.registry import CHAMPION
from training.cold_start import PartnerPolicy

GROUP = "scoring"
GATE = dg.AssetKey("champion_decisions")  # the registry group's promotion gate: scoring runs after it
SERVING_GATE = dg.AssetKey("serving_champion")  # the one serving champion across families: and after this one
SERVING = "serving"  # ``family: serving``: the model <prefix>serving@champion names


@dataclass
class ScoredTable:
    """A Parquet table streamed to disk by an asset (too large to pass around as a DataFrame)."""

    path: str
    rows: int
    model: str
    version: str
    provider: str
    family: str = ""
    fallback_reason: str = ""  # why the serving champion did not produce it ("" when it did)


@dataclass
class Champion:
    family: str
    name: str  # registered model name
    version: str
    model: OnnxRecommender

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


# ``family: auto``: the first of these with a champion (related items: the item-item families first, whose
# neighbours are co-purchases; user recommendations: the most accurate families first)
RELATED_PREFERENCE = ("itemknn", "association_rules", "ials", "mf", "lightgcn", "ease", "chebycf", "gf_cf",
                      "popularity")
USER_PREFERENCE = ("ease", "chebycf", "gf_cf", "itemknn", "ials", "mf", "lightgcn", "association_rules", "popularity")


def resolve_family(context: dg.AssetExecutionContext, family: str, preference: tuple[str, ...],
                   mlflow: MLflowRegistry) -> str:
    """``family`` itself, or for ``auto`` the first family of ``preference`` whose registered model has a
    ``@champion`` now (a family skipped in training, or whose export was refused, has none)."""
    if family != "auto":
        return family
    for candidate in preference:
        if mlflow.version_for(candidate, CHAMPION) is not None:
            context.log.info(f"family auto: {candidate} (the first of {list(preference)} with a '{CHAMPION}')")
            return candidate
    raise dg.Failure(f"family auto: none of {list(preference)} has a '{CHAMPION}' version at {mlflow.tracking_uri}: "
                     "run the retrain job (model_exports, model_versions, champion_decisions) with at least one of "
                     "them trained and exported, or name the family in this asset's config")


def load_champion(context: dg.AssetExecutionContext, family: str, mlflow: MLflowRegistry,
                  onnx_runtime: OnnxRuntimeResource, artifacts: ArtifactStore,
                  preference: tuple[str, ...] = RELATED_PREFERENCE) -> Champion:
    """Resolve ``@champion`` of ``family`` now (``auto``: see :func:`resolve_family`), download that version into
    this run's folder, open it in ORT."""
    family = resolve_family(context, family, preference, mlflow)
    name = mlflow.model_name(family)
    version = mlflow.version_for(family, CHAMPION)
    if version is None:
        raise dg.Failure(f"registered model {name!r} has no '{CHAMPION}' version at {mlflow.tracking_uri}: run the "
                         f"retrain/promote job (champion_decisions) or set the alias in the MLflow UI",
                         metadata={"registered_model": name})
    folder = artifacts.run_dir(context.run, "champions", f"{family}-v{version}")
    model = onnx_runtime.recommender(mlflow.download(family, version, folder))
    context.log.info(f"scoring {name} version {version} ({model.info.kind}) on {model.active_provider}")
    return Champion(family, name, version, model)


def _champion_metadata(champion: Champion, seconds: float) -> dict:
    return {"model": champion.name, "model_version": champion.version, "family": champion.family,
            "provider": champion.model.active_provider, "seconds": round(seconds, 3)}


def load_serving(context: dg.AssetExecutionContext, mlflow: MLflowRegistry, onnx_runtime: OnnxRuntimeResource,
                 artifacts: ArtifactStore):
    """(the bundle ``<prefix>serving@champion`` names, loaded as the service loads it without its text encoder,
    "") or (None, why there is none). A version that exists but does not load fails the step: that is a fault,
    not a reason to score another model."""
    from serving.registry import download_serving_version
    from serving.service.champion import load_served

    name, version = mlflow.serving_name(), mlflow.version_for(SERVING, CHAMPION)
    if version is None:
        return None, (f"{name} has no '{CHAMPION}' version at {mlflow.tracking_uri} (the serving gate, asset "
                      "serving_champion, has not promoted one)")
    folder = download_serving_version(mlflow.tracking_uri, name, version,
                                      artifacts.run_dir(context.run, "champions", f"{SERVING}-v{version}"))
    served = load_served(folder, name, version, threads=onnx_runtime.threads or 1, with_text=False)
    context.log.info(f"scoring {name} version {version} ({served.info.family}, {served.info.format}): the model "
                     "the live service answers from")
    return served, ""


def _served_provider(served) -> str:
    """What runs a served version in batch: ONNX Runtime on CPU (as the service runs it), or the model's own code."""
    return "CPUExecutionProvider" if served.info.format == "onnx" else "the model's own Python code"


def _served_metadata(served, seconds: float) -> dict:
    return {"model": served.name, "model_version": served.version, "family": served.info.family,
            "format": served.info.format, "provider": _served_provider(served),
            "produced_by": f"{served.name} v{served.version} ({served.info.family}, {served.info.format}): the "
                           "serving champion, scored by the live service's own code", "seconds": round(seconds, 3)}


def _fallback(context: dg.AssetExecutionContext, table: str, family: str, why: str) -> str:
    """The family whose own champion is scored instead of the serving champion (``auto`` when ``family`` is
    ``serving``), after logging why."""
    context.log.warning(f"{table}: not from the serving champion ({why}); a family's own champion instead")
    return "auto" if family == SERVING else family


class UserRecommendationsConfig(dg.Config):
    """``family``: ``serving`` (default): the model ``<prefix>serving@champion`` names, what the live service
    answers from, its top ``k``; ``auto``: the first of ``USER_PREFERENCE`` with a champion of its own (also the
    fallback when there is no serving champion); a family name: that family's champion (export's top-k).
    ``chunk_size`` users per batch bounds memory at about chunk_size x n_items x 8 bytes (the benchmark's 1024 x
    40,981 on Gowalla: ~220 MB)."""

    family: str = SERVING
    k: int = 20
    chunk_size: int = 1024


@dg.asset(group_name=GROUP, deps=[GATE, SERVING_GATE])
def user_recommendations(context: dg.AssetExecutionContext, config: UserRecommendationsConfig,
                         interaction_matrices: SplitMatrices, mlflow: MLflowRegistry,
                         onnx_runtime: OnnxRuntimeResource, artifacts: ArtifactStore) -> dg.Output[ScoredTable]:
    """Top-K items for every user (seen items excluded) from the serving champion, as the live service answers
    them (or, falling back, from a family's champion export), streamed chunk by chunk to Parquet (user_id, rank,
    item_id, score) in this run's folder; the metadata names the model and version that produced it."""
    t0 = time.perf_counter()
    path = artifacts.run_dir(context.run, "scoring") / "user_recommendations.parquet"
    family, why = config.family, ""
    if family == SERVING:
        from serving.served_tables import served_user_recommendations

        served, why = load_serving(context, mlflow, onnx_runtime, artifacts)
        if served is not None:
            facts, preview = served_user_recommendations(served, interaction_matrices.train, path, config.k,
                                                         config.chunk_size)
            table = ScoredTable(str(path), facts["rows"], served.name, served.version, _served_provider(served),
                                served.info.family)
            return dg.Output(table, metadata={
                **_served_metadata(served, time.perf_counter() - t0), "rows": facts["rows"],
                "users": facts["users"], "k": config.k, "scoring_seconds": round(facts["seconds"], 3),
                **{key: facts[key] for key in ("users_known_to_model", "users_folded_in", "users_without_rows",
                                               "items_unknown_to_model")},
                "table": dg.MetadataValue.path(str(path)), "preview": frame_preview(preview, 10)})
        family = _fallback(context, "user_recommendations", family, why)
    # serving.batch_scoring imports onnx: loaded when scoring runs, not with the code location
    from serving.batch_scoring import score_users_to_parquet

    champion = load_champion(context, family, mlflow, onnx_runtime, artifacts, USER_PREFERENCE)
    facts, preview = score_users_to_parquet(champion.model, interaction_matrices.train, path,
                                            chunk_size=config.chunk_size)
    table = ScoredTable(str(path), facts["rows"], champion.name, champion.version, facts["provider"],
                        champion.family, why)
    return dg.Output(table, metadata={
        **_champion_metadata(champion, time.perf_counter() - t0), "rows": facts["rows"], "users": facts["users"],
        "produced_by": f"{champion.label} ({champion.family})" + (f", not the serving champion: {why}" if why else ""),
        **({"fallback_reason": why} if why else {}),
        "k": champion.model.info.k, "scoring_seconds": round(facts["seconds"], 3),
        "items_unknown_to_model": facts["unknown_items"], "table": dg.MetadataValue.path(str(path)),
        "preview": frame_preview(preview, 10)})


class RelatedItemsConfig(dg.Config):
    """``family``: ``serving`` (default): the model ``<prefix>serving@champion`` names, ordered as ``GET
    /items/{id}/related`` orders them; where it cannot relate items (popularity) or there is none, the fallback is
    ``auto``: the first of ``RELATED_PREFERENCE`` with a champion of its own (item-item exports: a one-item
    history; factor exports: cosine of item factors); a family name: that family's champion. ``k``: at most the
    export's top-k on that path."""

    family: str = SERVING
    k: int = 20
    chunk_size: int = 1024


@dg.asset(group_name=GROUP, deps=[GATE, SERVING_GATE])
def related_items(context: dg.AssetExecutionContext, config: RelatedItemsConfig, interaction_matrices: SplitMatrices,
                  validated_items: pd.DataFrame, mlflow: MLflowRegistry, onnx_runtime: OnnxRuntimeResource,
                  artifacts: ArtifactStore) -> dg.Output[pd.DataFrame]:
    """Item -> top-K related items from the serving champion, as the live service ranks them (or, falling back,
    from a family's champion export run by ORT), with co-purchase count, confidence, lift and cosine per pair;
    the ``model`` column and the metadata name what produced it, ``ranked_by`` also why when it fell back."""
    t0 = time.perf_counter()
    family, why = config.family, ""
    if family == SERVING:
        from serving.served_tables import related_refusal, served_label, served_related_items

        served, why = load_serving(context, mlflow, onnx_runtime, artifacts)
        if served is not None and related_refusal(served):
            why = f"{served_label(served)} serves: {related_refusal(served)}"
        elif served is not None:
            table = served_related_items(served, interaction_matrices.train, validated_items, config.k)
            return dg.Output(table, metadata={
                **_served_metadata(served, time.perf_counter() - t0), **_related_metadata(table)})
        family = _fallback(context, "related_items", family, why)
    from serving.batch_scoring import related_items_from_export

    champion = load_champion(context, family, mlflow, onnx_runtime, artifacts)
    table = related_items_from_export(champion.model, interaction_matrices.train, validated_items, config.k,
                                      champion.label, config.chunk_size)
    if why:
        table["ranked_by"] = table["ranked_by"] + f"; produced by {champion.label}, not the serving champion: {why}"
    return dg.Output(table, metadata={
        **_champion_metadata(champion, time.perf_counter() - t0),
        "produced_by": f"{champion.label} ({champion.family})" + (f", not the serving champion: {why}" if why else ""),
        **({"fallback_reason": why} if why else {}), **_related_metadata(table)})


def _related_metadata(table: pd.DataFrame) -> dict:
    most_bought = table.sort_values(["co_purchase_count", "lift"], ascending=False)
    return {"rows": len(table), "items": int(table["item_id"].nunique()),
            "most_co_purchased_pairs": frame_preview(most_bought[["item_title", "related_title", "rank",
                                                                 "co_purchase_count", "confidence", "lift",
                                                                 "cosine"]], 15)}


class ColdItemNeighboursConfig(dg.Config):
    """``precision``: which export of the encoder ORT runs. int8 (dynamic quantisation) by default because
    on Online Retail it lost less than 2% of cold-start Recall@20 against fp32 (it gained 2%: 0.0189 vs
    0.0186, untuned encoder, 52 cold items; benchmarks/results/serving-text-online_retail.json) at about
    twice the titles per second and a quarter of the size; ``fp32`` is the exact export."""

    precision: Literal["fp32", "int8"] = "int8"
    k: int = 20
    batch_size: int = 256
    threads: Optional[int] = None


@dg.asset(group_name=GROUP)
def cold_item_neighbours(context: dg.AssetExecutionContext, config: ColdItemNeighboursConfig,
                         text_encoder: TextEncoderArtifact, interaction_matrices: SplitMatrices,
                         validated_items: pd.DataFrame, onnx_runtime: OnnxRuntimeResource,
                         artifacts: ArtifactStore) -> dg.Output[pd.DataFrame]:
    """Catalog items with no interaction in train (new items) -> the K warm items nearest by text, from
    the text encoder exported to ONNX (pooling and normalisation in the graph) and run by ORT."""
    # torch and transformers load here, when the asset runs, not when the code location is loaded
    from serving.batch_scoring import cold_and_warm_items, cold_item_neighbours_table
    from serving.text_onnx import OnnxTextEncoder, export_text_encoder
    from training.text_encoder import item_texts

    t0 = time.perf_counter()
    data = interaction_matrices.train
    cold, _ = cold_and_warm_items(data)
    export = export_text_encoder(text_encoder.path, artifacts.run_dir(context.run, "text_onnx"),
                                 quantize=config.precision == "int8", max_length=text_encoder.max_length)
    encoder = OnnxTextEncoder(export.int8 if config.precision == "int8" else export.fp32, export.tokenizer_dir,
                              provider=onnx_runtime.provider, max_length=text_encoder.max_length,
                              threads=config.threads or onnx_runtime.threads)
    catalog = catalog_in_order(validated_items, data.item_ids)
    embeddings = encoder.embed(item_texts(catalog), batch_size=config.batch_size)
    table = cold_item_neighbours_table(embeddings, data, validated_items, config.k)
    return dg.Output(table, metadata={
        "cold_items": int(len(cold)), "rows": len(table), "precision": config.precision,
        "provider": encoder.active_provider, "encoder": text_encoder.path,
        "onnx_model": dg.MetadataValue.path(str(export.int8 if config.precision == "int8" else export.fp32)),
        "seconds": round(time.perf_counter() - t0, 3), "preview": frame_preview(table, 10)})


class ColdItemPartnersConfig(dg.Config):
    """``k`` partners per new item. How they are scored (twins, temperature, prior weight) is
    ``cold_partner_policy``'s, the policy ``cold_start_metrics`` evaluates."""

    k: int = 20


@dg.asset(group_name=GROUP)
def cold_item_partners(context: dg.AssetExecutionContext, config: ColdItemPartnersConfig,
                       cold_item_neighbours: pd.DataFrame, interaction_matrices: SplitMatrices,
                       validated_items: pd.DataFrame, cold_partner_policy: PartnerPolicy) -> dg.Output[pd.DataFrame]:
    """New items -> the K items they are likely to be bought with: what their nearest textual twins (from
    ``cold_item_neighbours``) were bought with in the training baskets, plus the candidates' log popularity at the
    weight ``cold_partner_policy`` chose on the validation window. On Online Retail's new items (703 over ten
    rolling-origin folds) this is far above TF-IDF and plain text neighbours and above the twins' partners alone;
    against popularity (the same list for every new item) it is level on NDCG@20 and slightly below on Recall@20
    (README, Cold start from text)."""
    from serving.batch_scoring import cold_item_partners_table

    t0 = time.perf_counter()
    policy = cold_partner_policy
    policy.aligned_to(interaction_matrices.train.item_ids)
    available = int(cold_item_neighbours["rank"].max()) if len(cold_item_neighbours) else 0
    if 0 < available < policy.n_twins:
        context.log.warning(f"cold_item_neighbours holds {available} neighbours per item, fewer than the policy's "
                            f"{policy.n_twins} twins: raise its k to serve the policy as evaluated")
    table = cold_item_partners_table(cold_item_neighbours, interaction_matrices.train, validated_items, config.k,
                                     policy.n_twins, policy.temperature, policy.prior, policy.prior_weight)
    return dg.Output(table, metadata={"cold_items": int(table["item_id"].nunique()), "rows": len(table),
                                      "prior_weight": policy.prior_weight, "prior_weight_from": policy.chosen_from,
                                      "twins_served": min(available, policy.n_twins),
                                      "seconds": round(time.perf_counter() - t0, 3),
                                      "preview": frame_preview(table, 10)})
