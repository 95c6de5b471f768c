"""Does a held-out split look like the data it was held out from?

Tuning on a validation split only predicts test when both are drawn alike. One way they differ that moves
rankings a lot is popularity: if the held-out pairs fall on items that are more popular (in the training
data) than the training pairs themselves are, a popularity-leaning model gains on it and a debiased one
loses. A random holdout gives a ratio near 1; a temporal holdout of a growing shop, or a benchmark's fixed
test file, need not.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.data import item_pair_counts


def held_out_popularity(train: sp.csr_matrix, held_out: sp.csr_matrix) -> dict[str, float]:
    """Popularity of held-out pairs against that of the training pairs, both measured in ``train``.

    ``train``, ``held_out``: (n_users, n_items) interaction matrices over the same items. An item's popularity
    is its number of training users. Returns ``train_mean`` / ``held_out_mean`` (mean popularity of the item
    of a pair), ``ratio`` (held-out over train; 1 when held-out pairs are drawn like training pairs),
    ``train_median`` / ``held_out_median`` and ``log_ratio`` (mean log(1 + popularity), held-out minus train).
    """
    if train.shape[1] != held_out.shape[1]:
        raise ValueError(f"train has {train.shape[1]} items, held_out {held_out.shape[1]}")
    pop = item_pair_counts(train)
    on_train = pop[train.tocoo().col]
    on_held = pop[held_out.tocoo().col]
    if len(on_train) == 0 or len(on_held) == 0:
        raise ValueError("train and held_out need at least one pair each")
    return {"train_mean": float(on_train.mean()), "held_out_mean": float(on_held.mean()),
            "ratio": float(on_held.mean() / on_train.mean()),
            "train_median": float(np.median(on_train)), "held_out_median": float(np.median(on_held)),
            "log_ratio": float(np.log1p(on_held).mean() - np.log1p(on_train).mean())}
