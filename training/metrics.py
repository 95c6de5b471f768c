"""Full-ranking evaluation: every item not in the user's train set is a candidate.

Follows the protocol of the LightGCN paper (He et al., SIGIR 2020) and its reference code:
Recall@K = hits / |test items of the user|; NDCG@K with binary gains and the ideal DCG over
min(|test items|, K) positions; metrics averaged over users with at least one test item.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from training.ranking import mask_seen, top_k

DEFAULT_KS = (10, 20, 50)


def evaluate_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    progress: bool = False,
    standard_errors: bool = False,
    per_user: bool = False,
) -> dict[str, Any]:
    """Evaluate a scorer on all users with test items.

    ``score_fn(users)`` returns (len(users), n_items) scores for user positions ``users``.
    ``train`` and ``test``: (n_users, n_items) CSR; train items are excluded from the ranking.
    Returns ``recall@K``, ``ndcg@K``, ``precision@K``, ``hit_rate@K``, ``coverage@K`` for each K,
    plus ``n_users`` and ``scoring_seconds``. With ``standard_errors``, also ``recall@K_se`` and ``ndcg@K_se``:
    the standard error of each mean over users (sample standard deviation / sqrt(n_users)), the scale of
    sampling noise against which a difference between two models on the same users is to be read. With
    ``per_user``, also ``per_user``: {"users": (n,) user positions, "recall@K" / "ndcg@K" / "precision@K" /
    "hit_rate@K": (n,) values}, for paired comparisons (:func:`paired_bootstrap`).
    """
    test = test.tocsr()
    n_test = np.diff(test.indptr)
    users = np.flatnonzero(n_test > 0)
    kmax = max(ks)
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    cum_disc = np.concatenate([[0.0], np.cumsum(discounts)])
    recommended = {k: np.zeros(train.shape[1], bool) for k in ks}
    # each user's value of each metric: their mean is the figure, their spread the standard error
    values: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg", "precision",
                                                                                  "hit_rate")}
    t0 = time.perf_counter()
    chunks = range(0, len(users), chunk_size)
    for start in tqdm(chunks, desc="evaluating", disable=not progress, unit="chunk"):
        u = users[start:start + chunk_size]
        scores = np.asarray(score_fn(u), dtype=np.float32)
        mask_seen(scores, train[u])
        idx, _ = top_k(scores, kmax)
        rows = test[u]
        relevant = np.zeros(scores.shape, dtype=bool)
        relevant[np.repeat(np.arange(len(u)), np.diff(rows.indptr)), rows.indices] = True
        hits = np.take_along_axis(relevant, idx, axis=1)
        nt = n_test[u]
        for k in ks:
            h = hits[:, :k]
            nh = h.sum(axis=1)
            values[f"recall@{k}"].append(nh / nt)
            values[f"precision@{k}"].append(nh / k)
            values[f"hit_rate@{k}"].append((nh > 0).astype(np.float64))
            dcg = (h * discounts[:h.shape[1]]).sum(axis=1)
            values[f"ndcg@{k}"].append(dcg / cum_disc[np.minimum(nt, k)])
            recommended[k][idx[:, :k].ravel()] = True
    elapsed = time.perf_counter() - t0
    n = max(len(users), 1)
    per_key = {key: np.concatenate(v) if v else np.zeros(0) for key, v in values.items()}
    out: dict[str, Any] = {key: float(v.sum()) / n for key, v in per_key.items()}
    for k in ks:
        out[f"coverage@{k}"] = float(recommended[k].mean())
    if standard_errors:
        for key in (f"{m}@{k}" for k in ks for m in ("recall", "ndcg")):
            v = per_key[key]
            var = float(np.var(v, ddof=1)) if len(v) > 1 else 0.0
            out[f"{key}_se"] = float(np.sqrt(var / n))
    out["n_users"] = int(len(users))
    out["scoring_seconds"] = elapsed
    if per_user:
        out["per_user"] = {"users": users, **per_key}
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over paired units (users, cold items: (n,) each, same order) with a percentile
    bootstrap confidence interval at ``level`` over resampled units, and the share of resamples in which
    ``a`` is ahead. A difference whose interval straddles 0 is not told apart from noise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_bootstrap needs two equal, non-empty 1-d arrays, got {a.shape} and {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    batch = max(1, 2_000_000 // len(d))  # resamples drawn a batch at a time: bounded memory for many users
    means = np.concatenate([d[rng.integers(0, len(d), (min(batch, n_boot - s), len(d)))].mean(axis=1)
                            for s in range(0, n_boot, batch)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean_difference": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "share_ahead": float((means > 0).mean()), "n": int(len(d)), "level": level}
