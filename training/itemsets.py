"""Frequent itemsets of any length and the association rules between them, on sparse matrices and bitsets.

The miner is Eclat (Zaki 2000) on vertical bitsets, counted level by level like Apriori (Agrawal & Srikant 1994),
every step a whole-array numpy/scipy operation (no per-basket or per-itemset Python loop):

* level 1: item counts are the column sums of the (n_baskets, n_items) basket matrix; only frequent items take
  part after that (the apriori property). They are relabelled **rarest first** (label 0 = least frequent), so in
  every itemset the first item is its rarest, and every longer itemset's baskets lie within that item's few
  baskets (the ordering Borgelt 2003 recommends for Eclat).
* level 2: pair counts. Where baskets are short (pair occurrences per basket few against the f x f count table),
  every pair occurrence is enumerated and counted with one ``np.bincount`` into a dense (f, f) table; where baskets
  are long (a few hundred items each), the sparse product ``X^T X`` in column blocks, each block against only the
  columns after it, is cheaper (:func:`_pair_counts`).
* level k -> k + 1 (k >= 2): Eclat's prefix classes. Two itemsets with the same first k - 1 items (``P + a`` and
  ``P + b``, a < b) join into ``P + a + b``. Each itemset keeps its baskets as a bitset **over its first item's
  baskets only** (``ceil(t / 64)`` uint64 words for a first item in ``t`` baskets, not ``n / 64``), so a join is
  the AND of two short bitsets and its count their ``np.bitwise_count``; candidates whose new pair (the two last
  items) is not frequent are dropped first. The AND of a frequent join is its bitset at the next level.

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
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

BLOCK_MULTIPLY_ADDS = 20_000_000  # per column block of the pair product X^T X: bounds its output
MIN_BLOCK_MULTIPLY_ADDS = 2_000_000  # below this a block's fixed cost outweighs the lower triangle it skips
CHUNK = 1 << 22  # pair occurrences enumerated, or bitset words ANDed, at a time (bounds the temporaries)
# pairs are enumerated (not multiplied) while occurrences <= ENUMERATE_RATIO x f^2 and the (f, f) table is at most
# ENUMERATE_MAX_CELLS. CPU ms measured (enumerate / product): Instacart 0.001 (4.6 M occurrences, f = 1,865)
# 75 / 150-180, 0.002 (3.0 M, 848) 31 / 82-99; Online Retail 0.005 (18.7 M, 1,549) 180-200 / 110-145 (load ~4)
ENUMERATE_RATIO = 6.0
ENUMERATE_MAX_CELLS = 1 << 25
BITMAP_BYTES = 256 * 1024 * 1024  # at most this much for the pairs' second items' basket bitmaps at a time


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
                      block_multiply_adds: int = BLOCK_MULTIPLY_ADDS, chunk: int = CHUNK,
                      pair_method: Literal["auto", "enumerate", "product"] = "auto",
                      bitmap_bytes: int = BITMAP_BYTES) -> FrequentItemsets:
    """All itemsets in at least ``min_support`` of the baskets, up to ``max_len`` items (None: any length).

    ``baskets``: (n_baskets, n_items) sparse, nonzero where a basket holds an item. Returns
    :class:`FrequentItemsets` in the basket matrix's item positions (the same itemsets and supports as mlxtend's
    ``fpgrowth(min_support=..., max_len=...)``). ``block_multiply_adds``, ``chunk``, ``pair_method`` and
    ``bitmap_bytes`` (the most the second items' basket bitmaps take at a time) change how the work is split and
    which pair counter runs, never the result."""
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
    order = frequent[np.argsort(counts[frequent], kind="stable")]  # (f,) item position of each label, rarest first
    x_csr, x_csc = _relabel(b, order)
    first, second, count = _pair_counts(x_csr, x_csc, threshold, block_multiply_adds, chunk, pair_method)
    levels = [(np.stack([first, second], axis=1), count)]  # label space, rows in lexicographic order
    if (max_len is None or max_len > 2) and len(first) > 1:
        pair_codes = first * f + second  # sorted: the frequent pairs, for the apriori check of each join
        bits, width = _pair_bitsets(x_csc, first, second, chunk, bitmap_bytes)
        k = 2
        while (max_len is None or k < max_len) and len(levels[-1][0]) > 1:
            keep_bits = max_len is None or k + 1 < max_len
            level, count, bits, width = _join(levels[-1][0], bits, width, pair_codes, f, threshold, keep_bits,
                                              chunk)
            if len(level) == 0:
                break
            levels.append((level, count))
            k += 1
    for labels, count in levels:  # back to item positions: each row ascending, rows lexicographic
        pos = np.sort(order[labels], axis=1)
        srt = np.lexsort(pos.T[::-1])
        items.append(pos[srt].astype(np.int64))
        out_counts.append(count[srt].astype(np.int64))
    return FrequentItemsets(n, items, out_counts)


def _relabel(b: sp.csr_matrix, order: np.ndarray) -> tuple[sp.csr_matrix, sp.csc_matrix]:
    """The basket matrix cut to the frequent items, column ``j`` = item ``order[j]``: (n, f) as CSR with each
    row's labels ascending, and as CSC with each column's baskets ascending (its tid-list)."""
    n, f = b.shape[0], len(order)
    label = np.full(b.shape[1], -1, np.int32)
    label[order] = np.arange(f, dtype=np.int32)
    lab = label[b.indices]
    keep = lab >= 0
    indptr = np.concatenate([[0], np.cumsum(keep)])[b.indptr]
    x = sp.csr_matrix((np.ones(int(indptr[-1]), np.float32), lab[keep], indptr), shape=(n, f))
    x_csc = x.tocsc()  # a counting sort: each column's baskets come out ascending
    return x_csc.tocsr(), x_csc  # and back: each row's labels ascending


def _pair_counts(x_csr: sp.csr_matrix, x_csc: sp.csc_matrix, threshold: int, block_multiply_adds: int,
                 chunk: int, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequent pairs of labels: (p,) ``first`` < ``second`` and their basket ``count``, sorted by (first,
    second). ``x_csr`` / ``x_csc``: the (n, f) relabelled basket matrix (:func:`_relabel`). ``method``:
    "enumerate" (every pair occurrence into one dense (f, f) histogram), "product" (``X^T X`` in column blocks)
    or "auto" (by their estimated costs, ``ENUMERATE_RATIO``)."""
    f = x_csr.shape[1]
    lens = np.diff(x_csr.indptr).astype(np.int64)
    occurrences = int((lens * (lens - 1) // 2).sum())
    if method == "auto":
        cheap = occurrences <= ENUMERATE_RATIO * f * f and f * f <= ENUMERATE_MAX_CELLS
        method = "enumerate" if cheap else "product"
    if method == "enumerate":
        table = _enumerate_pairs(x_csr, chunk)
        code = np.flatnonzero(table >= threshold)  # ascending: (first, second) order; first < second (rows sorted)
        return code // f, code % f, table[code]
    if method != "product":
        raise ValueError(f"pair_method = {method!r}: choose auto, enumerate or product")
    return _product_pairs(x_csr, x_csc, threshold, block_multiply_adds)


def _enumerate_pairs(x_csr: sp.csr_matrix, chunk: int) -> np.ndarray:
    """(f * f,) int64 pair histogram, ``table[a * f + b]`` = baskets holding labels a < b (zero elsewhere).
    ``x_csr``: (n, f) with each row's labels ascending. Entry ``e`` of a row pairs with the entries after it in
    that row; the entries are taken in runs of about ``chunk`` pair occurrences."""
    f, nnz = x_csr.shape[1], x_csr.nnz
    labels = x_csr.indices.astype(np.int64)
    lens = np.diff(x_csr.indptr).astype(np.int64)
    partners = np.repeat(x_csr.indptr[1:].astype(np.int64), lens) - 1 - np.arange(nnz, dtype=np.int64)  # (nnz,)
    ends = np.cumsum(partners)
    table = np.zeros(f * f, np.int64)
    start = 0
    while start < nnz:
        stop = max(int(np.searchsorted(ends, ends[start] - partners[start] + chunk, side="right")), start + 1)
        k = partners[start:stop]
        code = np.repeat(labels[start:stop] * f, k)
        code += labels[_gather(np.arange(start + 1, stop + 1), k)]
        table += np.bincount(code, minlength=f * f)
        start = stop
    return table


def _product_pairs(x_csr: sp.csr_matrix, x_csc: sp.csc_matrix, threshold: int,
                   block_multiply_adds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_pair_counts` by the sparse product ``X^T X`` ((n, f) ``X``), in blocks of consecutive columns
    each against only the columns after its first (the upper triangle, about half the work), blocks bounded in
    multiply-adds (at most ``block_multiply_adds``, and about an eighth of the whole)."""
    f = x_csr.shape[1]
    row_len = np.diff(x_csr.indptr).astype(np.float64)
    cost = np.asarray(x_csc.T @ row_len).ravel()  # (f,) multiply-adds of each row of X^T X
    budget = min(block_multiply_adds, max(cost.sum() / 8, MIN_BLOCK_MULTIPLY_ADDS))
    bounds, acc = [0], 0.0
    for i, c in enumerate(cost):
        if acc and acc + c > budget:
            bounds.append(i)
            acc = 0.0
        acc += c
    bounds.append(f)
    xs, ys, counts = [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        co = (x_csc[:, lo:hi].T.tocsr() @ x_csr[:, lo:]).tocoo()
        x = co.row.astype(np.int64) + lo
        y = co.col.astype(np.int64) + lo
        keep = (y > x) & (co.data >= threshold)
        xs.append(x[keep])
        ys.append(y[keep])
        counts.append(np.rint(co.data[keep]).astype(np.int64))
    x, y, count = np.concatenate(xs), np.concatenate(ys), np.concatenate(counts)
    srt = np.lexsort((y, x))
    return x[srt], y[srt], count[srt]


def _pair_bitsets(x_csc: sp.csc_matrix, first: np.ndarray, second: np.ndarray, chunk: int,
                  bitmap_bytes: int = BITMAP_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Each frequent pair's baskets as a bitset over its first item's baskets: bit j of pair p is set when the
    j-th basket of ``first[p]`` holds ``second[p]``. Returns (flat uint64 words, (p,) words per pair =
    ``ceil(t / 64)`` for a first item in t baskets); pair p's words follow pair p - 1's. Each first item's
    baskets are tested in a bit-packed copy of the second item's (padding tests a basket no item holds); the
    second items' bitmaps (n / 8 bytes each) are made a group at a time, at most ``bitmap_bytes`` together."""
    n = x_csc.shape[0]
    t = np.diff(x_csc.indptr).astype(np.int64)
    words = (t + 63) // 64
    # the first items' basket lists padded to whole words with basket n
    firsts = np.unique(first)
    padded_len = 64 * words[firsts]
    padded_at = np.zeros(x_csc.shape[1], np.int64)
    padded_at[firsts] = np.cumsum(padded_len) - padded_len
    padded = np.full(int(padded_len.sum()), n, np.int64)
    padded[_gather(padded_at[firsts], t[firsts])] = x_csc.indices[_gather(x_csc.indptr[firsts], t[firsts])]
    width = words[first]
    offset = np.cumsum(width) - width  # (p,) where each pair's words start in the output
    out = np.empty(int(width.sum()), np.uint64)
    row_bytes = (n + 8) // 8  # a second item's bitmap over baskets 0..n (basket n: the padding, empty)
    seconds = np.unique(second)
    per_group = max(1, bitmap_bytes // row_bytes)
    row_of = np.zeros(x_csc.shape[1], np.int64)
    for g in range(0, len(seconds), per_group):
        group = seconds[g:g + per_group]
        row_of[group] = np.arange(len(group))
        baskets = x_csc.indices[_gather(x_csc.indptr[group], t[group])].astype(np.int64)
        byte = np.repeat(np.arange(len(group), dtype=np.int64) * row_bytes, t[group]) + (baskets >> 3)
        starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])  # non-decreasing: each list is sorted
        bitmap = np.zeros(len(group) * row_bytes, np.uint8)
        if len(starts):
            bitmap[byte[starts]] = np.bitwise_or.reduceat(
                np.left_shift(np.uint8(1), (baskets & 7).astype(np.uint8)), starts)
        pairs = np.flatnonzero((second >= group[0]) & (second <= group[-1]))  # ascending; group: a run of seconds
        ends = np.cumsum(width[pairs])
        lo = 0
        while lo < len(pairs):  # runs of pairs of about `chunk` tested baskets
            hi = max(int(np.searchsorted(ends, ends[lo] - width[pairs[lo]] + chunk // 64, side="right")), lo + 1)
            p = pairs[lo:hi]
            w = width[p]
            basket = padded[_gather(padded_at[first[p]], 64 * w)]
            held = bitmap[np.repeat(row_of[second[p]] * row_bytes, 64 * w) + (basket >> 3)]
            held >>= (basket & 7).astype(np.uint8)
            held &= np.uint8(1)
            out[_gather(offset[p], w)] = np.packbits(held, bitorder="little").view(np.uint64)
            lo = hi
    return out, width


def _join(level: np.ndarray, bits: np.ndarray, width: np.ndarray, pair_codes: np.ndarray, f: int, threshold: int,
          keep_bits: bool, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The frequent itemsets one item longer than ``level`` ((m, k) labels, rows lexicographic; itemset i's bitset
    is ``width[i]`` words of ``bits`` after those of itemsets < i, over its first item's baskets). Itemsets x < y
    with the same first k - 1 items join into x's items + y's last item, kept when that last pair is frequent
    (``pair_codes``: sorted ``a * f + b`` of the frequent pairs) and ``popcount(bits(x) & bits(y)) >=
    threshold``. Returns the new level ((m', k + 1), lexicographic), its (m',) counts, and, when ``keep_bits``,
    its bitsets and widths in the same form (else None, None)."""
    m, k = level.shape
    new_class = np.r_[True, np.any(level[1:, :-1] != level[:-1, :-1], axis=1)]
    class_end = np.repeat(np.r_[np.flatnonzero(new_class)[1:], m], np.diff(np.r_[np.flatnonzero(new_class), m]))
    partners = class_end - 1 - np.arange(m)  # (m,) later itemsets in the same class
    offset = np.cumsum(width) - width
    counts, pairs_x, pairs_y, new_bits, new_width = [], [], [], [], []
    # candidates (x, y) are made for a block of x at a time, about `chunk` of them (x-major, y ascending: the
    # output stays lexicographic), so their index arrays stay bounded however many itemsets share a prefix
    cum = np.cumsum(partners)
    r0 = 0
    while r0 < m:
        r1 = max(int(np.searchsorted(cum, (cum[r0 - 1] if r0 else 0) + chunk, side="right")), r0 + 1)
        rows = np.arange(r0, r1, dtype=np.int64)
        x = np.repeat(rows, partners[r0:r1])
        y = _gather(rows + 1, partners[r0:r1])
        r0 = r1
        if not len(x):
            continue
        code = level[x, -1].astype(np.int64) * f + level[y, -1]
        at = np.minimum(np.searchsorted(pair_codes, code), len(pair_codes) - 1)
        ok = pair_codes[at] == code  # apriori: the pair of the two last items must be frequent
        x, y = x[ok], y[ok]
        w = width[x]  # x and y share their first item, so their bitsets' widths
        ends = np.cumsum(w)
        lo = 0
        while lo < len(x):  # runs of candidates of about `chunk` words
            hi = max(int(np.searchsorted(ends, ends[lo] - w[lo] + chunk, side="right")), lo + 1)
            wx = w[lo:hi]
            at_x = _gather(offset[x[lo:hi]], wx)
            anded = bits[at_x] & bits[at_x + np.repeat(offset[y[lo:hi]] - offset[x[lo:hi]], wx)]
            seg = np.cumsum(wx) - wx
            c = np.add.reduceat(np.bitwise_count(anded), seg, dtype=np.int64)
            keep = c >= threshold
            counts.append(c[keep])
            pairs_x.append(x[lo:hi][keep])
            pairs_y.append(y[lo:hi][keep])
            if keep_bits:
                new_bits.append(anded[_gather(seg[keep], wx[keep])])
                new_width.append(wx[keep])
            lo = hi
    if not counts:
        return np.zeros((0, k + 1), level.dtype), np.zeros(0, np.int64), None, None
    xs, ys = np.concatenate(pairs_x), np.concatenate(pairs_y)
    out = np.concatenate([level[xs], level[ys, -1:]], axis=1)
    if not keep_bits:
        return out, np.concatenate(counts), None, None
    return out, np.concatenate(counts), np.concatenate(new_bits), np.concatenate(new_width)


def _gather(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths),) int64 positions ``starts[i], ..., starts[i] + lengths[i] - 1`` for each i in turn: the
    entries of several CSC columns (``starts`` = their ``indptr``) as one index array."""
    lengths = lengths.astype(np.int64)
    offsets = np.repeat(starts.astype(np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


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
