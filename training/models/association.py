"""Association rules as a recommender: related items by lift (or confidence), users scored by the
sum of confidences of rules fired by their history."""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp

from training.association import pair_counts, pair_rules
from training.privacy import private_pair_rules
from training.data import InteractionData
from training.models.base import ItemItemForm, Recommender, linear_item_matrix, require_training_data, top_k_rows


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
        require_training_data(self.name, data, "baskets")
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


def why_no_rules(baskets: sp.csr_matrix, min_support: float, min_confidence: float,
                 dp_epsilon: float | None = None) -> str:
    """Why pair rules over ``baskets`` ((n_baskets, n_items), nonzero = in the basket) came out empty at these
    thresholds, naming the setting to change: the most frequent pair's support when no pair reaches
    ``min_support``, else the highest confidence among the pairs that do."""
    b = baskets.tocsr().copy()
    b.sum_duplicates()
    n = int(b.shape[0])
    at = f"at min_support={min_support:g}, min_confidence={min_confidence:g} over {n:,} baskets"
    noise = f" (counts noised for dp_epsilon={dp_epsilon:g}: noise can sink rare pairs)" if dp_epsilon else ""
    if n == 0 or b.nnz == 0:
        return f"0 rules {at}: the training data holds no basket with an item"
    counts = np.bincount(b.indices, minlength=b.shape[1])
    sold = np.flatnonzero(counts >= 1)
    co = sp.triu(pair_counts(b, sold), k=1).tocoo()
    if co.nnz == 0:
        return f"0 rules {at}: no basket holds two different items, so there is no pair to make a rule of"
    top = int(co.data.max())
    if top / n < min_support:
        return (f"0 rules {at}{noise}: the most frequent pair is in {top:,} baskets, support {top / n:.2g}; lower "
                f"association_rules.min_support (to {top / n:.2g} or below)")
    frequent = co.data / n >= min_support
    a, c, k = sold[co.row[frequent]], sold[co.col[frequent]], co.data[frequent]
    best = float(np.max(k / np.minimum(counts[a], counts[c])))
    return (f"0 rules {at}{noise}: {int(frequent.sum()):,} pairs reach min_support but the highest confidence "
            f"among them is {best:.2g}; lower association_rules.min_confidence (to {best:.2g} or below)")
