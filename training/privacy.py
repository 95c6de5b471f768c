"""Differentially private pair association rules (optional; off unless an epsilon is configured).

Mechanism (pure epsilon-DP with respect to adding or removing one basket):

1. Contribution bounding: a basket with more than ``k`` distinct items keeps ``k`` of them, drawn
   uniformly (seeded), where ``k`` is the largest size whose pairs fit ``max_pairs_per_basket`` = m
   (``k (k-1) / 2 <= m``). One basket then changes the basket count by 1, at most ``k`` item counts
   by 1 and at most ``m`` pair counts by 1: L1 sensitivity ``1 + k + m`` for the whole released vector.
2. Laplace mechanism (Dwork, McSherry, Nissim & Smith 2006): noise of scale ``(1 + k + m) / epsilon``
   on the basket count, on every item count, and on every pair count among the items whose *noisy*
   support passes ``min_support`` (the catalogue is public; choosing the pair domain from noisy
   counts is post-processing). Every pair in that domain gets noise, observed or not, so which pairs
   exist is protected too.
3. Rules are computed from the noisy counts exactly as from exact ones (post-processing), with
   counts floored at zero and pair counts capped at their items' counts. A pair is published only when
   its noisy count passes ``min_support`` and the level that noise alone passes with probability
   ``max_false_pairs / n_pairs`` (Laplace tail: ``scale * ln(n_pairs / (2 max_false_pairs))``), so
   that about ``max_false_pairs`` pairs that never occurred are expected among the published ones
   (post-processing too; None publishes every pair over ``min_support``).

The clipping of transactions per record is the usual step in DP frequent-itemset mining (Zeng,
Naughton & Cai 2012, "On differentially private frequent itemset mining"); the cost is measured in
``benchmarks/privacy.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.association import RULE_COLUMNS, rules_from_counts


def items_per_basket(max_pairs_per_basket: int) -> int:
    """The largest ``k`` with ``k (k - 1) / 2 <= max_pairs_per_basket`` (at least 1)."""
    if max_pairs_per_basket < 1:
        raise ValueError(f"max_pairs_per_basket must be >= 1, not {max_pairs_per_basket}")
    return max(1, int((1 + math.isqrt(1 + 8 * max_pairs_per_basket)) // 2))


def clip_baskets(baskets: sp.csr_matrix, k: int, seed: int) -> sp.csr_matrix:
    """Binary (n_baskets, n_items) CSR where each basket keeps at most ``k`` of its items, drawn
    uniformly at random (seeded)."""
    b = baskets.tocsr().copy()
    b.sum_duplicates()
    b.data = np.ones_like(b.data, dtype=np.float32)
    sizes = np.diff(b.indptr)
    if sizes.max(initial=0) <= k:
        return b
    rng = np.random.default_rng(seed)
    # one random key per entry; inside each basket keep the k entries with the smallest keys
    keys = rng.random(b.nnz)
    row = np.repeat(np.arange(b.shape[0]), sizes)
    order = np.lexsort((keys, row))
    rank_in_row = np.arange(b.nnz) - np.repeat(b.indptr[:-1], sizes)
    keep = np.zeros(b.nnz, dtype=bool)
    keep[order[rank_in_row < k]] = True
    return sp.csr_matrix((b.data[keep], b.indices[keep], np.concatenate([[0], np.cumsum(
        np.minimum(sizes, k))])), shape=b.shape)


def private_pair_rules(baskets: sp.csr_matrix, min_support: float, min_confidence: float, epsilon: float,
                       max_pairs_per_basket: int = 45, seed: int = 0,
                       max_false_pairs: float | None = 1.0) -> pd.DataFrame:
    """Pair rules as :func:`training.association.pair_rules`, from epsilon-DP counts (see module doc).

    ``baskets``: (n_baskets, n_items) CSR, nonzero where a basket holds an item. ``pair_count``,
    the supports, confidence and lift are noisy; returns :data:`RULE_COLUMNS`, sorted as ``pair_rules``.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, not {epsilon}")
    k = items_per_basket(max_pairs_per_basket)
    m = k * (k - 1) // 2
    scale = (1 + k + m) / epsilon
    rng = np.random.default_rng(seed + 1)
    b = clip_baskets(baskets, k, seed)
    n = max(float(b.shape[0]) + rng.laplace(0.0, scale), 1.0)
    counts = np.bincount(b.indices, minlength=b.shape[1]).astype(np.float64)
    counts = np.maximum(counts + rng.laplace(0.0, scale, size=counts.shape), 0.0)
    frequent = np.flatnonzero((counts / n >= min_support) & (counts > 0))
    if len(frequent) < 2:
        return pd.DataFrame({c: [] for c in RULE_COLUMNS})
    sub = b[:, frequent]
    exact = np.asarray((sub.T @ sub).todense(), dtype=np.float64)
    iu, ju = np.triu_indices(len(frequent), k=1)
    noisy = np.maximum(exact[iu, ju] + rng.laplace(0.0, scale, size=len(iu)), 0.0)
    keep = noisy / n >= min_support
    if max_false_pairs is not None and scale > 0:
        keep &= noisy >= scale * math.log(max(len(iu) / (2.0 * max_false_pairs), 1.0))
    # a pair cannot be in more baskets than either item: cap (post-processing)
    pair = np.minimum(noisy[keep], np.minimum(counts[frequent[iu[keep]]], counts[frequent[ju[keep]]]))
    return rules_from_counts(n, counts, frequent[iu[keep]], frequent[ju[keep]], pair, min_confidence)
