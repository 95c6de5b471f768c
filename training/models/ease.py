"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder with a zero diagonal.

    G = X^T X + lambda I,  P = G^{-1},  B = -P / diag(P) (column-wise),  diag(B) = 0,  scores = X B

The Gram matrix is built by column chunks and inverted through Cholesky; float32 above
``float64_max_items`` items. With fewer users than items the inverse goes through the users' Gram
matrix instead (``solver="auto"``; see ``_precision_via_users``): Gowalla then needs about 12 GB at the
peak and a third of the arithmetic.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models.base import ItemItemForm, Recommender, require_training_data
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
    """Inverse of a symmetric positive definite matrix via Cholesky (torch's LAPACK), reusing ``g``'s
    memory for the factor so the peak stays near two matrices. (scipy's bundled OpenBLAS potrf/potri
    crashed on Gowalla's 40,981^2 float32 Gram matrix on this machine.)"""
    import torch

    t = torch.from_numpy(g)
    factor, info = torch.linalg.cholesky_ex(t)
    if int(info) != 0:
        raise np.linalg.LinAlgError(f"Cholesky failed (info={int(info)}); increase the regularisation")
    t.copy_(factor)
    del factor
    inv = torch.cholesky_inverse(t)
    return inv.numpy()


class EASE(Recommender):
    name = "ease"

    def __init__(self, l2: float = 500.0, float64_max_items: int = 20_000, solver: str = "auto",
                 chunk_size: int = 2048) -> None:
        super().__init__()
        self.l2 = l2
        self.float64_max_items = float64_max_items
        self.solver, self.chunk_size = solver, chunk_size  # "primal", "dual" or "auto" (the smaller side)

    def _precision_via_users(self, x: sp.csr_matrix, dtype: type) -> np.ndarray:
        """P = (X^T X + lambda I)^{-1}, (n_items, n_items), through the users' Gram matrix instead:
        by the push-through identity, P = (I - X^T (X X^T + lambda I)^{-1} X) / lambda, so the matrix
        inverted is (n_users, n_users), a third of the work of the item side on Gowalla (29,858 users
        against 40,981 items). Peak: X^T K^{-1} (n_items, n_users) plus P."""
        k = (x @ x.T).astype(dtype).toarray()
        k[np.diag_indices_from(k)] += self.l2
        k_inv = symmetric_inverse_inplace(k)  # (n_users, n_users)
        del k
        xt = x.T.tocsr().astype(dtype)
        yt = np.asarray(xt @ k_inv, dtype=dtype)  # X^T K^{-1}: (n_items, n_users)
        del k_inv
        n = x.shape[1]
        p = np.empty((n, n), dtype=dtype)
        for start in range(0, n, self.chunk_size):  # P[:, C] = -(X^T K^{-1} X)[:, C] / lambda
            block = np.ascontiguousarray(yt[start:start + self.chunk_size].T)  # K^{-1} X[:, C]: (n_users, |C|)
            p[:, start:start + block.shape[1]] = xt @ block
        del yt
        p *= -1.0 / self.l2
        p[np.diag_indices_from(p)] += 1.0 / self.l2
        return p

    def fit(self, data: InteractionData) -> "EASE":
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        self.n_items = data.n_items
        dtype = np.float64 if data.n_items <= self.float64_max_items else np.float32
        if self.solver == "dual" or (self.solver == "auto" and data.n_users < data.n_items):
            p = self._precision_via_users(data.user_items.tocsr(), dtype)
        else:
            g = gram(data.user_items, dtype)
            g[np.diag_indices_from(g)] += self.l2
            p = symmetric_inverse_inplace(g)
            del g
        diag = np.diag(p).copy()
        p /= -diag[None, :]
        p[np.diag_indices_from(p)] = 0.0
        self.weights = np.asarray(p, dtype=np.float32)  # (n_items, n_items): B
        self.user_items = data.user_items
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows.astype(np.float32) @ self.weights, dtype=np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def serving_form(self) -> ItemItemForm:
        return ItemItemForm(self.weights)

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.weights[items].copy()
        scores[np.arange(len(items)), items] = -np.inf
        idx, vals = top_k(scores, k)
        bad = ~np.isfinite(vals) | (vals <= 0)
        idx[bad], vals[bad] = -1, np.nan
        return idx, vals.astype(np.float32)
