"""Pair association rules (support, confidence, lift, leverage, conviction) by sparse matrix algebra.

For baskets B (n_baskets x n_items, binary): item supports are column sums / n_baskets; by the
apriori property only frequent items can be in frequent pairs, so pair counts come from
``B_f^T B_f`` over the frequent columns alone. Definitions follow Agrawal et al. (1993) for support
and confidence, Brin et al. (1997) for lift and conviction, Piatetsky-Shapiro (1991) for leverage,
computed in the same floating-point order as mlxtend so the rule sets are identical at thresholds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from training.itemsets import FrequentItemsets

RULE_COLUMNS = ["antecedent", "consequent", "pair_count", "antecedent_support", "consequent_support", "support",
                "confidence", "lift", "leverage", "conviction"]


def pair_counts(baskets: sp.csr_matrix, items: np.ndarray) -> sp.csr_matrix:
    """(len(items), len(items)) co-occurrence counts of the given item columns."""
    sub = baskets.tocsc()[:, items].tocsr()
    sub.data = np.ones_like(sub.data, dtype=np.float32)
    return (sub.T @ sub).tocsr()


def pair_rules(baskets: sp.csr_matrix, min_support: float, min_confidence: float = 0.0) -> pd.DataFrame:
    """All rules ``a -> c`` between single items with support >= ``min_support`` and confidence >=
    ``min_confidence``.

    ``baskets``: (n_baskets, n_items) CSR, nonzero where a basket holds an item.
    Returns a DataFrame with :data:`RULE_COLUMNS` (item positions in ``antecedent``/``consequent``),
    sorted by lift, then confidence, descending.
    """
    n = baskets.shape[0]
    if n == 0:
        return pd.DataFrame({c: [] for c in RULE_COLUMNS})
    b = baskets.tocsr().copy()
    b.sum_duplicates()
    b.data = np.ones_like(b.data, dtype=np.float32)
    counts = np.bincount(b.indices, minlength=b.shape[1]).astype(np.int64)
    support = counts / n
    frequent = np.flatnonzero(support >= min_support)
    co = sp.triu(pair_counts(b, frequent), k=1).tocoo()
    keep = co.data.astype(np.float64) / n >= min_support
    return rules_from_counts(n, counts, frequent[co.row[keep]], frequent[co.col[keep]], co.data[keep], min_confidence)


def rules_from_counts(n: float, counts: np.ndarray, ia: np.ndarray, ic: np.ndarray, pair_count: np.ndarray,
                      min_confidence: float) -> pd.DataFrame:
    """Both rules ``a -> c`` and ``c -> a`` of every pair ``(ia[p], ic[p])`` seen in ``pair_count[p]`` of
    ``n`` baskets; ``counts``: (n_items,) baskets per item. Exact or noisy counts (``training.privacy``)."""
    support = counts / n
    s_ac = pair_count.astype(np.float64) / n
    a = np.concatenate([ia, ic])
    c = np.concatenate([ic, ia])
    s_ac = np.concatenate([s_ac, s_ac])
    n_ac = np.rint(np.concatenate([pair_count, pair_count])).astype(np.int64)
    s_a, s_c = support[a], support[c]
    conf = s_ac / s_a
    ok = conf >= min_confidence
    a, c, s_ac, n_ac, s_a, s_c, conf = a[ok], c[ok], s_ac[ok], n_ac[ok], s_a[ok], s_c[ok], conf[ok]
    lift = conf / s_c
    leverage = s_ac - s_a * s_c
    with np.errstate(divide="ignore"):
        conviction = np.where(conf >= 1.0, np.inf, (1.0 - s_c) / (1.0 - conf))
    rules = pd.DataFrame({"antecedent": a, "consequent": c, "pair_count": n_ac, "antecedent_support": s_a,
                          "consequent_support": s_c, "support": s_ac, "confidence": conf, "lift": lift,
                          "leverage": leverage, "conviction": conviction})
    return rules.sort_values(["lift", "confidence", "antecedent", "consequent"],
                             ascending=[False, False, True, True], ignore_index=True)


def cooccurrence_at(matrix: sp.csr_matrix, a: np.ndarray, b: np.ndarray, chunk_size: int = 2048) -> np.ndarray:
    """Number of rows (baskets or users) of ``matrix`` holding both item ``a[p]`` and item ``b[p]``.

    ``matrix``: (n_rows, n_items), nonzero = present; ``a``, ``b``: (n_pairs,) item positions.
    Computes only the requested rows of ``matrix^T matrix``, chunked by antecedent.
    """
    m = matrix.tocsr().copy()
    m.data = np.ones_like(m.data, dtype=np.float32)
    mt = m.T.tocsr()
    out = np.zeros(len(a), dtype=np.int64)
    uniq, inv = np.unique(a, return_inverse=True)
    for start in range(0, len(uniq), chunk_size):
        block = uniq[start:start + chunk_size]
        co = (mt[block] @ m).tocsr()
        sel = np.flatnonzero((inv >= start) & (inv < start + len(block)))
        out[sel] = np.asarray(co[inv[sel] - start, b[sel]]).ravel().astype(np.int64)
    return out


def pair_rules_from_itemsets(itemsets: "FrequentItemsets", n_items: int, min_confidence: float = 0.0) -> pd.DataFrame:
    """:func:`pair_rules` from counts taken elsewhere: ``itemsets`` (``training.itemsets.FrequentItemsets``, mined
    with ``max_len`` >= 2 at the wanted min_support) holds the frequent items' and pairs' basket counts; the rules
    and their metrics are computed exactly as :func:`pair_rules` computes them, so an engine that counts the same
    (``training.counting``) gives the same frame."""
    n = itemsets.n_baskets
    if n == 0:
        return pd.DataFrame({c: [] for c in RULE_COLUMNS})
    counts = np.zeros(n_items, np.int64)
    counts[itemsets.items[0][:, 0]] = itemsets.counts[0]
    pairs = itemsets.items[1] if len(itemsets.items) > 1 else np.zeros((0, 2), np.int64)
    pair_count = itemsets.counts[1] if len(itemsets.items) > 1 else np.zeros(0, np.int64)
    return rules_from_counts(n, counts, pairs[:, 0], pairs[:, 1], pair_count, min_confidence)
