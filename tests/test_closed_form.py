"""Closed-form models against their formulas computed densely on small data, and fold-in."""
import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models import EASE, GraphFilter


def small_data(seed=0, n_users=60, n_items=25):
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    x[:, 3] = 0.0  # an item nobody touched
    m = sp.csr_matrix(x)
    return InteractionData(np.arange(n_users).astype(str).astype(object), np.arange(n_items).astype(str).astype(object),
                           m, m), x


def test_ease_matches_dense_formula():
    data, x = small_data()
    lam = 7.0
    p = np.linalg.inv(x.T.astype(np.float64) @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASE(l2=lam).fit(data)
    np.testing.assert_allclose(model.weights, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score_users(np.arange(5)), x[:5] @ b, rtol=1e-4, atol=1e-5)


def test_gf_cf_matches_dense_formula():
    data, x = small_data(1)
    du, di = x.sum(1), x.sum(0)
    with np.errstate(divide="ignore"):
        fu = np.where(du > 0, du ** -0.5, 0)
        fi = np.where(di > 0, di ** -0.5, 0)
    rn = fu[:, None] * x * fi[None, :]
    _, s, vt = np.linalg.svd(rn)
    k = 8
    v = vt[:k]
    dense = x @ (rn.T @ rn) + 0.3 * (x * fi[None, :]) @ v.T @ v * np.where(di > 0, di ** 0.5, 0)[None, :]
    model = GraphFilter(alpha=0.3, n_factors=k).fit(data)
    np.testing.assert_allclose(model.score_users(np.arange(len(x))), dense, rtol=1e-4, atol=1e-5)


def test_fold_in_equals_scores_of_known_users():
    data, x = small_data(2)
    for model in (EASE(l2=5.0).fit(data), GraphFilter(n_factors=6).fit(data)):
        history = sp.csr_matrix(x[[4, 9]])
        np.testing.assert_allclose(model.score_history(history), model.score_users(np.array([4, 9])),
                                   rtol=1e-5, atol=1e-6)


def test_graph_filter_tuner_agrees_with_the_model_it_picks(shop_clean, shop_split, tmp_path):
    """The fast tuner recombines cached terms; the model built from its best parameters must score
    the validation users exactly as the tuner's best trial did."""
    from training.data import build_interaction_data
    from training.graph_filter_tuning import tune_graph_filter
    from training.metrics import evaluate_scores
    from training.tuning import TuningConfig

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    cfg = TuningConfig(n_trials=6, storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="gf",
                       output_dir=str(tmp_path), max_eval_users=None)
    res = tune_graph_filter(fit, val, cfg, max_factors=48, svd="arpack")
    params = {**res.best_params, "svd": "arpack"}
    params["n_factors"] = min(params["n_factors"], 48)
    model = GraphFilter(**params).fit(fit)
    ours = evaluate_scores(model.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    assert abs(ours - res.best_value) < 1e-4, (ours, res.best_value)
    assert res.n_trials == 6 and (tmp_path / "gf" / "trials.csv").exists()
