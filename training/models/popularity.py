"""Popularity: every user gets the items most users interacted with."""
from __future__ import annotations

import time

import numpy as np

from training.data import InteractionData
from training.models.base import FactorForm, Recommender, require_training_data
from training.ranking import top_k


class Popularity(Recommender):
    name = "popularity"

    def fit(self, data: InteractionData) -> "Popularity":
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        self.n_items, self.n_users = data.n_items, data.n_users
        # number of distinct users per item (binary matrix column sums)
        self.counts = np.asarray(data.user_items.sum(axis=0)).ravel().astype(np.float32)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), self.n_items)).copy()

    def serving_form(self) -> FactorForm:
        """One factor: every user weighs item popularity alike."""
        return FactorForm(np.ones((self.n_users, 1), np.float32), self.counts[:, None].copy())

    def score_history(self, rows) -> np.ndarray:
        return np.broadcast_to(self.counts, (rows.shape[0], self.n_items)).copy()

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx, vals = top_k(self.counts[None, :], k + 1)
        idx, vals = idx[0], vals[0]
        out_i = np.empty((len(items), k), np.int64)
        out_s = np.empty((len(items), k), np.float32)
        for r, it in enumerate(items):
            keep = idx != it
            out_i[r], out_s[r] = idx[keep][:k], vals[keep][:k]
        return out_i, out_s
