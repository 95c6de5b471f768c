"""Sparse top-N form of any item-item family: each item keeps only its N strongest neighbours.

Every family whose scores are linear in the history (item-kNN, association rules, EASE, GF-CF, ChebyCF, the blend)
is, for serving, one item-item matrix W with ``scores(r) = r @ W`` (``training.models.base.ItemItemForm``). Held
dense, W is n_items^2 float32: 6.7 GB at Gowalla's 40,981 items, 9.9 GB at Instacart's 49,688. The sparse form
keeps row i's N largest entries (i's neighbours; the diagonal left out, as an item in the history is never
recommended) and drops the rest, so it holds n_items * N weights.

It is built in row chunks (:func:`top_n_matrix`): a block of ``chunk_size`` rows of W is computed from the family
itself (the scores of histories holding one item each, ``score_history`` on a block of unit rows), its top N kept,
and the block dropped, so the peak is one (chunk_size, n_items) block, never the (n_items, n_items) matrix. The
cost is the family's scoring cost for n_items one-item histories (ChebyCF's Chebyshev recursion run once over the
catalogue instead of once per batch of users); after that, scoring a user is a sparse gather of N weights per
history item, independent of the catalogue's size.

How much accuracy the cut costs, per family and N, is measured on Gowalla (``benchmarks.sparse_top_n``;
docs/scaling.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from training.models.base import Float64Copies, LinearHistoryModel, Recommender, top_k_rows
from training.ranking import top_k

DEFAULT_TOP_N = 500  # GF-CF on Gowalla: the smallest N within 1% of dense (docs/scaling.md, gowalla-sparse-top-n.json)
# families with a top-N form: the served item-item families and the (evaluated) blend
SPARSE_CAPABLE = ("association_rules", "itemknn", "ease", "gf_cf", "chebycf", "blend")


@dataclass
class SparseItemItemForm:
    """A top-N item-item model for export: ``neighbours`` (n_items, N) int64 item positions and ``weights``
    (n_items, N) float32; a user's scores are ``sum over history items i: weights[i]`` added at ``neighbours[i]``.
    Padding (rows with fewer than N neighbours) points at the row's own item with weight 0."""

    neighbours: np.ndarray
    weights: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.neighbours.shape[0])


def unit_histories(start: int, stop: int, n_items: int) -> sp.csr_matrix:
    """(stop - start, n_items) CSR: row r is a history holding only item ``start + r``."""
    rows = np.arange(stop - start)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, rows + start)), shape=(stop - start, n_items))


def block_top_n(block: np.ndarray, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` entries of each row of ``block`` ((c, n_items): rows ``start .. start + c`` of W), the diagonal
    left out. Returns (c, n') positions and float32 values, best first (ties towards the lower position), n' =
    min(n, n_items - 1); entries that are exactly 0 or not finite are marked with position -1."""
    block = np.array(block, dtype=np.float32, copy=True)
    rows = np.arange(block.shape[0])
    block[rows, rows + start] = -np.inf
    idx, vals = top_k(block, min(n, block.shape[1] - 1))
    bad = ~np.isfinite(vals) | (vals == 0)
    idx[bad] = -1
    return idx, vals.astype(np.float32)


def top_n_matrix(score_rows: Callable[[sp.csr_matrix], np.ndarray], n_items: int, n: int,
                 chunk_size: int = 1024, on_block: Callable[[int, np.ndarray], None] | None = None,
                 rows: tuple[int, int] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> sp.csr_matrix:
    """(n_items, n_items) float32 CSR holding each row's top ``n`` entries of W, where row i of W is
    ``score_rows`` of a history holding only i (``score_rows``: (c, n_items) CSR -> (c, n_items) dense). W is
    built ``chunk_size`` rows at a time; ``on_block(start, block)`` sees each dense block before it is cut (a
    benchmark's hook); ``rows`` (start, stop): only those rows (the others empty), so that processes can share
    the work and their matrices be summed; ``progress(rows_done, rows_total)`` is called after each block. Rows are
    stored with their columns sorted."""
    if n < 1:
        raise ValueError(f"top_n must be at least 1, not {n}")
    first, last = rows if rows is not None else (0, n_items)
    indptr, indices, data = [np.zeros(first + 1, np.int64)], [], []
    for start in range(first, last, chunk_size):
        stop = min(start + chunk_size, last)
        block = np.asarray(score_rows(unit_histories(start, stop, n_items)))
        if on_block is not None:
            on_block(start, block)
        idx, vals = block_top_n(block, start, n)
        del block
        keep = idx >= 0
        indptr.append(indptr[-1][-1] + np.cumsum(keep.sum(axis=1)))
        indices.append(idx[keep])
        data.append(vals[keep])
        if progress is not None:
            progress(stop - first, last - first)
    indptr.append(np.full(n_items - last, indptr[-1][-1], np.int64))
    matrix = sp.csr_matrix((np.concatenate(data) if data else np.zeros(0, np.float32),
                            np.concatenate(indices) if indices else np.zeros(0, np.int64),
                            np.concatenate(indptr)), shape=(n_items, n_items))
    matrix.sort_indices()
    return matrix


def sparse_rows_top_n(matrix: sp.spmatrix, n: int) -> sp.csr_matrix:
    """The top ``n`` entries of each row of an already sparse item-item matrix (item-kNN's similarities,
    association rules' confidences), diagonal left out; no dense row is formed."""
    m = matrix.tocsr().astype(np.float32)
    idx, vals = top_k_rows(m, np.arange(m.shape[0]), n, min_score=-np.inf)
    keep = (idx >= 0) & (vals != 0)
    counts = keep.sum(axis=1)
    out = sp.csr_matrix((vals[keep], idx[keep], np.concatenate([[0], np.cumsum(counts)])), shape=m.shape)
    out.sort_indices()
    return out


def family_top_n(model: Recommender, n: int, chunk_size: int = 1024,
                 progress: Callable[[int, int], None] | None = None) -> sp.csr_matrix:
    """The top-``n`` matrix of a fitted item-item family: from its sparse matrix where it has one (item-kNN,
    association rules), from its dense weights in row slices (EASE), else from ``score_history`` (GF-CF, ChebyCF,
    the blend: W's rows computed block by block, ``progress(rows_done, rows_total)`` after each)."""
    if isinstance(model, SparseItemItem):
        return sparse_rows_top_n(model.matrix, n)
    if model.name == "itemknn":
        return sparse_rows_top_n(model.similarity, n)
    if model.name == "association_rules":
        return sparse_rows_top_n(model.confidence, n)
    weights = getattr(model, "weights", None)
    if isinstance(weights, np.ndarray) and weights.ndim == 2:  # EASE's B, already (n_items, n_items)
        return top_n_matrix(lambda eye: eye @ weights, model.n_items, n, chunk_size, progress=progress)
    return top_n_matrix(model.score_history, model.n_items, n, chunk_size, progress=progress)


class SparseItemItem(Float64Copies, LinearHistoryModel):
    """A fitted item-item family cut to its top-N neighbours per item: scores ``history @ matrix``, ``matrix``
    (n_items, n_items) CSR with at most N entries a row. Keeps the family's name (it is what the registry and
    exports serve under) and its training parameters; the dense source model is not kept."""

    name = "sparse_item_item"

    def __init__(self, matrix: sp.csr_matrix, user_items: sp.csr_matrix, family: str, top_n: int) -> None:
        super().__init__()
        self.matrix = matrix.tocsr().astype(np.float32)
        self.user_items = user_items.tocsr()
        self.n_items = int(matrix.shape[0])
        self.name = family
        self.top_n = int(top_n)

    @classmethod
    def from_model(cls, model: Recommender, n: int, chunk_size: int = 1024,
                   progress: Callable[[int, int], None] | None = None) -> "SparseItemItem":
        """Cut ``model`` (fitted, linear in the history) to its top ``n`` neighbours per item (``progress``: see
        :func:`family_top_n`)."""
        t0 = time.perf_counter()
        sparse = cls(family_top_n(model, n, chunk_size, progress), model.user_items, model.name, n)
        sparse.build_seconds = time.perf_counter() - t0
        sparse.fit_seconds = (model.fit_seconds or 0.0) + sparse.build_seconds
        sparse.training_params = dict(getattr(model, "training_params", {}) or {})  # the family's own, refittable
        sparse.tuning_files = dict(getattr(model, "tuning_files", {}) or {})
        return sparse

    def fit(self, data) -> "SparseItemItem":
        raise NotImplementedError("a sparse item-item model is cut from a fitted family: SparseItemItem.from_model")

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """(n, n_items) float32 scores of histories ``rows`` (n, n_items), summed in float64 (the reference
        the ONNX export is checked against)."""
        return np.asarray((rows.astype(np.float64) @ self.float64_copy("matrix")).toarray(), dtype=np.float32)

    def serving_form(self) -> SparseItemItemForm:
        return sparse_form(self.matrix, self.top_n)

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_rows(self.matrix, items, k)


def sparse_form(matrix: sp.csr_matrix, n: int) -> SparseItemItemForm:
    """(n_items, N) neighbour positions and weights of a top-``n`` CSR matrix (at most ``n`` entries a row),
    N = the longest row (at least 1); short rows padded with their own item and weight 0."""
    m = matrix.tocsr()
    n_items = m.shape[0]
    counts = np.diff(m.indptr)
    width = max(1, int(counts.max()) if n_items else 1)
    if width > n:
        raise ValueError(f"a row holds {width} neighbours, more than top_n={n}")
    neighbours = np.repeat(np.arange(n_items, dtype=np.int64)[:, None], width, axis=1)
    weights = np.zeros((n_items, width), np.float32)
    rows = np.repeat(np.arange(n_items), counts)
    slot = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    neighbours[rows, slot] = m.indices
    weights[rows, slot] = m.data
    return SparseItemItemForm(neighbours, weights)
