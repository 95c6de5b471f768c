"""Where the counting stages run: in this process (the default) or on another engine such as Apache Spark.

Two stages of model fitting grow with the event log rather than the catalogue: counting items and itemsets over
baskets (association rules, ``training.association`` / ``training.itemsets``) and counting co-occurrences over users'
histories (item-kNN, ``training.models.itemknn``). A :class:`Counting` engine takes them over and hands back the same
counts, from which the same code derives the rules and the neighbours, so every engine's model is identical to the
in-process one (rule set, metrics and similarity matrix, bit for bit; ``tests/test_spark_counting.py``).

The engine is chosen by the caller for a block of code (:func:`using_engine`); the models ask for it at fit time
(:func:`active_engine`), so a model's constructor, its pickles and its tuning stay as they are. ``None`` (the
default) is the in-process path. ``training.spark_counting.SparkCounting`` is the Spark engine; Dagster's
``CountingEngine`` resource (``orchestration/resources.py``) picks one per run. Importing this module imports no
engine.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from training.itemsets import FrequentItemsets, ItemsetRules


class Counting(Protocol):
    """A counting engine. Baskets: (n_baskets, n_items) sparse, nonzero where a basket holds an item; x: (n_users,
    n_items) float32 CSR of (weighted) histories. Results are in the matrices' item positions."""

    name: str

    def frequent_itemsets(self, baskets: "sp.spmatrix", min_support: float,
                          max_len: int | None) -> "FrequentItemsets":
        """Every itemset in at least ``min_support`` of the baskets, up to ``max_len`` items (None: any length),
        as ``training.itemsets.frequent_itemsets`` finds them."""

    def pair_rules(self, baskets: "sp.spmatrix", min_support: float, min_confidence: float) -> "pd.DataFrame":
        """As ``training.association.pair_rules``."""

    def itemset_rules(self, baskets: "sp.spmatrix", min_support: float, min_confidence: float,
                      max_len: int | None, max_consequent_len: int | None) -> "ItemsetRules":
        """As ``training.itemsets.itemset_rules``."""

    def knn_similarity(self, x: "sp.csr_matrix", norm_a: "np.ndarray", norm_b: "np.ndarray", shrink: float,
                       k: int) -> "sp.csr_matrix":
        """As ``training.models.itemknn.knn_similarity``: (n_items, n_items) float32 CSR of each item's top-k."""


_ACTIVE: ContextVar["Counting | None"] = ContextVar("cobuy_counting_engine", default=None)


@contextmanager
def using_engine(engine: "Counting | None") -> Iterator["Counting | None"]:
    """Within the block, models fitted in this thread count on ``engine`` (None: in this process)."""
    token = _ACTIVE.set(engine)
    try:
        yield engine
    finally:
        _ACTIVE.reset(token)


def active_engine() -> "Counting | None":
    """The engine set by the innermost :func:`using_engine` block, or None (count in this process)."""
    return _ACTIVE.get()
