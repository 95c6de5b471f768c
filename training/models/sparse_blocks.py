"""Item-item co-occurrence in sparse row blocks whose size is bounded by their pair work, not their row count.

At 10^6 items a dense (chunk, n_items) block is 4 MB a row, and with power-law popularity the rows of X^T X are
very uneven: a best-seller co-occurs with most of the catalogue, a tail item with a handful. So the rows are
grouped by *pair work*, the number of products the sparse product X[:, i]^T X costs for row i,
``work_i = sum over users u holding i of |I_u|`` (an upper bound on row i's stored entries). A block holds rows
until its work reaches ``max_block_pairs``; its product stays sparse, its similarities are computed on the stored
entries only and its top k kept. Memory is one block's entries (about 40 bytes each) plus what is kept, whatever
the catalogue's size. Heavy users cost ``|I_u|^2`` pairs; ``max_items_per_user`` caps the items a user
contributes to pair counting (a seeded random subset of a longer history), the usual bound on co-occurrence.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models.base import require_training_data
from training.models.itemknn import ItemKNN, weight_users


def cap_row_lengths(x: sp.csr_matrix, cap: int | None, seed: int = 0) -> sp.csr_matrix:
    """``x`` (n_rows, n_items) CSR with each row longer than ``cap`` cut to a random ``cap`` of its entries
    (seeded); ``x`` itself when no row is longer or ``cap`` is None."""
    x = x.tocsr()
    lengths = np.diff(x.indptr)
    if cap is None or not (lengths > cap).any():
        return x
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(x.shape[0]), lengths)
    order = np.lexsort((rng.random(x.nnz), rows))  # a random order inside each row
    rank = np.empty(x.nnz, np.int64)
    rank[order] = np.arange(x.nnz) - np.repeat(x.indptr[:-1], lengths)
    keep = rank < cap
    out = sp.csr_matrix((x.data[keep], x.indices[keep], np.concatenate([[0], np.cumsum(np.minimum(lengths, cap))])),
                        shape=x.shape)
    return out


def pair_work(x: sp.csr_matrix) -> np.ndarray:
    """(n_items,) int64: for each item i, ``sum over rows u of x holding i of |x_u|``, the products row i of
    ``x^T x`` costs and a bound on its stored entries."""
    x = x.tocsr()
    lengths = np.diff(x.indptr).astype(np.int64)
    return np.bincount(x.indices, weights=np.repeat(lengths, lengths), minlength=x.shape[1]).astype(np.int64)


def total_pair_work(x: sp.csr_matrix, cap: int | None = None) -> int:
    """Products of the whole ``x^T x`` (sum over rows of their length squared, each length capped at ``cap``)."""
    lengths = np.diff(x.tocsr().indptr).astype(np.int64)
    if cap is not None:
        lengths = np.minimum(lengths, cap)
    return int((lengths * lengths).sum())


def row_blocks(work: np.ndarray, max_block_pairs: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges, each with summed ``work`` at most ``max_block_pairs`` (a row whose
    work alone is above it gets a block of its own); the cumulative work is cut by binary search."""
    csum = np.cumsum(np.asarray(work, np.int64))
    bounds, start = [], 0
    while start < len(csum):
        base = csum[start - 1] if start else 0
        stop = int(np.searchsorted(csum, base + max_block_pairs, side="right"))
        stop = max(stop, start + 1)
        bounds.append((start, stop))
        start = stop
    return bounds


def csr_top_k(block: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest positive entries (ties towards the lower column), as CSR of the same shape."""
    block = block.tocsr()
    block.sort_indices()
    lengths = np.diff(block.indptr)
    rows = np.repeat(np.arange(block.shape[0]), lengths)
    order = np.lexsort((-block.data, rows))  # stable: inside a row, equal values keep the lower column first
    rank = np.arange(block.nnz) - np.repeat(block.indptr[:-1], lengths)
    keep_sorted = (rank < k) & (block.data[order] > 0)
    picked = order[keep_sorted]
    counts = np.bincount(rows[picked], minlength=block.shape[0])
    return sp.csr_matrix((block.data[picked], block.indices[picked], np.concatenate([[0], np.cumsum(counts)])),
                         shape=block.shape)


def cosine_top_k(x: sp.csr_matrix, k: int, alpha: float = 0.5, shrink: float = 0.0, max_block_pairs: int = 20_000_000,
                 max_items_per_user: int | None = None, seed: int = 0) -> sp.csr_matrix:
    """(n_items, n_items) float32 CSR: each item's ``k`` most similar items by the asymmetric cosine
    ``c_ij / (n_i^alpha n_j^(1 - alpha) + shrink)`` over ``x`` ((n_users, n_items), weighted or binary), the
    diagonal left out; computed in sparse row blocks of at most ``max_block_pairs`` products
    (:func:`pair_work`), so no dense row is ever formed."""
    x = cap_row_lengths(x.tocsr().astype(np.float32), max_items_per_user, seed)
    n_items = x.shape[1]
    sq = np.asarray(x.multiply(x).sum(axis=0)).ravel().astype(np.float64)
    norm_a, norm_b = np.power(sq, alpha), np.power(sq, 1.0 - alpha)
    xt = x.T.tocsr()
    kept = []
    for start, stop in row_blocks(pair_work(x), max_block_pairs):
        co = (xt[start:stop] @ x).tocsr()
        rows = np.repeat(np.arange(start, stop), np.diff(co.indptr))
        denom = norm_a[rows] * norm_b[co.indices] + shrink
        co.data = np.divide(co.data, denom, out=np.zeros(len(denom)), where=denom > 0).astype(np.float32)
        co.data[co.indices == rows] = 0.0
        kept.append(csr_top_k(co, k))
        del co, rows, denom
    out = sp.vstack(kept, format="csr") if kept else sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return out.astype(np.float32)


class BlockItemKNN(ItemKNN):
    """Item-kNN (same similarities, name, scoring and exports as :class:`training.models.itemknn.ItemKNN`) whose
    neighbours are built by :func:`cosine_top_k` in sparse blocks of at most ``max_block_pairs`` products, for
    catalogues where a dense (chunk, n_items) block of similarities does not fit (10^6 items)."""

    def __init__(self, k: int = 200, shrink: float = 10.0, alpha: float = 0.5,
                 weighting: Literal["none", "tfidf"] = "none", max_block_pairs: int = 20_000_000,
                 max_items_per_user: int | None = None, seed: int = 0) -> None:
        super().__init__(k=k, shrink=shrink, alpha=alpha, weighting=weighting)
        self.max_block_pairs, self.max_items_per_user, self.seed = max_block_pairs, max_items_per_user, seed

    def fit(self, data: InteractionData) -> "BlockItemKNN":
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        self.n_items = data.n_items
        self.similarity = cosine_top_k(weight_users(data.user_items, self.weighting), min(self.k, self.n_items - 1),
                                       self.alpha, self.shrink, self.max_block_pairs, self.max_items_per_user,
                                       self.seed)
        self.user_items = data.user_items
        self.fit_seconds = time.perf_counter() - t0
        return self
