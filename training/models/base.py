"""The model contract every family implements, and helpers built on it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Union

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.ranking import mask_seen, top_k


def one_item_histories(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """(len(items), n_items) CSR: row r is a history holding only item ``items[r]``."""
    return sp.csr_matrix((np.ones(len(items), np.float32), (np.arange(len(items)), items)),
                         shape=(len(items), n_items))


@dataclass

class FactorForm:
    """A model whose scores are ``user_factors[u] @ item_factors.T``: (n_users, d) and (n_items, d)."""

    user_factors: np.ndarray
    item_factors: np.ndarray


@dataclass
class ItemItemForm:
    """A model whose scores are linear in the user's history: ``history @ weights``, weights (n_items, n_items)."""

    weights: np.ndarray


ServingForm = Union[FactorForm, ItemItemForm]


@dataclass
class SkippedFamily:
    """What a model asset returns for a family the run did not train: which family and why, in words that name
    the setting to change (``families`` config, a threshold, the catalogue size against memory). Downstream
    assets leave it out and show the reason; nothing treats it as a model."""

    family: str
    reason: str


class NothingToLearn(ValueError):
    """The training data holds nothing a family can learn from (no (user, item) pair, or no basket); the message
    says what is missing and what to set. Model assets turn it into a :class:`SkippedFamily`."""


def missing_training_data(family: str, data: InteractionData, needs: str = "users") -> str | None:
    """Why ``family`` cannot learn from ``data`` (None: it can). ``needs``: ``users`` (a (user, item) pair in
    ``data.user_items``, (n_users, n_items)) or ``baskets`` (an item in ``data.baskets``, (n_baskets, n_items))."""
    n_baskets = int(data.baskets.shape[0])
    if needs == "baskets":
        if data.baskets.nnz:
            return None
        return f"{family}: the training data holds no basket with an item; association rules need baskets"
    if data.user_items.nnz:
        return None
    return (f"{family}: the training data holds no (user, item) pair ({data.n_users} users; {n_baskets:,} baskets "
            "without a customer): set training_split strategy 'auto' or 'basket_completion', where each basket "
            "stands in for a customer")


def require_training_data(family: str, data: InteractionData, needs: str = "users") -> None:
    """Raise :class:`NothingToLearn` when :func:`missing_training_data` finds a reason."""
    reason = missing_training_data(family, data, needs)
    if reason is not None:
        raise NothingToLearn(reason)


def trained(*models: object) -> list:
    """The models among ``models`` that were trained (every :class:`SkippedFamily` left out), in order."""
    return [m for m in models if not isinstance(m, SkippedFamily)]


class Recommender(ABC):
    """fit -> score users -> related items.

    Indices are positions in the ``InteractionData`` the model was fitted on.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.n_items: int = 0
        self.fit_seconds: float | None = None

    @abstractmethod
    def fit(self, data: InteractionData) -> "Recommender":
        """Learn from ``data``; returns ``self``."""

    @abstractmethod
    def score_users(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 scores for user positions ``users``; higher is better."""

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """Fold-in: (n, n_items) scores for users unseen at training time, given only their histories
        ``rows`` ((n, n_items) CSR). Families that need retraining for this raise NotImplementedError."""
        raise NotImplementedError(f"{self.name} cannot score an unseen user without retraining")

    def serving_form(self) -> ServingForm:
        """The model as plain arrays for export (ONNX): factors, or an item-item matrix. Families that
        cannot be written this way raise NotImplementedError."""
        raise NotImplementedError(f"{self.name} has no serving form")

    @abstractmethod
    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For item positions ``items``: (len(items), k) neighbour positions (best first, never the item
        itself, -1 where there are fewer than k) and (len(items), k) float32 scores (NaN for padding)."""

    def recommend(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for ``users``: (len(users), k) positions and scores, seen items excluded when
        ``exclude`` ((len(users), n_items) CSR) is given."""
        scores = np.asarray(self.score_users(users), dtype=np.float32)
        if exclude is not None:
            mask_seen(scores, exclude)
        return top_k(scores, k)


class LinearHistoryModel(Recommender):
    """A family whose scores are linear in the user's history (``score_history(r) == r @ W``), fitted on
    ``self.user_items`` (n_users, n_items) CSR: known users, serving form and related items all follow
    from ``score_history``."""

    user_items: sp.csr_matrix

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def serving_form(self) -> ItemItemForm:
        """Every term is linear in the history, so the model is one (n_items, n_items) matrix."""
        return ItemItemForm(linear_item_matrix(self))

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The scores of a history holding only the item; non-positive scores are padding."""
        scores = self.score_history(one_item_histories(items, self.n_items))
        scores[np.arange(len(items)), items] = -np.inf
        idx, vals = top_k(scores, k)
        vals = vals.astype(np.float32)
        bad = ~np.isfinite(vals) | (vals <= 0)
        idx[bad], vals[bad] = -1, np.nan
        return idx, vals


class Float64Copies:
    """Mixin for models that score through a sparse float32 matrix attribute: ``float64_copy(name)`` is a float64
    copy of it, made once per fitted matrix (not once per scoring chunk) and left out of pickles. scipy sums float32
    products in sequence, so a heavy history's score drifts ~1e-4 from the exact sum; summing in float64 keeps the
    native model the accurate reference that ONNX exports are checked against."""

    def float64_copy(self, name: str) -> sp.csr_matrix:
        matrix = getattr(self, name)
        cached = self.__dict__.get(f"_f64_{name}")
        if cached is None or cached[0] is not matrix:
            cached = (matrix, matrix.astype(np.float64))
            self.__dict__[f"_f64_{name}"] = cached
        return cached[1]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_f64_")}


def linear_item_matrix(model: Recommender, chunk_size: int = 1024) -> np.ndarray:
    """(n_items, n_items) float32 W with ``model.score_history(r) == r @ W`` for a model linear in the
    history, built one block of unit histories at a time (row i = the scores of a history holding only i)."""
    n = model.n_items
    w = np.empty((n, n), dtype=np.float32)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        eye = sp.csr_matrix((np.ones(stop - start, np.float32), (np.arange(stop - start), np.arange(start, stop))),
                            shape=(stop - start, n))
        w[start:stop] = model.score_history(eye)
    return w


def top_k_rows(sim: sp.csr_matrix, items: np.ndarray, k: int, min_score: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` entries of each requested row of a sparse item-item matrix (self excluded).

    Returns (len(items), k) int64 positions (-1 padded) and float32 scores (NaN padded)."""
    out_i = np.full((len(items), k), -1, dtype=np.int64)
    out_s = np.full((len(items), k), np.nan, dtype=np.float32)
    sim = sim.tocsr()
    for r, it in enumerate(items):
        lo, hi = sim.indptr[it], sim.indptr[it + 1]
        cols, vals = sim.indices[lo:hi], sim.data[lo:hi]
        keep = (cols != it) & (vals > min_score)
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -vals))[:k]
        out_i[r, :len(order)] = cols[order]
        out_s[r, :len(order)] = vals[order]
    return out_i, out_s
