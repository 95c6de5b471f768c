"""One contract suite, run against every model family in ``training.models.MODELS`` (the registry's families,
``training.families``; its declarations are checked by ``tests/test_families.py``)."""
import numpy as np
import pytest

from training.models import MODELS
from training.ranking import top_k

FAST_PARAMS = {"association_rules": {"min_support": 0.002, "min_confidence": 0.05},
               "gf_cf": {"n_factors": 32},
               "chebycf": {"n_factors": 32, "svd": "arpack"},
               "ease": {"l2": 50.0},
               "mf": {"dim": 32, "max_epochs": 40, "lr": 0.01, "batch_size": 1024},
               "ials": {"dim": 32, "max_epochs": 10, "alpha0": 0.1, "l2": 1e-3},
               "lightgcn": {"dim": 32, "max_epochs": 30, "lr": 0.01, "batch_size": 1024, "init": "svd"},
               "blend": {"components": [("chebycf", {"n_factors": 32, "svd": "arpack"}), ("itemknn", {})],
                         "weights": [1.0, 0.5]}}
# Families whose related items are not personal to the item (popularity lists the same best-sellers).
NOT_ITEM_SPECIFIC = {"popularity"}


def build_hybrid(shop_data, shop_clean):
    """The hybrid over fitted item-kNN, association rules and TF-IDF title vectors (fast stand-in
    for the text encoder's embeddings)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from training.models.hybrid import Hybrid
    from training.text_encoder import item_texts

    items = shop_clean.items.set_index("item_id").loc[shop_data.item_ids].reset_index()
    x = TfidfVectorizer().fit_transform(item_texts(items)).toarray().astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-9
    collab = MODELS["itemknn"]().fit(shop_data)
    assoc = MODELS["association_rules"](**FAST_PARAMS["association_rules"]).fit(shop_data)
    return Hybrid(collab, assoc, x).fit(shop_data)


@pytest.fixture(scope="module", params=sorted(MODELS) + ["hybrid"])
def fitted(request, shop_data, shop_clean):
    name = request.param
    if name == "hybrid":
        return name, build_hybrid(shop_data, shop_clean)
    return name, MODELS[name](**FAST_PARAMS.get(name, {})).fit(shop_data)


def test_a_model_is_named_after_its_family(fitted):
    """The name in model_metrics, the registry and the plan is the family's (``training.families``)."""
    name, model = fitted
    assert model.name == name


def test_score_users_shape_and_determinism(fitted, shop_data):
    name, model = fitted
    users = np.array([0, 3, 7])
    s = model.score_users(users)
    assert s.shape == (3, shop_data.n_items) and s.dtype == np.float32
    np.testing.assert_array_equal(s, model.score_users(users))
    # a user's scores do not depend on who else is in the batch (up to BLAS rounding)
    np.testing.assert_allclose(model.score_users(np.array([3]))[0], s[1], rtol=1e-5, atol=1e-6)


def test_recommend_excludes_seen_items(fitted, shop_data):
    _, model = fitted
    users = np.arange(20)
    seen = shop_data.user_items[users]
    idx, scores = model.recommend(users, 10, exclude=seen)
    assert idx.shape == (20, 10)
    for r, u in enumerate(users):
        assert not set(idx[r]) & set(seen[r].indices)
        assert np.all(np.diff(scores[r]) <= 0)


def test_related_items_contract(fitted, shop_data):
    _, model = fitted
    items = np.arange(0, shop_data.n_items, 7)
    idx, scores = model.related_items(items, 5)
    assert idx.shape == scores.shape == (len(items), 5)
    assert idx.dtype == np.int64
    assert not (idx == items[:, None]).any(), "an item is never related to itself"
    valid = idx >= 0
    assert np.isnan(scores[~valid]).all()
    assert (idx[valid] < shop_data.n_items).all()
    for r in range(len(items)):
        v = scores[r][valid[r]]
        assert np.all(np.diff(v) <= 1e-6), "best first"


def test_fit_is_deterministic(fitted, shop_data, shop_clean):
    name, model = fitted
    again = build_hybrid(shop_data, shop_clean) if name == "hybrid" else MODELS[name](**FAST_PARAMS.get(name, {})
                                                                                      ).fit(shop_data)
    users = np.arange(10)
    # same seed, same model: equal up to float summation order (torch's parallel sparse products)
    np.testing.assert_allclose(model.score_users(users), again.score_users(users), rtol=1e-5, atol=1e-5)
    other = {"mf", "ials", "lightgcn"}
    if name in other:  # and a different seed gives a different model, so the check above has teeth
        changed = MODELS[name](**{**FAST_PARAMS[name], "seed": 7}).fit(shop_data)
        assert np.abs(changed.score_users(users) - model.score_users(users)).max() > 1e-3


def test_planted_pair_is_found(fitted, shop, shop_data):
    """Known answer: the planted partner is each anchor's top related item."""
    name, model = fitted
    if name in NOT_ITEM_SPECIFIC:
        pytest.skip(f"{name} ranks the same items for everyone; it has no item-specific answer")
    index = {i: n for n, i in enumerate(shop_data.item_ids)}
    anchors = np.array([index[a] for a, _ in shop.planted_pairs])
    partners = np.array([index[b] for _, b in shop.planted_pairs])
    idx, _ = model.related_items(anchors, 3)
    assert (idx[:, 0] == partners).all(), (name, idx[:, 0], partners)


def test_top_k_tie_break_and_order():
    s = np.array([[1.0, 3.0, 3.0, 2.0, -np.inf]], np.float32)
    idx, vals = top_k(s, 3)
    assert idx.tolist() == [[1, 2, 3]] and vals.tolist() == [[3.0, 3.0, 2.0]]
    idx, _ = top_k(s, 10)
    assert idx.tolist() == [[1, 2, 3, 0, 4]]


# Families whose fold-in needs retraining (documented in the README).
NO_FOLD_IN: set[str] = set()
APPROXIMATE_FOLD_IN = {"mf", "ials", "lightgcn"}


def test_fold_in(fitted, shop_data):
    """An unseen user given only a history gets scores; for exact families they equal a known user's."""
    name, model = fitted
    users = np.array([1, 5, 9])
    hist = shop_data.user_items[users]
    if name in NO_FOLD_IN:
        with pytest.raises(NotImplementedError):
            model.score_history(hist)
        return
    folded = model.score_history(hist)
    assert folded.shape == (3, shop_data.n_items)
    if name not in APPROXIMATE_FOLD_IN:
        np.testing.assert_allclose(folded, model.score_users(users), rtol=1e-5, atol=1e-6)


# Families that cannot be written as factors or one item-item matrix: the hybrid's blend z-scores each
# signal per user, which is not linear in the history.
NO_SERVING_FORM = {"hybrid"}


def test_onnx_export_matches_native_model(fitted, shop_data, tmp_path):
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity

    name, model = fitted
    if name in NO_SERVING_FORM:
        with pytest.raises(NotImplementedError):
            model.serving_form()
        return
    info = export_recommender(model, tmp_path / f"{name}.onnx", k=20)
    exported = OnnxRecommender(tmp_path / f"{name}.onnx", provider="cpu")
    assert exported.info == info and exported.active_provider == "CPUExecutionProvider"
    report = check_parity(model, exported, shop_data.user_items, n_users=shop_data.n_users)
    assert report.passed, report
    assert report.max_abs_diff <= 1e-4 and report.top_k_identical_fraction >= 0.999
    users = np.arange(15)
    items, scores = exported.top_k(users, shop_data.user_items[users])
    for r, u in enumerate(users):  # seen items never come back
        seen = set(shop_data.user_items[u].indices)
        assert not seen & set(items[r][np.isfinite(scores[r])])


def test_item_knn_scores_heavy_histories_to_float32_precision():
    """A user with thousands of history items sums thousands of similarities: the native score must stay the
    accurate reference for ONNX parity (float32 sequential sums drifted ~1e-4 on Online Retail's heaviest
    customers, the whole parity budget)."""
    import scipy.sparse as sp

    from training.data import InteractionData

    rng = np.random.default_rng(3)
    n_users, n_items = 60, 3000
    x = sp.random(n_users, n_items, density=0.6, format="csr", random_state=rng, dtype=np.float32)
    x.data[:] = 1.0
    data = InteractionData(np.arange(n_users).astype(str).astype(object),
                           np.arange(n_items).astype(str).astype(object), x, x.copy())
    model = MODELS["itemknn"](k=500, shrink=0.0).fit(data)
    native = model.score_users(np.arange(n_users))
    exact = x.astype(np.float64) @ model.similarity.astype(np.float64).toarray()
    assert exact.max() > 100  # heavy users: large sums, where float32 rounding accumulates
    ulps = np.abs(native - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() <= 1.0


def test_item_knn_float64_copy_follows_the_fitted_matrix_and_is_not_pickled(shop_data):
    """The float64 similarity used for scoring is made once per fit: a refit on other data must not score with the
    old copy, and a pickled model carries only the float32 matrix."""
    import pickle

    import scipy.sparse as sp

    model = MODELS["itemknn"](k=20).fit(shop_data)
    users = np.arange(min(5, shop_data.n_users))
    first = model.score_users(users)
    assert not [k for k in pickle.loads(pickle.dumps(model)).__dict__ if k.startswith("_f64_")]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).score_users(users), first)
    model.similarity = sp.csr_matrix(model.similarity.shape, dtype=np.float32)  # as if refitted to nothing
    assert not model.score_users(users).any()


def _anonymous_baskets(baskets: list[list[int]], n_items: int):
    """InteractionData with baskets only: no user at all (what leave_last_basket leaves of basket-only data)."""
    import scipy.sparse as sp

    from training.data import InteractionData

    rows = [r for r, b in enumerate(baskets) for _ in b]
    cols = [i for b in baskets for i in b]
    x = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(baskets), n_items))
    return InteractionData(np.array([], dtype=object), np.array([f"i{i}" for i in range(n_items)], dtype=object),
                           sp.csr_matrix((0, n_items), dtype=np.float32), x)


@pytest.mark.parametrize("family", sorted(set(MODELS) - {"association_rules"}))
def test_families_that_need_users_refuse_data_without_any_by_name(family):
    """Before: GF-CF "`A` must not be empty", ChebyCF/blend an sklearn parameter error, MF/LightGCN "truth value of
    an array ... ambiguous", EASE/item-kNN/popularity an all-zero model. Now one error saying what to set."""
    from training.models.base import NothingToLearn

    data = _anonymous_baskets([[0, 1], [1, 2], [0, 2, 3]], 5)
    with pytest.raises(NothingToLearn, match="no \\(user, item\\) pair.*3 baskets without a customer.*basket_completion"):
        MODELS[family](**FAST_PARAMS.get(family, {})).fit(data)
    assert MODELS["association_rules"](min_support=0.3).fit(data).rules.shape[0] > 0  # baskets are enough for rules


def test_graph_filters_fit_one_user_without_a_singular_direction():
    """min(shape) - 1 = 0 singular vectors to keep: the ideal filter is left out instead of svds failing."""
    from training.models.graph_filter import top_singular

    data = _anonymous_baskets([[0, 1, 2]], 4)
    data.user_items, data.user_ids = data.baskets, np.array(["basket:1"], dtype=object)
    s, vt = top_singular(data.user_items, 8, seed=0)
    assert s.shape == (0,) and vt.shape == (0, 4)
    for family in ("gf_cf", "chebycf"):
        model = MODELS[family](n_factors=8, ideal_power=1.0).fit(data)
        scores = model.score_users(np.array([0]))
        assert scores.shape == (1, 4) and np.isfinite(scores).all(), family


def test_no_rules_says_why_and_what_to_lower():
    from training.models.association import why_no_rules

    data = _anonymous_baskets([[0, 1]] * 2 + [[2, 3]] + [[4]] * 97, 5)  # the best pair is in 2 of 100 baskets
    why = why_no_rules(data.baskets, min_support=0.05, min_confidence=0.1)
    assert why.startswith("0 rules at min_support=0.05, min_confidence=0.1 over 100 baskets")
    assert "most frequent pair is in 2 baskets, support 0.02; lower association_rules.min_support" in why
    strict = why_no_rules(data.baskets, min_support=0.01, min_confidence=1.5)
    assert "2 pairs reach min_support but the highest confidence among them is 1; lower " \
           "association_rules.min_confidence" in strict
    singles = _anonymous_baskets([[0], [1]], 3)
    assert "no basket holds two different items" in why_no_rules(singles.baskets, 0.1, 0.1)


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path):
    from training.models.footprint import GIB, MemoryBudget, available_bytes, ease_fit_bytes, DataSize

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20971520 kB\n")  # 20 GiB
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_bytes(meminfo, cgroup) == 20 * GIB  # no cgroup files: the machine's figure
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text(str(GIB))
    assert available_bytes(meminfo, cgroup) == 20 * GIB  # "max": no limit
    (cgroup / "memory.max").write_text(str(9 * GIB))
    assert available_bytes(meminfo, cgroup) == 8 * GIB  # the container's headroom is smaller
    # Instacart's catalogue on a 24 GiB machine: EASE's two dense float32 matrices do not fit
    instacart = DataSize(n_users=131_209, n_items=49_688, nnz=1_300_000)
    assert ease_fit_bytes(instacart) == 2 * 49_688 ** 2 * 4
    why = MemoryBudget.given(23.0).refusal("ease", ease_fit_bytes(instacart), "leave it out")
    assert why == ("ease needs about 18.4 GiB, more than the 17.2 GiB allowed (75% of 23.0 GiB available, "
                   "memory_budget_gb in config); leave it out")
    assert MemoryBudget.given(32.0).refusal("ease", ease_fit_bytes(instacart), "leave it out") is None
