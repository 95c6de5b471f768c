"""Held-out evaluation of every fitted model with the full-ranking harness."""

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import markdown_table, png_md
from orchestration.resources import ArtifactStore
from serving.storage import write_bytes
from training.evaluation import metrics_frame
from training.models import (EASE, AssociationRules, ChebyCF, GraphFilter, IALSMatrixFactorization, ItemKNN, LightGCN,
                             LinearBlend, MatrixFactorization, Popularity)
from training.models.hybrid import Hybrid
from training.plots import metrics_vs_k_png

GROUP = "evaluation"


@dg.asset(group_name=GROUP)
def model_metrics(context: dg.AssetExecutionContext, interaction_matrices: SplitMatrices,
                  popularity_model: Popularity, association_rules: AssociationRules,
                  itemknn_model: ItemKNN, ease_model: EASE, graph_filter_model: GraphFilter,
                  mf_model: MatrixFactorization, lightgcn_model: LightGCN, chebycf_model: ChebyCF,
                  ials_model: IALSMatrixFactorization, blend_model: LinearBlend, hybrid_model: Hybrid,
                  artifacts: ArtifactStore) -> dg.Output[pd.DataFrame]:
    """Recall, NDCG, precision, hit rate and coverage at K in {10, 20, 50} on the test split."""
    models = [popularity_model, association_rules, itemknn_model, ease_model, graph_filter_model, chebycf_model,
              mf_model, ials_model, lightgcn_model, blend_model, hybrid_model]
    table = metrics_frame(models, interaction_matrices.train, interaction_matrices.test)
    at20 = table[table["k"] == 20].drop(columns=["k"])
    best = at20.sort_values("ndcg", ascending=False).iloc[0]
    context.log.info(f"best at K=20: {best['model']} recall={best['recall']:.4f} ndcg={best['ndcg']:.4f}")
    png = metrics_vs_k_png(table)
    plot_path = write_bytes(png, artifacts.run_dir(context.run) / "metrics_vs_k.png")
    return dg.Output(table, metadata={
        "metrics_vs_k": png_md(png, "metrics vs K"),
        "plot_path": dg.MetadataValue.path(str(plot_path)),
        "at_k20": dg.MetadataValue.md(markdown_table(at20)),
        "best_model": str(best["model"]), "best_recall@20": float(best["recall"]),
        "best_ndcg@20": float(best["ndcg"]), "test_users": int(best["n_users"])})
