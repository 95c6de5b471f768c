"""The hybrid's pieces: candidate-only z-scores, recency-weighted histories, and a weight search that
can always fall back to its best single signal."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.data import build_interaction_data
from training.hybrid_tuning import tune_weights, weight_trials
from training.models.hybrid import SIGNALS, Hybrid, recency_weights, trend_scores, zscore_rows


def test_zscore_rows_ignores_history_items():
    x = np.array([[100.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]], np.float32)
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]]))
    z = zscore_rows(x, seen)
    # row 0: the seen item's extreme score neither shifts nor squashes the candidates
    np.testing.assert_allclose(z[0, 1:], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-5)
    assert z[0, 0] == 0.0
    np.testing.assert_array_equal(z[1], 0.0)  # constant row: no division by zero
    # without exclusions it is the plain row z-score
    np.testing.assert_allclose(zscore_rows(x[1:2] + np.arange(4)), [[-1.3416408, -0.4472136, 0.4472136, 1.3416408]],
                               rtol=1e-5)


def test_recency_weights_known_answer():
    now = pd.Timestamp("2024-03-31")
    rows = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2"], "item_id": ["a", "a", "b", "b"],
                         "timestamp": [now - pd.Timedelta(days=60), now - pd.Timedelta(days=30), now, now],
                         "basket_id": ["1", "2", "3", "4"]})
    data = build_interaction_data(rows, ["a", "b", "c"])
    w = recency_weights(rows, data, recency_days=30.0).toarray()
    u1, u2 = data.user_index(np.array(["u1", "u2"]))
    np.testing.assert_allclose(w[u1], [np.exp(-1.0), 1.0, 0.0], rtol=1e-6)  # latest purchase of "a" counts
    np.testing.assert_allclose(w[u2], [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="recency_days"):
        recency_weights(rows, data, recency_days=0.0)
    with pytest.raises(ValueError, match="timestamp"):
        recency_weights(rows.drop(columns="timestamp"), data, 30.0)


def test_trend_scores_known_answer():
    """Item a sold 10 times evenly over 100 days, 1 of them in the last 10; item b 3 times, all in the last 10."""
    now = pd.Timestamp("2024-04-10")
    days_a = np.linspace(0, 99, 10)
    rows = pd.DataFrame({"user_id": "u", "item_id": ["a"] * 10 + ["b"] * 3 + ["zz"],
                         "timestamp": [now - pd.Timedelta(days=float(d)) for d in days_a] + [now] * 3 + [now],
                         "basket_id": [str(i) for i in range(14)]})
    data = build_interaction_data(rows[rows["item_id"] != "zz"], ["a", "b", "c"])
    span = 99.0  # first sale to now
    t = trend_scores(rows, data, window_days=10.0)
    np.testing.assert_allclose(t, [np.log1p(1) - np.log1p(10 * 10 / span), np.log1p(3) - np.log1p(3 * 10 / span),
                                   0.0], rtol=1e-5)
    assert t[1] > 0 > t[0]  # b is rising, a is not
    with pytest.raises(ValueError, match="window_days"):
        trend_scores(rows, data, window_days=0.0)


def test_weight_search_never_loses_to_a_single_signal():
    assert weight_trials(SIGNALS)[:4] == [{"collaborative": 1.0, "association": 0.0, "text": 0.0, "trend": 0.0},
                                          {"collaborative": 0.0, "association": 1.0, "text": 0.0, "trend": 0.0},
                                          {"collaborative": 0.0, "association": 0.0, "text": 1.0, "trend": 0.0},
                                          {"collaborative": 0.0, "association": 0.0, "text": 0.0, "trend": 1.0}]

    def evaluate(w):  # best at "association alone", a point the sampler would hardly hit by chance
        alone = w["association"] > 0 and w["collaborative"] == w["text"] == w["trend"] == 0
        return 1.0 if alone else 0.5 - 0.01 * w["text"]

    best, info = tune_weights(evaluate, SIGNALS, trials=6)
    assert info["best_value"] == 1.0 and best == {"collaborative": 0.0, "association": 1.0, "text": 0.0, "trend": 0.0}
    assert info["single_signal_values"] == {"collaborative": 0.5, "association": 1.0, "text": 0.49, "trend": 0.5}


def test_recency_weighted_hybrid_on_the_shop(shop_data, shop_split):
    from training.models import MODELS

    collab = MODELS["itemknn"]().fit(shop_data)
    assoc = MODELS["association_rules"](min_support=0.002, min_confidence=0.05).fit(shop_data)
    text = np.eye(shop_data.n_items, 8, dtype=np.float32)
    with pytest.raises(ValueError, match="history_weights"):
        Hybrid(collab, assoc, text).fit(shop_data, sp.csr_matrix((2, 2)))
    with pytest.raises(ValueError, match="trend"):
        Hybrid(collab, assoc, text).fit(shop_data, trend=np.zeros(3))
    rising = np.zeros(shop_data.n_items, np.float32)
    rising[[5, 7]] = 1.0  # trend alone ranks the rising items first for everyone who has not bought them
    trend_only = Hybrid(collab, assoc, text, {"trend": 1.0}).fit(shop_data, trend=rising)
    top = np.argsort(-trend_only.score_users(np.arange(10)), axis=1)[:, :2]
    seen = shop_data.user_items[np.arange(10)].toarray() > 0
    for row, s_row in zip(top, seen):
        assert {i for i in (5, 7) if not s_row[i]} <= set(row)
    hw = recency_weights(shop_split.train, shop_data, 30.0)
    assert hw.shape == shop_data.user_items.shape
    assert set(zip(*hw.nonzero())) == set(zip(*shop_data.user_items.nonzero()))
    users = np.arange(10)
    plain = Hybrid(collab, assoc, text, {"collaborative": 0.0, "association": 1.0, "text": 0.0}).fit(shop_data)
    recent = Hybrid(collab, assoc, text, dict(plain.weights)).fit(shop_data, hw)
    s_plain, s_recent = plain.score_users(users), recent.score_users(users)
    assert s_recent.shape == (10, shop_data.n_items) and s_recent.dtype == np.float32
    assert not np.allclose(s_plain, s_recent)  # the weights reach the association signal
    # collaborative alone does not depend on the history weights
    for m in (plain, recent):
        m.weights = {"collaborative": 1.0, "association": 0.0, "text": 0.0}
    np.testing.assert_allclose(plain.score_users(users), recent.score_users(users), rtol=1e-6)
