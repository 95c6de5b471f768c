"""Optuna search for a :class:`~training.models.blend.LinearBlend`'s weights on the validation split.

Each component is fitted once on ``fit`` (train minus validation) and scores a seeded sample of validation users
once; every trial only re-weights those cached (n_sample, n_items) blocks. The first component's weight is fixed
at 1 (only ratios matter for a ranking); the others are searched in [0, ``max_weight``], and trial 0 is the
first component alone, so the search can never end below it on validation. Same storage, seeding and study files
as :mod:`training.tuning`.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.graph_filter_tuning import study_result
from training.metrics import evaluate_scores
from training.models.blend import LinearBlend
from training.tuning import Param, TuningConfig, TuningResult, open_study, run_trials, sample_users


def tune_blend(fit: InteractionData, validation: sp.csr_matrix, cfg: TuningConfig,
               components: Sequence[tuple[str, dict[str, Any]]], max_weight: float = 2.0) -> TuningResult:
    """Best ``weights`` for ``components`` (their parameters fixed); ``best_params`` holds the LinearBlend
    keyword arguments (``components`` and ``weights``)."""
    import optuna

    t0 = time.perf_counter()
    base = LinearBlend(components, seed=cfg.seed).fit(fit)
    val = sample_users(validation, cfg.max_eval_users, cfg.seed)
    users = np.flatnonzero(np.diff(val.indptr) > 0)
    pos = np.full(val.shape[0], -1)
    pos[users] = np.arange(len(users))
    rows = fit.user_items[users]
    cached = [np.asarray(m.score_history(rows), np.float32) / np.float32(s) for m, s in zip(base.models, base.scales)]
    space = {f"w{i}": Param("float", 0.0, max_weight) for i in range(1, len(cached))}
    k_metric = int(cfg.metric.split("@")[1])
    setup_seconds = time.perf_counter() - t0

    def objective(trial: optuna.Trial) -> float:
        w = [1.0] + [spec.suggest(trial, name) for name, spec in space.items()]
        scores = cached[0].copy()
        for wi, block in zip(w[1:], cached[1:]):
            scores += np.float32(wi) * block
        res = evaluate_scores(lambda u: scores[pos[u]], fit.user_items, val, ks=(k_metric,))
        trial.set_user_attr("recall", res[f"recall@{k_metric}"])
        return res[cfg.metric]

    study = open_study(cfg)
    run_trials(study, objective, cfg, first_params={name: 0.0 for name in space})
    result = study_result(study, cfg, {}, t0, setup_seconds)
    weights = [1.0] + [float(result.best_params[name]) for name in space]
    result.best_params = {"components": [[f, dict(p)] for f, p in base.components], "weights": weights}
    return result
