"""The reference our pair rules are checked against: mlxtend's ``fpgrowth(max_len=2)`` followed by
``association_rules`` (used by tests and the benchmark; not on any serving path)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def one_hot(baskets: sp.csr_matrix) -> pd.DataFrame:
    """The boolean basket x item DataFrame mlxtend expects (columns: item positions)."""
    dense = np.asarray(baskets.todense()) > 0
    return pd.DataFrame(dense, columns=list(range(baskets.shape[1])))


def mlxtend_pair_rules(onehot: pd.DataFrame, min_support: float, min_confidence: float) -> pd.DataFrame:
    """mlxtend's rules between single items, in :data:`training.association.RULE_COLUMNS` naming."""
    from mlxtend.frequent_patterns import association_rules, fpgrowth

    itemsets = fpgrowth(onehot, min_support=min_support, use_colnames=True, max_len=2)
    if (itemsets["itemsets"].map(len) == 2).sum() == 0:
        return pd.DataFrame(columns=["antecedent", "consequent", "support", "confidence", "lift", "leverage",
                                     "conviction"])
    rules = association_rules(itemsets, num_itemsets=len(onehot), metric="confidence",
                              min_threshold=min_confidence)
    return pd.DataFrame({
        "antecedent": rules["antecedents"].map(lambda s: next(iter(s))).astype(np.int64),
        "consequent": rules["consequents"].map(lambda s: next(iter(s))).astype(np.int64),
        "antecedent_support": rules["antecedent support"], "consequent_support": rules["consequent support"],
        "support": rules["support"], "confidence": rules["confidence"], "lift": rules["lift"],
        "leverage": rules["leverage"], "conviction": rules["conviction"],
    })


def mlxtend_itemset_rules(onehot: pd.DataFrame, min_support: float, min_confidence: float,
                          max_len: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """mlxtend's ``fpgrowth(max_len=...)`` itemsets and their ``association_rules`` (any antecedent and
    consequent length): (itemsets with ``support``/``itemsets``, rules as mlxtend returns them)."""
    from mlxtend.frequent_patterns import association_rules, fpgrowth

    itemsets = fpgrowth(onehot, min_support=min_support, use_colnames=True, max_len=max_len)
    if (itemsets["itemsets"].map(len) >= 2).sum() == 0:
        return itemsets, pd.DataFrame(columns=["antecedents", "consequents", "antecedent support",
                                               "consequent support", "support", "confidence", "lift", "leverage",
                                               "conviction"])
    rules = association_rules(itemsets, num_itemsets=len(onehot), metric="confidence", min_threshold=min_confidence)
    return itemsets, rules
