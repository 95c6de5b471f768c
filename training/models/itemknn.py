"""Item-kNN: item-item cosine similarity on the user-item matrix, top-k neighbours kept per item.

sim(i, j) = c_ij / (n_i^alpha * n_j^(1 - alpha) + shrink), alpha = 0.5 being the cosine
(Sarwar et al., WWW 2001; asymmetric cosine as in Aiolli, RecSys 2013). Optional TF-IDF
weighting of users down-weights heavy users. Users are scored by summing neighbours' similarities
over their history.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from training.counting import active_engine
from training.data import InteractionData
from training.models.base import Float64Copies, ItemItemForm, Recommender, require_training_data, top_k_rows


def weight_users(x: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    """Re-weight a (n_users, n_items) binary matrix: ``none`` or ``tfidf``, where a user's weight is
    the inverse of how many items they touched (a user who buys everything says little)."""
    x = x.tocsr().astype(np.float32)
    if weighting == "none":
        return x
    n_users, n_items = x.shape
    u_count = np.diff(x.indptr).astype(np.float32)
    u_idf = np.log(n_items / (1.0 + u_count)).clip(min=0.0) + 1.0
    x.data = x.data * np.repeat(u_idf, np.diff(x.indptr))
    return x


def item_norms(x: sp.csr_matrix, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_items,) float32 ``n_i^alpha`` and ``n_i^(1 - alpha)``, ``n_i`` the sum of squared weights in column i of
    ``x`` ((n_users, n_items) float32)."""
    sq = np.asarray(x.multiply(x).sum(axis=0)).ravel()
    return np.power(sq, alpha), np.power(sq, 1.0 - alpha)


def block_neighbours(co: np.ndarray, start: int, norm_a: np.ndarray, norm_b: np.ndarray, shrink: float,
                     k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-``k`` neighbours of items ``start .. start + c`` from their co-occurrence rows ``co`` ((c, n_items)
    float32, ``x^T x``'s rows; the diagonal is ignored): sim = co / (norm_a[i] norm_b[j] + shrink). Returns (row,
    column, float32 similarity) of the kept entries (positive ones), row-major. Every engine runs this same
    function on the same rows, so their neighbours agree bit for bit (ties at the k-th place included: a row's
    partition depends on that row alone)."""
    stop = start + co.shape[0]
    denom = norm_a[start:stop, None] * norm_b[None, :] + shrink
    sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
    sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
    part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    v = np.take_along_axis(sim, part, axis=1)
    keep = v > 0
    return np.repeat(np.arange(start, stop), k)[keep.ravel()], part[keep], v[keep]


def knn_similarity(x: sp.csr_matrix, norm_a: np.ndarray, norm_b: np.ndarray, shrink: float, k: int,
                   chunk_size: int = 1024, progress: bool = False) -> sp.csr_matrix:
    """(n_items, n_items) float32 CSR of each item's top-``k`` neighbours (:func:`block_neighbours`), from ``x``
    ((n_users, n_items) float32, weighted) in this process, ``chunk_size`` items' co-occurrence rows at a time."""
    n_items = x.shape[1]
    xt = x.T.tocsr()  # (n_items, n_users)
    rows, cols, vals = [], [], []
    for start in tqdm(range(0, n_items, chunk_size), desc="item-kNN", disable=not progress):
        if k <= 0:
            continue
        stop = min(start + chunk_size, n_items)
        r, c, v = block_neighbours((xt[start:stop] @ x).toarray(), start, norm_a, norm_b, shrink, k)
        rows.append(r)
        cols.append(c)
        vals.append(v)
    return sp.csr_matrix((np.concatenate(vals) if vals else [], (np.concatenate(rows) if rows else [],
                                                                np.concatenate(cols) if cols else [])),
                         shape=(n_items, n_items), dtype=np.float32)


class ItemKNN(Float64Copies, Recommender):
    name = "itemknn"

    def __init__(self, k: int = 200, shrink: float = 10.0, alpha: float = 0.5,
                 weighting: Literal["none", "tfidf"] = "none", chunk_size: int = 1024,
                 progress: bool = False) -> None:
        super().__init__()
        self.k, self.shrink, self.alpha, self.weighting = k, shrink, alpha, weighting
        self.chunk_size, self.progress = chunk_size, progress

    def fit(self, data: InteractionData) -> "ItemKNN":
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        self.n_items = data.n_items
        x = weight_users(data.user_items, self.weighting)
        norm_a, norm_b = item_norms(x, self.alpha)
        k = min(self.k, self.n_items - 1)
        engine = active_engine()  # None: in this process; else the counting engine the caller chose
        if engine is None:
            self.similarity = knn_similarity(x, norm_a, norm_b, self.shrink, k, self.chunk_size, self.progress)
        else:  # co-occurrence counted elsewhere (training.counting), the same neighbours bit for bit
            self.similarity = engine.knn_similarity(x, norm_a, norm_b, self.shrink, k)
        self.user_items = data.user_items
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        # score(u, j) = sum over i in history(u) of sim(i, j): history (n, items) @ S (items, items).
        # Accumulated in float64: scipy sums float32 products in sequence, and a heavy user's score (~150 over
        # ~1,600 history items on Online Retail) then drifts ~1e-4 from the exact sum, as far as the ONNX
        # parity bound; float64 keeps the native model the accurate reference (ORT's MatMul is within ~3e-5).
        return np.asarray((rows.astype(np.float64) @ self.float64_copy("similarity")).todense(), dtype=np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def serving_form(self) -> ItemItemForm:
        return ItemItemForm(self.similarity.toarray().astype(np.float32))

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_rows(self.similarity, items, k)
