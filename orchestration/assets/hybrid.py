"""The hybrid model: collaborative scores (EASE, else item-kNN), association lift, text similarity, sales trend and,
where the catalog has categories, category affinity, blended with weights tuned on the validation split
(training/models/hybrid.py, training/hybrid_tuning.py, training/catalog.py)."""
from typing import Any, Optional

import dagster as dg
import pandas as pd

from orchestration.assets.models import GROUP, remember_training, skipped
from orchestration.assets.splits import SplitMatrices
from orchestration.assets.text import text_matrix
from orchestration.metadata import markdown_table
from orchestration.resources import TrainingPlan
from training.catalog import category_levels
from training.families import FAMILIES
from training.hybrid_tuning import (RECENCY_DAYS, TREND_DAYS, basket_related_task, fit_hybrid, hybrid_components,
                                    refit_like, tune_hybrid, validation_related_task)
from training.models.base import SkippedFamily
from training.models.hybrid import SIGNALS
from training.splits import Split
from training.tuning import sample_users


class HybridConfig(dg.Config):
    """``tune_trials`` > 0: Optuna searches the weights on validation (components refitted on train minus
    validation), separately for user recommendations and related items; else ``weights`` serve both (a signal
    not named gets 0). ``recency_days`` weights the histories behind the association, text and category signals;
    ``trend_days`` is the trend window. Without timestamps there is neither. ``use_categories``: the category
    signal where the catalog has categories. Tuning keeps every signal of its validation users (and of the related
    task's items) in memory: ``tune_signal_memory_gb`` caps how many are sampled (at 50k items, 1.5 GB is ~1,500)."""

    tune_trials: int = 30
    tune_max_eval_users: Optional[int] = 4000
    tune_signal_memory_gb: float = 1.5
    weights: dict[str, float] = FAMILIES["hybrid"].default("weights")
    recency_days: float = RECENCY_DAYS
    trend_days: float = TREND_DAYS
    use_categories: bool = True
    seed: int = 42


@dg.asset(group_name=GROUP)
def hybrid_model(context: dg.AssetExecutionContext, config: HybridConfig, interaction_matrices: SplitMatrices,
                 training_split: Split, ease_model: Any, itemknn_model: Any, association_rules: Any,
                 item_text_embeddings: pd.DataFrame, validated_items: pd.DataFrame,
                 training_plan: TrainingPlan) -> dg.Output:
    """Collaborative scores (EASE where it was trained, else item-kNN), association lift, text similarity, sales
    trend and category affinity, each z-scored over a user's candidate items and blended. Warm items get every
    signal; an item nobody bought yet is reached through its text (and category). Without association rules or
    a collaborative family it is skipped, with the reason."""
    if training_plan.not_planned("hybrid"):
        return skipped(context, "hybrid", training_plan.not_planned("hybrid"))
    parts = hybrid_components({"ease": ease_model, "itemknn": itemknn_model}, association_rules)
    if isinstance(parts, SkippedFamily):
        return skipped(context, "hybrid", parts.reason)
    collaborative, association = parts
    m, split = interaction_matrices, training_split
    emb, _ = text_matrix(item_text_embeddings, m.train.item_ids)
    levels = category_levels(validated_items, m.train.item_ids) if config.use_categories else None
    category_note = ("on: " + ", ".join(f"{n} ({c} categories)" for n, c in zip(levels.names, levels.n_categories))
                     if levels is not None else "off: " + ("use_categories is false" if not config.use_categories
                                                           else "the catalog has no category"))
    user_w, related_w, md = dict(config.weights), dict(config.weights), {}
    if config.tune_trials > 0 and m.validation.nnz:
        c_fit, a_fit = refit_like(collaborative, m.fit), refit_like(association, m.fit)
        n_signals = len(SIGNALS) + (levels is not None)
        cap = max(int(config.tune_signal_memory_gb * 1e9 / (4 * n_signals * max(m.fit.n_items, 1))), 50)
        max_users = cap if config.tune_max_eval_users is None else min(config.tune_max_eval_users, cap)
        validation = sample_users(m.validation, max_users, config.seed)
        if split.strategy == "basket_completion":  # a basket shows several items: fewer baskets, about as many rows
            related_task = basket_related_task(m.fit, split.validation, max(max_users // 4, 10), config.seed)[0]
        else:
            cut = split.validation["timestamp"].min() if len(split.validation) else None
            related_task = validation_related_task(split.fit, split.train, m.fit, cut)
        tuned = tune_hybrid(fit_hybrid(c_fit, a_fit, emb, m.fit, split.fit, config.recency_days, config.trend_days,
                                       levels),
                            m.fit, validation, related_task, config.tune_trials, config.seed)
        user_w, related_w = tuned.user_weights, tuned.related_weights
        singles = tuned.user_validation.get("single_signal_values", {})
        md = {"tuning_trials": config.tune_trials,
              "tuning_validation_users": int((validation.getnnz(axis=1) > 0).sum()),
              "validation_user_recommendations": dg.MetadataValue.md(markdown_table(pd.DataFrame(
                  [{"blend": f"{s} only", "recall@20 + ndcg@20": v} for s, v in singles.items()]
                  + [{"blend": "tuned", "recall@20 + ndcg@20": tuned.user_validation.get("best_value")}]))),
              "validation_related_items": dg.MetadataValue.json(tuned.related_validation)}
        context.log.info(f"hybrid weights: users {user_w}, related items {related_w}")
    model = fit_hybrid(collaborative, association, emb, m.train, split.train, config.recency_days,
                       config.trend_days, levels)
    model.weights, model.related_weights = dict(user_w), dict(related_w)
    params = {"weights": model.weights, "related_weights": model.related_weights, "recency_days": config.recency_days,
              "trend_days": config.trend_days, "collaborative": collaborative.name,
              "signals": list(model.signal_names)}
    remember_training(model, params, {})
    return dg.Output(model, metadata={**md, "params": dg.MetadataValue.json(params),
                                      "collaborative_component": collaborative.name, "category_signal": category_note,
                                      "rising_items": int((model.trend > 0).sum())})
