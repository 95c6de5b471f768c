"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder with a zero diagonal.

    G = X^T X + lambda I,  P = G^{-1},  B = -P / diag(P) (column-wise),  diag(B) = 0,  scores = X B

The Gram matrix is built by column chunks and inverted through Cholesky (LAPACK potrf + potri) in
place; float32 above ``float64_max_items`` items, so Gowalla's 40,981 items need about 7 GB.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from training.data import InteractionData
from training.models.base import Recommender
from training.ranking import top_k


def gram(x: sp.csr_matrix, dtype: type, chunk_size: int = 4096) -> np.ndarray:
    """Dense X^T X, (n_items, n_items), built by column chunks to bound peak memory."""
    xc = x.tocsc().astype(dtype)
    xt = xc.T.tocsr()
    n = x.shape[1]
    g = np.empty((n, n), dtype=dtype)
    for start in range(0, n, chunk_size):
        g[:, start:start + chunk_size] = (xt @ xc[:, start:start + chunk_size]).toarray()
    return g


def symmetric_inverse_inplace(g: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, overwriting ``g`` (Cholesky, potri)."""
    potrf, potri = sl.get_lapack_funcs(("potrf", "potri"), (g,))
    c, info = potrf(g, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky failed (info={info}); increase the regularisation")
    inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed (info={info})")
    # potri fills the upper triangle (Fortran order): mirror it, block by block
    n = inv.shape[0]
    step = 2048
    for i in range(0, n, step):
        for j in range(0, i + step, step):
            if j > i:
                continue
            blk = inv[j:j + step, i:i + step]  # upper block (j <= i)
            if i == j:
                inv[i:i + step, i:i + step] = np.triu(blk) + np.triu(blk, 1).T
            else:
                inv[i:i + step, j:j + step] = blk.T
    return inv


class EASE(Recommender):
    name = "ease"

    def __init__(self, l2: float = 500.0, float64_max_items: int = 20_000) -> None:
        super().__init__()
        self.l2 = l2
        self.float64_max_items = float64_max_items

    def fit(self, data: InteractionData) -> "EASE":
        t0 = time.perf_counter()
        self.n_items = data.n_items
        dtype = np.float64 if data.n_items <= self.float64_max_items else np.float32
        g = gram(data.user_items, dtype)
        g[np.diag_indices_from(g)] += self.l2
        p = symmetric_inverse_inplace(np.asfortranarray(g))
        diag = np.diag(p).copy()
        p /= -diag[None, :]
        p[np.diag_indices_from(p)] = 0.0
        self.weights = np.asarray(p, dtype=np.float32)  # (n_items, n_items): B, Fortran order (no copy)
        self.user_items = data.user_items
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows.astype(np.float32) @ self.weights, dtype=np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.weights[items].copy()
        scores[np.arange(len(items)), items] = -np.inf
        idx, vals = top_k(scores, k)
        bad = ~np.isfinite(vals) | (vals <= 0)
        idx[bad], vals[bad] = -1, np.nan
        return idx, vals.astype(np.float32)
