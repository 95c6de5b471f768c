"""Frequent itemsets of any length and the association rules between them, on sparse matrices.

The miner is level-wise over vertical tid-lists (Zaki's Eclat, 2000, counted like Apriori's levels, Agrawal &
Srikant 1994), every step a whole-array operation:

* level 1: item counts are the column sums of the (n_baskets, n_items) basket matrix ``B``; only the frequent
  items' columns (``B_f``, (n_baskets, f)) take part after that (the apriori property).
* level k -> k + 1: Eclat's prefix classes. Two itemsets of level k with the same first k - 1 items (``P + a`` and
  ``P + b``, a < b) join into ``P + a + b``, held by ``|tid(P + a) & tid(P + b)|`` baskets. With ``M_k``
  ((n_baskets, n_k) CSC, 1 where basket b holds itemset x) re-rowed so that each row is one (class, basket)
  pair (``T``; that pair's row is where it sits in the parent level's tid-lists, found by binary search), every
  class's joins are counted at once by the sparse product ``T^T T`` (itemsets of different classes share no row).
  The product is taken in blocks of columns, each against only the columns after it (at level 1, one class, split
  in 8 to skip most of the lower triangle), each bounded in multiply-adds so memory stays bounded.
* the kept itemsets' tid-lists (``M_{k+1}``) are the intersections of the two joined tid-lists, only while a longer
  level is still to be counted: the shorter list scanned against a bit-packed copy of the longer one, or, for lists
  of equal length, merged (scipy's elementwise product of the gathered columns).

Rules follow Agrawal et al. (1993): every split of a frequent itemset ``Z`` into a non-empty antecedent ``A`` and
consequent ``C = Z - A``, with support(A -> C) = support(Z), confidence = support(Z) / support(A), lift (Brin et al.
1997) = confidence / support(C), leverage (Piatetsky-Shapiro 1991) = support(Z) - support(A) support(C), and
conviction (Brin et al. 1997) = (1 - support(C)) / (1 - confidence), infinite at confidence 1. Every value is
computed in mlxtend's floating-point order (``support = count / n``; confidence as
``(s_Z * n) / (s_A * n)``), so the rule sets agree with ``mlxtend.frequent_patterns.fpgrowth`` +
``association_rules`` bit for bit, thresholds included (``benchmarks.itemsets``).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import scipy.sparse as sp

BLOCK_MULTIPLY_ADDS = 20_000_000  # per block of T^T T: bounds its output (<= 12 bytes an entry)
MIN_BLOCK_MULTIPLY_ADDS = 2_000_000  # below this a block's fixed cost outweighs the lower triangle it skips
# a tid-list longer than SKEW x its partner is bit-tested, not merged (_intersect). CPU seconds measured for
# merge-only / SKEW 16 / SKEW 0: Instacart 0.001 max_len 4 0.51 / 0.34 / 0.30, Online Retail 0.005 any length
# 0.43 / 0.45 / 0.44 (load ~15)
SKEW = 1
BITMAP_BYTES = 256 * 1024 * 1024  # at most this much for the bit-packed long tid-lists


class ItemsetConfigError(ValueError):
    """A threshold or length that cannot be mined; the message names the setting and what to set."""


def check_settings(min_support: float, max_len: int | None, min_confidence: float = 0.0,
                   where: str = "association_rules") -> None:
    """Raise :class:`ItemsetConfigError` naming the setting when ``min_support`` is outside (0, 1], ``max_len``
    is not None or an integer >= 1, or ``min_confidence`` is outside [0, 1]."""
    if isinstance(min_support, bool) or not isinstance(min_support, (int, float)) or not 0 < min_support <= 1:
        raise ItemsetConfigError(f"{where}.min_support = {min_support!r}: set a fraction of baskets in (0, 1], "
                                 "e.g. 0.005 (an itemset must be in at least that share of baskets)")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer))
                                or max_len < 1):
        raise ItemsetConfigError(f"{where}.max_len = {max_len!r}: set an integer >= 1 (2 = pairs, 3 adds rules "
                                 "with two-item antecedents) or null for itemsets of any length")
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) \
            or not 0 <= min_confidence <= 1:
        raise ItemsetConfigError(f"{where}.min_confidence = {min_confidence!r}: set a value in [0, 1]")


def min_count(n_baskets: int, min_support: float) -> int:
    """The smallest basket count ``c`` with ``c / n_baskets >= min_support`` in float64, the test mlxtend
    applies, so a count threshold keeps exactly the itemsets mlxtend keeps."""
    c = max(int(np.ceil(min_support * n_baskets)), 1)
    while c > 1 and (c - 1) / n_baskets >= min_support:
        c -= 1
    while c / n_baskets < min_support:
        c += 1
    return c


@dataclass
class FrequentItemsets:
    """Frequent itemsets by length. ``items[k - 1]``: (n_k, k) int64 item positions (columns of the basket
    matrix), ascending within a row, rows in lexicographic order; ``counts[k - 1]``: (n_k,) int64 baskets holding
    each. ``n_baskets``: the basket count supports are divided by."""

    n_baskets: int
    items: list[np.ndarray]
    counts: list[np.ndarray]

    def __len__(self) -> int:
        return int(sum(len(c) for c in self.counts))

    def supports(self, k: int) -> np.ndarray:
        """(n_k,) float64 supports of the length-``k`` itemsets, ``count / n`` as mlxtend divides."""
        return self.counts[k - 1] / float(self.n_baskets)

    def to_frame(self) -> pd.DataFrame:
        """One row per itemset: ``itemset`` (tuple of item positions), ``length``, ``count``, ``support``."""
        rows = [(tuple(map(int, r)), k, int(c)) for k, (x, cs) in enumerate(zip(self.items, self.counts), 1)
                for r, c in zip(x, cs)]
        df = pd.DataFrame(rows, columns=["itemset", "length", "count"])
        df["support"] = df["count"] / float(self.n_baskets)
        return df


def binary_csr(baskets: sp.spmatrix) -> sp.csr_matrix:
    """``baskets`` as a CSR of float32 ones, duplicates merged and explicit zeros dropped."""
    b = sp.csr_matrix(baskets, copy=True)
    b.sum_duplicates()
    b.eliminate_zeros()
    b.data = np.ones_like(b.data, dtype=np.float32)
    return b


def frequent_itemsets(baskets: sp.spmatrix, min_support: float, max_len: int | None = None,
                      block_multiply_adds: int = BLOCK_MULTIPLY_ADDS) -> FrequentItemsets:
    """All itemsets in at least ``min_support`` of the baskets, up to ``max_len`` items (None: any length).

    ``baskets``: (n_baskets, n_items) sparse, nonzero where a basket holds an item. Returns
    :class:`FrequentItemsets` in the basket matrix's item positions (the same itemsets and supports as mlxtend's
    ``fpgrowth(min_support=..., max_len=...)``)."""
    check_settings(min_support, max_len)
    b = binary_csr(baskets)
    n = int(b.shape[0])
    if n == 0:
        return FrequentItemsets(0, [np.zeros((0, 1), np.int64)], [np.zeros(0, np.int64)])
    threshold = min_count(n, min_support)
    counts = np.bincount(b.indices, minlength=b.shape[1]).astype(np.int64)
    frequent = np.flatnonzero(counts >= threshold)
    items, out_counts = [frequent[:, None].astype(np.int64)], [counts[frequent]]
    f = len(frequent)
    if (max_len is not None and max_len < 2) or f < 2:
        return FrequentItemsets(n, items, out_counts)
    bf = b[:, frequent].tocsc()  # (n, f) frequent columns, local item index = position in `frequent`
    bf.sort_indices()
    tid = bf  # M_1: each item's baskets
    local = np.arange(f, dtype=np.int64)[:, None]
    prefix = np.zeros(f, np.int64)  # at level 1 every item is in the empty prefix's class
    parent_tid = None
    k = 1
    while (max_len is None or k < max_len) and len(local) > 1:
        local_last = local[:, -1]
        parent, partner, count = _extensions(tid, prefix, parent_tid, threshold, block_multiply_adds)
        if len(parent) == 0:
            break
        item = local_last[partner]
        prefix = parent
        local = np.concatenate([local[parent], item[:, None]], axis=1)
        k += 1
        items.append(frequent[local])
        out_counts.append(count)
        if max_len is None or k < max_len:
            parent_tid, tid = tid, _intersect(tid, parent, partner, count)
    return FrequentItemsets(n, items, out_counts)


def _extensions(tid: sp.csc_matrix, prefix: np.ndarray, parent_tid: sp.csc_matrix | None, threshold: int,
                block_multiply_adds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequent itemsets one item longer than the level whose tid-lists are ``tid``'s columns ((n, m) CSC), made
    by joining two itemsets of the same prefix class (Eclat's equivalence classes, Zaki 2000): ``x = P + a`` and
    ``y = P + b`` with a < b give ``P + a + b``, in ``|tid(x) & tid(y)|`` baskets. ``prefix``: (m,) class of each
    itemset (its parent at the level before, whose tid-lists are ``parent_tid``; None at level 1, one class);
    itemsets of a class are contiguous and sorted by last item. All classes' joins are one sparse product
    ``T^T T``, where ``T`` has a row per (class, basket) pair, so items of different classes never meet. Returns (x, y, count) arrays sorted by
    (x, y): the new level, in lexicographic order, is ``x``'s items then ``y``'s last item."""
    n, m = tid.shape
    one_class = parent_tid is None
    if one_class:  # level 1: T is the tid-lists themselves
        t = tid
    else:
        # T's rows are the parent level's (itemset, basket) entries: the row of basket b in class P is where
        # (P, b) sits in the parent's tid-lists (b is there: tid(P + a) is within tid(P)); a binary search of the
        # parent's sorted (column, row) keys finds it
        cols = np.repeat(prefix, np.diff(tid.indptr))
        parent_cols = np.repeat(np.arange(parent_tid.shape[1], dtype=np.int64), np.diff(parent_tid.indptr))
        row = np.searchsorted(parent_cols * n + parent_tid.indices, cols * n + tid.indices)
        t = sp.csc_matrix((tid.data, row.astype(np.int64), tid.indptr), shape=(parent_tid.nnz, m))
    t_rows = t.tocsr()
    row_len = np.diff(t_rows.indptr).astype(np.float64)
    cost = np.asarray(t.T @ row_len).ravel()  # multiply-adds of each itemset's row of T^T T
    # blocks of consecutive itemsets: a block starting at itemset lo joins only itemsets >= lo (the product's
    # upper part). With one class (level 1) the lower triangle is half the work, so it is split in 8; later
    # levels' classes are small (T^T T is block-diagonal) and blocks only keep each product within the budget
    split = max(cost.sum() / 8, MIN_BLOCK_MULTIPLY_ADDS) if one_class else float("inf")
    budget = min(block_multiply_adds, split)
    bounds, acc = [0], 0.0
    for i, c in enumerate(cost):
        if acc and acc + c > budget:
            bounds.append(i)
            acc = 0.0
        acc += c
    bounds.append(m)
    xs, ys, counts = [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        co = (t[:, lo:hi].T.tocsr() @ t_rows[:, lo:]).tocoo()
        x = co.row.astype(np.int64) + lo
        co.col = co.col + lo
        keep = (co.col > x) & (co.data >= threshold)
        xs.append(x[keep])
        ys.append(co.col[keep].astype(np.int64))
        counts.append(np.rint(co.data[keep]).astype(np.int64))
    x, y, count = np.concatenate(xs), np.concatenate(ys), np.concatenate(counts)
    srt = np.lexsort((y, x))
    return x[srt], y[srt], count[srt]


def _intersect(tid: sp.csc_matrix, x: np.ndarray, y: np.ndarray, count: np.ndarray,
               chunk: int = 20_000_000) -> sp.csc_matrix:
    """(n, len(x)) CSC tid-lists of the joined itemsets: ``tid(x[t]) & tid(y[t])``. A pair of lists of similar
    length is merged (scipy's elementwise product of the gathered columns, in chunks of about ``chunk`` gathered
    entries); when one list is more than ``SKEW`` times the other (a rare item with a best-seller), only the
    short one is scanned, each basket tested in a bit-packed copy of the long one. ``count``: their known sizes
    (checked)."""
    n = tid.shape[0]
    lens = np.diff(tid.indptr).astype(np.int64)
    short, long_ = np.minimum(lens[x], lens[y]), np.maximum(lens[x], lens[y])
    skewed = long_ > SKEW * np.maximum(short, 1)
    big = np.unique(np.where(lens[x] >= lens[y], x, y)[skewed])
    words = (n + 63) // 64
    if len(big) * words * 8 > BITMAP_BYTES:  # keep the bitmaps within budget: the longest lists first
        big = np.sort(big[np.argsort(-lens[big], kind="stable")][:BITMAP_BYTES // (words * 8)])
        skewed &= np.isin(np.where(lens[x] >= lens[y], x, y), big)
    indptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    indices = np.empty(int(indptr[-1]), np.int32)
    merge = np.flatnonzero(~skewed)
    if len(merge):
        xm, ym = x[merge], y[merge]
        work = np.cumsum(lens[xm] + lens[ym])
        first = 0
        while first < len(merge):
            stop = max(int(np.searchsorted(work, work[first] - (lens[xm[first]] + lens[ym[first]]) + chunk,
                                           side="right")), first + 1)
            part = tid[:, xm[first:stop]].multiply(tid[:, ym[first:stop]]).tocsc()
            part.sort_indices()
            _place(indices, indptr, merge[first:stop], part.indices, np.diff(part.indptr), count)
            first = stop
    scan = np.flatnonzero(skewed)
    if len(scan):
        col_of = np.full(tid.shape[1], -1, np.int64)
        col_of[big] = np.arange(len(big))
        bits = np.zeros(len(big) * words, np.uint64)
        cols = np.repeat(np.arange(len(big), dtype=np.int64), lens[big])
        rows = tid.indices[_gather(tid.indptr[big], lens[big])].astype(np.int64)
        word = cols * words + (rows >> 6)  # non-decreasing: each list is sorted
        starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
        bits[word[starts]] = np.bitwise_or.reduceat(np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64)),
                                                    starts)
        xs, ys = x[scan], y[scan]
        small = np.where(lens[xs] < lens[ys], xs, ys)
        other = col_of[np.where(lens[xs] < lens[ys], ys, xs)]
        ln = lens[small]
        cand = tid.indices[_gather(tid.indptr[small], ln)].astype(np.int64)
        held = (bits[np.repeat(other * words, ln) + (cand >> 6)] >> (cand & 63).astype(np.uint64)) & np.uint64(1)
        keep = held.astype(bool)
        kept_per = np.bincount(np.repeat(np.arange(len(scan)), ln)[keep], minlength=len(scan))
        _place(indices, indptr, scan, cand[keep].astype(np.int32), kept_per, count)
    return sp.csc_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n, len(x)))


def _gather(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths),) int64 positions ``starts[i], ..., starts[i] + lengths[i] - 1`` for each i in turn: the
    entries of several CSC columns (``starts`` = their ``indptr``) as one index array."""
    lengths = lengths.astype(np.int64)
    offsets = np.repeat(starts.astype(np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def _place(indices: np.ndarray, indptr: np.ndarray, which: np.ndarray, values: np.ndarray, lengths: np.ndarray,
           count: np.ndarray) -> None:
    """Write the tid-lists of itemsets ``which`` ((w,), ascending), concatenated in ``values`` with ``lengths``
    (w,), into their places of the CSC arrays ``indices``/``indptr``; each length must equal ``count``."""
    if not np.array_equal(lengths, count[which]):
        raise AssertionError("tid-list sizes disagree with the counted supports")
    indices[_gather(indptr[which], lengths)] = values


RULE_METRICS = ("antecedent_support", "consequent_support", "support", "confidence", "lift", "leverage",
                "conviction")


@dataclass
class ItemsetRules:
    """Association rules ``A -> C`` between itemsets, one entry per rule (R rules).

    ``antecedents`` / ``consequents``: (R, w) int64 item positions, ascending, padded with -1 on the right
    (w = longest itemset - 1); ``antecedent_len`` / ``consequent_len``: (R,) int64; ``count``: (R,) baskets
    holding A and C; ``metrics``: name -> (R,) float64 for each of :data:`RULE_METRICS`."""

    n_baskets: int
    antecedents: np.ndarray
    consequents: np.ndarray
    antecedent_len: np.ndarray
    consequent_len: np.ndarray
    count: np.ndarray
    metrics: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.count)

    def select(self, mask: np.ndarray) -> "ItemsetRules":
        """The rules where ``mask`` (R,) is true, in order."""
        return ItemsetRules(self.n_baskets, self.antecedents[mask], self.consequents[mask],
                            self.antecedent_len[mask], self.consequent_len[mask], self.count[mask],
                            {k: v[mask] for k, v in self.metrics.items()})

    def keys(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(antecedent, consequent) item-position tuples, one per rule (for comparisons and display)."""
        return [(tuple(int(i) for i in a[:la]), tuple(int(i) for i in c[:lc]))
                for a, c, la, lc in zip(self.antecedents.tolist(), self.consequents.tolist(),
                                        self.antecedent_len.tolist(), self.consequent_len.tolist())]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame: ``antecedent`` and ``consequent`` as tuples of item positions, ``count`` and the
        metrics, sorted by lift, then confidence, descending."""
        keys = self.keys()
        df = pd.DataFrame({"antecedent": [a for a, _ in keys], "consequent": [c for _, c in keys],
                           "count": self.count, **self.metrics})
        return df.sort_values(["lift", "confidence"], ascending=False, kind="stable", ignore_index=True)


def _row_keys(x: np.ndarray) -> np.ndarray:
    """(n, k) non-negative ints as (n,) byte strings whose order and equality are the rows' (big-endian)."""
    be = np.ascontiguousarray(x.astype(">i8"))
    return be.view(np.dtype((np.void, 8 * x.shape[1]))).ravel()


def _positions(level_keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Index of each of ``rows`` ((r, k)) in the sorted ``level_keys`` (every row must be there: the apriori
    property guarantees subsets of frequent itemsets are frequent)."""
    q = _row_keys(rows)
    at = np.searchsorted(level_keys, q)
    if len(q) and (at.max() >= len(level_keys) or not np.all(level_keys[at] == q)):
        raise AssertionError("a subset of a frequent itemset is missing from the itemsets")
    return at


def association_rules(itemsets: FrequentItemsets, min_confidence: float = 0.0,
                      max_consequent_len: int | None = None) -> ItemsetRules:
    """Every rule ``A -> Z - A`` of every frequent itemset ``Z`` (length >= 2) with confidence >=
    ``min_confidence`` (and at most ``max_consequent_len`` consequent items when given), with the metrics of
    :data:`RULE_METRICS` computed as mlxtend's ``association_rules`` computes them."""
    check_settings(1.0, None, min_confidence)
    n = float(itemsets.n_baskets)
    width = max(len(itemsets.items) - 1, 1)
    keys = [_row_keys(x) for x in itemsets.items]  # rows are lexicographic, so these are sorted
    sup = [itemsets.supports(k) for k in range(1, len(itemsets.items) + 1)]
    parts: list[tuple] = []
    for k in range(2, len(itemsets.items) + 1):
        x, s_z, cnt = itemsets.items[k - 1], sup[k - 1], itemsets.counts[k - 1]
        if len(x) == 0:
            continue
        for a_len in range(k - 1, 0, -1):
            if max_consequent_len is not None and k - a_len > max_consequent_len:
                continue
            for pos in combinations(range(k), a_len):
                rest = [i for i in range(k) if i not in pos]
                a, c = x[:, list(pos)], x[:, rest]
                s_a = sup[a_len - 1][_positions(keys[a_len - 1], a)]
                s_c = sup[k - a_len - 1][_positions(keys[k - a_len - 1], c)]
                conf = (s_z * n) / (s_a * n)  # mlxtend: sAC * (num_itemsets - 0) / (sA * (num_itemsets - 0) - 0)
                ok = conf >= min_confidence
                if ok.any():
                    parts.append((a[ok], c[ok], s_z[ok], s_a[ok], s_c[ok], conf[ok], cnt[ok]))
    if not parts:
        empty = np.zeros(0, np.float64)
        return ItemsetRules(itemsets.n_baskets, np.zeros((0, width), np.int64), np.zeros((0, width), np.int64),
                            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                            {m: empty for m in RULE_METRICS})
    pad = lambda arr: np.pad(arr, ((0, 0), (0, width - arr.shape[1])), constant_values=-1)  # noqa: E731
    ante = np.concatenate([pad(p[0]) for p in parts])
    cons = np.concatenate([pad(p[1]) for p in parts])
    a_len = np.concatenate([np.full(len(p[0]), p[0].shape[1], np.int64) for p in parts])
    c_len = np.concatenate([np.full(len(p[1]), p[1].shape[1], np.int64) for p in parts])
    s_z, s_a, s_c, conf, cnt = (np.concatenate([p[i] for p in parts]) for i in range(2, 7))
    lift = conf / s_c
    leverage = s_z - s_a * s_c
    conviction = np.full(len(conf), np.inf)
    below = conf < 1.0
    conviction[below] = (1.0 - s_c[below]) / (1.0 - conf[below])
    return ItemsetRules(itemsets.n_baskets, ante, cons, a_len, c_len, cnt,
                        {"antecedent_support": s_a, "consequent_support": s_c, "support": s_z, "confidence": conf,
                         "lift": lift, "leverage": leverage, "conviction": conviction})


def itemset_rules(baskets: sp.spmatrix, min_support: float, min_confidence: float = 0.0,
                  max_len: int | None = None, max_consequent_len: int | None = None) -> ItemsetRules:
    """Frequent itemsets of ``baskets`` ((n_baskets, n_items) sparse) up to ``max_len`` items, then their rules
    (:func:`association_rules`)."""
    check_settings(min_support, max_len, min_confidence)
    return association_rules(frequent_itemsets(baskets, min_support, max_len), min_confidence, max_consequent_len)
