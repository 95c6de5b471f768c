"""Splits and the matrices models are fitted on."""

from dataclasses import dataclass
from typing import Literal, Optional

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.data import InteractionData, build_interaction_data
from training.splits import Split, SplitConfig as PlainSplitConfig, choose_strategy, make_split

GROUP = "splits"


class SplitConfig(dg.Config):
    """``auto`` chooses by the data's shape (``training.splits.choose_strategy``): the source's fixed split when it
    ships one, a global temporal cut where every row has a time, a per-customer holdout where there are customers
    but no time, basket completion (``hidden_fraction`` of each held-out basket's items hidden) where there are
    only baskets."""

    strategy: Literal["auto", "fixed", "temporal", "leave_last_basket", "customer_holdout",
                      "basket_completion"] = "auto"
    cutoff: Optional[str] = None
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 42
    hidden_fraction: float = 0.5


@dataclass
class SplitMatrices:
    """``train``: fitted on for final models; ``test``: (n_users, n_items) CSR of held-out pairs.
    ``fit``/``validation``: the same for tuning (validation carved from train)."""

    train: InteractionData
    test: sp.csr_matrix
    fit: InteractionData
    validation: sp.csr_matrix


@dg.asset(group_name=GROUP)
def training_split(config: SplitConfig, validated_interactions: pd.DataFrame) -> dg.Output[Split]:
    """Train / validation / test rows; validation is always carved from train."""
    strategy, why = config.strategy, "set in config"
    if strategy == "auto":
        strategy, why = choose_strategy(validated_interactions)
    split = make_split(validated_interactions, PlainSplitConfig(
        strategy=strategy, cutoff=config.cutoff, test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction, seed=config.seed, hidden_fraction=config.hidden_fraction))
    return dg.Output(split, metadata={**split.summary(), "chosen_because": why})


@dg.asset(group_name=GROUP)
def interaction_matrices(training_split: Split, validated_items: pd.DataFrame) -> dg.Output[SplitMatrices]:
    """User-item and basket-item matrices over the whole catalog, for final fits and for tuning."""
    items = validated_items["item_id"]
    train = build_interaction_data(training_split.train, items)
    fit = build_interaction_data(training_split.fit, items, user_ids=train.user_ids)  # same user positions
    m = SplitMatrices(train, train.matrix_for(training_split.test), fit, fit.matrix_for(training_split.validation))
    density = train.user_items.nnz / max(train.n_users * train.n_items, 1)
    return dg.Output(m, metadata={
        "users": train.n_users, "items": train.n_items, "train_pairs": int(train.user_items.nnz),
        "baskets": int(train.baskets.shape[0]), "test_pairs": int(m.test.nnz), "density": float(density),
        "test_users": int(np.count_nonzero(np.diff(m.test.indptr)))})
