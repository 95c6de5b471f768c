"""Closed-form graph filters on the normalised user-item graph (no training loop).

GF-CF (Shen et al., CIKM 2021, "How Powerful is Graph Convolution for Recommendation?"):
with R~ = D_U^{-1/2} R D_I^{-1/2}, a user's scores are

    s_u = r_u (R~^T R~) + alpha * r_u D_I^{-1/2} V V^T D_I^{1/2}

the first term a linear low-pass filter on the item-item graph, the second an ideal low-pass filter
made of the top-k right singular vectors V of R~ (published: k = 256, alpha = 0.3 on Gowalla).

Generalisations kept as parameters (all default to GF-CF):
* ``user_norm`` / ``item_norm``: the exponents of the degree normalisation;
* ``sharpen``: subtracts ``sharpen * r_u (R~^T R~)^2``, a second-order high-pass correction in the spirit
  of the sharpening step of BSPM (Choi et al., SIGIR 2023);
* ``ideal_power``: raises the kept singular values to this power inside the ideal filter
  (0 = the flat ideal filter of GF-CF).

The item-item matrix is never formed: ``r_u R~^T R~`` is computed as ``(r_u R~^T) R~`` by chunks of users.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models.base import Recommender
from training.ranking import top_k


def normalised_matrix(x: sp.csr_matrix, user_norm: float, item_norm: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """D_U^{-user_norm} X D_I^{-item_norm} (zero-degree rows/cols stay zero) and the item degrees."""
    du = np.asarray(x.sum(axis=1)).ravel()
    di = np.asarray(x.sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        fu = np.where(du > 0, du ** -user_norm, 0.0)
        fi = np.where(di > 0, di ** -item_norm, 0.0)
    return (sp.diags(fu.astype(np.float32)) @ x @ sp.diags(fi.astype(np.float32))).tocsr(), di


def top_singular(x: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` singular values (k,) and right singular vectors (k, n_cols) of a sparse matrix."""
    from scipy.sparse.linalg import svds

    k = min(k, min(x.shape) - 1)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(x.shape)).astype(np.float64)
    _, s, vt = svds(x.astype(np.float64), k=k, v0=v0)
    order = np.argsort(-s)
    return s[order].astype(np.float32), vt[order].astype(np.float32)


class GraphFilter(Recommender):
    name = "gf_cf"

    def __init__(self, alpha: float = 0.3, n_factors: int = 256, user_norm: float = 0.5, item_norm: float = 0.5,
                 sharpen: float = 0.0, ideal_power: float = 0.0, chunk_size: int = 2048, seed: int = 0) -> None:
        super().__init__()
        self.alpha, self.n_factors = alpha, n_factors
        self.user_norm, self.item_norm = user_norm, item_norm
        self.sharpen, self.ideal_power = sharpen, ideal_power
        self.chunk_size, self.seed = chunk_size, seed

    def fit(self, data: InteractionData) -> "GraphFilter":
        t0 = time.perf_counter()
        self.n_items = data.n_items
        self.user_items = data.user_items.tocsr()
        self.norm, di = normalised_matrix(self.user_items, self.user_norm, self.item_norm)
        self.norm_t = self.norm.T.tocsr()
        self.left = self.right = None
        if self.alpha and self.n_factors > 0:
            s, vt = top_singular(self.norm, self.n_factors, self.seed)
            weights = (s / s.max()) ** self.ideal_power if self.ideal_power else np.ones_like(s)
            with np.errstate(divide="ignore"):
                d_left = np.where(di > 0, di ** -self.item_norm, 0.0).astype(np.float32)
            d_right = np.where(di > 0, di ** self.item_norm, 0.0).astype(np.float32)
            self.left = (vt * d_left[None, :]).T * weights[None, :]  # (n_items, k)
            self.right = vt * d_right[None, :]  # (k, n_items)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _linear(self, rows: sp.csr_matrix | np.ndarray) -> np.ndarray:
        """rows (n, n_items), sparse or dense -> rows R~^T R~, (n, n_items) dense."""
        if sp.issparse(rows):
            via_users = (rows @ self.norm_t).toarray()  # (n, n_users)
        else:
            via_users = np.asarray((self.norm @ rows.T).T)
        return np.asarray((self.norm_t @ via_users.T).T, dtype=np.float32)

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """Scores (n, n_items) for any histories ``rows`` (n, n_items): fold-in needs no refit."""
        out = np.empty((rows.shape[0], self.n_items), np.float32)
        for start in range(0, rows.shape[0], self.chunk_size):
            r = rows[start:start + self.chunk_size].astype(np.float32)
            s = self._linear(r)
            if self.sharpen:
                s2 = self._linear(s)
                s -= self.sharpen * s2
            if self.left is not None:
                s += self.alpha * ((r @ self.left) @ self.right)
            out[start:start + r.shape[0]] = s
        return out

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        onehot = sp.csr_matrix((np.ones(len(items), np.float32), (np.arange(len(items)), items)),
                               shape=(len(items), self.n_items))
        scores = self.score_history(onehot)
        scores[np.arange(len(items)), items] = -np.inf
        idx, vals = top_k(scores, k)
        vals = vals.astype(np.float32)
        bad = ~np.isfinite(vals) | (vals <= 0)
        idx[bad], vals[bad] = -1, np.nan
        return idx, vals
