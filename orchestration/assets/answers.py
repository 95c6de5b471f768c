"""The answers of a run in one place a person opens: ``<data>/answers/<run id>/`` and ``<data>/answers/latest/``
(titled CSV tables, a one-page ``report.html``), built by ``serving.answers`` from what the run produced. The
report is also logged to MLflow so the UI's link opens it over http."""
from pathlib import Path

import dagster as dg
import pandas as pd

from orchestration.assets.scoring import ScoredTable
from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import frame_table
from orchestration.resources import ArtifactStore, MLflowRegistry
from serving.answers import (TITLES, also_liked, bought_together, data_quality_table, new_item_tables,
                             publish_latest, titled_recommendations, write_answers)

GROUP = "answers"
VALIDATED = dg.AssetKey("validated_interactions")


class AnswersConfig(dg.Config):
    """``min_co_purchases``: baskets a pair must share to count as bought together; ``k``: partners and liked
    items kept per item; ``csv_max_rows``: longer tables keep their first rows in CSV and all rows in Parquet;
    ``publish_report``: log the folder to MLflow for an http link to the report (MLflow down costs the link
    only)."""

    min_co_purchases: int = 3
    k: int = 10
    csv_max_rows: int = 200_000
    publish_report: bool = True


def _validated_counts(context: dg.AssetExecutionContext, quarantine: pd.DataFrame) -> tuple[int, int]:
    """(rows read, rows kept) from ``validated_interactions``' latest materialization; its row counts when the
    event is not there (a run that did not validate)."""
    event = context.instance.get_latest_materialization_event(VALIDATED)
    md = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "rows_in" in md and "rows_clean" in md:
        return int(md["rows_in"].value), int(md["rows_clean"].value)
    return len(quarantine), 0


def _publish(context: dg.AssetExecutionContext, mlflow: MLflowRegistry, folder: Path) -> dict:
    try:
        run_id, prefix = mlflow.log_folder(folder, "answers", run_name=f"answers {context.run.run_id[:8]}",
                                           tags={"dagster_run_id": context.run.run_id, "kind": "answers"})
    except Exception as err:  # noqa: BLE001 - any MLflow failure: the files are written, only the link is lost
        context.log.warning(f"answers not logged to MLflow ({type(err).__name__}: {err}); files only")
        return {"report_url_missing": f"{type(err).__name__}: {str(err)[:300]}"}
    return {"report": dg.MetadataValue.url(f"{prefix}/report.html"), "report_mlflow_run": run_id}


def produced_by(user_recommendations: ScoredTable, related_items: pd.DataFrame) -> dict[str, str]:
    """Which model (name, version, family) produced each scored table, and why it is not the serving champion
    when it is not (the scoring assets' fallback)."""
    recs = f"{user_recommendations.model} v{user_recommendations.version}"
    if getattr(user_recommendations, "family", ""):
        recs += f" ({user_recommendations.family})"
    if getattr(user_recommendations, "fallback_reason", ""):
        recs += f"; not the serving champion: {user_recommendations.fallback_reason}"
    liked = "none this run"
    if len(related_items):
        liked = str(related_items["model"].iloc[0])
        order = str(related_items["ranked_by"].iloc[0])
        if "not the serving champion" in order:
            liked += "; " + order[order.index("not the serving champion"):]
    return {"user recommendations produced by": recs, "also liked produced by": liked}


@dg.asset(group_name=GROUP)
def answers(context: dg.AssetExecutionContext, config: AnswersConfig, interaction_matrices: SplitMatrices,
            validated_items: pd.DataFrame, quarantine: pd.DataFrame, related_items: pd.DataFrame,
            user_recommendations: ScoredTable, cold_item_neighbours: pd.DataFrame,
            cold_item_partners: pd.DataFrame, model_metrics: pd.DataFrame, artifacts: ArtifactStore,
            mlflow: MLflowRegistry) -> dg.MaterializeResult:
    """Bought together (basket evidence), also liked (taste), user recommendations, new items' neighbours and
    partners, model metrics and data quality as titled tables, plus the one-page report, in this run's answers
    folder and in ``answers/latest``."""
    from training.plots import metrics_vs_k_png  # matplotlib: only when the report is drawn

    train = interaction_matrices.train
    neighbours, partners = new_item_tables(cold_item_neighbours, cold_item_partners)
    rows_in, rows_clean = _validated_counts(context, quarantine)
    tables = {
        "bought_together": bought_together(train.baskets, train.item_ids, validated_items, config.min_co_purchases,
                                           config.k),
        "also_liked": also_liked(related_items, config.k),
        "user_recommendations": titled_recommendations(pd.read_parquet(user_recommendations.path), validated_items),
        "new_item_neighbours": neighbours, "new_item_partners": partners,
        "model_metrics": model_metrics.round(4), "data_quality": data_quality_table(rows_in, rows_clean, quarantine),
    }
    png = metrics_vs_k_png(model_metrics) if len(model_metrics) else None
    facts = {"run": context.run.run_id, **produced_by(user_recommendations, related_items),
             "bought together": f"pairs sharing at least {config.min_co_purchases} baskets, by lift"}
    root = Path(artifacts.base_dir, "answers").resolve()
    folder = write_answers(root / context.run.run_id, context.run.run_id, tables, png, facts, config.csv_max_rows)
    latest = publish_latest(folder, root / "latest")
    context.log.info(f"answers written: {latest} (this run: {folder}); open {latest / 'report.html'}")
    metadata = {"folder": dg.MetadataValue.path(str(folder)), "latest": dg.MetadataValue.path(str(latest)),
                "report_file": dg.MetadataValue.path(str(latest / "report.html")),
                **{f"rows_{name}": len(df) for name, df in tables.items()},
                **{key: value for key, value in facts.items() if key.endswith("produced by")},
                **{name: frame_table(tables[name], 10) for name in ("bought_together", "also_liked",
                                                                   "new_item_partners", "data_quality")}}
    if config.publish_report:
        metadata.update(_publish(context, mlflow, folder))
    titles = {name: TITLES[name].title for name in tables}
    return dg.MaterializeResult(metadata={**metadata, "titles": dg.MetadataValue.json(titles)})
