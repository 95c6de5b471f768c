"""Fast Optuna search for the graph filter: the costly parts (SVD, graph propagation) do not depend
on the mixing coefficients, so they are computed once for a sample of validation users and every
trial only recombines them. Same storage, seeding and study files as :mod:`training.tuning`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.families import FAMILIES
from training.metrics import evaluate_scores
from training.models.graph_filter import GraphFilter
from training.tuning import (Param, TuningConfig, TuningResult, finished_trials, open_study, run_trials, sample_users,
                             write_study_files)

# the search space: ``FAMILIES["gf_cf"].search_space`` (alpha, sharpen, popularity_power, ideal_power, n_factors)
SPACE: Mapping[str, Param] = FAMILIES["gf_cf"].search_space


def tune_graph_filter(fit: InteractionData, validation: sp.csr_matrix, cfg: TuningConfig, max_factors: int = 768,
                      svd: str = "randomized") -> TuningResult:
    """Search :data:`SPACE`; returns the best GraphFilter keyword arguments (``normalise_terms=True``)."""
    import optuna

    t0 = time.perf_counter()
    base = GraphFilter(alpha=1.0, n_factors=max_factors, sharpen=1.0, normalise_terms=True, svd=svd,
                       seed=cfg.seed).fit(fit)
    val = sample_users(validation, cfg.max_eval_users, cfg.seed)
    users = np.flatnonzero(np.diff(val.indptr) > 0)
    pos = np.full(val.shape[0], -1)
    pos[users] = np.arange(len(users))
    r = fit.user_items[users].astype(np.float32)
    lin = base._linear(r)
    sharp = base._linear(lin) / base.scales["sharpen"]
    lin /= base.scales["linear"]
    proj = np.asarray(r @ base.left)  # (n, K), unweighted
    # the final model measures its ideal term's scale on a seeded sample of training users: do the same
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(fit.n_users, min(2000, fit.n_users), replace=False))
    proj_train = np.asarray(fit.user_items[sample].astype(np.float32) @ base.left)
    s = base.singular_values
    degree = np.maximum(np.asarray(fit.user_items.sum(axis=0)).ravel(), 1.0).astype(np.float32)
    k_metric = int(cfg.metric.split("@")[1])
    setup_seconds = time.perf_counter() - t0

    def objective(trial: optuna.Trial) -> float:
        p = {name: spec.suggest(trial, name) for name, spec in SPACE.items()}
        k = min(p["n_factors"], len(s))
        w = (s[:k] / s[0]) ** p["ideal_power"]
        ideal_scale = float(np.abs((proj_train[:, :k] * w) @ base.right[:k]).mean()) or 1.0
        scores = lin - p["sharpen"] * sharp + (p["alpha"] / ideal_scale) * ((proj[:, :k] * w) @ base.right[:k])
        if p["popularity_power"]:
            scores *= (degree ** p["popularity_power"])[None, :]
        res = evaluate_scores(lambda u: scores[pos[u]], fit.user_items, val, ks=(k_metric,))
        trial.set_user_attr("recall", res[f"recall@{k_metric}"])
        return res[cfg.metric]

    study = open_study(cfg)
    # GF-CF's own point in these coordinates, as the first trial: the search starts from the published model
    gf_alpha = 0.3 * base.scales["ideal"] / base.scales["linear"]
    run_trials(study, objective, cfg, first_params={"alpha": min(gf_alpha, 0.5), "sharpen": 0.0,
                                                    "popularity_power": 0.0, "ideal_power": 0.0, "n_factors": 256})
    return study_result(study, cfg, {"normalise_terms": True, "svd": svd, "seed": cfg.seed}, t0, setup_seconds)


def study_result(study: Any, cfg: TuningConfig, fixed: dict[str, Any], t0: float, setup_seconds: float
                 ) -> TuningResult:
    """The best trial's parameters plus ``fixed`` ones, with the study's files written; for tuners that
    cache the costly terms once (``setup_seconds``) and recombine them per trial."""
    result = TuningResult({**study.best_params, **fixed}, float(study.best_value), finished_trials(study),
                          cfg.study_name, cfg.storage, seconds=time.perf_counter() - t0)
    result.files = write_study_files(study, Path(cfg.output_dir) / cfg.study_name, result)
    result.files["setup_seconds"] = f"{setup_seconds:.1f}"
    return result
