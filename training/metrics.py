"""Full-ranking evaluation: every item not in the user's train set is a candidate.

Follows the protocol of the LightGCN paper (He et al., SIGIR 2020) and its reference code:
Recall@K = hits / |test items of the user|; NDCG@K with binary gains and the ideal DCG over
min(|test items|, K) positions; metrics averaged over users with at least one test item.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

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
) -> dict[str, float]:
    """Evaluate a scorer on all users with test items.

    ``score_fn(users)`` returns (len(users), n_items) scores for user positions ``users``.
    ``train`` and ``test``: (n_users, n_items) CSR; train items are excluded from the ranking.
    Returns ``recall@K``, ``ndcg@K``, ``precision@K``, ``hit_rate@K``, ``coverage@K`` for each K,
    plus ``n_users`` and ``scoring_seconds``. With ``standard_errors``, also ``recall@K_se`` and ``ndcg@K_se``:
    the standard error of each mean over users (sample standard deviation / sqrt(n_users)), the scale of
    sampling noise against which a difference between two models on the same users is to be read.
    """
    test = test.tocsr()
    n_test = np.diff(test.indptr)
    users = np.flatnonzero(n_test > 0)
    kmax = max(ks)
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    cum_disc = np.concatenate([[0.0], np.cumsum(discounts)])
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "hit_rate")}
    squares = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    recommended = {k: np.zeros(train.shape[1], bool) for k in ks}
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
            recall = nh / nt
            sums[f"recall@{k}"] += float(recall.sum())
            squares[f"recall@{k}"] += float((recall ** 2).sum())
            sums[f"precision@{k}"] += float(nh.sum() / k)
            sums[f"hit_rate@{k}"] += float((nh > 0).sum())
            dcg = (h * discounts[:h.shape[1]]).sum(axis=1)
            idcg = cum_disc[np.minimum(nt, k)]
            ndcg = dcg / idcg
            sums[f"ndcg@{k}"] += float(ndcg.sum())
            squares[f"ndcg@{k}"] += float((ndcg ** 2).sum())
            recommended[k][idx[:, :k].ravel()] = True
    elapsed = time.perf_counter() - t0
    n = max(len(users), 1)
    out = {key: val / n for key, val in sums.items()}
    for k in ks:
        out[f"coverage@{k}"] = float(recommended[k].mean())
    if standard_errors:
        for key, sq in squares.items():
            var = max(sq - n * out[key] ** 2, 0.0) / max(n - 1, 1)
            out[f"{key}_se"] = float(np.sqrt(var / n))
    out["n_users"] = int(len(users))
    out["scoring_seconds"] = elapsed
    return out
