"""Fast Optuna search for :class:`training.models.chebycf.ChebyCF`.

The costly part of the filter, the Chebyshev bases T_k(L~) x (k = 0..max order) of the validation users'
pre-normalised histories, and the ideal-pass term for each candidate number of singular vectors do not
depend on the filter's shape, its order, the ideal weight or the post-normalisation; they are computed
once (on the ``fit`` matrices carved from train), and each trial only recombines them. The degree
pre-normalisation exponent ``beta`` changes the bases, so it is fixed per study (ChebyCF's published 0.4 by
default). Same storage, seeding and study files as :mod:`training.tuning`.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from training.data import InteractionData
from training.metrics import evaluate_scores
from training.models.chebycf import ChebyCF, chebyshev_coefficients
from training.families import FAMILIES
from training.graph_filter_tuning import study_result
from training.tuning import Param, TuningConfig, TuningResult, open_study, run_trials, sample_users

# ChebyCF's published Gowalla configuration (Kim et al., SIGIR 2025; the authors' config/chebycf_gowalla.yml):
# the first trial, so the search starts from it.
PUBLISHED = {"order": 8, "flatness": 1.5, "alpha": 0.2, "n_factors": 512, "post_beta": 0.4}


def tune_chebycf(fit: InteractionData, validation: sp.csr_matrix, cfg: TuningConfig, beta: float = 0.4,
                 space: dict[str, Param] | None = None, svd: str = "randomized",
                 cache_dtype: type = np.float16, progress: bool = False, targets: str = "extrema") -> TuningResult:
    """Search ``space`` (default ``FAMILIES["chebycf"].search_space``); returns the best ChebyCF keyword arguments.
    ``targets``: the Chebyshev coefficient rule (see ``chebyshev_coefficients``), fixed per study.

    Caches: (max order + 1) bases and one ideal term per ``n_factors`` choice, each (validation users,
    n_items) in ``cache_dtype`` (float16 halves the memory; scores are summed in float32)."""
    import optuna

    space = dict(space or FAMILIES["chebycf"].search_space)
    t0 = time.perf_counter()
    max_order = int(space["order"].high) if space["order"].kind == "int" else max(space["order"].choices)
    factor_choices = sorted(space["n_factors"].choices)
    base = ChebyCF(order=max_order, n_factors=factor_choices[-1], alpha=1.0, beta=beta, svd=svd,
                   seed=cfg.seed).fit(fit)
    val = sample_users(validation, cfg.max_eval_users, cfg.seed)
    users = np.flatnonzero(np.diff(val.indptr) > 0)
    pos = np.full(val.shape[0], -1)
    pos[users] = np.arange(len(users))
    x = (fit.user_items[users].astype(np.float32) @ sp.diags(base.pre)).tocsr()  # (n, n_items)
    n, n_items = len(users), fit.n_items
    bases = np.empty((max_order + 1, n, n_items), cache_dtype)
    ideal = {k: np.empty((n, n_items), cache_dtype) for k in factor_choices}
    left, right = base.ideal
    step = 1024
    for start in tqdm(range(0, n, step), desc="chebycf bases", disable=not progress, unit="chunk"):
        xc = x[start:start + step]
        for k, b in enumerate(base.chebyshev_bases(xc.T.toarray(), max_order)):
            bases[k, start:start + xc.shape[0]] = b.T
        proj = np.asarray(xc @ left)  # (chunk, K)
        acc, done = np.zeros((xc.shape[0], n_items), np.float32), 0
        for k in factor_choices:
            k_eff = min(k, proj.shape[1])
            acc += proj[:, done:k_eff] @ right[done:k_eff]
            done = k_eff
            ideal[k][start:start + xc.shape[0]] = acc
    degree = np.asarray(fit.user_items.sum(axis=0)).ravel()
    k_metric = int(cfg.metric.split("@")[1])
    setup_seconds = time.perf_counter() - t0

    def objective(trial: optuna.Trial) -> float:
        p = {name: spec.suggest(trial, name) for name, spec in space.items()}
        coeffs = chebyshev_coefficients(p["order"], p["flatness"], targets).astype(np.float32)
        post = np.where(degree > 0, np.maximum(degree, 1.0) ** p["post_beta"], 0.0).astype(np.float32)

        def score(u: np.ndarray) -> np.ndarray:
            rows = pos[u]
            s = np.float32(p["alpha"]) * ideal[p["n_factors"]][rows].astype(np.float32)
            for c, b in zip(coeffs, bases):
                s += c * b[rows].astype(np.float32)
            return s * post[None, :]

        res = evaluate_scores(score, fit.user_items, val, ks=(k_metric,))
        trial.set_user_attr("recall", res[f"recall@{k_metric}"])
        return res[cfg.metric]

    study = open_study(cfg)
    start_point = {k: v for k, v in PUBLISHED.items() if k in space}
    if "n_factors" in start_point and start_point["n_factors"] not in factor_choices:
        start_point["n_factors"] = factor_choices[-1]
    if space["order"].kind == "int":
        start_point["order"] = min(max(start_point.get("order", max_order), int(space["order"].low)), max_order)
    run_trials(study, objective, cfg, first_params=start_point)
    return study_result(study, cfg, {"beta": beta, "svd": svd, "targets": targets, "seed": cfg.seed}, t0,
                        setup_seconds)
