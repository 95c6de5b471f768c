"""The linear blend: its scores are the scaled, weighted sum of its components', it stays one item-item matrix,
and its Optuna tuner's best trial is what the blend built from the best parameters scores."""
import numpy as np
import pytest

from training.models import MODELS, LinearBlend

COMPONENTS = [("ease", {"l2": 50.0}), ("itemknn", {"k": 50})]


@pytest.fixture(scope="module")
def blend(shop_data):
    return LinearBlend(COMPONENTS, weights=[1.0, 0.7]).fit(shop_data)


def test_scores_are_the_scaled_weighted_sum_of_the_components(blend, shop_data):
    users = np.arange(25)
    ease = MODELS["ease"](l2=50.0).fit(shop_data).score_users(users)
    knn = MODELS["itemknn"](k=50).fit(shop_data).score_users(users)
    assert blend.scales[0] > 0 and blend.scales[1] > 0 and blend.scales[0] != blend.scales[1]
    expected = ease / blend.scales[0] + 0.7 * knn / blend.scales[1]
    np.testing.assert_allclose(blend.score_users(users), expected, rtol=1e-5, atol=1e-6)
    # a component's scale is the mean best score of sampled training users: scaled, it tops out near 1
    top = (ease / blend.scales[0]).max(axis=1)
    assert 0.3 < float(np.mean(top)) < 3.0


def test_a_zero_weight_leaves_the_first_component_alone(shop_data):
    only = LinearBlend(COMPONENTS, weights=[1.0, 0.0]).fit(shop_data)
    ease = MODELS["ease"](l2=50.0).fit(shop_data)
    users = np.arange(10)
    np.testing.assert_allclose(only.score_users(users) * only.scales[0], ease.score_users(users), rtol=1e-5, atol=1e-5)


def test_from_fitted_equals_fitting_the_blend(blend, shop_data):
    models = [MODELS[f](**p).fit(shop_data) for f, p in COMPONENTS]
    same = LinearBlend.from_fitted(models, shop_data, weights=[1.0, 0.7])
    np.testing.assert_allclose(same.score_users(np.arange(30)), blend.score_users(np.arange(30)), rtol=1e-6)


def test_only_linear_families_can_join():
    with pytest.raises(ValueError, match="not linear"):
        LinearBlend([("ease", {}), ("mf", {})])
    with pytest.raises(ValueError, match="weights"):
        LinearBlend(COMPONENTS, weights=[1.0])


def test_tuner_best_trial_is_what_the_built_blend_scores(shop_clean, shop_split, tmp_path):
    from training.blend_tuning import tune_blend
    from training.data import build_interaction_data
    from training.metrics import evaluate_scores
    from training.tuning import TuningConfig

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    cfg = TuningConfig(n_trials=6, storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="blend",
                       output_dir=str(tmp_path), max_eval_users=None)
    res = tune_blend(fit, val, cfg, COMPONENTS)
    assert res.n_trials == 6 and res.best_params["weights"][0] == 1.0
    model = LinearBlend(**res.best_params).fit(fit)
    ours = evaluate_scores(model.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    assert abs(ours - res.best_value) < 1e-4, (ours, res.best_value)
    alone = evaluate_scores(MODELS["ease"](l2=50.0).fit(fit).score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    assert res.best_value >= alone - 1e-9  # trial 0 is the first component alone
