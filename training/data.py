"""Integer-indexed matrices built from the canonical interactions table."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


def basket_keys(df: pd.DataFrame) -> pd.Series:
    """The basket a row belongs to: ``basket_id``, else the user's visit (user and timestamp), else the
    user (sources without baskets or times, such as check-in data, treat a user's history as one basket)."""
    visit = df["user_id"].astype("string") + "|" + df["timestamp"].astype("string").fillna("")
    return df["basket_id"].astype("string").fillna(visit)


@dataclass
class InteractionData:
    """What models are fitted on.

    ``user_items``: (n_users, n_items) float32 CSR, 1 where the user interacted with the item.
    ``baskets``: (n_baskets, n_items) float32 CSR, 1 where the basket holds the item (anonymous
    baskets included).
    ``user_ids`` (n_users,) and ``item_ids`` (n_items,) map matrix positions back to canonical ids.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_items: sp.csr_matrix
    baskets: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_index(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        """Positions of item ids (-1 where unknown)."""
        idx = pd.Index(self.item_ids).get_indexer(np.asarray(ids, dtype=object))
        return idx.astype(np.int64)

    def user_index(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        idx = pd.Index(self.user_ids).get_indexer(np.asarray(ids, dtype=object))
        return idx.astype(np.int64)

    def matrix_for(self, df: pd.DataFrame) -> sp.csr_matrix:
        """(n_users, n_items) binary CSR of ``df``'s rows whose user and item are known here."""
        return binary_matrix(self.user_index(df["user_id"]), self.item_index(df["item_id"]), self.n_users,
                             self.n_items)


def binary_matrix(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    keep = (rows >= 0) & (cols >= 0)
    m = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])), shape=(n_rows, n_cols))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def item_pair_counts(x: sp.spmatrix) -> np.ndarray:
    """(n_items,) float64: how many rows of ``x`` (n_rows, n_items) hold each item, whatever the stored weights."""
    return np.asarray((x > 0).sum(axis=0), dtype=np.float64).ravel()


def build_interaction_data(train: pd.DataFrame, item_ids: np.ndarray | pd.Series,
                           user_ids: np.ndarray | None = None) -> InteractionData:
    """Index users and items (the catalog order given). Users are those with an id in ``train``, or
    ``user_ids`` when given (a superset, e.g. the train split's users for the ``fit`` part carved from it,
    so that a model fitted on ``fit`` uses the same user positions as one fitted on train)."""
    item_ids = np.asarray(pd.Series(item_ids).astype(str), dtype=object)
    known = train[train["user_id"].notna()]
    if user_ids is None:
        user_ids = np.asarray(pd.unique(known["user_id"].astype(str)), dtype=object)
        user_ids.sort()
    else:
        user_ids = np.asarray(pd.Series(user_ids).astype(str), dtype=object)
        if not pd.Index(known["user_id"].astype(str).unique()).isin(user_ids).all():
            raise ValueError("user_ids must hold every user of the interactions")
    items = pd.Index(item_ids)
    u = pd.Index(user_ids).get_indexer(known["user_id"].astype(str).to_numpy(dtype=object))
    i = items.get_indexer(known["item_id"].astype(str).to_numpy(dtype=object))
    ui = binary_matrix(u, i, len(user_ids), len(item_ids))
    keys = basket_keys(train)
    codes, _ = pd.factorize(keys)
    bi = items.get_indexer(train["item_id"].astype(str).to_numpy(dtype=object))
    baskets = binary_matrix(codes.astype(np.int64), bi, int(codes.max()) + 1 if len(codes) else 0, len(item_ids))
    return InteractionData(user_ids, item_ids, ui, baskets)
