"""Fitting a :class:`~training.models.hybrid.Hybrid` from its parts and tuning its weights on validation.

Used by the hybrid benchmark (``benchmarks.hybrid``) and the ``hybrid_model`` Dagster asset.

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

from training.cold_start import ColdStartTask, build_task
from training.data import InteractionData
from training.metrics import evaluate_scores
from training.models.association import AssociationRules
from training.catalog import CategoryLevels
from training.models.base import Recommender, SkippedFamily, one_item_histories
from training.models.hybrid import Hybrid, recency_weights, trend_scores

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


# the collaborative component, first trained one wins: EASE where it fits, else item-kNN (EASE's dense
# n_items x n_items solve does not fit a 50k-item catalogue such as Instacart's)
COLLABORATIVE_PREFERENCE = ("ease", "itemknn")


def hybrid_components(collaborative: dict[str, Recommender | SkippedFamily | None],
                      association: AssociationRules | SkippedFamily | None
                      ) -> tuple[Recommender, AssociationRules] | SkippedFamily:
    """The hybrid's collaborative component (the first trained of ``COLLABORATIVE_PREFERENCE`` among
    ``collaborative``, family name -> model, a :class:`SkippedFamily` or None) and its association rules, or the
    hybrid's own :class:`SkippedFamily` saying which part is missing and what to set."""
    if association is None or isinstance(association, SkippedFamily):
        why = association.reason if isinstance(association, SkippedFamily) else "not trained"
        return SkippedFamily("hybrid", f"needs association_rules, which this run did not train ({why}); add "
                                       f"'association_rules' to `families`")
    for family in COLLABORATIVE_PREFERENCE:
        model = collaborative.get(family)
        if model is not None and not isinstance(model, SkippedFamily):
            return model, association
    reasons = "; ".join(f"{f}: {m.reason if isinstance(m, SkippedFamily) else 'not trained'}"
                        for f, m in ((f, collaborative.get(f)) for f in COLLABORATIVE_PREFERENCE))
    return SkippedFamily("hybrid", f"needs a collaborative component, {' or '.join(COLLABORATIVE_PREFERENCE)}, "
                                   f"and this run trained neither ({reasons}); add 'itemknn' to `families`")


def refit_like(model: Recommender, data: InteractionData) -> Recommender:
    """A fresh model of ``model``'s family with its training parameters (``training_params``, else its
    constructor defaults), fitted on ``data``: the component refitted on ``fit`` for tuning on validation."""
    return type(model)(**getattr(model, "training_params", {})).fit(data)


def fit_hybrid(collaborative: Recommender, association: AssociationRules, text_embeddings: np.ndarray,
               data: InteractionData, rows: pd.DataFrame, recency_days: float = RECENCY_DAYS,
               trend_days: float = TREND_DAYS, categories: CategoryLevels | None = None) -> Hybrid:
    """A Hybrid over fitted components; ``rows``: the interactions behind ``data`` (columns ``user_id``,
    ``item_id``, ``timestamp``). Without timestamps (e.g. Gowalla) there is neither recency weighting nor trend.
    ``categories``: the catalog's hierarchy in ``data``'s item order (None: no ``category`` signal)."""
    timed = "timestamp" in rows.columns and rows["timestamp"].notna().any()
    timed_rows = rows[rows["timestamp"].notna()] if timed else rows
    return Hybrid(collaborative, association, text_embeddings, categories=categories).fit(
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


def basket_related_task(data: InteractionData, hidden: pd.DataFrame, max_baskets: int | None = None,
                        seed: int = 0) -> tuple[ColdStartTask, np.ndarray]:
    """Related items on a basket-completion split: one row per (held-out basket, visible item), the query being
    the visible item and the right answers the basket's hidden items, every item but the query a candidate (a
    related list as served: it knows only its item). ``data``: the matrices whose users hold the held-out
    baskets' visible items (``basket:<key>`` users); ``hidden``: the hidden rows (``Split.test`` or
    ``Split.validation``). At most ``max_baskets`` baskets (seeded sample). Returns the task (``cold``: (n_rows,)
    query positions, repeats allowed) and (n_rows,) the basket (user position) of each row."""
    truth_users = data.matrix_for(hidden)
    baskets = np.flatnonzero(np.diff(truth_users.indptr) > 0)
    baskets = baskets[np.diff(data.user_items.indptr)[baskets] > 0]
    if max_baskets is not None and len(baskets) > max_baskets:
        baskets = np.sort(np.random.default_rng(seed).choice(baskets, max_baskets, replace=False))
    visible = data.user_items[baskets]
    row_basket = np.repeat(np.arange(len(baskets)), np.diff(visible.indptr))
    queries = visible.indices.astype(np.int64)
    n = data.n_items
    truth = truth_users[baskets][row_basket].tocsr()
    self_mask = sp.csr_matrix((np.ones(len(queries), np.float32), (np.arange(len(queries)), queries)),
                              shape=(len(queries), n))
    return ColdStartTask(queries, truth, self_mask, data.item_ids), baskets[row_basket]


@dataclass
class HybridTuning:
    """Weights for user recommendations and for related items, with what validation said of them."""

    user_weights: dict[str, float]
    related_weights: dict[str, float]
    user_validation: dict = field(default_factory=dict)
    related_validation: dict = field(default_factory=dict)


def tune_hybrid(hybrid: Hybrid, fit: InteractionData, validation: sp.csr_matrix,
                related_task: ColdStartTask | None, trials: int, seed: int = 42,
                signals: tuple[str, ...] | None = None) -> HybridTuning:
    """Weights of ``hybrid`` (its components fitted on ``fit``) tuned on ``validation`` ((n_users, n_items) CSR in
    ``fit``'s positions) for user recommendations, and on ``related_task`` for related items (the user weights
    when None). ``signals``: those searched (default ``hybrid.signal_names``; the others get 0). Signals of the
    validation users and of the related task's items (one-item histories) are computed once; each trial only
    re-blends them."""
    signals = hybrid.signal_names if signals is None else tuple(signals)
    val_users = np.flatnonzero(np.diff(validation.indptr) > 0)
    val_sig = {s: v for s, v in hybrid.user_signals(val_users).items() if s in signals}
    where = np.full(fit.n_users, -1)
    where[val_users] = np.arange(len(val_users))

    def user_objective(w: dict[str, float]) -> float:
        r = evaluate_scores(lambda u: hybrid.blend({s: v[where[u]] for s, v in val_sig.items()}, w), fit.user_items,
                            validation, ks=(20,))
        return r["recall@20"] + r["ndcg@20"]

    if related_task is not None and len(related_task.cold):
        rel_items, rel_row = np.unique(related_task.cold, return_inverse=True)
        onehot = one_item_histories(rel_items, hybrid.n_items)
        rel_sig = {s: v for s, v in hybrid.signals(onehot, hybrid.collaborative.score_history(onehot)).items()
                   if s in signals}

    def related_objective(w: dict[str, float]) -> float:
        # the same scores as related_scores(hybrid, items) at weights w, from the signals computed once
        # (evaluate_cold with the task's rows in place of its items: rows index the precomputed signals)
        r = evaluate_scores(lambda rows: hybrid.blend({s: v[rel_row[rows]] for s, v in rel_sig.items()}, w),
                            related_task.self_mask, related_task.truth, ks=(20,))
        return r["recall@20"] + r["ndcg@20"]

    user_w, user_info = tune_weights(user_objective, signals, trials, seed)
    if related_task is None or not len(related_task.cold):
        rel_w, rel_info = dict(user_w), {}
    else:
        rel_w, rel_info = tune_weights(related_objective, signals, trials, seed)
    hybrid.weights = dict(user_w)
    return HybridTuning(user_w, rel_w, user_info, rel_info)


def related_scores(model: Recommender, items: np.ndarray) -> np.ndarray:
    """(len(items), n_items) scores of one-item histories."""
    return model.score_history(one_item_histories(items, model.n_items))
