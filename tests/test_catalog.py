"""Catalog knowledge in models: the category hierarchy, the hybrid's category signal, the category re-ranking of
related items, the basket-completion related-items task, and the hybrid's fallback and skip."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.catalog import (CategoryReranker, category_affinity, category_levels, category_lift,
                              choose_rerank_weights, same_category)
from training.data import build_interaction_data
from training.hybrid_tuning import basket_related_task, fit_hybrid, hybrid_components
from training.models.base import SkippedFamily

# items 0-1: dairy / milk, 2: dairy / cheese, 3: bakery / bread, 4: bakery / cheese (same aisle name, other
# department), 5: no category
CATALOG = pd.DataFrame({"item_id": [f"i{j}" for j in range(6)],
                        "category": ["dairy / milk", "dairy / milk", "dairy / cheese", "bakery / bread",
                                     "bakery / cheese", None]})
IDS = CATALOG["item_id"].to_numpy()


def test_category_levels_from_a_path_string_or_a_list_column():
    levels = category_levels(CATALOG, IDS)
    assert levels.names == ("level_1", "level_2") and levels.n_categories == (2, 4)
    dept, aisle = levels.codes
    assert dept[0] == dept[1] == dept[2] != dept[3] == dept[4] and dept[5] == -1
    assert aisle[0] == aisle[1] and len({aisle[2], aisle[3], aisle[4]}) == 3 and aisle[5] == -1  # cheese x 2 apart
    listed = CATALOG.assign(category_path=[["dairy", "milk"], ["dairy", "milk"], ["dairy", "cheese"],
                                           ["bakery", "bread"], ["bakery", "cheese"], []]).drop(columns="category")
    np.testing.assert_array_equal(category_levels(listed, IDS).codes, levels.codes)
    # the catalog's own order does not matter, the item order given does
    shuffled = category_levels(CATALOG.iloc[::-1], IDS[[3, 0, 1, 2, 4, 5]])
    assert shuffled.codes[1][1] == shuffled.codes[1][2] != shuffled.codes[1][0]


def test_no_category_means_no_levels():
    assert category_levels(CATALOG.drop(columns="category"), IDS) is None
    assert category_levels(CATALOG.assign(category=None), IDS) is None


def test_category_affinity_known_answer():
    levels = category_levels(CATALOG, IDS)
    rows = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0],  # all milk
                                   [0, 0, 1, 1, 0, 0],  # half cheese (dairy), half bread (bakery)
                                   [0, 0, 0, 0, 0, 0]], np.float32))  # empty history
    a = category_affinity(rows, levels)
    # mean over (department share, aisle share)
    np.testing.assert_allclose(a[0], [1.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(a[1], [0.25, 0.25, 0.5, 0.5, 0.25, 0.0])
    np.testing.assert_array_equal(a[2], 0.0)


def test_same_category_and_category_lift_known_answers():
    levels = category_levels(CATALOG, IDS)
    same = same_category(np.array([0, 2]), np.array([[1, 2, 4, -1], [4, 0, 5, 2]]), levels)
    np.testing.assert_allclose(same, [[1.0, 0.5, 0.0, 0.0], [0.0, 0.5, 0.0, 1.0]])
    # 4 baskets: milk+bread, milk+bread, milk+milk(two items), cheese
    baskets = sp.csr_matrix(np.array([[1, 0, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0], [1, 1, 0, 0, 0, 0],
                                      [0, 0, 1, 0, 0, 0]], np.float32))
    with np.errstate(divide="ignore", invalid="ignore"):  # unsmoothed: empty categories give log(0)
        lift = category_lift(baskets, levels, smoothing=0.0)
    milk, cheese, bread = levels.codes[1][[0, 2, 3]]
    assert lift[milk, bread] == pytest.approx(np.log(2 * 4 / (3 * 2)))  # 2 of 3 milk baskets hold bread
    assert lift[milk, milk] == pytest.approx(np.log(1 * 4 / (3 * 3)))  # 1 milk basket holds two milks
    assert lift[milk, cheese] == -np.inf  # never together (no smoothing)
    assert np.isfinite(category_lift(baskets, levels)).all()  # smoothed by default


def test_reranker_known_answer():
    levels = category_levels(CATALOG, IDS)
    r = CategoryReranker(levels)
    items = np.array([0])
    pool = np.array([[3, 4, 2, 1, -1]])  # model order: bread, bakery cheese, dairy cheese, milk, padding
    scores = np.array([[4.0, 3.0, 2.0, 1.0, np.nan]], np.float32)
    idx, s = r.rerank(items, pool, scores, 5)
    np.testing.assert_array_equal(idx, [[3, 4, 2, 1, -1]])  # no weight: the model's order
    assert np.isnan(s[0, 4])
    idx, _ = r.rerank(items, pool, scores, 3, same_weight=10.0)
    np.testing.assert_array_equal(idx, [[1, 2, 3]])  # same aisle, then same department, then the model's best
    # a category lift that favours bakery cheese with milk lifts it above bread
    lift = np.zeros((4, 4), np.float32)
    lift[levels.codes[1][0], levels.codes[1][4]] = 5.0
    idx, _ = CategoryReranker(levels, lift, lift_weight=10.0).rerank(items, pool, scores, 2)
    np.testing.assert_array_equal(idx, [[4, 3]])


def test_reranker_wraps_any_model_and_choice_of_weights(shop_data):
    from training.models import MODELS

    model = MODELS["itemknn"](k=10).fit(shop_data)
    levels = category_levels(pd.DataFrame({"item_id": shop_data.item_ids,
                                           "category": np.where(np.arange(shop_data.n_items) % 2, "odd", "even")}),
                             shop_data.item_ids)
    items = np.arange(5)
    idx, s = CategoryReranker(levels, same_weight=100.0, pool=10).related_items(model, items, 4)
    assert idx.shape == s.shape == (5, 4)
    own, _ = model.related_items(items, 10)
    for it, row, pool in zip(items, idx, own):
        valid = row[row >= 0]
        assert set(valid) <= set(pool[pool >= 0])
        same = [j for j in pool if j >= 0 and j % 2 == it % 2]
        assert list(valid[:len(same)]) == same[:len(valid)]  # same-category neighbours first, in model order
    best, values = choose_rerank_weights(lambda a, b: -abs(a - 0.5) - abs(b - 1.0))
    assert best == (0.5, 1.0) and len(values) == 25
    best, _ = choose_rerank_weights(lambda a, b: 1.0)  # ties: the model's own order
    assert best == (0.0, 0.0)
    best, values = choose_rerank_weights(lambda a, b: a, with_lift=False)
    assert best == (2.0, 0.0) and all(k.endswith("lift=0.0") for k in values)


def test_basket_related_task_known_answer():
    from training.splits import SplitConfig, make_split

    rows = pd.DataFrame({"user_id": pd.array([None] * 12, dtype="string"),
                         "item_id": ["a", "b", "c", "d"] * 3, "timestamp": pd.NaT,
                         "basket_id": [str(j // 4) for j in range(12)]})
    split = make_split(rows, SplitConfig(strategy="basket_completion", test_fraction=0.34, validation_fraction=0.0))
    train = build_interaction_data(split.train, ["a", "b", "c", "d", "e"])
    task, basket = basket_related_task(train, split.test)
    held = split.test["user_id"].unique()
    assert len(held) == 1
    b = train.user_index(held)[0]
    visible = set(train.item_ids[train.user_items[b].indices])
    hidden = set(split.test["item_id"])
    assert len(visible) == len(hidden) == 2 and visible | hidden == {"a", "b", "c", "d"}
    assert sorted(train.item_ids[task.cold]) == sorted(visible) and (basket == b).all()
    for r in range(len(task.cold)):  # each visible item's right answers: the basket's hidden items
        assert set(train.item_ids[task.truth[r].indices]) == hidden
        assert list(task.self_mask[r].indices) == [task.cold[r]]


def test_hybrid_falls_back_to_itemknn_and_is_skipped_without_its_parts(shop_data):
    from training.models import MODELS

    knn = MODELS["itemknn"](k=10).fit(shop_data)
    ease = MODELS["ease"](l2=50.0).fit(shop_data)
    rules = MODELS["association_rules"](min_support=0.002, min_confidence=0.05).fit(shop_data)
    assert hybrid_components({"ease": ease, "itemknn": knn}, rules) == (ease, rules)
    skipped_ease = SkippedFamily("ease", "dense 50k x 50k does not fit")
    assert hybrid_components({"ease": skipped_ease, "itemknn": knn}, rules) == (knn, rules)
    assert hybrid_components({"itemknn": knn}, rules) == (knn, rules)
    none = hybrid_components({"ease": skipped_ease, "itemknn": SkippedFamily("itemknn", "not in families")}, rules)
    assert isinstance(none, SkippedFamily) and none.family == "hybrid"
    assert "dense 50k" in none.reason and "not in families" in none.reason and "families" in none.reason
    no_rules = hybrid_components({"itemknn": knn}, SkippedFamily("association_rules", "no rules at min_support"))
    assert isinstance(no_rules, SkippedFamily) and "association_rules" in no_rules.reason
    assert "no rules at min_support" in no_rules.reason
    # the hybrid runs on item-kNN through the model contract
    rows = pd.DataFrame({"user_id": shop_data.user_ids[:1], "item_id": shop_data.item_ids[:1], "timestamp": pd.NaT})
    hybrid = fit_hybrid(knn, rules, np.eye(shop_data.n_items, 8, dtype=np.float32), shop_data, rows)
    np.testing.assert_allclose(hybrid.blend(hybrid.user_signals(np.arange(3)), {"collaborative": 1.0}),
                               hybrid.blend({"collaborative": hybrid.signals(
                                   shop_data.user_items[:3], knn.score_users(np.arange(3)))["collaborative"]}),
                               rtol=1e-6)


def _shop_levels(shop_clean, item_ids, permute_seed=None):
    items = shop_clean.items[["item_id", "category"]].copy()
    if permute_seed is not None:  # the same categories dealt to the wrong items
        items["category"] = np.random.default_rng(permute_seed).permutation(items["category"].to_numpy())
    return category_levels(items, item_ids)


def test_category_signal_helps_where_tastes_follow_categories(shop_clean, shop_split, shop_data):
    """Shoppers of the synthetic shop have tastes over categories; alone, the category signal must rank the test
    items far better with the true categories than with the same categories dealt at random."""
    from training.metrics import evaluate_scores
    from training.models import MODELS

    knn = MODELS["itemknn"](k=10).fit(shop_data)
    rules = MODELS["association_rules"](min_support=0.002, min_confidence=0.05).fit(shop_data)
    text = np.eye(shop_data.n_items, 8, dtype=np.float32)
    test = shop_data.matrix_for(shop_split.test)
    recall = {}
    for name, seed in (("true", None), ("shuffled", 0)):
        hybrid = fit_hybrid(knn, rules, text, shop_data, shop_split.train,
                            categories=_shop_levels(shop_clean, shop_data.item_ids, seed))
        assert "category" in hybrid.signal_names
        hybrid.weights = {"category": 1.0}
        recall[name] = evaluate_scores(hybrid.score_users, shop_data.user_items, test, ks=(20,))["recall@20"]
    assert recall["true"] > 1.5 * recall["shuffled"], recall
    # without categories the signal is absent and a weight for it does nothing
    plain = fit_hybrid(knn, rules, text, shop_data, shop_split.train)
    assert "category" not in plain.signal_names and "category" not in plain.signals(
        shop_data.user_items[:2], knn.score_users(np.arange(2)))
    plain.weights = {"collaborative": 1.0, "category": 5.0}
    np.testing.assert_allclose(plain.score_users(np.arange(4)), knn_z(plain, np.arange(4)), rtol=1e-6)
    with pytest.raises(ValueError, match="categories cover"):
        fit_hybrid(knn, rules, text[:5], shop_data, shop_split.train,
                   categories=_shop_levels(shop_clean, shop_data.item_ids))


def knn_z(hybrid, users):
    return hybrid.blend(hybrid.user_signals(users), {"collaborative": 1.0})


def test_tuning_searches_the_category_weight(shop_clean, shop_split, shop_data):
    from training.hybrid_tuning import tune_hybrid
    from training.models import MODELS

    knn = MODELS["itemknn"](k=10).fit(shop_data)
    rules = MODELS["association_rules"](min_support=0.002, min_confidence=0.05).fit(shop_data)
    hybrid = fit_hybrid(knn, rules, np.eye(shop_data.n_items, 8, dtype=np.float32), shop_data, shop_split.train,
                        categories=_shop_levels(shop_clean, shop_data.item_ids))
    test = shop_data.matrix_for(shop_split.test)
    tuned = tune_hybrid(hybrid, shop_data, test, None, trials=6)
    assert set(tuned.user_weights) == set(hybrid.signal_names) and "category" in tuned.user_weights
    assert set(tuned.user_validation["single_signal_values"]) == set(hybrid.signal_names)
    without = tune_hybrid(hybrid, shop_data, test, None, trials=5, signals=("collaborative", "association", "text",
                                                                             "trend"))
    assert "category" not in without.user_weights


def test_catalog_benchmark_measures_with_and_without_on_basket_completion(shop_clean, tmp_path):
    """The benchmark's whole path on the synthetic shop (one category level): every arm measured on the same
    held-out baskets, the intervals those of the differences reported."""
    from benchmarks.catalog import measure

    r = measure(shop_clean.interactions, shop_clean.items, tmp_path, seed=0, trials=2, text="tfidf", val_baskets=100,
                val_related_baskets=30, test_baskets=150, test_related_baskets=60, knn_k=10, min_support=0.005)
    assert r["split"]["strategy"] == "basket_completion" and r["catalog"]["categories_per_level"] == [6]
    users = r["user_recommendations"]["results"]
    assert set(users) == {"hybrid_with_category", "hybrid_without_category", "itemknn_only"}
    assert {v["baskets"] for v in users.values()} == {150}
    assert "category" in r["tuning"]["with_category"]["user_weights"]
    assert "category" not in r["tuning"]["without_category"]["user_weights"]
    diff = r["user_recommendations"]["paired_bootstrap_95"]["ndcg"]["hybrid_with_category - hybrid_without_category"]
    assert diff["mean_difference"] == pytest.approx(users["hybrid_with_category"]["ndcg@20"]
                                                    - users["hybrid_without_category"]["ndcg@20"])
    assert diff["ci_low"] <= diff["mean_difference"] <= diff["ci_high"] and diff["n"] == 150
    related = r["related_items"]["results"]
    assert set(related) == {"itemknn", "itemknn+category_rerank", "hybrid", "hybrid+category_rerank",
                            "hybrid_category_signal"}
    assert {v["baskets"] for v in related.values()} == {60}
    for base in ("itemknn", "hybrid"):
        chosen = r["tuning"]["category_rerank"][base]
        values = chosen["validation_recall+ndcg"]
        assert values[f"same={chosen['same_weight']},lift={chosen['lift_weight']}"] == max(values.values())
    rerank = r["related_items"]["paired_bootstrap_95"]["recall"]["itemknn+category_rerank - itemknn"]
    assert rerank["mean_difference"] == pytest.approx(related["itemknn+category_rerank"]["recall@20"]
                                                      - related["itemknn"]["recall@20"])


def test_hybrid_asset_runs_on_itemknn_with_categories_on_a_basket_only_shop(tmp_path):
    """A run planned with rules and item-kNN only (EASE not trained): the hybrid asset runs on item-kNN, on the
    basket-completion split the data chose, with its category signal on; the metadata says both."""
    import dagster as dg

    from orchestration.definitions import all_assets, build_resources

    config = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 120,
                                                "synthetic_baskets_only": True}},
                      "association_rules": {"config": {"min_support": 0.002, "min_confidence": 0.05}},
                      "text_encoder": {"config": {"steps": 0}},
                      "hybrid_model": {"config": {"tune_trials": 2}}},
              "resources": {"training_plan": {"config": {"families": ["association_rules", "itemknn", "hybrid"]}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(all_assets, selection=dg.AssetSelection.assets("hybrid_model").upstream(),
                                resources=build_resources(str(tmp_path)), run_config=config, instance=instance)
    assert result.output_for_node("training_split").strategy == "basket_completion"
    assert isinstance(result.output_for_node("ease_model"), SkippedFamily)
    model = result.output_for_node("hybrid_model")
    assert model.collaborative.name == "itemknn" and "category" in model.signal_names
    md = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
          if e.event_specific_data.materialization.asset_key.to_user_string() == "hybrid_model"][0].metadata
    assert md["collaborative_component"].value == "itemknn" and md["category_signal"].value.startswith("on")
    assert set(model.weights) == set(model.signal_names)
