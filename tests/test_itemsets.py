"""Itemsets of any length: the miner and rules equal mlxtend's fpgrowth + association_rules on random baskets (every
max_len, several supports and confidences, bit for bit), a planted {A, B} -> C rule fires in scoring only when
the whole antecedent is held, and bad settings are refused naming the setting."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.data import InteractionData
from training.itemsets import ItemsetConfigError, frequent_itemsets, itemset_rules, min_count
from benchmarks.itemsets import compare_with_mlxtend
from benchmarks.mlxtend_reference import mlxtend_itemset_rules, one_hot
from training.models.association import AssociationRules


def random_baskets(seed: int, n: int, m: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n, m)) < rng.uniform(0.05, 0.6, m)
    return sp.csr_matrix(dense.astype(np.float32))


def mlxtend(baskets, min_support, min_confidence, max_len):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlxtend_itemset_rules(one_hot(baskets), min_support, min_confidence, max_len)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 150), m=st.integers(1, 14),
       min_support=st.sampled_from([0.02, 0.05, 0.1, 0.25]), max_len=st.sampled_from([1, 2, 3, 4, None]),
       min_confidence=st.sampled_from([0.0, 0.4, 0.9]))
def test_equal_to_mlxtend_on_random_baskets(seed, n, m, min_support, max_len, min_confidence):
    baskets = random_baskets(seed, n, m)
    ref_sets, ref_rules = mlxtend(baskets, min_support, min_confidence, max_len)
    isets = frequent_itemsets(baskets, min_support, max_len)
    ours = {tuple(map(int, r)): int(c) for x, cs in zip(isets.items, isets.counts) for r, c in zip(x, cs)}
    theirs = {tuple(sorted(s)): round(v * n) for s, v in zip(ref_sets["itemsets"], ref_sets["support"])}
    assert ours == theirs
    rules = itemset_rules(baskets, min_support, min_confidence, max_len)
    cmp = compare_with_mlxtend(rules, ref_rules)
    assert cmp["identical_rule_sets"], cmp
    assert all(d == 0.0 for d in cmp["max_relative_difference"].values()), cmp  # same float operations


def test_small_blocks_and_chunks_give_the_same_itemsets():
    baskets = random_baskets(3, 300, 16)
    whole = frequent_itemsets(baskets, 0.03, None)
    blocked = frequent_itemsets(baskets, 0.03, None, block_multiply_adds=1,  # one item per product block
                                pair_method="product")
    assert len(whole.items) >= 4
    for a, b, ca, cb in zip(whole.items, blocked.items, whole.counts, blocked.counts):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ca, cb)


def test_min_count_matches_the_float_test():
    for n in (1, 7, 19773, 131209):
        for s in (1e-6, 0.001, 0.005, 0.01, 1 / 3, 0.5, 1.0):
            c = min_count(n, s)
            assert c / n >= s and (c == 1 or (c - 1) / n < s)


def planted_triple_data(seed: int = 0) -> tuple[InteractionData, int, int, int]:
    """Baskets where C is bought in nearly every basket holding both A and B, rarely with A or B alone."""
    rng = np.random.default_rng(seed)
    n_items, rows = 30, []
    a, b, c = 3, 7, 11
    for _ in range(600):
        basket = set(rng.choice(np.arange(12, n_items), size=rng.integers(1, 4), replace=False).tolist())
        kind = rng.random()
        if kind < 0.2:
            basket |= {a, b, c}
        elif kind < 0.45:
            basket |= {a}
        elif kind < 0.7:
            basket |= {b}
        rows.append(sorted(basket))
    indptr = np.cumsum([0] + [len(r) for r in rows])
    baskets = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr),
                            shape=(len(rows), n_items))
    data = InteractionData(user_items=baskets, baskets=baskets, user_ids=np.arange(len(rows)),
                           item_ids=np.arange(n_items))
    return data, a, b, c


def history(items, n_items):
    return sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), int), items)), shape=(1, n_items))


def test_planted_triple_fires_when_the_basket_holds_both_antecedent_items():
    data, a, b, c = planted_triple_data()
    pairs = AssociationRules(min_support=0.05, min_confidence=0.5, max_len=2).fit(data)
    triples = AssociationRules(min_support=0.05, min_confidence=0.5, max_len=3).fit(data)
    keys = set(triples.multi_rules.keys())
    assert ((a, b), (c,)) in keys
    both, only_a = history([a, b], data.n_items), history([a], data.n_items)
    # with both A and B the triple rule adds its confidence (~1) to C; with A alone nothing changes
    gain_both = triples.score_history(both)[0, c] - pairs.score_history(both)[0, c]
    gain_a = triples.score_history(only_a)[0, c] - pairs.score_history(only_a)[0, c]
    conf = triples.multi_rules.metrics["confidence"][triples.multi_rules.keys().index(((a, b), (c,)))]
    assert gain_both == pytest.approx(conf, rel=1e-6) and conf > 0.9
    assert gain_a == 0.0
    ranked = np.argsort(-triples.score_history(both)[0])
    assert [i for i in ranked if i not in (a, b)][0] == c
    # pair rules are the same with or without longer itemsets
    assert set(zip(pairs.rules["antecedent"], pairs.rules["consequent"])) == \
        set(zip(triples.rules["antecedent"], triples.rules["consequent"]))
    np.testing.assert_allclose(np.sort(pairs.rules["lift"].to_numpy()), np.sort(triples.rules["lift"].to_numpy()),
                               rtol=1e-12)


def test_multi_item_rules_export_to_onnx_with_parity(tmp_path):
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity
    from training.models.association import RuleForm

    data, a, b, c = planted_triple_data()
    triples = AssociationRules(min_support=0.02, min_confidence=0.1, max_len=None).fit(data)
    form = triples.serving_form()
    assert isinstance(form, RuleForm) and form.antecedents.shape[1] >= 2
    info = export_recommender(triples, tmp_path / "rules.onnx", k=5, form=form)
    assert info.kind == "rules"
    exported = OnnxRecommender(tmp_path / "rules.onnx", provider="cpu")
    report = check_parity(triples, exported, data.user_items, n_users=600)
    assert report.passed and report.max_abs_diff < 1e-5, report
    both = history([a, b], data.n_items)
    top, _ = exported.top_k(np.array([0]), both)
    assert top[0, 0] == c  # {A, B} -> C fires in the exported graph too
    only_a = history([a], data.n_items)
    np.testing.assert_allclose(exported.scores(np.array([0]), only_a), triples.score_history(only_a), atol=1e-6)
    # pair rules alone keep the dense item-item form
    pairs = AssociationRules(min_support=0.02, min_confidence=0.1, max_len=2).fit(data)
    w = pairs.serving_form().weights
    np.testing.assert_allclose(both.toarray() @ w, pairs.score_history(both), rtol=1e-6)


@pytest.mark.parametrize("kwargs,names", [
    ({"max_len": 1}, "max_len"), ({"max_len": 0}, "max_len"), ({"max_len": 2.5}, "max_len"),
    ({"min_support": 0.0}, "min_support"), ({"min_support": 1.5}, "min_support"),
    ({"min_confidence": -0.1}, "min_confidence"), ({"dp_epsilon": 1.0, "max_len": 3}, "dp_epsilon"),
])
def test_bad_settings_are_refused_naming_the_setting(kwargs, names):
    with pytest.raises(ItemsetConfigError, match=f"association_rules.{names}"):
        AssociationRules(**kwargs)


def test_miner_refuses_bad_settings():
    b = random_baskets(0, 10, 4)
    with pytest.raises(ItemsetConfigError, match="min_support"):
        frequent_itemsets(b, 0, 3)
    with pytest.raises(ItemsetConfigError, match="max_len"):
        itemset_rules(b, 0.1, 0.0, 0)


def test_rules_export_serves_related_items_and_carts(tmp_path):
    from serving.batch_scoring import item_neighbour_model
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender
    from serving.service.scorers import RulesScorer

    data, a, b, c = planted_triple_data()
    model = AssociationRules(min_support=0.02, min_confidence=0.1, max_len=3).fit(data)
    path = tmp_path / "rules.onnx"
    export_recommender(model, path, k=5, item_ids=data.item_ids)
    related = item_neighbour_model(OnnxRecommender(path, provider="cpu"), provider="cpu")
    items, scores = related.top_k(np.array([a]), sp.csr_matrix((1, data.n_items)))
    conf = model.confidence.toarray()[a]  # one item fires its pair rules only: related = its confidences
    assert a not in items[0]
    np.testing.assert_allclose(scores[0], np.sort(conf)[::-1][:5], rtol=1e-6)
    scorer = RulesScorer(path, data.item_ids, data.user_items)
    cart = scorer.cart_scores(np.array([a, b]), np.ones(2, np.float32))
    np.testing.assert_allclose(cart, model.score_history(history([a, b], data.n_items))[0], atol=1e-6)


@pytest.mark.parametrize("pair_method,chunk", [("enumerate", 3), ("enumerate", 64), ("product", 64),
                                               ("enumerate", 1 << 22), ("product", 1 << 22)])
def test_pair_counters_and_chunk_sizes_agree(pair_method, chunk):
    """A best-seller beside rare items: every itemset and count is the same whether pairs are enumerated or
    multiplied and whatever the chunk of enumerated pairs / ANDed bitset words / join candidates (3: a prefix
    class's candidates split over several blocks)."""
    rng = np.random.default_rng(5)
    dense = rng.random((400, 12)) < np.r_[0.9, 0.6, rng.uniform(0.03, 0.3, 10)]
    baskets = sp.csr_matrix(dense.astype(np.float32))
    reference = frequent_itemsets(baskets, 0.01, None)
    got = frequent_itemsets(baskets, 0.01, None, chunk=chunk, pair_method=pair_method)
    assert len(reference.items) >= 4
    for a, b, ca, cb in zip(reference.items, got.items, reference.counts, got.counts):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ca, cb)


def test_bitmaps_made_a_few_items_at_a_time_give_the_same_itemsets():
    """The second items' basket bitmaps within a budget of one item's bitmap at a time (a shop with millions of
    baskets and thousands of frequent items would otherwise need them all at once): the same itemsets."""
    baskets = random_baskets(11, 300, 14)
    whole = frequent_itemsets(baskets, 0.02, None)
    grouped = frequent_itemsets(baskets, 0.02, None, bitmap_bytes=1, chunk=64)
    assert len(whole.items) >= 4
    for a, b, ca, cb in zip(whole.items, grouped.items, whole.counts, grouped.counts):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ca, cb)


def test_unknown_pair_method_is_refused():
    with pytest.raises(ValueError, match="pair_method"):
        frequent_itemsets(random_baskets(1, 50, 6), 0.05, None, pair_method="sideways")
