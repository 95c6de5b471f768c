"""Evidence for a recommended pair from the training baskets, and the one-line reason shown beside it.

For an anchor item a and a candidate c over the bundle's (n_baskets, n_items) baskets B:
``co_purchases`` = baskets holding both; ``confidence`` = co / baskets holding a (P(c | a));
``lift`` = confidence / P(c): above 1 when they go together more often than chance.
A co-purchase vector (one anchor against every item) costs the nonzeros of the anchor's baskets; the last
``cache_items`` anchors are kept (LRU), counted as cache hits and misses.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

CACHE_BYTES = 256 * 2**20  # co-purchase vectors kept, in bytes


@dataclass
class PairEvidence:
    with_item: int  # the anchor position (the item itself, or the cart / history item the candidate goes with)
    co_purchases: int
    confidence: float
    lift: float


class Evidence:
    """Co-purchase evidence over ``baskets`` ((n_baskets, n_items) CSR, any nonzero = in the basket)."""

    def __init__(self, baskets: sp.csr_matrix, on_cache=None) -> None:
        b = baskets.tocsr().astype(np.float32)
        b.data[:] = 1.0
        self.rows, self.cols = b, b.tocsc()
        self.n_baskets = max(b.shape[0], 1)
        self.counts = np.diff(self.cols.indptr).astype(np.int64)  # (n_items,) baskets holding each item
        self.n_items = b.shape[1]
        self.cache_items = max(64, CACHE_BYTES // max(4 * self.n_items, 1))
        # every item's co-purchase vector fits the cache (Online Retail's 3,907 items: 61 MB): pairs are read from
        # the kept vectors (a cart's 5 x 10 pairs: 15 us, against 0.2 ms counted from the basket lists)
        self.keeps_all = self.cache_items >= self.n_items
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()  # each thread's basket flags (co_matrix)
        self.on_cache = on_cache or (lambda hit: None)

    def co_purchases(self, anchor: int) -> np.ndarray:
        """(n_items,) int32: baskets holding both ``anchor`` and each item (the anchor's own count at itself)."""
        return self._vector(anchor, counted=True)

    def _vector(self, anchor: int, counted: bool) -> np.ndarray:
        """:meth:`co_purchases`; ``counted``: the lookup is reported to ``on_cache`` (the pairs read for a list's
        evidence are not: the cache metric counts the vectors asked for)."""
        with self._lock:
            hit = self._cache.get(anchor)
            if hit is not None:
                self._cache.move_to_end(anchor)
        if counted:
            self.on_cache(hit is not None)
        if hit is not None:
            return hit
        baskets = self.cols.indices[self.cols.indptr[anchor]:self.cols.indptr[anchor + 1]]
        sub = self.rows[baskets]
        vec = np.bincount(sub.indices, minlength=self.n_items).astype(np.int32)
        with self._lock:
            self._cache[anchor] = vec
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        return vec

    def co_matrix(self, anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(len(anchors), len(candidates)) baskets holding both, from the two sets of basket lists only (cost:
        their lengths; no full co-purchase vector is built, nothing cached). Up to 64 anchors at once mark their
        baskets with one bit each in a (n_baskets,) word array (this thread's, kept zeroed between calls); the
        candidates' basket lists are read once against it."""
        ptr, rows = self.cols.indptr, self.cols.indices
        cand, anchors = np.asarray(candidates, np.int64), np.asarray(anchors, np.int64)
        out = np.zeros((len(anchors), len(cand)), np.int64)
        if not len(cand) or not len(anchors):
            return out
        lens = ptr[cand + 1] - ptr[cand]
        joined = np.concatenate([rows[ptr[c]:ptr[c + 1]] for c in cand])
        ends = np.cumsum(lens)
        flag = getattr(self._local, "flag", None)
        if flag is None:
            flag = self._local.flag = np.zeros(self.rows.shape[0], np.uint64)
        for g in range(0, len(anchors), 64):
            group = anchors[g:g + 64]
            mine = [rows[ptr[a]:ptr[a + 1]] for a in group]
            for bit, baskets in enumerate(mine):
                flag[baskets] |= np.uint64(1 << bit)
            marks = flag[joined]
            hit = np.flatnonzero(marks)  # only the candidates' baskets an anchor is in are counted
            bits = (marks[hit][:, None] >> np.arange(len(group), dtype=np.uint64)) & np.uint64(1)
            running = np.concatenate([np.zeros((1, len(group)), np.int64), np.cumsum(bits, axis=0, dtype=np.int64)])
            # each candidate's stretch of ``joined`` is [ends - lens, ends): its hits, by their place in ``hit``
            out[g:g + len(group)] = (running[np.searchsorted(hit, ends)] - running[np.searchsorted(hit, ends - lens)]).T
            flag[np.concatenate(mine)] = 0
        return out

    def pairs(self, anchors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(len(anchors), len(candidates)) int64 baskets holding both: read from the kept co-purchase vectors
        when every item's fits the cache (``keeps_all``), else :meth:`co_matrix`; the same counts either way."""
        anchors, cand = np.asarray(anchors, np.int64), np.asarray(candidates, np.int64)
        if not self.keeps_all or not len(cand) or not len(anchors):
            return self.co_matrix(anchors, cand)
        return np.stack([self._vector(int(a), False)[cand] for a in anchors]).astype(np.int64)

    def pair(self, anchor: int, candidates: np.ndarray) -> list[PairEvidence]:
        """Evidence of ``anchor`` -> each of ``candidates`` (positions)."""
        co = self.pairs(np.array([anchor]), candidates)[0]
        return [self._evidence(anchor, int(c), int(n)) for c, n in zip(candidates, co)]

    def _evidence(self, anchor: int, candidate: int, co: int) -> PairEvidence:
        n_a, n_c = self.counts[anchor], self.counts[candidate]
        conf = co / n_a if n_a else 0.0
        lift = conf * self.n_baskets / n_c if n_c else 0.0
        return PairEvidence(anchor, co, float(conf), float(lift))

    def best_anchor(self, anchors: np.ndarray, candidates: np.ndarray) -> list[PairEvidence]:
        """For each candidate, the evidence of the anchor (among ``anchors``) bought with it most often
        (ties: the higher lift); a candidate bought with none of them gets the first anchor's (zero) evidence."""
        anchors = np.asarray(anchors, np.int64)[:50]  # a long history: its first 50 items speak for it
        if not len(anchors) or not len(candidates):
            return [PairEvidence(-1, 0, 0.0, 0.0) for _ in candidates]
        co = self.pairs(anchors, candidates)  # (n_anchors, n_candidates)
        conf = co / np.maximum(self.counts[anchors], 1)[:, None]  # lift's order among anchors, per candidate
        best = np.argmax(co + 0.5 * conf, axis=0)  # most co-purchases; ties broken by confidence (conf <= 1)
        return [self._evidence(int(anchors[b]), int(c), int(co[b, j]))
                for j, (c, b) in enumerate(zip(candidates, best))]


def reason(ev: PairEvidence, anchor_title: str, score_meaning: str) -> str:
    """One line a merchandiser can read: what the baskets say about the pair, and when they say little, which
    score put the item on the list."""
    if ev.with_item < 0:
        return f"Suggested by {score_meaning}."
    if ev.co_purchases == 0:
        return f"Never bought together with {anchor_title} in the training baskets; suggested by {score_meaning}."
    times = "basket" if ev.co_purchases == 1 else "baskets"
    if ev.lift < 1.0:
        return (f"Bought with {anchor_title} in {ev.co_purchases} {times}, less often than chance (lift "
                f"{ev.lift:.2f}); suggested by {score_meaning}.")
    return (f"Bought with {anchor_title} in {ev.co_purchases} {times} ({ev.confidence:.0%} of its baskets), "
            f"{ev.lift:.1f}x as often as chance.")
