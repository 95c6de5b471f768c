"""Closed-form models against their formulas computed densely on small data, and fold-in."""
import numpy as np
import pytest
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


def normalised_dense(x):
    """R~ = D_U^{-1/2} X D_I^{-1/2} densely, the item factors D_I^{-1/2} and the item degrees."""
    du, di = x.sum(1), x.sum(0)
    with np.errstate(divide="ignore"):
        fu = np.where(du > 0, du ** -0.5, 0)
        fi = np.where(di > 0, di ** -0.5, 0)
    return fu[:, None] * x * fi[None, :], fi, di


def test_ease_matches_dense_formula():
    data, x = small_data()
    lam = 7.0
    p = np.linalg.inv(x.T.astype(np.float64) @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASE(l2=lam, solver="primal").fit(data)
    np.testing.assert_allclose(model.weights, b, rtol=1e-5, atol=1e-6)
    # through the users' Gram matrix (push-through identity): the same model
    wide, xw = small_data(4, n_users=20, n_items=40)
    pw = np.linalg.inv(xw.T.astype(np.float64) @ xw + lam * np.eye(xw.shape[1]))
    bw = -pw / np.diag(pw)[None, :]
    np.fill_diagonal(bw, 0.0)
    for solver in ("dual", "auto"):
        np.testing.assert_allclose(EASE(l2=lam, solver=solver).fit(wide).weights, bw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score_users(np.arange(5)), x[:5] @ b, rtol=1e-4, atol=1e-5)


def test_gf_cf_matches_dense_formula():
    data, x = small_data(1)
    rn, fi, di = normalised_dense(x)
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


@pytest.mark.parametrize("targets", ["nodes", "extrema"])
def test_chebycf_matches_dense_spectral_formula(targets):
    """ChebyCF against its definition computed densely: the Chebyshev sum equals the interpolating
    polynomial of the target response evaluated on the eigenvalues of L~ = I - 2 R~^T R~."""
    from training.models.chebycf import chebyshev_coefficients, plateau_response

    data, x = small_data(3)
    rn, _, di = normalised_dense(x)
    lam, q = np.linalg.eigh(np.eye(x.shape[1]) - 2 * rn.T @ rn)
    order, flat, beta, post, alpha, k = 5, 2.0, 0.3, 0.6, 0.25, 6
    coeffs = chebyshev_coefficients(order, flat, targets)
    response = np.polynomial.chebyshev.chebval(lam, coeffs)
    h = q @ np.diag(response) @ q.T
    if targets == "nodes":  # the interpolant matches the target at the Chebyshev nodes
        nodes = np.cos(np.pi * (np.arange(order + 1) + 0.5) / (order + 1))
        np.testing.assert_allclose(np.polynomial.chebyshev.chebval(nodes, coeffs), plateau_response(nodes, flat),
                                   atol=1e-12)
    _, _, vt = np.linalg.svd(rn)
    with np.errstate(divide="ignore"):
        pre = np.where(di > 0, di ** -beta, 0.0)
    xin = x * pre[None, :]
    dense = (xin @ h + alpha * xin @ vt[:k].T @ vt[:k]) * np.where(di > 0, di ** post, 0)[None, :]
    from training.models import ChebyCF

    model = ChebyCF(order=order, flatness=flat, n_factors=k, alpha=alpha, beta=beta, post_beta=post,
                    svd="arpack", targets=targets).fit(data)
    np.testing.assert_allclose(model.score_users(np.arange(len(x))), dense, rtol=1e-4, atol=1e-5)


def test_chebycf_tuner_agrees_with_the_model_it_picks(shop_clean, shop_split, tmp_path):
    """The tuner recombines cached Chebyshev bases; the model built from its best parameters must score
    the validation users as the tuner's best trial did."""
    from training.chebycf_tuning import tune_chebycf
    from training.data import build_interaction_data
    from training.metrics import evaluate_scores
    from training.models import ChebyCF
    from training.tuning import Param, TuningConfig

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    cfg = TuningConfig(n_trials=6, storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="cheby",
                       output_dir=str(tmp_path), max_eval_users=None)
    space = {"order": Param("int", 2, 6), "flatness": Param("float", 0.5, 3.0), "alpha": Param("float", 0.0, 0.6),
             "n_factors": Param("categorical", choices=[16, 32]), "post_beta": Param("float", 0.2, 0.7)}
    res = tune_chebycf(fit, val, cfg, space=space, svd="arpack", cache_dtype=np.float32)
    model = ChebyCF(**res.best_params).fit(fit)
    ours = evaluate_scores(model.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    assert abs(ours - res.best_value) < 1e-4, (ours, res.best_value)
    assert res.n_trials == 6 and (tmp_path / "cheby" / "trials.csv").exists()


def test_chebycf_reference_targets_pair_nodes_with_extrema():
    """The authors' variant: the polynomial takes, at the j-th Chebyshev node (ascending), the response at the
    j-th Chebyshev extremum (ascending, 3 decimals), so it is 1 at t = -1 side and steeper than the exact one."""
    from training.models.chebycf import chebyshev_coefficients, plateau_response

    order, flat = 8, 1.5
    coeffs = chebyshev_coefficients(order, flat, targets="extrema")
    nodes = np.sort(np.cos(np.pi * (np.arange(order + 1) + 0.5) / (order + 1)))
    extrema = np.sort(np.cos(np.pi * np.arange(order + 1) / order))
    np.testing.assert_allclose(np.polynomial.chebyshev.chebval(nodes, coeffs),
                               np.round(plateau_response(np.round(extrema, 3), flat), 3), atol=1e-12)
    exact = chebyshev_coefficients(order, flat, targets="nodes")
    t = np.array([-0.75, 0.75])
    steeper, smooth = (np.polynomial.chebyshev.chebval(t, c) for c in (coeffs, exact))
    assert steeper[0] > smooth[0] and steeper[1] < smooth[1]
    with pytest.raises(ValueError, match="targets"):
        chebyshev_coefficients(order, flat, targets="chebyshev")
