"""Evaluate several models into one tidy table."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import scipy.sparse as sp

from training.data import InteractionData
from training.metrics import DEFAULT_KS, evaluate_scores
from training.models.base import Recommender


def metrics_frame(models: Sequence[Recommender], train: InteractionData, test: sp.csr_matrix,
                  ks: Sequence[int] = DEFAULT_KS) -> pd.DataFrame:
    """One row per (model, K): recall, ndcg, precision, hit_rate, coverage, n_users, fit and scoring seconds."""
    rows = []
    for m in models:
        res = evaluate_scores(m.score_users, train.user_items, test, ks)
        for k in ks:
            rows.append({"model": m.name, "k": k, **{name: res[f"{name}@{k}"] for name in
                                                      ("recall", "ndcg", "precision", "hit_rate", "coverage")},
                         "n_users": res["n_users"], "fit_seconds": m.fit_seconds,
                         "scoring_seconds": res["scoring_seconds"]})
    return pd.DataFrame(rows)
