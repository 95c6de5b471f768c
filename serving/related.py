"""The ``related_items`` table: item -> top-K items, with the evidence behind each pair."""
from __future__ import annotations

import numpy as np
import pandas as pd

from serving.service.evidence import PairEvidence, reason
from training.association import cooccurrence_at
from training.catalog import CategoryReranker
from training.data import InteractionData
from training.models.base import Recommender

RELATED_COLUMNS = ["item_id", "rank", "related_item_id", "score", "model", "co_purchase_count", "confidence",
                   "lift", "cosine", "item_title", "related_title", "ranked_by", "reason"]


def pair_evidence(data: InteractionData, a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """Evidence for pairs of item positions ``a[p] -> b[p]`` (each (n_pairs,)).

    ``co_purchase_count``: baskets holding both; ``confidence``: P(b | a) over baskets;
    ``lift``: confidence / P(b); ``cosine``: cosine of the two items' user vectors.
    """
    n_baskets = max(data.baskets.shape[0], 1)
    in_baskets = np.bincount(data.baskets.indices, minlength=data.n_items).astype(np.float64)
    co = cooccurrence_at(data.baskets, a, b).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        conf = np.where(in_baskets[a] > 0, co / in_baskets[a], np.nan)
        lift = np.where(in_baskets[b] > 0, conf * n_baskets / in_baskets[b], np.nan)
        by_users = np.bincount(data.user_items.indices, minlength=data.n_items).astype(np.float64)
        co_users = cooccurrence_at(data.user_items, a, b).astype(np.float64)
        cosine = np.where(by_users[a] * by_users[b] > 0, co_users / np.sqrt(by_users[a] * by_users[b]), np.nan)
    return pd.DataFrame({"co_purchase_count": co.astype(np.int64), "confidence": conf, "lift": lift,
                         "cosine": cosine})


def bought_items(data: InteractionData) -> np.ndarray:
    """Positions of the items with any interaction or basket in ``data`` (the items related lists are made for)."""
    return np.flatnonzero(np.asarray(data.user_items.sum(axis=0)).ravel()
                          + np.asarray(data.baskets.sum(axis=0)).ravel() > 0)


def related_items_table(model: Recommender, data: InteractionData, catalog: pd.DataFrame, k: int = 20,
                        items: np.ndarray | None = None) -> pd.DataFrame:
    """Top-``k`` related items for ``items`` (default: every item with interactions), with evidence."""
    items = bought_items(data) if items is None else items
    idx, scores = model.related_items(items, k)
    return assemble_related(data, catalog, items, idx, scores, model.name)


def assemble_related(data: InteractionData, catalog: pd.DataFrame, items: np.ndarray, idx: np.ndarray,
                     scores: np.ndarray, model_name: str) -> pd.DataFrame:
    """The table from item positions ``items`` (n,), their neighbours ``idx`` (n, k; -1 = padding) and
    ``scores`` (n, k), all positions in ``data``; adds the evidence of every pair and both titles."""
    rank = np.tile(np.arange(1, idx.shape[1] + 1), len(items))
    a = np.repeat(items, idx.shape[1])
    b = idx.ravel()
    keep = b >= 0
    a, b, rank, s = a[keep], b[keep], rank[keep], scores.ravel()[keep]
    titles = catalog.set_index("item_id")["title"] if "title" in catalog else pd.Series(dtype="string")
    item_ids, related_ids = data.item_ids[a], data.item_ids[b]
    table = pd.DataFrame({"item_id": pd.array(item_ids, dtype="string"), "rank": rank.astype(np.int64),
                          "related_item_id": pd.array(related_ids, dtype="string"), "score": s.astype(np.float64),
                          "model": model_name})
    table = pd.concat([table, pair_evidence(data, a, b)], axis=1)
    table["item_title"] = titles.reindex(item_ids).astype("string").values
    table["related_title"] = titles.reindex(related_ids).astype("string").values
    # ``rank`` follows ``score``, not the evidence beside it: say so on every row, and in words per pair
    table["ranked_by"] = f"score of {model_name} (the evidence columns do not order the list)"
    names = table["item_title"].fillna(table["item_id"]).astype(str).to_numpy()
    table["reason"] = [reason(PairEvidence(0, int(c), float(f), float(lf) if lf == lf else 0.0), n,
                              f"the {model_name} score")
                       for c, f, lf, n in zip(table["co_purchase_count"], table["confidence"].fillna(0.0),
                                              table["lift"], names)]
    return table[RELATED_COLUMNS]


def category_related_table(model: Recommender, data: InteractionData, catalog: pd.DataFrame,
                           reranker: CategoryReranker, k: int = 20, items: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`related_items_table` with each item's list re-ranked by the catalog's categories
    (``training.catalog.CategoryReranker``: a pool of the model's candidates, re-scored with the same-category
    and category-lift terms at the weights chosen on validation); ``score`` is the re-ranked score."""
    items = bought_items(data) if items is None else items
    idx, scores = reranker.related_items(model, items, k)
    return assemble_related(data, catalog, items, idx, scores, f"{model.name}+category")
