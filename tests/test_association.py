"""Pair rules equal mlxtend's fpgrowth(max_len=2) + association_rules, and find planted pairs."""
import numpy as np
import pandas as pd
import pytest

from data_checks.cleaning import clean
from training.association import cooccurrence_at, pair_rules
from training.data import build_interaction_data
from benchmarks.mlxtend_reference import mlxtend_pair_rules, one_hot

METRICS = ["antecedent_support", "consequent_support", "support", "confidence", "lift", "leverage", "conviction"]


def assert_same_rules(ours: pd.DataFrame, ref: pd.DataFrame):
    key = ["antecedent", "consequent"]
    a = ours.sort_values(key).reset_index(drop=True)
    b = ref.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    assert (a[key].to_numpy() == b[key].to_numpy()).all()
    for m in METRICS:
        np.testing.assert_allclose(a[m].to_numpy(), b[m].to_numpy(), rtol=1e-9, err_msg=m)


@pytest.mark.parametrize("min_support,min_conf", [(0.01, 0.0), (0.005, 0.3)])
def test_matches_mlxtend_on_synthetic_baskets(shop_data, min_support, min_conf):
    ours = pair_rules(shop_data.baskets, min_support, min_conf)
    ref = mlxtend_pair_rules(one_hot(shop_data.baskets), min_support, min_conf)
    assert_same_rules(ours, ref)


def test_matches_mlxtend_on_online_retail_subset(online_retail_raw):
    r = clean(online_retail_raw)
    first = r.interactions[r.interactions["basket_id"].isin(r.interactions["basket_id"].unique()[:3000])]
    data = build_interaction_data(first, r.items["item_id"])
    for min_support, min_conf in [(0.01, 0.1), (0.02, 0.0)]:
        assert_same_rules(pair_rules(data.baskets, min_support, min_conf),
                          mlxtend_pair_rules(one_hot(data.baskets), min_support, min_conf))


def test_planted_pairs_have_top_lift(shop, shop_data):
    rules = pair_rules(shop_data.baskets, 0.002, 0.5)
    idx = {i: n for n, i in enumerate(shop_data.item_ids)}
    found = set(zip(rules["antecedent"], rules["consequent"]))
    for a, b in shop.planted_pairs:
        assert (idx[a], idx[b]) in found
    top = rules.head(2 * len(shop.planted_pairs))
    planted = {(idx[a], idx[b]) for a, b in shop.planted_pairs} | {(idx[b], idx[a]) for a, b in shop.planted_pairs}
    assert set(zip(top["antecedent"], top["consequent"])) <= planted


def test_cooccurrence_at_matches_dense(shop_data):
    b = shop_data.baskets
    dense = (np.asarray(b.todense()) > 0).astype(np.int64)
    co = dense.T @ dense
    rng = np.random.default_rng(0)
    a_idx = rng.integers(0, b.shape[1], 500)
    c_idx = rng.integers(0, b.shape[1], 500)
    np.testing.assert_array_equal(cooccurrence_at(b, a_idx, c_idx, chunk_size=17), co[a_idx, c_idx])
