"""The live service's hot paths against plain references: the sampled top-k bound gives exactly the ranking
rule's answer, and the co-purchase counter exactly the dense basket product."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from serving.service.evidence import Evidence
from serving.service.ranking import top_positions


def reference_top(scores, mask, k, positive=False, never=None):
    """The rule spelled out: a full stable sort, best first, ties to the lower position, NaN never chosen."""
    s = np.array(scores, np.float64)
    s[np.isnan(s)] = -np.inf
    if mask is not None:
        s[~mask] = -np.inf
    if never is not None:
        s[never] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    keep = np.isfinite(s[order]) & ((s[order] > 0) if positive else True)
    return order[keep]


@pytest.mark.parametrize("n", [50, 1500, 3907, 40981])
def test_top_positions_equals_the_full_sort(n):
    rng = np.random.default_rng(n)
    for trial in range(40):
        kind = trial % 4
        if kind == 0:  # continuous, float32
            s = rng.normal(size=n).astype(np.float32)
        elif kind == 1:  # heavy ties (counts) and zeros
            s = rng.integers(0, 4, n).astype(np.float32)
        elif kind == 2:  # sorted by popularity, a few non-finite
            s = np.sort(rng.exponential(size=n))[::-1].copy()
            s[rng.choice(n, 5)] = np.nan
            s[rng.choice(n, 5)] = -np.inf
        else:  # mostly masked out
            s = rng.normal(size=n)
        mask = rng.random(n) < (0.01 if kind == 3 else 0.5) if trial % 3 == 0 else None
        never = rng.choice(n, 5, replace=False) if trial % 2 else None
        for k in (1, 10, 100):
            for positive in (False, True):
                got = top_positions(s, mask, k, positive, never)
                want = reference_top(s, mask, k, positive, never)
                assert got.tolist() == want.tolist(), (n, trial, k, positive)


def test_co_matrix_equals_the_dense_basket_product():
    rng = np.random.default_rng(0)
    b = sp.random(3000, 400, density=0.02, format="csr", random_state=1)
    b.data[:] = 1
    dense = (b.T @ b).toarray().astype(np.int64)
    ev = Evidence(b)
    for _ in range(30):
        anchors = rng.choice(400, rng.integers(1, 70), replace=False)
        cand = rng.choice(400, rng.integers(1, 30), replace=False)
        assert np.array_equal(ev.co_matrix(anchors, cand), dense[np.ix_(anchors, cand)])


def test_pairs_from_kept_vectors_equal_the_counted_ones():
    """Online Retail-sized catalogs read pairs from the kept co-purchase vectors, larger ones count them from the
    basket lists: the same counts, and the same evidence for a cart."""
    rng = np.random.default_rng(1)
    b = sp.random(2000, 300, density=0.03, format="csr", random_state=2)
    b.data[:] = 1
    kept, counted = Evidence(b), Evidence(b)
    counted.keeps_all = False
    assert kept.keeps_all
    for _ in range(20):
        anchors = rng.choice(300, rng.integers(1, 8), replace=False)
        cand = rng.choice(300, 10, replace=False)
        assert np.array_equal(kept.pairs(anchors, cand), counted.pairs(anchors, cand))
        assert kept.best_anchor(anchors, cand) == counted.best_anchor(anchors, cand)
        assert kept.pair(int(anchors[0]), cand) == counted.pair(int(anchors[0]), cand)


def test_factor_cart_top_equals_the_top_of_every_score(tmp_path):
    """A factor model's cart top k, scored by decreasing factor norm until no item left can reach it, is the top k
    of the full scores to the bit, with filters, exclusions and any k."""
    from serving.service.scorers import FACTOR_BLOCK, FactorScorer

    rng = np.random.default_rng(5)
    n, d = 6 * FACTOR_BLOCK + 77, 16
    scorer = FactorScorer.__new__(FactorScorer)  # the arrays only: no export needed for the scoring rule
    scorer.v = (rng.normal(size=(n, d)) * rng.exponential(size=(n, 1)) ** 2).astype(np.float32)
    scorer.l2, scorer.n_items = 0.1, n
    exact = np.linalg.norm(scorer.v.astype(np.float64), axis=1)
    scorer.by_norm = np.argsort(-exact, kind="stable")
    scorer.v_by_norm = np.ascontiguousarray(scorer.v[scorer.by_norm])
    scorer.norm_by_norm = exact[scorer.by_norm]
    stopped = 0
    for trial in range(60):
        items = rng.choice(n, 5, replace=False)
        weights = rng.uniform(0.5, 3, 5).astype(np.float32)
        mask = rng.random(n) < 0.3 if trial % 3 == 0 else None
        k = int(rng.choice([1, 10, 100]))
        full = scorer.cart_scores(items, weights)
        idx, read = scorer.cart_top(items, weights, mask, k, never=items)
        assert idx.tolist() == top_positions(full, mask, k, never=items).tolist(), trial
        assert np.array_equal(read[idx], full[idx])
        stopped += bool(np.isinf(read).any())
    assert stopped > 0  # the bound did cut the scoring short
