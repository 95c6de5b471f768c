"""Fitted models, one asset per family; each fitted on the split's train matrices."""

from typing import Literal

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import markdown_table
from training.models import AssociationRules, ItemKNN, Popularity

GROUP = "models"


class AssociationConfig(dg.Config):
    min_support: float = 0.005
    min_confidence: float = 0.05
    rank_by: Literal["lift", "confidence"] = "lift"


class ItemKNNConfig(dg.Config):
    k: int = 200
    shrink: float = 10.0
    alpha: float = 0.5
    weighting: Literal["none", "tfidf"] = "none"


@dg.asset(group_name=GROUP)
def popularity_model(interaction_matrices: SplitMatrices) -> dg.Output[Popularity]:
    """Items ranked by how many users interacted with them."""
    model = Popularity().fit(interaction_matrices.train)
    return dg.Output(model, metadata={"fit_seconds": model.fit_seconds})


@dg.asset(group_name=GROUP)
def association_rules(config: AssociationConfig, interaction_matrices: SplitMatrices,
                      validated_items: pd.DataFrame) -> dg.Output[AssociationRules]:
    """Pair rules over baskets (support, confidence, lift, leverage, conviction)."""
    data = interaction_matrices.train
    model = AssociationRules(config.min_support, config.min_confidence, config.rank_by).fit(data)
    top = model.rules.head(20).copy()
    titles = validated_items.set_index("item_id")["title"]
    top.insert(0, "antecedent_title", titles.reindex(data.item_ids[top["antecedent"]]).values)
    top.insert(1, "consequent_title", titles.reindex(data.item_ids[top["consequent"]]).values)
    top = top.drop(columns=["antecedent", "consequent", "antecedent_support", "consequent_support"])
    return dg.Output(model, metadata={
        "rules": len(model.rules), "baskets": int(data.baskets.shape[0]), "fit_seconds": model.fit_seconds,
        "top_pairs_by_lift": dg.MetadataValue.md(markdown_table(top))})


@dg.asset(group_name=GROUP)
def itemknn_model(config: ItemKNNConfig, interaction_matrices: SplitMatrices) -> dg.Output[ItemKNN]:
    """Item-item cosine neighbours (top-k per item)."""
    model = ItemKNN(config.k, config.shrink, config.alpha, config.weighting).fit(interaction_matrices.train)
    return dg.Output(model, metadata={"fit_seconds": model.fit_seconds, "neighbours": int(model.similarity.nnz)})
