"""The evaluation harness on hand-computed answers."""
import numpy as np
import pytest
import scipy.sparse as sp

from training.metrics import evaluate_scores


def csr(rows, n_items):
    r, c = zip(*[(u, i) for u, items in enumerate(rows) for i in items])
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_items))


def test_known_answers():
    n_items = 6
    train = csr([[0], [1], [2]], n_items)
    test = csr([[1, 2], [3], []], n_items)  # user 2 has no test items: not averaged
    # fixed scores: ranking 0 > 1 > 3 > 2 > 4 > 5 for everyone
    base = np.array([6, 5, 3, 4, 2, 1], np.float32)
    res = evaluate_scores(lambda u: np.tile(base, (len(u), 1)), train, test, ks=(1, 2, 3))
    # user 0: train item 0 masked -> ranking 1,3,2 ; hits at ranks 1 and 3
    # user 1: train item 1 masked -> ranking 0,3,2 ; hit at rank 2
    d = 1 / np.log2(np.arange(2, 5))
    recall_1 = (1 / 2 + 0) / 2
    recall_2 = (1 / 2 + 1) / 2
    recall_3 = (2 / 2 + 1) / 2
    assert res["n_users"] == 2
    assert res["recall@1"] == pytest.approx(recall_1)
    assert res["recall@2"] == pytest.approx(recall_2)
    assert res["recall@3"] == pytest.approx(recall_3)
    ndcg3_u0 = (d[0] + d[2]) / (d[0] + d[1])
    ndcg3_u1 = d[1] / d[0]
    assert res["ndcg@3"] == pytest.approx((ndcg3_u0 + ndcg3_u1) / 2)
    assert res["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert res["hit_rate@1"] == pytest.approx(0.5)
    assert res["coverage@1"] == pytest.approx(2 / 6)  # items 1 and 0
    assert "ndcg@3_se" not in res
    with_se = evaluate_scores(lambda u: np.tile(base, (len(u), 1)), train, test, ks=(1, 2, 3), standard_errors=True,
                              chunk_size=1)
    # two users: the standard error of their mean is |a - b| / 2
    assert with_se["recall@1_se"] == pytest.approx(abs(1 / 2 - 0) / 2)
    assert with_se["ndcg@3_se"] == pytest.approx(abs(ndcg3_u0 - ndcg3_u1) / 2)
    assert with_se["ndcg@3"] == res["ndcg@3"]


def test_perfect_scorer_and_chunking_agree():
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 40
    train = sp.random(n_users, n_items, density=0.1, random_state=1, format="csr")
    train.data[:] = 1
    test = sp.random(n_users, n_items, density=0.05, random_state=2, format="csr")
    test = (test - test.multiply(train)).tocsr()
    test.eliminate_zeros()
    test.data[:] = 1
    perfect = lambda u: np.asarray(test[u].todense()) + rng.random((len(u), n_items)) * 0.1
    a = evaluate_scores(perfect, train, test, ks=(50,), chunk_size=7)
    assert a["recall@50"] == pytest.approx(1.0)
    assert a["ndcg@50"] == pytest.approx(1.0)
    scores = rng.random((n_users, n_items)).astype(np.float32)
    one = evaluate_scores(lambda u: scores[u], train, test, chunk_size=1000)
    many = evaluate_scores(lambda u: scores[u], train, test, chunk_size=3)
    for k in one:
        if k != "scoring_seconds":
            assert one[k] == pytest.approx(many[k])


def test_top_k_breaks_ties_towards_lower_index_at_the_boundary():
    from training.ranking import top_k

    scores = np.zeros((2, 50), np.float32)
    scores[0, [40, 45]] = 2.0  # two clear winners, then 48 items tied at zero
    scores[1, 30:] = 1.0  # 20 tied winners, asked for 5
    idx, vals = top_k(scores, 5)
    np.testing.assert_array_equal(idx[0], [40, 45, 0, 1, 2])
    np.testing.assert_array_equal(idx[1], [30, 31, 32, 33, 34])
    np.testing.assert_array_equal(vals[1], np.ones(5))


def test_per_user_values_average_to_the_reported_means():
    n_items = 6
    train = csr([[0], [1], [2], [5]], n_items)
    test = csr([[1, 2], [3], [], [0, 4]], n_items)
    base = np.array([6, 5, 3, 4, 2, 1], np.float32)
    res = evaluate_scores(lambda u: np.tile(base, (len(u), 1)), train, test, ks=(1, 3), chunk_size=1,
                          per_user=True)
    per = res["per_user"]
    np.testing.assert_array_equal(per["users"], [0, 1, 3])  # user 2 has no test items
    # user 0: ranking 1,3,2 -> hits at 1 and 3; user 1: 0,3,2 -> hit at 2; user 3: 0,1,3 -> hit at 1
    np.testing.assert_allclose(per["recall@3"], [1.0, 1.0, 0.5])
    np.testing.assert_allclose(per["recall@1"], [0.5, 0.0, 0.5])
    for key in ("recall@1", "recall@3", "ndcg@1", "ndcg@3"):
        assert per[key].mean() == pytest.approx(res[key])


def test_paired_bootstrap_separates_a_real_difference_from_noise():
    from training.metrics import paired_bootstrap

    rng = np.random.default_rng(1)
    b = rng.random(400)
    better = paired_bootstrap(b + 0.05 + rng.normal(0, 0.02, 400), b)
    assert better["ci_low"] > 0.04 and better["ci_high"] < 0.06 and better["share_ahead"] == 1.0
    noise = paired_bootstrap(b + rng.normal(0, 0.2, 400), b)
    assert noise["ci_low"] < 0 < noise["ci_high"]
    assert paired_bootstrap(b, b)["mean_difference"] == 0.0
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap(b, b[:10])
