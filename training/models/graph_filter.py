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
* ``ideal_power``: weights the kept singular directions by (s_i / s_1) ** ideal_power inside the
  ideal filter (0 = the flat ideal filter of GF-CF);
* ``popularity_power``: multiplies final scores by item degree ** popularity_power (0 = none);
* ``normalise_terms``: expresses ``alpha`` and ``sharpen`` relative to each term's mean magnitude
  (measured on a seeded sample of training users at fit time), so search ranges carry across datasets.
  GF-CF's published alpha = 0.3 is in raw units (``normalise_terms=False``).

The item-item matrix is never formed: ``r_u R~^T R~`` is computed as ``(r_u R~^T) R~`` by chunks of users.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models.base import LinearHistoryModel, require_training_data


def normalised_matrix(x: sp.csr_matrix, user_norm: float, item_norm: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """D_U^{-user_norm} X D_I^{-item_norm} (zero-degree rows/cols stay zero) and the item degrees."""
    du = np.asarray(x.sum(axis=1)).ravel()
    di = np.asarray(x.sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        fu = np.where(du > 0, du ** -user_norm, 0.0)
        fi = np.where(di > 0, di ** -item_norm, 0.0)
    return (sp.diags(fu.astype(np.float32)) @ x @ sp.diags(fi.astype(np.float32))).tocsr(), di


def top_singular(x: sp.csr_matrix, k: int, seed: int, method: str = "arpack") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` singular values (k,) and right singular vectors (k, n_cols) of a sparse matrix; k is capped at
    min(shape) - 1, and with nothing left both come back empty ((0,) and (0, n_cols)).

    ``arpack``: exact (scipy ``svds``); ``randomized``: Halko et al. (2011) with power iterations,
    several times faster for hundreds of vectors."""
    from scipy.sparse.linalg import svds

    k = min(k, min(x.shape) - 1)
    if k < 1:  # one user or one item (or none): no singular direction to keep; svds would refuse the matrix
        return np.zeros(0, np.float32), np.zeros((0, x.shape[1]), np.float32)
    if method == "randomized":
        from sklearn.utils.extmath import randomized_svd

        _, s, vt = randomized_svd(x.astype(np.float32), n_components=k, n_oversamples=max(32, k // 4), n_iter=6,
                                  random_state=seed)
        return s.astype(np.float32), vt.astype(np.float32)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(x.shape)).astype(np.float64)
    _, s, vt = svds(x.astype(np.float64), k=k, v0=v0)
    order = np.argsort(-s)
    return s[order].astype(np.float32), vt[order].astype(np.float32)


class GraphFilter(LinearHistoryModel):
    name = "gf_cf"

    def __init__(self, alpha: float = 0.3, n_factors: int = 256, user_norm: float = 0.5, item_norm: float = 0.5,
                 sharpen: float = 0.0, ideal_power: float = 0.0, popularity_power: float = 0.0,
                 normalise_terms: bool = False, svd: str = "arpack", chunk_size: int = 2048, seed: int = 0) -> None:
        super().__init__()
        self.alpha, self.n_factors = alpha, n_factors
        self.user_norm, self.item_norm = user_norm, item_norm
        self.sharpen, self.ideal_power, self.popularity_power = sharpen, ideal_power, popularity_power
        self.normalise_terms, self.svd = normalise_terms, svd
        self.chunk_size, self.seed = chunk_size, seed
        self.scales = {"linear": 1.0, "sharpen": 1.0, "ideal": 1.0}

    def fit(self, data: InteractionData) -> "GraphFilter":
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        self.n_items = data.n_items
        self.user_items = data.user_items.tocsr()
        self.norm, di = normalised_matrix(self.user_items, self.user_norm, self.item_norm)
        self.norm_t = self.norm.T.tocsr()
        self.item_boost = (np.maximum(di, 1.0) ** self.popularity_power).astype(np.float32) \
            if self.popularity_power else None
        self.left = self.right = None
        if self.alpha and self.n_factors > 0:
            s, vt = top_singular(self.norm, self.n_factors, self.seed, self.svd)
            self.singular_values = s
            weights = (s / s.max()) ** self.ideal_power if self.ideal_power and len(s) else np.ones_like(s)
            with np.errstate(divide="ignore"):
                d_left = np.where(di > 0, di ** -self.item_norm, 0.0).astype(np.float32)
            d_right = np.where(di > 0, di ** self.item_norm, 0.0).astype(np.float32)
            self.left = (vt * d_left[None, :]).T * weights[None, :]  # (n_items, k)
            self.right = vt * d_right[None, :]  # (k, n_items)
        if self.normalise_terms:
            self.scales = self.term_scales(self.user_items)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def term_scales(self, x: sp.csr_matrix, n_users: int = 2000) -> dict[str, float]:
        """Mean absolute value of each term over a seeded sample of users' histories."""
        rng = np.random.default_rng(self.seed)
        users = np.sort(rng.choice(x.shape[0], min(n_users, x.shape[0]), replace=False))
        r = x[users].astype(np.float32)
        lin = self._linear(r)
        out = {"linear": float(np.abs(lin).mean()) or 1.0, "sharpen": 1.0, "ideal": 1.0}
        if self.sharpen:
            out["sharpen"] = float(np.abs(self._linear(lin)).mean()) or 1.0
        if self.left is not None:
            out["ideal"] = float(np.abs((r @ self.left) @ self.right).mean()) or 1.0
        return out

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
            lin = self._linear(r)
            s = lin / self.scales["linear"]
            if self.sharpen:
                s -= (self.sharpen / self.scales["sharpen"]) * self._linear(lin)
            if self.left is not None:
                s += (self.alpha / self.scales["ideal"]) * ((r @ self.left) @ self.right)
            if self.item_boost is not None:
                s *= self.item_boost[None, :]
            out[start:start + r.shape[0]] = s
        return out
