"""Held-out evaluation of every fitted model with the full-ranking harness."""

import dagster as dg
import pandas as pd

from orchestration.assets.models import FamilyModel
from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import frame_table, markdown_table, png_md
from orchestration.resources import ArtifactStore
from cobuy_files.storage import write_bytes
from training.evaluation import metrics_frame
from training.families import FAMILIES
from training.models.base import SkippedFamily, trained
from training.plots import metrics_vs_k_png

GROUP = "evaluation"
# every family's model asset (training.families), taken as keyword arguments by asset name
ALL_MODEL_INS = {spec.asset: dg.AssetIn() for spec in FAMILIES.values()}


def skipped_table(*models: object) -> pd.DataFrame:
    """(family, reason) of every :class:`SkippedFamily` among ``models``."""
    rows = [{"family": m.family, "reason": m.reason} for m in models if isinstance(m, SkippedFamily)]
    return pd.DataFrame(rows, columns=["family", "reason"])


@dg.asset(group_name=GROUP, ins=ALL_MODEL_INS)
def model_metrics(context: dg.AssetExecutionContext, interaction_matrices: SplitMatrices, artifacts: ArtifactStore,
                  **family_models: FamilyModel) -> dg.Output[pd.DataFrame]:
    """Recall, NDCG, precision, hit rate and coverage at K in {10, 20, 50} on the test split, for every family
    the run trained; the skipped ones are listed with their reasons (``skipped``)."""
    everything = [family_models[spec.asset] for spec in FAMILIES.values()]
    models, skipped = trained(*everything), skipped_table(*everything)
    for row in skipped.itertuples():
        context.log.warning(f"{row.family} not evaluated: skipped ({row.reason})")
    shown = {"families_run": dg.MetadataValue.json([m.name for m in models]),
             "skipped": dg.MetadataValue.md(markdown_table(skipped) if len(skipped) else "none")}
    if not models:
        context.log.warning("no family was trained this run: nothing to evaluate")
        return dg.Output(pd.DataFrame(columns=["model", "k", "recall", "ndcg", "precision", "hit_rate", "coverage",
                                               "n_users", "fit_seconds", "scoring_seconds"]), metadata=shown)
    table = metrics_frame(models, interaction_matrices.train, interaction_matrices.test)
    at20 = table[table["k"] == 20].drop(columns=["k"])
    best = at20.sort_values("ndcg", ascending=False).iloc[0]
    context.log.info(f"best at K=20: {best['model']} recall={best['recall']:.4f} ndcg={best['ndcg']:.4f}")
    png = metrics_vs_k_png(table)
    plot_path = write_bytes(png, artifacts.run_dir(context.run) / "metrics_vs_k.png")
    return dg.Output(table, metadata={
        **shown, "metrics_vs_k": png_md(png, "metrics vs K"),
        "plot_path": dg.MetadataValue.path(str(plot_path)),
        "at_k20": frame_table(at20, 100),
        "best_model": str(best["model"]), "best_recall@20": float(best["recall"]),
        "best_ndcg@20": float(best["ndcg"]), "test_users": int(best["n_users"])})
