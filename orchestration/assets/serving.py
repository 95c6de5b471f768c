"""Output tables the shop uses: related items with the evidence behind each pair."""

from typing import Literal

import dagster as dg
import pandas as pd

from orchestration.assets.splits import SplitMatrices
from orchestration.metadata import frame_preview
from serving.related import related_items_table
from training.models import AssociationRules, ItemKNN

GROUP = "serving"


class RelatedItemsConfig(dg.Config):
    k: int = 20
    model: Literal["itemknn", "association_rules"] = "itemknn"


@dg.asset(group_name=GROUP)
def related_items(config: RelatedItemsConfig, interaction_matrices: SplitMatrices, validated_items: pd.DataFrame,
                  itemknn_model: ItemKNN, association_rules: AssociationRules) -> dg.Output[pd.DataFrame]:
    """Item -> top-K related items, with co-purchase count, confidence, lift and cosine per pair."""
    model = itemknn_model if config.model == "itemknn" else association_rules
    table = related_items_table(model, interaction_matrices.train, validated_items, k=config.k)
    most_bought = table.sort_values(["co_purchase_count", "lift"], ascending=False)
    return dg.Output(table, metadata={
        "rows": len(table), "items": int(table["item_id"].nunique()), "model": model.name,
        "most_co_purchased_pairs": frame_preview(most_bought[["item_title", "related_title", "rank",
                                                             "co_purchase_count", "confidence", "lift", "cosine"]], 15)})
