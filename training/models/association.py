"""Association rules as a recommender: related items by lift (or confidence), users scored by the
sum of confidences of rules fired by their history."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.association import RULE_COLUMNS, pair_counts, pair_rules
from training.counting import active_engine
from training.itemsets import ItemsetConfigError, ItemsetRules, check_settings, itemset_rules
from training.privacy import private_pair_rules
from training.data import InteractionData
from training.models.base import ItemItemForm, Recommender, linear_item_matrix, require_training_data, top_k_rows

# 3: pair rules plus rules with two-item antecedents; on Online Retail +7.6% recall@20 and +8.4% ndcg@20 over pairs,
# longer itemsets under 1% more (docs/association_rules.md, "Choosing max_len")
DEFAULT_MAX_LEN = 3


@dataclass
class RuleForm:
    """Rules with one consequent item as plain arrays, for export (``serving.rules_onnx``): m distinct
    antecedents and R rules. ``antecedents``: (m, L) int64 item positions, each row padded by repeating its first
    item (a row is fired when the history holds every item in it); ``rule_antecedent``: (R,) int64 row of
    ``antecedents``; ``rule_consequent``: (R,) int64 item; ``rule_confidence``: (R,) float32. A history's score
    for item c is the sum of ``rule_confidence`` over its fired rules with consequent c."""

    n_items: int
    antecedents: np.ndarray
    rule_antecedent: np.ndarray
    rule_consequent: np.ndarray
    rule_confidence: np.ndarray


class AssociationRules(Recommender):
    """Rules ``A -> c`` with one consequent item. ``max_len`` 2: pair rules, linear in the history (one item-item
    matrix, exported to ONNX). ``max_len`` > 2 (or None, any length): also rules whose antecedent holds 2 or more
    items (``training.itemsets``); such a rule adds its confidence to ``c`` only when the history holds its whole
    antecedent, so ``{A, B} -> C`` fires for a basket with A and B and not for one with A alone."""

    name = "association_rules"

    def __init__(self, min_support: float = 0.005, min_confidence: float = 0.05,
                 rank_by: Literal["lift", "confidence"] = "lift", dp_epsilon: float | None = None,
                 dp_max_pairs_per_basket: int = 45, dp_seed: int = 0, max_len: int | None = DEFAULT_MAX_LEN) -> None:
        """``dp_epsilon``: when set, rules come from epsilon-differentially private counts, each basket
        contributing at most ``dp_max_pairs_per_basket`` pairs (``training.privacy``); None: exact.
        ``max_len``: the longest itemset mined (antecedent + consequent); None: any length."""
        super().__init__()
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.rank_by = rank_by
        self.dp_epsilon = dp_epsilon
        self.dp_max_pairs_per_basket = dp_max_pairs_per_basket
        self.dp_seed = dp_seed
        self.max_len = max_len
        check_settings(min_support, max_len, min_confidence)
        if max_len is not None and max_len < 2:
            raise ItemsetConfigError(f"association_rules.max_len = {max_len}: a rule needs 2 items; set 2 (pairs) "
                                     "or more, or null for any length")
        if dp_epsilon is not None and max_len != 2:
            raise ItemsetConfigError(f"association_rules.dp_epsilon = {dp_epsilon} with max_len = {max_len}: "
                                     "differentially private rules are pair rules only; set max_len: 2 beside "
                                     "dp_epsilon, or dp_epsilon: null for exact rules of longer itemsets")
        self.multi_rules: ItemsetRules | None = None

    def fit(self, data: InteractionData) -> "AssociationRules":
        t0 = time.perf_counter()
        require_training_data(self.name, data, "baskets")
        self.n_items = data.n_items
        self.multi_rules = None
        # None: counted in this process; else on the engine the caller chose (training.counting), the same rules.
        # Differentially private counts are always taken here (their noise is drawn in this process).
        engine = active_engine()
        if self.dp_epsilon is not None:
            self.rules = private_pair_rules(data.baskets, self.min_support, self.min_confidence, self.dp_epsilon,
                                            self.dp_max_pairs_per_basket, self.dp_seed)
        elif self.max_len == 2:
            self.rules = (pair_rules(data.baskets, self.min_support, self.min_confidence) if engine is None else
                          engine.pair_rules(data.baskets, self.min_support, self.min_confidence))
        else:
            mine = itemset_rules if engine is None else engine.itemset_rules
            found = mine(data.baskets, self.min_support, self.min_confidence, self.max_len, max_consequent_len=1)
            self.rules = _pair_frame(found.select(found.antecedent_len == 1))
            self._fit_multi(found.select(found.antecedent_len >= 2), data.n_items)
        shape = (data.n_items, data.n_items)
        a, c = self.rules["antecedent"].to_numpy(), self.rules["consequent"].to_numpy()
        self.confidence = sp.csr_matrix((self.rules["confidence"].to_numpy(np.float32), (a, c)), shape=shape)
        self.ranking = sp.csr_matrix((self.rules[self.rank_by].to_numpy(np.float32), (a, c)), shape=shape)
        self.user_items = data.user_items
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _fit_multi(self, rules: ItemsetRules, n_items: int) -> None:
        """Keep the rules whose antecedent has 2+ items as two sparse matrices over their distinct antecedents
        (m of them): ``antecedent_sets`` (m, n_items), 1 for each antecedent item, with ``antecedent_sizes``
        (m,), and ``multi_confidence`` (m, n_items), the confidence of ``antecedent -> item``."""
        self.multi_rules = rules
        if len(rules) == 0:
            self.antecedent_sets = sp.csr_matrix((0, n_items), dtype=np.float32)
            self.antecedent_sizes = np.zeros(0, np.float32)
            self.multi_confidence = sp.csr_matrix((0, n_items), dtype=np.float32)
            return
        uniq, which = np.unique(rules.antecedents, axis=0, return_inverse=True)
        which = np.asarray(which).ravel()
        r, c = np.nonzero(uniq >= 0)
        self.antecedent_sets = sp.csr_matrix((np.ones(len(r), np.float32), (r, uniq[r, c])),
                                             shape=(len(uniq), n_items))
        self.antecedent_sizes = (uniq >= 0).sum(axis=1).astype(np.float32)
        self.multi_confidence = sp.csr_matrix((rules.metrics["confidence"].astype(np.float32),
                                               (which, rules.consequents[:, 0])), shape=(len(uniq), n_items))

    def fired(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """(n, m) CSR, 1 where history ``rows[i]`` ((n, n_items) CSR; any positive weight counts as held) holds
        every item of multi-item antecedent ``j``."""
        held = (rows.tocsr() > 0).astype(np.float32)
        hits = (held @ self.antecedent_sets.T).tocsr()
        hits.data = (hits.data == self.antecedent_sizes[hits.indices]).astype(np.float32)
        hits.eliminate_zeros()
        return hits

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """Sum of the confidences of the rules fired by each history: pair rules weighted by the history's values
        (linear), plus every multi-item rule whose whole antecedent the history holds."""
        if self.multi_rules is None or len(self.multi_rules) == 0:
            return np.asarray((rows.astype(np.float32) @ self.confidence).todense(), dtype=np.float32)
        # summed in float64 (the float32 confidences widened exactly) and rounded once, as the rules export does
        scores = rows.astype(np.float64) @ self.confidence.astype(np.float64)
        scores = scores + self.fired(rows).astype(np.float64) @ self.multi_confidence.astype(np.float64)
        return np.asarray(scores.todense(), dtype=np.float64).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    @property
    def is_linear(self) -> bool:
        """Whether scores are linear in the history (pair rules only): then one item-item matrix (or its top-N cut)
        is the whole model; with multi-item antecedents it is not, and the model is served as its rules."""
        return self.multi_rules is None or len(self.multi_rules) == 0

    def serving_form(self) -> "ItemItemForm | RuleForm":
        """Pair rules only: the (n_items, n_items) item-item matrix (linear in the history). With multi-item
        antecedents: a :class:`RuleForm` of every rule (pairs as one-item antecedents), whose export fires a rule
        only when the history holds its whole antecedent."""
        if self.is_linear:
            return ItemItemForm(linear_item_matrix(self))
        pairs = self.confidence.tocoo()
        multi = self.multi_confidence.tocoo()
        width = int(self.antecedent_sizes.max())
        sets = self.antecedent_sets.tocsr()
        sets.sort_indices()
        multi_rows = np.zeros((sets.shape[0], width), np.int64)
        for j in range(width):  # the j-th item of each antecedent, or its first item where it has fewer
            at = sets.indptr[:-1] + np.minimum(j, np.diff(sets.indptr) - 1)
            multi_rows[:, j] = sets.indices[at]
        singles = np.unique(pairs.row)
        rows = np.concatenate([np.repeat(singles[:, None], width, axis=1), multi_rows])
        single_row = np.searchsorted(singles, pairs.row)
        return RuleForm(self.n_items, rows, np.concatenate([single_row, len(singles) + multi.row]).astype(np.int64),
                        np.concatenate([pairs.col, multi.col]).astype(np.int64),
                        np.concatenate([pairs.data, multi.data]).astype(np.float32))

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_rows(self.ranking, items, k)


def _pair_frame(rules: ItemsetRules) -> pd.DataFrame:
    """Rules with one antecedent and one consequent item as :func:`training.association.pair_rules` returns
    them (:data:`RULE_COLUMNS`, same order)."""
    frame = pd.DataFrame({"antecedent": rules.antecedents[:, 0], "consequent": rules.consequents[:, 0],
                          "pair_count": rules.count, **{m: rules.metrics[m] for m in RULE_COLUMNS[3:]}})
    return frame[RULE_COLUMNS].sort_values(["lift", "confidence", "antecedent", "consequent"],
                                           ascending=[False, False, True, True], ignore_index=True)


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
