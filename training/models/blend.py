"""A weighted sum of families whose scores are linear in the history (ChebyCF, GF-CF, EASE, item-kNN).

    score(r) = sum_c  w_c * score_c(r) / scale_c          r: a history row (1, n_items)

Each component's scores are divided by its ``scale_c``, the mean over (a seeded sample of) the training users
of their largest score, so that the weights compare like with like whatever each family's score range. The sum
of linear maps is linear: fold-in is exact, the serving form is one item-item matrix, and related items follow
from the base class. Ensembles of neighbourhood and spectral models are a standard way to gain over either
alone (e.g. the blends of the Netflix Prize; Koren, KDD 2008, combined neighbourhood and factor models).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.families import LINEAR
from training.models.base import LinearHistoryModel


class LinearBlend(LinearHistoryModel):
    name = "blend"

    def __init__(self, components: Sequence[tuple[str, dict[str, Any]]] = (("chebycf", {}), ("itemknn", {})),
                 weights: Sequence[float] | None = None, scale_users: int = 2_000, seed: int = 0) -> None:
        """``components``: (family, parameters) pairs, each family from ``training.models.MODELS`` and linear
        in the history (``training.families.LINEAR``: scores ``history @ W``; factor models' fold-in is not);
        ``weights``: one per component (default equal)."""
        super().__init__()
        self.components = [(str(f), dict(p)) for f, p in components]
        if not self.components:
            raise ValueError("a blend needs at least one component")
        nonlinear = [f for f, _ in self.components if f not in LINEAR]
        if nonlinear:
            raise ValueError(f"{nonlinear}: not linear in the history; a blend takes {list(LINEAR)}")
        self.weights = [1.0] * len(self.components) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.components):
            raise ValueError(f"{len(self.weights)} weights for {len(self.components)} components")
        self.scale_users, self.seed = scale_users, seed

    def fit(self, data: InteractionData) -> "LinearBlend":
        from training.models import MODELS

        t0 = time.perf_counter()
        self.models = []
        for family, params in self.components:
            self.models.append(MODELS[family](**params).fit(data))
        return self.fit_scales(data, time.perf_counter() - t0)

    @classmethod
    def from_fitted(cls, models: Sequence[LinearHistoryModel], data: InteractionData,
                    weights: Sequence[float] | None = None, scale_users: int = 2_000, seed: int = 0) -> "LinearBlend":
        """A blend of models already fitted on ``data`` (e.g. upstream Dagster assets), without refitting."""
        components = [(m.name, dict(getattr(m, "training_params", {}) or {})) for m in models]
        blend = cls(components, weights, scale_users, seed)
        blend.models = list(models)
        return blend.fit_scales(data, float(sum(getattr(m, "fit_seconds", 0.0) for m in models)))

    def fit_scales(self, data: InteractionData, seconds_so_far: float = 0.0) -> "LinearBlend":
        """Set each component's scale from its fitted model (``self.models``); also used when the components
        were fitted elsewhere (a tuner that already holds them)."""
        t0 = time.perf_counter()
        self.n_items, self.user_items = data.n_items, data.user_items.tocsr()
        active = np.flatnonzero(np.diff(self.user_items.indptr) > 0)
        rng = np.random.default_rng(self.seed)
        users = np.sort(rng.choice(active, min(self.scale_users, len(active)), replace=False))
        rows = self.user_items[users]
        self.scales = []
        for model in self.models:
            top = np.asarray(model.score_history(rows), np.float64).max(axis=1)
            scale = float(np.mean(top)) if len(top) else 1.0
            self.scales.append(scale if np.isfinite(scale) and scale > 0 else 1.0)
        self.fit_seconds = seconds_so_far + time.perf_counter() - t0
        return self

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """(n, n_items) blended scores of histories ``rows`` (n, n_items)."""
        out = np.zeros((rows.shape[0], self.n_items), np.float32)
        for model, w, scale in zip(self.models, self.weights, self.scales):
            if w:
                out += np.float32(w / scale) * np.asarray(model.score_history(rows), np.float32)
        return out
