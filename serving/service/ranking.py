"""The one ranking rule of the served model, shared by the live service and the batch tables made from it: the
``k`` best scores, best first, ties to the lower item position, only finite scores (and, for related items, only
positive ones)."""
from __future__ import annotations

import numpy as np

SAMPLE_MIN_ITEMS = 1024  # below it, one partial selection over every item is as cheap as the sampled bound


def _candidates(s: np.ndarray, k: int) -> np.ndarray | None:
    """Positions (ascending) holding every value at or above the ``k``-th best of ``s`` ((n,), no ordering
    assumed), read from a bound rather than a selection over all n: the ``k``-th best of an evenly strided sample
    (about 2 sqrt(n k) values, NaN counted as -inf) is at most the ``k``-th best of the whole, so every item that
    can be in the top ``k``, ties at the ``k``-th value included, passes ``s >= bound``; about n k / sample
    pass. None when the bound cannot help (small n, or too few items pass)."""
    n = len(s)
    if n < SAMPLE_MIN_ITEMS:
        return None
    m = max(4 * k, int(2 * np.sqrt(n * k)))
    stride = n // m
    if stride < 4:
        return None
    sample = s[::stride].copy()
    sample[np.isnan(sample)] = -np.inf
    bound = np.partition(sample, len(sample) - k)[len(sample) - k]
    cand = np.flatnonzero(s >= bound)
    return cand if len(cand) >= k and len(cand) < n // 2 else None


def top_positions(scores: np.ndarray, mask: np.ndarray | None, k: int, positive: bool = False,
                  never: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` best of ``scores`` ((n_items,)) among ``mask`` ((n_items,) bool; None: all) but
    ``never`` (positions), finite and, with ``positive``, above 0; best first, ties to the lower position.

    Partial selection (``argpartition``) over the items that can make the top ``k`` (:func:`_candidates`: a
    bound from a strided sample, one comparison over the n items; on Gowalla's 40,981 items 0.05 ms where
    the selection over all of them took 0.5 ms), the ties at the k-th value settled by position, then a sort
    of the ``k`` chosen; an entry at or below 0 ranks below every positive one, so dropping the non-positive ones
    after the selection is exact. The scores keep their dtype (float32 -> float64 changes no order or tie)."""
    if mask is not None:
        s = np.where(mask, scores, -np.inf)
    elif never is not None and len(never):
        s = np.array(scores, None if np.issubdtype(scores.dtype, np.floating) else np.float64)  # a copy
    else:
        s = scores
    if never is not None and len(never):
        s[never] = -np.inf
    n = len(s)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < n:
        cand = _candidates(s, k)
        if cand is None:
            kth = s[np.argpartition(-s, k - 1)[:k]].min()  # the k-th best value
            above = np.flatnonzero(s > kth)
            # of the items tied at the k-th value, the lowest positions (argpartition alone picks any of them)
            idx = np.concatenate([above, np.flatnonzero(s == kth)[:k - len(above)]])
        else:  # the same rule on the candidates (ascending positions, every tie at the k-th value among them)
            c = s[cand]
            kth = np.partition(c, len(c) - k)[len(c) - k]
            above = cand[c > kth]
            idx = np.concatenate([above, cand[c == kth][:k - len(above)]])
    else:
        idx = np.arange(n)
    idx = idx[np.lexsort((idx, -s[idx]))]
    chosen = s[idx]
    keep = np.isfinite(chosen) & (chosen > 0) if positive else np.isfinite(chosen)
    return idx[keep]
