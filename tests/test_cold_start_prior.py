"""Cold-start scorers built on text similarity: a log-popularity prior, textual twins' partners."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.cold_start import (ColdStartTask, choose_prior_weight, embedding_scorer, observed_log_prior, partner_shares,
                                 prior_mix_scorer, twin_partners_scorer)


def _task(truth_rows: list[list[int]], queries: list[int], n: int) -> ColdStartTask:
    r = [i for i, row in enumerate(truth_rows) for _ in row]
    c = [j for row in truth_rows for j in row]
    truth = sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(queries), n))
    self_mask = sp.csr_matrix((np.ones(len(queries), np.float32), (np.arange(len(queries)), queries)),
                              shape=(len(queries), n))
    return ColdStartTask(np.array(queries), truth, self_mask, np.arange(n).astype(str))


def _setup():
    """Items 0-1 are queries; 2-3 are their text twins; 4-5 are best-sellers. (n=30, most filler)"""
    n = 30
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[2], emb[3] = emb[0] + 0.01, emb[1] + 0.01
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    prior = np.zeros(n, np.float32)
    prior[4], prior[5] = np.log1p(1000.0), np.log1p(900.0)
    return emb, prior, n


def test_prior_mix_scorer_formula():
    emb, prior, _ = _setup()
    s = prior_mix_scorer(lambda items: emb[items] @ emb.T / 0.05, prior, 0.5)(np.array([1]))
    np.testing.assert_allclose(s[0], emb[1] @ emb.T / 0.05 + 0.5 * prior, rtol=1e-5)


def test_weight_follows_what_validation_rewards():
    emb, prior, n = _setup()
    text_right = _task([[2], [3]], [0, 1], n)  # the twins are the right answers: text alone wins
    w, values = choose_prior_weight(text_right, embedding_scorer(emb), prior)
    assert w == 0.0 and values[0.0] > values[1e3]
    popular_right = _task([[4, 5], [4, 5]], [0, 1], n)  # the best-sellers are: the prior must dominate
    w, values = choose_prior_weight(popular_right, embedding_scorer(emb), prior)
    assert w > 0.0 and values[w] == values[1e3] > values[0.0]
    top = np.argsort(-prior_mix_scorer(embedding_scorer(emb), prior, w)(np.array([0, 1])), axis=1)[:, :2]
    assert all(set(row) == {4, 5} for row in top)


def test_observed_prior_uses_sales_and_falls_back_to_text_for_unsold_candidates():
    counts = np.array([0, 9, 99])
    text = np.array([1.5, 7.0, 7.0], np.float32)
    np.testing.assert_allclose(observed_log_prior(counts, text), [1.5, np.log(10), np.log(100)], rtol=1e-6)
    np.testing.assert_allclose(observed_log_prior(counts), [0.0, np.log(10), np.log(100)], rtol=1e-6)


def test_a_small_prior_breaks_text_ties_toward_the_best_seller():
    """Two candidates equally similar to the query: the one that sold more ranks first once the prior has any
    weight, and a weight too small to outweigh a real similarity gap keeps text order."""
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.8, 0.6], [0.6, 0.8]], np.float32)
    prior = observed_log_prior(np.array([0, 5, 50, 500]))
    s = prior_mix_scorer(embedding_scorer(emb), prior, 0.01)(np.array([0]))[0]
    assert s[2] > s[1] > s[3]


def test_a_cold_item_gets_the_partners_of_its_textual_twin():
    """Item 0 is new and reads like item 1; 1 was bought with 2 (twice) and 3 (once); 4 and 5, bought together more
    often, read like nothing here. The cold item's ranking is 2, 3, then the rest."""
    baskets = sp.csr_matrix(np.array([[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0],
                                      [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]], np.float32))
    shares, counts = partner_shares(baskets)
    np.testing.assert_allclose(shares[1].toarray()[0], [0, 0, 2 / 3, 1 / 3, 0, 0], rtol=1e-6)
    assert counts.tolist() == [0, 3, 2, 1, 3, 3]
    emb = np.eye(6, dtype=np.float32)
    emb[0] = emb[1]
    score = twin_partners_scorer(embedding_scorer(emb), shares, counts, n_twins=2, temperature=0.01)(np.array([0]))[0]
    assert list(np.argsort(-score)[:2]) == [2, 3]
    assert score[2] > score[3] > max(score[4], score[5])
    # with a flat softmax the other twin's partners come in too (its text is equally far from everything else)
    flat = twin_partners_scorer(embedding_scorer(emb), shares, counts, n_twins=5, temperature=100.0)(np.array([0]))[0]
    assert flat[5] > 0 and flat[2] > flat[3]


def _rows(new_item_bought_with: str) -> tuple[pd.DataFrame, np.ndarray, pd.Timestamp]:
    """Before 1 March: 'twin' is bought with 'partner' (5 baskets), 'hit' alone in 40 baskets, 'other' with 'hit'
    (3). In March the new item 'new', which reads like 'twin', is bought with ``new_item_bought_with``."""
    baskets = ([["twin", "partner"]] * 5 + [["hit"]] * 40 + [["other", "hit"]] * 3
               + [["new", new_item_bought_with]] * 4)
    t0, start = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-01")
    rows = [{"user_id": f"u{b}", "item_id": item, "basket_id": f"b{b}",
             "timestamp": (t0 if b < len(baskets) - 4 else start) + pd.Timedelta(days=b % 20)}
            for b, basket in enumerate(baskets) for item in basket]
    return pd.DataFrame(rows), np.array(["new", "twin", "partner", "hit", "other"], dtype=object), start


def test_partner_prior_weight_follows_what_the_validation_window_rewards():
    """The new items of the validation window are bought with their twin's partner: no prior (weight 0); bought with
    the best-seller instead: the prior must carry it (the largest weight tried wins)."""
    from training.cold_start import PRIOR_WEIGHTS, choose_partner_prior_weight
    from training.data import build_interaction_data

    emb = np.eye(5, dtype=np.float32)
    emb[0] = emb[1]  # 'new' reads like 'twin'
    for bought_with, expect_prior in (("partner", False), ("hit", True)):
        rows, items, start = _rows(bought_with)
        fit = build_interaction_data(rows[rows["timestamp"] < start], pd.Series(items))
        weight, values, n_new = choose_partner_prior_weight(rows, fit.baskets, items, start, emb, n_twins=1)
        assert n_new == 1 and set(values) == set(PRIOR_WEIGHTS)
        if expect_prior:
            assert weight > 0 and values[weight] > values[0.0], values
        else:
            assert weight == 0.0 and values[0.0] > values[max(PRIOR_WEIGHTS)], values
    # no new item in the window: nothing to choose on
    rows, items, start = _rows("partner")
    late = start + pd.Timedelta(days=60)
    fit = build_interaction_data(rows[rows["timestamp"] < late], pd.Series(items))
    weight, values, n_new = choose_partner_prior_weight(rows, fit.baskets, items, late, emb)
    assert weight is None and values == {} and n_new == 0


def test_partner_policy_takes_its_weight_from_validation_config_or_nothing():
    """``fit_partner_policy``: chosen on the window (the best-seller case needs a prior), fixed by config, or none
    without a window; its scorer is the twins' partners plus that weight times the prior, and a policy refuses
    matrices in another item order."""
    from training.cold_start import fit_partner_policy, partner_shares, twin_partners_scorer
    from training.data import build_interaction_data

    emb = np.eye(5, dtype=np.float32)
    emb[0] = emb[1]
    rows, items, start = _rows("hit")
    fit = build_interaction_data(rows[rows["timestamp"] < start], pd.Series(items))
    train = build_interaction_data(rows, pd.Series(items))
    chosen = fit_partner_policy(rows, start, fit.baskets, train.baskets, items, emb, n_twins=1)
    assert chosen.prior_weight > 0 and chosen.chosen_from.startswith("validation window")
    assert chosen.validation_new_items == 1 and chosen.curve[chosen.prior_weight] == max(chosen.curve.values())
    np.testing.assert_allclose(chosen.prior, np.log1p(np.asarray((train.baskets > 0).sum(axis=0)).ravel()))
    fixed = fit_partner_policy(rows, start, fit.baskets, train.baskets, items, emb, n_twins=1, prior_weight=0.5)
    assert (fixed.prior_weight, fixed.chosen_from, fixed.curve) == (0.5, "config", None)
    none = fit_partner_policy(rows, None, fit.baskets, train.baskets, items, emb, n_twins=1)
    assert none.prior_weight == 0.0 and none.chosen_from.startswith("no temporal validation window")
    shares, counts = partner_shares(train.baskets)
    query = np.array([0])
    partners = twin_partners_scorer(embedding_scorer(emb), shares, counts, 1, 0.1)(query)
    np.testing.assert_allclose(fixed.scorer(embedding_scorer(emb), shares, counts)(query),
                               partners + 0.5 * fixed.prior[None, :], rtol=1e-6)
    fixed.aligned_to(items)
    with pytest.raises(ValueError, match="another item order"):
        fixed.aligned_to(list(reversed(items)))
    for bad in ({"n_twins": 0}, {"temperature": 0.0}, {"prior_weight": -1.0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            fit_partner_policy(rows, start, fit.baskets, train.baskets, items, emb, **bad)
