"""The one ranking rule of the served model, shared by the live service and the batch tables made from it: the
``k`` best scores, best first, ties to the lower item position, only finite scores (and, for related items, only
positive ones)."""
from __future__ import annotations

import numpy as np


def top_positions(scores: np.ndarray, mask: np.ndarray | None, k: int, positive: bool = False,
                  never: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` best of ``scores`` ((n_items,)) among ``mask`` ((n_items,) bool; None: all) but
    ``never`` (positions), finite and, with ``positive``, above 0; best first, ties to the lower position.

    Partial selection (``argpartition``, O(n_items)), the ties at the k-th value settled by position, then a sort
    of the ``k`` chosen; an entry at or below 0 ranks below every positive one, so dropping the non-positive ones
    after the selection is exact."""
    if mask is not None:
        s = np.where(mask, scores, -np.inf)
    elif never is not None and len(never):
        s = np.array(scores, np.float64)  # a copy: the caller's scores are left alone
    else:
        s = scores
    if never is not None and len(never):
        s[never] = -np.inf
    n = len(s)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < n:
        kth = s[np.argpartition(-s, k - 1)[:k]].min()  # the k-th best value
        above = np.flatnonzero(s > kth)
        # of the items tied at the k-th value, the lowest positions (argpartition alone picks any of them)
        idx = np.concatenate([above, np.flatnonzero(s == kth)[:k - len(above)]])
    else:
        idx = np.arange(n)
    idx = idx[np.lexsort((idx, -s[idx]))]
    chosen = s[idx]
    keep = np.isfinite(chosen) & (chosen > 0) if positive else np.isfinite(chosen)
    return idx[keep]
