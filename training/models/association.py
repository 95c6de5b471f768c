"""Association rules as a recommender: related items by lift (or confidence), users scored by the
sum of confidences of rules fired by their history."""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp

from training.association import pair_rules
from training.privacy import private_pair_rules
from training.data import InteractionData
from training.models.base import ItemItemForm, Recommender, linear_item_matrix, top_k_rows


class AssociationRules(Recommender):
    name = "association_rules"

    def __init__(self, min_support: float = 0.005, min_confidence: float = 0.05,
                 rank_by: Literal["lift", "confidence"] = "lift", dp_epsilon: float | None = None,
                 dp_max_pairs_per_basket: int = 45, dp_seed: int = 0) -> None:
        """``dp_epsilon``: when set, rules come from epsilon-differentially private counts, each basket
        contributing at most ``dp_max_pairs_per_basket`` pairs (``training.privacy``); None: exact."""
        super().__init__()
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.rank_by = rank_by
        self.dp_epsilon = dp_epsilon
        self.dp_max_pairs_per_basket = dp_max_pairs_per_basket
        self.dp_seed = dp_seed

    def fit(self, data: InteractionData) -> "AssociationRules":
        t0 = time.perf_counter()
        self.n_items = data.n_items
        if self.dp_epsilon is None:
            self.rules = pair_rules(data.baskets, self.min_support, self.min_confidence)
        else:
            self.rules = private_pair_rules(data.baskets, self.min_support, self.min_confidence, self.dp_epsilon,
                                            self.dp_max_pairs_per_basket, self.dp_seed)
        shape = (data.n_items, data.n_items)
        a, c = self.rules["antecedent"].to_numpy(), self.rules["consequent"].to_numpy()
        self.confidence = sp.csr_matrix((self.rules["confidence"].to_numpy(np.float32), (a, c)), shape=shape)
        self.ranking = sp.csr_matrix((self.rules[self.rank_by].to_numpy(np.float32), (a, c)), shape=shape)
        self.user_items = data.user_items
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray((rows.astype(np.float32) @ self.confidence).todense(), dtype=np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def serving_form(self) -> ItemItemForm:
        return ItemItemForm(linear_item_matrix(self))

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_rows(self.ranking, items, k)
