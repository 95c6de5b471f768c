"""Top-K selection with seen items masked."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """Set ``scores[r, c] = -inf`` where ``seen[r, c]`` is stored. ``scores``: (n, n_items), in place."""
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first.

    ``scores``: (n, n_items). Returns ``(idx, vals)``, both (n, k'), k' = min(k, n_items).
    Ties break towards the lower item index, so results are deterministic.
    """
    n_items = scores.shape[1]
    k = min(k, n_items)
    if k == n_items:
        idx = np.argsort(-scores, axis=1, kind="stable")
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(scores, part, axis=1)
        # argpartition picks arbitrarily among items tied with the k-th score; take the lowest indices
        kth = vals.min(axis=1, keepdims=True)
        for r in np.flatnonzero((scores >= kth).sum(axis=1) > k):
            row = scores[r]
            above = np.flatnonzero(row > kth[r])
            part[r] = np.concatenate([above, np.flatnonzero(row == kth[r])[:k - len(above)]])
        vals = np.take_along_axis(scores, part, axis=1)
        # sort by score desc, then index asc
        order = np.lexsort((part, -vals), axis=1)
        idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)
