"""Catalog knowledge for models: the category hierarchy as features, and a category-aware re-ranking of related items.

A catalog's category is a path, broad to fine (Instacart: department, then aisle). Each level is coded per item
(a level's code is the path up to it, so two aisles of the same name in different departments stay apart); an item
whose path is shorter, or missing, has no code (-1) at the deeper levels.

* :func:`category_affinity`: for a history, how much of it falls in each candidate's category, level by level
  (the hybrid's ``category`` signal, ``training.models.hybrid``).
* :func:`category_lift`: how much more often a basket holding an item of category a also holds another item of
  category b than baskets in general do (the finest level; complementary aisles, e.g. pasta with pasta sauce).
* :class:`CategoryReranker`: a related-items list (any model's pool of candidates) re-ranked by the model's score,
  z-scored over the pool, plus ``same_weight`` x the share of levels the two items share plus ``lift_weight`` x the
  z-scored log category lift; both weights chosen on validation (:func:`choose_rerank_weights`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

PATH_SEPARATOR = " / "
MAX_LEVELS = 3


@dataclass
class CategoryLevels:
    """``codes``: (n_levels, n_items) int64, the item's category at each level (-1: none); ``names``: one per
    level; ``n_categories``: (n_levels,) how many categories each level has."""

    codes: np.ndarray
    names: tuple[str, ...]
    n_categories: tuple[int, ...]

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[1])

    def onehot(self, level: int) -> sp.csr_matrix:
        """(n_items, n_categories[level]) CSR, 1 where the item is in the category (items without one: empty rows)."""
        c = self.codes[level]
        known = np.flatnonzero(c >= 0)
        return sp.csr_matrix((np.ones(len(known), np.float32), (known, c[known])),
                             shape=(self.n_items, self.n_categories[level]))


def category_paths(items: pd.DataFrame) -> pd.Series | None:
    """Each catalog row's category path (a list, broad to fine; empty when unknown), from ``category_path``
    (list-valued) when the reader gave one, else ``category`` split on " / ". None when the catalog has neither."""
    def as_list(v) -> list[str]:
        if v is None or (not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v)):
            return []
        parts = list(v) if isinstance(v, (list, tuple, np.ndarray)) else str(v).split(PATH_SEPARATOR)
        return [str(p).strip() for p in parts if p is not None and str(p).strip() not in ("", "nan", "<NA>")]

    for column in ("category_path", "category"):
        if column in items.columns:
            paths = items[column].map(as_list)
            if paths.map(len).gt(0).any():
                return paths
    return None


def category_levels(items: pd.DataFrame, item_ids: np.ndarray) -> CategoryLevels | None:
    """The hierarchy of ``items`` (catalog: ``item_id`` and ``category_path`` or ``category``) in the order of
    ``item_ids`` (n_items,), at most ``MAX_LEVELS`` levels; None when no item has a category."""
    paths = category_paths(items)
    if paths is None:
        return None
    by_id = pd.Series(paths.to_numpy(), index=items["item_id"].astype(str).to_numpy())
    by_id = by_id[~by_id.index.duplicated()]
    aligned = by_id.reindex(np.asarray(item_ids, dtype=object).astype(str))
    aligned = [p if isinstance(p, list) else [] for p in aligned]
    depth = min(max(len(p) for p in aligned), MAX_LEVELS)
    codes, counts = np.full((depth, len(aligned)), -1, np.int64), []
    for level in range(depth):
        keys = pd.Series([PATH_SEPARATOR.join(p[:level + 1]) if len(p) > level else None for p in aligned],
                         dtype="object")
        c, uniques = pd.factorize(keys)  # None -> -1
        codes[level] = c
        counts.append(len(uniques))
    names = tuple(f"level_{j + 1}" for j in range(depth))
    return CategoryLevels(codes, names, tuple(counts))


def category_affinity(rows: sp.csr_matrix, levels: CategoryLevels) -> np.ndarray:
    """(n, n_items) float32: for each history (``rows``, (n, n_items) CSR, weights allowed), the share of its
    mass in each item's category, averaged over the levels (an item without a category at a level gets 0 there).
    A history all in one aisle gives 1 to that aisle's items, 1/2 to the rest of its department, 0 elsewhere."""
    rows = rows.tocsr().astype(np.float32)
    mass = np.asarray(rows.sum(axis=1)).ravel()
    inv = 1.0 / np.where(mass > 0, mass, 1.0)
    out = np.zeros(rows.shape, np.float32)
    for level in range(len(levels.names)):
        c = levels.codes[level]
        known = np.flatnonzero(c >= 0)
        share = np.asarray((rows @ levels.onehot(level)).todense(), np.float32) * inv[:, None]  # (n, n_cat)
        out[:, known] += share[:, c[known]]
    return out / max(len(levels.names), 1)


def same_category(items: np.ndarray, candidates: np.ndarray, levels: CategoryLevels) -> np.ndarray:
    """(n, m) float32: for item positions ``items`` (n,) and ``candidates`` (n, m; -1 = padding), the share of
    levels at which the two share a category (1: same finest category; 0: nothing in common or unknown)."""
    cand = np.where(candidates >= 0, candidates, 0)
    out = np.zeros(candidates.shape, np.float32)
    for level in range(len(levels.names)):
        c = levels.codes[level]
        a, b = c[items][:, None], c[cand]
        out += ((a == b) & (a >= 0)).astype(np.float32)
    out[candidates < 0] = 0.0
    return out / max(len(levels.names), 1)


def category_lift(baskets: sp.csr_matrix, levels: CategoryLevels, level: int = -1, smoothing: float = 1.0
                  ) -> np.ndarray:
    """(n_cat, n_cat) float32 log lift between categories of ``level`` (default: the finest) over ``baskets``
    ((n_baskets, n_items) CSR): log((co(a, b) + s) x n / ((n(a) + s) x (n(b) + s))), where n(a) counts baskets
    holding an item of a and co(a, b) baskets holding an item of a and another item of b (for a = b: two
    distinct items of a). ``s`` = ``smoothing`` pulls rare categories towards 0."""
    b = baskets.tocsr().copy()
    b.data[:] = 1.0
    per_cat = (b @ levels.onehot(level)).tocsr()  # (n_baskets, n_cat): distinct items of each category
    present = per_cat.copy()
    present.data[:] = 1.0
    n = max(b.shape[0], 1)
    n_cat = np.asarray(present.sum(axis=0), np.float64).ravel()
    co = np.asarray((present.T @ present).todense(), np.float64)
    co[np.diag_indices_from(co)] = np.asarray((per_cat >= 2).sum(axis=0), np.float64).ravel()
    lift = np.log((co + smoothing) * n / np.outer(n_cat + smoothing, n_cat + smoothing))
    return lift.astype(np.float32)


def _zscore_valid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row z-scores of ``x`` (n, m) over its ``valid`` entries; invalid entries get 0."""
    cnt = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    xv = np.where(valid, x, 0.0)
    mu = xv.sum(axis=1, keepdims=True) / cnt
    sd = np.sqrt(np.where(valid, (x - mu) ** 2, 0.0).sum(axis=1, keepdims=True) / cnt)
    return np.where(valid, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0).astype(np.float32)


@dataclass
class CategoryReranker:
    """Re-ranks a related-items pool with the catalog: score = z(model score over the pool) + ``same_weight`` x
    :func:`same_category` + ``lift_weight`` x z(:func:`category_lift` of the two items' finest categories).
    ``lift``: (n_cat, n_cat) at the finest level, or None (that term off). Weights 0, 0 leave the order as is."""

    levels: CategoryLevels
    lift: np.ndarray | None = None
    same_weight: float = 0.0
    lift_weight: float = 0.0
    pool: int = 100

    def features(self, items: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(same, z-scored lift) for ``items`` (n,) and pools ``idx`` (n, m; -1 = padding), each (n, m)."""
        valid = idx >= 0
        same = same_category(items, idx, self.levels)
        if self.lift is None:
            return same, np.zeros(idx.shape, np.float32)
        c = self.levels.codes[-1]
        a, b = c[items][:, None], c[np.where(valid, idx, 0)]
        known = valid & (a >= 0) & (b >= 0)
        raw = np.where(known, self.lift[np.maximum(a, 0), np.maximum(b, 0)], 0.0)
        return same, _zscore_valid(raw, known)

    def rerank(self, items: np.ndarray, idx: np.ndarray, scores: np.ndarray, k: int,
               same_weight: float | None = None, lift_weight: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of each pool (``idx``, ``scores``: (n, m) as ``Recommender.related_items`` gives them)
        by the blended score: (n, k) positions (-1 padded) and float32 blended scores (NaN padded)."""
        same_weight = self.same_weight if same_weight is None else same_weight
        lift_weight = self.lift_weight if lift_weight is None else lift_weight
        valid = (idx >= 0) & np.isfinite(scores)
        blended = _zscore_valid(np.nan_to_num(scores.astype(np.float64), nan=0.0, neginf=0.0, posinf=0.0), valid)
        if same_weight or lift_weight:
            same, lift = self.features(items, idx)
            blended = blended + same_weight * same + lift_weight * lift
        blended = np.where(valid, blended, -np.inf)
        # stable: ties keep the model's order
        order = np.argsort(-blended, axis=1, kind="stable")[:, :k]
        out_i = np.take_along_axis(np.where(valid, idx, -1), order, axis=1)
        out_s = np.take_along_axis(blended, order, axis=1).astype(np.float32)
        out_s[out_i < 0] = np.nan
        if out_i.shape[1] < k:  # pools smaller than k: pad
            pad = k - out_i.shape[1]
            out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
            out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=np.nan)
        return out_i, out_s

    def related_items(self, model, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``model.related_items`` (any :class:`~training.models.base.Recommender`) over a pool of ``pool``
        candidates, re-ranked, best ``k`` kept."""
        idx, scores = model.related_items(items, max(self.pool, k))
        return self.rerank(items, idx, scores, k)


RERANK_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


def choose_rerank_weights(evaluate: Callable[[float, float], float], with_lift: bool = True,
                          grid: tuple[float, ...] = RERANK_GRID) -> tuple[tuple[float, float], dict[str, float]]:
    """The (same_weight, lift_weight) on ``grid`` x ``grid`` (lift fixed at 0 without ``with_lift``) that maximise
    ``evaluate`` (a validation score); (0, 0), the model's own order, is always among them and wins ties.
    Returns (best pair, {"same=a,lift=b": value} for every pair tried)."""
    lifts = grid if with_lift else (0.0,)
    pairs = [(0.0, 0.0)] + [p for p in itertools.product(grid, lifts) if p != (0.0, 0.0)]
    values = {f"same={s},lift={l}": float(evaluate(s, l)) for s, l in pairs}
    best = max(pairs, key=lambda p: (values[f"same={p[0]},lift={p[1]}"], -(p[0] + p[1])))
    return best, values
