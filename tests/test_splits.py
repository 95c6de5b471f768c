"""Split strategies: no leakage, validation carved from train only."""
import numpy as np
import pandas as pd
import pytest

from training.splits import SplitConfig, make_split


def pairs(df):
    return set(zip(df["user_id"], df["item_id"]))


def test_temporal_split(shop_clean):
    df = shop_clean.interactions
    s = make_split(df, SplitConfig(strategy="temporal", test_fraction=0.2))
    assert s.train["timestamp"].max() < s.cutoff <= s.test["timestamp"].min()
    assert set(s.test["user_id"]) <= set(s.train["user_id"].dropna())
    assert not pairs(s.test) & pairs(s.train[s.train["user_id"].notna()])
    # validation comes out of train, before the test cut, and never overlaps test
    assert s.validation["timestamp"].max() < s.cutoff
    assert len(s.fit) + len(s.validation) <= len(s.train)
    assert set(s.validation["source_row"]) <= set(s.train["source_row"])
    assert s.fit["timestamp"].max() <= s.validation["timestamp"].min()


def test_leave_last_basket(shop_clean):
    df = shop_clean.interactions
    s = make_split(df, SplitConfig(strategy="leave_last_basket"))
    last = df.sort_values("timestamp").groupby("user_id")["timestamp"].max()
    t = s.test.groupby("user_id")["timestamp"].min()
    assert (t == last.reindex(t.index)).all()
    assert (s.train.groupby("user_id")["timestamp"].max().reindex(t.index) < t).all()
    assert set(s.validation["source_row"]) <= set(s.train["source_row"])


def test_fixed_split_keeps_the_given_split():
    df = pd.DataFrame({"user_id": ["u1"] * 5 + ["u2"] * 3, "item_id": list("abcdeabc"),
                       "timestamp": pd.NaT, "basket_id": None, "quantity": 1.0, "price": np.nan,
                       "source_row": range(8), "fixed_split": ["train"] * 4 + ["test"] + ["train"] * 2 + ["test"]})
    s = make_split(df, SplitConfig(strategy="fixed", validation_fraction=0.5, seed=1))
    assert pairs(s.test) == {("u1", "e"), ("u2", "c")}
    assert len(s.train) == 6
    assert not pairs(s.validation) & pairs(s.test)
    assert pairs(s.validation) | pairs(s.fit) == pairs(s.train)


def test_temporal_needs_timestamps():
    df = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "timestamp": pd.Series([pd.NaT]), "basket_id": [None]})
    with pytest.raises(ValueError, match="timestamps"):
        make_split(df, SplitConfig(strategy="temporal"))


def test_fit_part_shares_the_train_user_positions():
    """A model fitted on ``fit`` (train minus validation) is served and evaluated on train's user positions,
    even when some users have all their train rows in validation."""
    import pandas as pd

    from training.data import build_interaction_data

    train = pd.DataFrame({"user_id": ["a", "b", "c", "c"], "item_id": ["x", "y", "x", "z"],
                          "basket_id": ["1", "2", "3", "3"], "timestamp": pd.to_datetime(["2024-01-01"] * 4)})
    fit = train[train["user_id"] != "b"]  # b's only row went to validation
    full = build_interaction_data(train, ["x", "y", "z"])
    part = build_interaction_data(fit, ["x", "y", "z"], user_ids=full.user_ids)
    assert list(part.user_ids) == list(full.user_ids) == ["a", "b", "c"]
    assert part.user_items.shape == full.user_items.shape
    assert part.user_items[1].nnz == 0 and part.user_items[2].toarray().tolist() == [[1, 0, 1]]
    assert build_interaction_data(fit, ["x", "y", "z"]).user_items.shape[0] == 2
    with pytest.raises(ValueError):
        build_interaction_data(train, ["x", "y", "z"], user_ids=["a", "c"])


def test_held_out_popularity_tells_a_random_holdout_from_a_popular_one():
    """A random holdout of a long-tailed matrix has the training pairs' popularity (ratio near 1); pairs held
    out in proportion to item popularity fall on more popular items (ratio well above 1)."""
    import scipy.sparse as sp

    from training.split_diagnostics import held_out_popularity

    rng = np.random.default_rng(0)
    n_users, n_items = 2000, 300
    item_p = 1.0 / np.arange(1, n_items + 1)  # Zipf-like item popularity
    item_p /= item_p.sum()
    rows = np.repeat(np.arange(n_users), 30)
    cols = rng.choice(n_items, len(rows), p=item_p)
    full = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    full.data[:] = 1.0
    coo = full.tocoo()

    def carve(keep_prob: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        out = rng.random(coo.nnz) < keep_prob
        make = lambda m: sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=full.shape)
        return make(~out), make(out)

    random_train, random_held = carve(np.full(coo.nnz, 0.2))
    assert held_out_popularity(random_train, random_held)["ratio"] == pytest.approx(1.0, abs=0.05)
    pop = np.asarray(full.sum(axis=0)).ravel()
    p = pop[coo.col] / pop.max()
    skew_train, skew_held = carve(0.4 * p)
    skew = held_out_popularity(skew_train, skew_held)
    assert skew["ratio"] > 1.3 and skew["log_ratio"] > 0.2
    with pytest.raises(ValueError, match="items"):
        held_out_popularity(random_train, random_held[:, :10])


def _baskets_only(n_baskets=300, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"b{b}", f"i{i}") for b in range(n_baskets) for i in rng.choice(n_items, rng.integers(1, 8), replace=False)]
    df = pd.DataFrame(rows, columns=["basket_id", "item_id"]).astype("string")
    return df.assign(user_id=pd.array([None] * len(df), dtype="string"), timestamp=pd.NaT, quantity=1.0,
                     price=np.nan, source_row=np.arange(1, len(df) + 1))


def test_auto_strategy_follows_the_shape_of_the_data(shop_clean):
    from training.splits import choose_strategy

    timed = shop_clean.interactions
    assert choose_strategy(timed)[0] == "temporal"
    assert choose_strategy(timed.assign(timestamp=pd.NaT))[0] == "customer_holdout"
    assert choose_strategy(_baskets_only())[0] == "basket_completion"
    assert choose_strategy(timed.assign(fixed_split="train"))[0] == "fixed"


def test_basket_completion_hides_part_of_each_held_out_basket():
    df = _baskets_only()
    s = make_split(df, SplitConfig(strategy="basket_completion", test_fraction=0.2, validation_fraction=0.1, seed=3))
    eligible = df.groupby("basket_id")["item_id"].nunique().ge(2).sum()
    test_baskets = set(s.test["user_id"])
    assert abs(len(test_baskets) - 0.2 * eligible) <= 1 and all(u.startswith("basket:") for u in test_baskets)
    train_pairs = pairs(s.train)
    assert not pairs(s.test) & train_pairs  # a hidden item is never in its basket's history
    assert test_baskets <= set(s.train["user_id"])  # every held-out basket keeps a visible part
    for b, hidden in s.test.groupby("user_id")["item_id"]:
        n = df.loc[df["basket_id"] == b.removeprefix("basket:"), "item_id"].nunique()
        assert len(hidden) == min(max(round(n * 0.5), 1), n - 1)
    assert not set(s.validation["user_id"]) & test_baskets  # validation comes from other baskets
    assert pairs(s.fit) | pairs(s.validation) == train_pairs and not pairs(s.fit) & pairs(s.validation)
    assert len(s.train) + len(s.test) == len(df)  # nothing lost
    again = make_split(df, SplitConfig(strategy="basket_completion", test_fraction=0.2, validation_fraction=0.1, seed=3))
    assert pairs(again.test) == pairs(s.test)  # seeded
    other = make_split(df, SplitConfig(strategy="basket_completion", test_fraction=0.2, validation_fraction=0.1, seed=4))
    assert pairs(other.test) != pairs(s.test)
    assert "basket completion" in s.summary()["protocol"]


def test_customer_holdout_keeps_anonymous_baskets_in_training(shop_clean):
    df = shop_clean.interactions.assign(timestamp=pd.NaT)
    anonymous = _baskets_only(50).assign(basket_id=lambda d: "anon" + d["basket_id"])
    s = make_split(pd.concat([df, anonymous], ignore_index=True), SplitConfig(strategy="customer_holdout", seed=1))
    assert s.test["user_id"].notna().all() and set(s.test["user_id"]) <= set(s.train["user_id"].dropna())
    assert not pairs(s.test) & pairs(s.train[s.train["user_id"].notna()])
    assert s.train["user_id"].isna().sum() == s.fit["user_id"].isna().sum() == len(anonymous)
    with pytest.raises(ValueError, match="basket_completion"):
        make_split(_baskets_only(), SplitConfig(strategy="customer_holdout"))
