"""A hybrid of collaborative scores, association lift and text similarity, with tuned weights.

Each signal is turned into comparable numbers per row (z-scores over the candidate items), then
blended with non-negative weights. Warm items get all signals; an item nobody bought yet has no
collaborative or association evidence (those rows are zero), so its score comes from text.

Signals for a user with history h (n_items,):
* ``collaborative``: a fitted collaborative model's scores (any family of the contract);
* ``association``: h @ lift (rules of the association model, lift - 1 clipped at 0);
* ``text``: the mean text embedding of h against every item's embedding.
For related items, the same three signals are computed from the one-item history.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models.association import AssociationRules
from training.models.base import Recommender
from training.ranking import top_k

SIGNALS = ("collaborative", "association", "text")


def zscore_rows(x: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return (x - mu) / np.where(sd > 0, sd, 1.0)


class Hybrid(Recommender):
    name = "hybrid"

    def __init__(self, collaborative: Recommender, association: AssociationRules, text_embeddings: np.ndarray,
                 weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.collaborative, self.association = collaborative, association
        self.text = np.asarray(text_embeddings, dtype=np.float32)  # (n_items, dim), L2-normalised
        self.weights = {s: 1.0 for s in SIGNALS} if weights is None else dict(weights)

    def fit(self, data: InteractionData) -> "Hybrid":
        """Components are fitted upstream; this keeps the lift matrix and the training histories."""
        t0 = time.perf_counter()
        self.n_items = data.n_items
        self.user_items = data.user_items
        rules = self.association.rules
        lift = np.clip(rules["lift"].to_numpy(np.float32) - 1.0, 0.0, None)
        self.lift = sp.csr_matrix((lift, (rules["antecedent"].to_numpy(), rules["consequent"].to_numpy())),
                                  shape=(data.n_items, data.n_items))
        self.fit_seconds = time.perf_counter() - t0
        return self

    def signals(self, rows: sp.csr_matrix, collaborative: np.ndarray) -> dict[str, np.ndarray]:
        """Per-signal z-scored (n, n_items) scores for histories ``rows``."""
        rows = rows.astype(np.float32)
        counts = np.asarray(rows.sum(axis=1)).ravel()
        profile = np.asarray(rows @ self.text) / np.maximum(counts, 1.0)[:, None]
        return {"collaborative": zscore_rows(collaborative),
                "association": zscore_rows(np.asarray((rows @ self.lift).todense(), dtype=np.float32)),
                "text": zscore_rows(profile @ self.text.T)}

    def blend(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        out = np.zeros_like(next(iter(signals.values())))
        for name, s in signals.items():
            w = self.weights.get(name, 0.0)
            if w:
                out += w * s
        return out

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.blend(self.signals(self.user_items[users], self.collaborative.score_users(users)))

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return self.blend(self.signals(rows, self.collaborative.score_history(rows)))

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        onehot = sp.csr_matrix((np.ones(len(items), np.float32), (np.arange(len(items)), items)),
                               shape=(len(items), self.n_items))
        idx_c, s_c = self.collaborative.related_items(items, min(self.n_items - 1, 200))
        collab = np.zeros((len(items), self.n_items), np.float32)
        valid = idx_c >= 0
        rows = np.repeat(np.arange(len(items)), idx_c.shape[1]).reshape(idx_c.shape)
        collab[rows[valid], idx_c[valid]] = s_c[valid]
        scores = self.blend(self.signals(onehot, collab))
        scores[np.arange(len(items)), items] = -np.inf
        return top_k(scores, k)
