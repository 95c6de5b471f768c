"""Differentially private pair rules: contribution bounding, noise scale, seeds, and the known answer."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.association import pair_rules
from training.models import AssociationRules
from training.privacy import clip_baskets, items_per_basket, private_pair_rules


def test_items_per_basket_fits_the_pair_bound():
    assert [items_per_basket(m) for m in (1, 2, 3, 9, 10, 45, 46)] == [2, 2, 3, 4, 5, 10, 10]
    for m in range(1, 200):
        k = items_per_basket(m)
        assert k * (k - 1) // 2 <= m < (k + 1) * k // 2
    with pytest.raises(ValueError):
        items_per_basket(0)


def test_clipping_keeps_at_most_k_of_each_baskets_own_items_seeded():
    rng = np.random.default_rng(0)
    b = sp.random(200, 50, density=0.2, format="csr", random_state=1)
    b.data[:] = 1
    c = clip_baskets(b, 4, seed=3)
    assert np.diff(c.indptr).max() <= 4
    assert np.array_equal(np.diff(c.indptr), np.minimum(np.diff(b.indptr), 4))
    assert (c.multiply(b) != c).nnz == 0, "only items the basket held"
    assert (c != clip_baskets(b, 4, seed=3)).nnz == 0 and (c != clip_baskets(b, 4, seed=4)).nnz > 0
    small = clip_baskets(b, 50, seed=0)
    assert (small != b).nnz == 0
    del rng


def test_huge_epsilon_without_clipping_reproduces_the_exact_rules(shop_data):
    exact = pair_rules(shop_data.baskets, 0.003, 0.05)
    big_m = int(np.diff(shop_data.baskets.indptr).max()) ** 2
    noisy = private_pair_rules(shop_data.baskets, 0.003, 0.05, epsilon=np.inf, max_pairs_per_basket=big_m, seed=0)
    key = ["antecedent", "consequent", "pair_count"]
    assert len(exact) > 20
    pd.testing.assert_frame_equal(exact[key].sort_values(key).reset_index(drop=True),
                                  noisy[key].sort_values(key).reset_index(drop=True))
    assert np.allclose(exact.sort_values(key)["lift"].to_numpy(), noisy.sort_values(key)["lift"].to_numpy())


def test_noise_is_seeded_and_scaled_by_sensitivity_over_epsilon(shop_data):
    b = shop_data.baskets
    one = private_pair_rules(b, 0.003, 0.0, epsilon=2.0, max_pairs_per_basket=10, seed=5)
    assert one.equals(private_pair_rules(b, 0.003, 0.0, epsilon=2.0, max_pairs_per_basket=10, seed=5))
    assert not one.equals(private_pair_rules(b, 0.003, 0.0, epsilon=2.0, max_pairs_per_basket=10, seed=6))
    # with no support threshold every pair is released; for pairs far from zero (no flooring) the mean
    # |error| is the Laplace scale (1 + k + m) / eps, k = 5 items for m = 10 pairs
    scale = (1 + 5 + 10) / 8.0
    errors = []
    for seed in range(10):
        clipped = clip_baskets(b, items_per_basket(10), seed=seed)  # the same clipping as the run's
        exact = pair_rules(clipped, 0.0, 0.0).set_index(["antecedent", "consequent"])["pair_count"]
        r = private_pair_rules(b, 0.0, 0.0, epsilon=8.0, max_pairs_per_basket=10, seed=seed, max_false_pairs=None)
        r = r.set_index(["antecedent", "consequent"])["pair_count"]
        common = exact[exact > 5 * scale].index.intersection(r.index)
        assert len(common) > 50
        errors.append((r[common] - exact[common]).to_numpy(np.float64))
    assert abs(np.mean(np.abs(np.concatenate(errors))) - scale) < 0.25 * scale


def _planted_found(shop, data, epsilon: float, seed: int) -> int:
    model = AssociationRules(min_support=0.003, min_confidence=0.05, max_len=2, dp_epsilon=epsilon,
                             dp_max_pairs_per_basket=10,
                             dp_seed=seed).fit(data)
    anchors = pd.Index(data.item_ids).get_indexer([a for a, _ in shop.planted_pairs])
    top, _ = model.related_items(anchors, 1)
    return sum(data.item_ids[t[0]] == b for t, (_, b) in zip(top, shop.planted_pairs))


def test_planted_pairs_survive_weak_privacy_and_are_lost_under_strong(shop, shop_data):
    """Known answer on the small shop (2.3k training baskets): at epsilon 20 the planted complementary
    pairs are still their anchors' top related items by lift; at epsilon 1 the noise (scale 16 counts
    against pairs seen ~10-50 times) hides them: the accuracy cost the benchmark measures at scale."""
    assert _planted_found(shop, shop_data, np.inf, 0) == len(shop.planted_pairs)
    assert all(_planted_found(shop, shop_data, 20.0, seed) >= len(shop.planted_pairs) - 1 for seed in range(3))
    assert _planted_found(shop, shop_data, 1.0, 0) <= len(shop.planted_pairs) // 2


def test_noise_aware_threshold_keeps_pairs_that_never_occurred_out(shop_data):
    """Without the threshold, low supports publish thousands of pairs made of noise; with
    it (about one false pair expected), nearly every published pair really occurred."""
    b = shop_data.baskets
    seen = pair_rules(b, 1e-12, 0.0)
    seen = set(zip(seen["antecedent"], seen["consequent"]))
    for max_false, most_false in ((None, None), (1.0, 5)):
        r = private_pair_rules(b, 0.0005, 0.0, epsilon=8.0, max_pairs_per_basket=10, seed=0, max_false_pairs=max_false)
        false = sum((a, c) not in seen for a, c in zip(r["antecedent"], r["consequent"])) // 2
        if most_false is None:
            assert false > 1000
        else:
            assert false <= most_false and len(r) > 0
