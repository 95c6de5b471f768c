"""Fitting a :class:`~training.models.hybrid.Hybrid` from its parts and tuning its weights on validation.

Used by the hybrid benchmark (``training.hybrid_benchmark``) and the ``hybrid_model`` Dagster asset.

Weight search: only ratios matter, so the collaborative weight lives in [0, 1] and the others in
[0, 2], on a 0.05 grid so that 0 (signal off) is a value the sampler can pick. The single-signal
blends and the equal blend are evaluated first, so the chosen blend is never worse on validation than
the best single component. Objective: Recall@20 + NDCG@20 on validation. User recommendations and
related items get weights of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.cold_start import ColdStartTask, build_task, evaluate_cold
from training.data import InteractionData
from training.metrics import evaluate_scores
from training.models.association import AssociationRules
from training.models.base import Recommender, one_item_histories
from training.models.hybrid import SIGNALS, Hybrid, recency_weights, trend_scores

# exp(-age / 30 days) on the histories fed to the association and text signals; picked among 7, 30,
# 90 days and none on Online Retail's validation split (see training/models/hybrid.py).
RECENCY_DAYS = 30.0
# trend window: 14 days; with EASE on Online Retail's validation split, 14 and 28 days gave NDCG@20 0.1003
# and 0.0994 at trend weight 0.5 (EASE alone 0.0951), 56 days 0.0988
TREND_DAYS = 14.0
WEIGHT_STEP = 0.05


def weight_trials(signals: tuple[str, ...]) -> list[dict[str, float]]:
    """Blends evaluated before the sampler's own: each signal alone, then all equal."""
    return [{t: float(t == s) for t in signals} for s in signals] + [{s: 1.0 for s in signals}]


def suggest_weights(trial, signals: tuple[str, ...]) -> dict[str, float]:
    """Collaborative in [0, 1], the others in [0, 2], all on a ``WEIGHT_STEP`` grid (0 included)."""
    return {s: trial.suggest_float(s, 0.0, 1.0 if s == "collaborative" else 2.0, step=WEIGHT_STEP) for s in signals}


def tune_weights(evaluate: Callable[[dict[str, float]], float], signals: tuple[str, ...], trials: int,
                 seed: int = 42) -> tuple[dict[str, float], dict]:
    """Optuna TPE over blend weights maximising ``evaluate(weights)`` (validation only).
    Returns (best weights, {"best_value", "single_signal_values"})."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    first = weight_trials(signals)
    for w in first:
        study.enqueue_trial(w)
    study.optimize(lambda trial: evaluate(suggest_weights(trial, signals)), n_trials=max(trials, len(first)))
    singles = {s: study.trials[i].value for i, s in enumerate(signals)}
    return dict(study.best_params), {"best_value": study.best_value, "single_signal_values": singles}


def fit_hybrid(collaborative: Recommender, association: AssociationRules, text_embeddings: np.ndarray,
               data: InteractionData, rows: pd.DataFrame, recency_days: float = RECENCY_DAYS,
               trend_days: float = TREND_DAYS) -> Hybrid:
    """A Hybrid over fitted components; ``rows``: the interactions behind ``data`` (columns ``user_id``,
    ``item_id``, ``timestamp``). Without timestamps (e.g. Gowalla) there is neither recency weighting nor trend."""
    timed = "timestamp" in rows.columns and rows["timestamp"].notna().any()
    timed_rows = rows[rows["timestamp"].notna()] if timed else rows
    return Hybrid(collaborative, association, text_embeddings).fit(
        data, recency_weights(timed_rows, data, recency_days) if timed else None,
        trend_scores(timed_rows, data, trend_days) if timed else None)


def validation_related_task(fit_rows: pd.DataFrame, train_rows: pd.DataFrame, fit: InteractionData,
                            cut: pd.Timestamp | None) -> ColdStartTask | None:
    """Related-items task inside train: warm items bought in baskets from ``cut`` (the validation window's
    start) on, their right answers the items in the same baskets; None without a cut (no timestamps)."""
    if cut is None or pd.isna(cut):
        return None
    return build_task(pd.concat([fit_rows, train_rows[train_rows["timestamp"] >= cut]]), fit.item_ids, cut,
                      basis="basket", items="warm")


@dataclass
class HybridTuning:
    """Weights for user recommendations and for related items, with what validation said of them."""

    user_weights: dict[str, float]
    related_weights: dict[str, float]
    user_validation: dict = field(default_factory=dict)
    related_validation: dict = field(default_factory=dict)


def tune_hybrid(hybrid: Hybrid, fit: InteractionData, validation: sp.csr_matrix,
                related_task: ColdStartTask | None, trials: int, seed: int = 42) -> HybridTuning:
    """Weights of ``hybrid`` (its components fitted on ``fit``) tuned on ``validation`` ((n_users, n_items) CSR in
    ``fit``'s positions) for user recommendations, and on ``related_task`` for related items (the user weights
    when None). Signals of the validation users are computed once; each trial only re-blends them."""
    val_users = np.flatnonzero(np.diff(validation.indptr) > 0)
    val_sig = hybrid.user_signals(val_users)
    where = np.full(fit.n_users, -1)
    where[val_users] = np.arange(len(val_users))

    def user_objective(w: dict[str, float]) -> float:
        hybrid.weights = w
        r = evaluate_scores(lambda u: hybrid.blend({s: v[where[u]] for s, v in val_sig.items()}), fit.user_items,
                            validation, ks=(20,))
        return r["recall@20"] + r["ndcg@20"]

    def related_objective(w: dict[str, float]) -> float:
        hybrid.weights = w
        r = evaluate_cold(related_task, lambda it: related_scores(hybrid, it), ks=(20,))
        return r["recall@20"] + r["ndcg@20"]

    user_w, user_info = tune_weights(user_objective, SIGNALS, trials, seed)
    if related_task is None or not len(related_task.cold):
        rel_w, rel_info = dict(user_w), {}
    else:
        rel_w, rel_info = tune_weights(related_objective, SIGNALS, trials, seed)
    hybrid.weights = dict(user_w)
    return HybridTuning(user_w, rel_w, user_info, rel_info)


def related_scores(model: Recommender, items: np.ndarray) -> np.ndarray:
    """(len(items), n_items) scores of one-item histories."""
    return model.score_history(one_item_histories(items, model.n_items))
