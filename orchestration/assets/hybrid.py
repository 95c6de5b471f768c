"""The hybrid model: EASE scores, association lift, text similarity and sales trend, blended with weights
tuned on the validation split (training/models/hybrid.py, training/hybrid_tuning.py)."""
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.assets.models import GROUP, remember_training
from orchestration.assets.splits import SplitMatrices
from orchestration.assets.text import text_matrix
from orchestration.metadata import markdown_table
from training.hybrid_tuning import RECENCY_DAYS, TREND_DAYS, fit_hybrid, tune_hybrid, validation_related_task
from training.models import EASE, AssociationRules
from training.models.hybrid import SIGNALS, Hybrid
from training.splits import Split
from training.tuning import sample_users


class HybridConfig(dg.Config):
    """``tune_trials`` > 0: Optuna searches the weights on validation (components refitted on train minus
    validation), separately for user recommendations and related items; else ``weights`` serve both.
    ``recency_days`` weights the histories behind the association and text signals; ``trend_days`` is the trend
    window. Without timestamps there is neither."""

    tune_trials: int = 30
    tune_max_eval_users: Optional[int] = 4000
    weights: dict[str, float] = {"collaborative": 1.0, "association": 0.0, "text": 0.0, "trend": 0.0}
    recency_days: float = RECENCY_DAYS
    trend_days: float = TREND_DAYS
    seed: int = 42


@dg.asset(group_name=GROUP)
def hybrid_model(context: dg.AssetExecutionContext, config: HybridConfig, interaction_matrices: SplitMatrices,
                 training_split: Split, ease_model: EASE, association_rules: AssociationRules,
                 item_text_embeddings: pd.DataFrame) -> dg.Output[Hybrid]:
    """EASE, association lift, text similarity and sales trend, each z-scored over a user's candidate items and
    blended. Warm items get every signal; an item nobody bought yet is reached through its text."""
    m, split = interaction_matrices, training_split
    emb, _ = text_matrix(item_text_embeddings, m.train.item_ids)
    user_w, related_w, md = dict(config.weights), dict(config.weights), {}
    if config.tune_trials > 0 and m.validation.nnz:
        c_fit = EASE(**ease_model.training_params).fit(m.fit)
        a_fit = AssociationRules(**association_rules.training_params).fit(m.fit)
        validation = sample_users(m.validation, config.tune_max_eval_users, config.seed)
        cut = split.validation["timestamp"].min() if len(split.validation) else None
        tuned = tune_hybrid(fit_hybrid(c_fit, a_fit, emb, m.fit, split.fit, config.recency_days, config.trend_days),
                            m.fit, validation, validation_related_task(split.fit, split.train, m.fit, cut),
                            config.tune_trials, config.seed)
        user_w, related_w = tuned.user_weights, tuned.related_weights
        singles = tuned.user_validation.get("single_signal_values", {})
        md = {"tuning_trials": config.tune_trials,
              "validation_user_recommendations": dg.MetadataValue.md(markdown_table(pd.DataFrame(
                  [{"blend": f"{s} only", "recall@20 + ndcg@20": v} for s, v in singles.items()]
                  + [{"blend": "tuned", "recall@20 + ndcg@20": tuned.user_validation.get("best_value")}]))),
              "validation_related_items": dg.MetadataValue.json(tuned.related_validation)}
        context.log.info(f"hybrid weights: users {user_w}, related items {related_w}")
    model = fit_hybrid(ease_model, association_rules, emb, m.train, split.train, config.recency_days,
                       config.trend_days)
    model.weights, model.related_weights = dict(user_w), dict(related_w)
    params = {"weights": model.weights, "related_weights": model.related_weights, "recency_days": config.recency_days,
              "trend_days": config.trend_days, "collaborative": "ease", "signals": list(SIGNALS)}
    remember_training(model, params, {})
    return dg.Output(model, metadata={**md, "params": dg.MetadataValue.json(params),
                                      "rising_items": int((model.trend > 0).sum())})
