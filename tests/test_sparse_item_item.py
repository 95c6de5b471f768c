"""The sparse top-N form of the item-item families: the cut equals the dense matrix's top-N rows, it is built in
row blocks without an n x n array, and its ONNX export scores like the native sparse model."""
import pickle
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from training.models import MODELS
from training.models.base import linear_item_matrix
from training.models.sparse import SparseItemItem, family_top_n, sparse_form, top_n_matrix

FAMILIES = {"chebycf": {"n_factors": 32, "svd": "arpack"}, "gf_cf": {"n_factors": 32}, "ease": {"l2": 50.0},
            "itemknn": {"k": 30}, "association_rules": {"min_support": 0.002, "min_confidence": 0.05},
            "blend": {"components": [("chebycf", {"n_factors": 32, "svd": "arpack"}), ("itemknn", {})],
                      "weights": [1.0, 0.5]}}
TOP_N = 12


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_model(request, shop_data):
    return request.param, MODELS[request.param](**FAMILIES[request.param]).fit(shop_data)


def test_top_n_rows_are_the_dense_matrix_top_n_rows(family_model):
    """Every kept weight is W's own entry, and it is among its row's N largest off-diagonal entries (up to exact
    ties); a row keeps N entries unless W's row has fewer non-zero ones."""
    name, model = family_model
    w = linear_item_matrix(model).astype(np.float64)  # the dense reference, (n_items, n_items)
    cut = family_top_n(model, TOP_N, chunk_size=16).tocsr()
    n = w.shape[0]
    np.fill_diagonal(w, -np.inf)
    assert cut.shape == (n, n) and cut.diagonal().sum() == 0
    for i in range(n):
        cols, vals = cut.indices[cut.indptr[i]:cut.indptr[i + 1]], cut.data[cut.indptr[i]:cut.indptr[i + 1]]
        row = w[i]
        nonzero = int(((row != 0) & np.isfinite(row)).sum())
        assert len(cols) == min(TOP_N, nonzero), (name, i)
        np.testing.assert_allclose(vals, row[cols], rtol=1e-5, atol=1e-6)
        if len(cols):
            nth = np.sort(row[np.isfinite(row) & (row != 0)])[::-1][len(cols) - 1]
            assert vals.min() >= nth - 1e-5 * max(1.0, abs(nth)), (name, i)
            dense_best = np.sort(row[np.isfinite(row) & (row != 0)])[::-1][:len(cols)]
            np.testing.assert_allclose(np.sort(vals)[::-1], dense_best, rtol=1e-5, atol=1e-6)


def test_sparse_model_scores_are_the_history_times_the_cut_matrix(family_model, shop_data):
    name, model = family_model
    sparse = SparseItemItem.from_model(model, TOP_N, chunk_size=32)
    x = shop_data.user_items
    users = np.arange(40)
    expected = (x[users].astype(np.float64) @ family_top_n(model, TOP_N).astype(np.float64)).toarray()
    np.testing.assert_allclose(sparse.score_users(users), expected, rtol=1e-5, atol=1e-6)
    assert sparse.name == name and sparse.top_n == TOP_N
    assert sparse.training_params == getattr(model, "training_params", {})
    idx, vals = sparse.related_items(np.arange(5), 3)
    assert idx.shape == (5, 3) and not np.any(idx == np.arange(5)[:, None])
    again = pickle.loads(pickle.dumps(sparse))
    np.testing.assert_array_equal(again.score_users(users), sparse.score_users(users))


def test_onnx_export_of_the_sparse_form_matches_the_native_sparse_model(family_model, shop_data, tmp_path):
    from serving.exports import verify_export
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender

    name, model = family_model
    sparse = SparseItemItem.from_model(model, TOP_N)
    info = export_recommender(sparse, tmp_path / f"{name}.onnx", k=20)
    assert info.kind == "item_item_sparse" and info.family == name and 1 <= info.n_neighbours <= TOP_N
    check = verify_export(name, sparse, tmp_path / f"{name}.onnx", shop_data.user_items,
                          lambda p: OnnxRecommender(p, provider="cpu"), n_users=shop_data.n_users)
    assert check.passed and check.error == "", check
    assert check.max_abs_diff <= 1e-4 and check.top_k_identical_fraction >= 0.999
    exported = OnnxRecommender(tmp_path / f"{name}.onnx", provider="cpu")
    users = np.arange(25)
    history = shop_data.user_items[users]
    items, scores = exported.top_k(users, history)
    for r in range(len(users)):  # seen items never come back; an empty history is scored too
        assert not set(history[r].indices) & set(items[r][np.isfinite(scores[r])])
    empty = sp.csr_matrix((2, shop_data.n_items), dtype=np.float32)
    assert np.all(exported.scores(np.arange(2), empty) == 0)


def test_chunked_construction_never_holds_an_n_by_n_array():
    """A 3,000-item model built 64 rows at a time: every block handed over is (<= 64, n), and the traced peak
    stays far below one dense (n, n) float32 matrix (36 MB)."""
    n, chunk, top = 3000, 64, 10
    rng = np.random.default_rng(0)
    w = sp.random(n, n, density=0.01, format="csr", dtype=np.float32, random_state=rng)
    shapes = []

    def score_rows(eye: sp.csr_matrix) -> np.ndarray:
        shapes.append(eye.shape)
        return (eye @ w).toarray()

    tracemalloc.start()
    cut = top_n_matrix(score_rows, n, top, chunk_size=chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all(rows <= chunk and cols == n for rows, cols in shapes) and sum(r for r, _ in shapes) == n
    assert peak < n * n * 4 / 8, f"peak {peak / 2**20:.1f} MiB"
    assert cut.getnnz(axis=1).max() <= top
    best = np.sort(w[7].toarray().ravel())[::-1][:top]
    np.testing.assert_allclose(np.sort(cut[7].data)[::-1], best[best > 0])


def test_spectral_family_rows_come_in_blocks(shop_data):
    """ChebyCF's W rows are asked for in blocks of at most ``chunk_size`` one-item histories."""
    model = MODELS["chebycf"](**FAMILIES["chebycf"]).fit(shop_data)
    seen = []
    original = model.score_history

    def spy(rows):
        seen.append(rows.shape)
        assert rows.nnz == rows.shape[0]  # one item a row
        return original(rows)

    model.score_history = spy
    family_top_n(model, 5, chunk_size=20)
    assert seen and all(r <= 20 and c == shop_data.n_items for r, c in seen)


def test_padding_and_truncation():
    from benchmarks.sparse_top_n import truncate_rows

    m = sp.csr_matrix(np.array([[0, 3, 1, 2], [0, 0, 0, 0], [5, 5, 0, 1], [1, 0, 0, 0]], np.float32))
    form = sparse_form(m, 3)
    assert form.neighbours.shape == (4, 3)
    np.testing.assert_array_equal(form.neighbours[1], [1, 1, 1]) and np.all(form.weights[1] == 0)
    cut = truncate_rows(m, 1).toarray()
    np.testing.assert_array_equal(cut, [[0, 3, 0, 0], [0, 0, 0, 0], [5, 0, 0, 0], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match="more than top_n"):
        sparse_form(m, 2)


def test_the_memory_planner_serves_large_catalogues_sparse():
    from training.models.footprint import MemoryBudget, item_item_form, sparse_item_item_bytes

    small, large = MemoryBudget.given(23.0), MemoryBudget.given(200.0)
    assert item_item_form(49_688, small) == "sparse" and item_item_form(4_070, small) == "dense"
    assert item_item_form(49_688, large) == "dense" and item_item_form(49_688, large, "sparse") == "sparse"
    assert item_item_form(49_688, MemoryBudget(None)) == "dense"  # nothing known: as before
    assert sparse_item_item_bytes(49_688, 200) < 2**30  # under 1 GiB where dense needs 18 GiB
    with pytest.raises(ValueError, match="auto"):
        item_item_form(10, small, "tiny")


def test_the_pipeline_serves_item_item_families_sparse_when_the_plan_says_so(tmp_path):
    """``item_item_form: sparse`` (what ``auto`` picks where the dense export does not fit): EASE and ChebyCF come
    out as their top-N form, evaluated as such, and every item-item export is the sparse graph and passes parity."""
    import dagster as dg

    from orchestration.definitions import all_assets, all_checks, build_resources

    selection = (dg.AssetSelection.groups("ingestion", "validation", "splits", "models")
                 - dg.AssetSelection.assets("hybrid_model")) | dg.AssetSelection.assets("model_exports")
    families = ["association_rules", "itemknn", "ease", "chebycf"]
    config = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 150}},
                      "association_rules": {"config": {"min_support": 0.002}},
                      "ease_model": {"config": {"l2": 50.0}}, "chebycf_model": {"config": {"n_factors": 16}}},
              "resources": {"training_plan": {"config": {"families": families, "item_item_form": "sparse",
                                                         "item_item_top_n": 10}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], selection=selection, resources=build_resources(str(tmp_path)),
                                run_config=config, instance=instance, raise_on_error=False)
    assert result.success, [e.event_specific_data.error.message[:500] for e in result.all_events
                            if e.event_type_value == "STEP_FAILURE"]
    for asset, family in (("ease_model", "ease"), ("chebycf_model", "chebycf")):
        model = result.output_for_node(asset)
        assert isinstance(model, SparseItemItem) and model.name == family and model.top_n == 10
        assert model.matrix.getnnz(axis=1).max() <= 10
    assert not isinstance(result.output_for_node("itemknn_model"), SparseItemItem)  # natively sparse: kept
    exports = result.output_for_node("model_exports", "model_exports")
    assert sorted(exports["family"]) == sorted(families) and exports["passed"].all()
    kinds = exports.set_index("family")["kind"]
    assert {kinds[f] for f in ("itemknn", "ease", "chebycf")} == {"item_item_sparse"}
    assert kinds["association_rules"] in ("item_item_sparse", "rules")  # multi-item rules export as themselves


def test_sansa_ease_is_linear_in_the_history_and_exports_sparse(shop_data, tmp_path):
    """SANSA (EASE at any size) on the synthetic shop: scores are history @ (A @ B), so its top-N cut and the cut's
    ONNX export work as for every item-item family."""
    from training.models.sansa_ease import SansaEASE, sansa_available

    if not sansa_available():
        pytest.skip("sansa not installed (pip install 'cobuy[scale]' after installing SuiteSparse)")
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity

    model = SansaEASE(l2=20.0, density=0.05).fit(shop_data)
    x = shop_data.user_items
    users = np.arange(30)
    scores = model.score_users(users)
    assert scores.shape == (30, shop_data.n_items) and np.isfinite(scores).all()
    w = (model.left @ model.right).toarray()
    np.testing.assert_allclose(scores, x[users].toarray() @ w, rtol=1e-4, atol=1e-5)
    cut = SparseItemItem.from_model(model, TOP_N)
    export_recommender(cut, tmp_path / "ease.onnx", k=20)
    assert check_parity(cut, OnnxRecommender(tmp_path / "ease.onnx", provider="cpu"), x).passed


def test_sparse_exports_give_related_items_and_held_out_scores_like_the_native_model(shop_data, tmp_path):
    """The batch paths that read an export by its kind: related items through the derived neighbour graph, and
    id-aligned held-out scoring, both equal the native sparse model."""
    from serving.batch_scoring import item_neighbour_model, related_from_export
    from serving.heldout import IdAlignedScorer
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender

    model = SparseItemItem.from_model(MODELS["gf_cf"](n_factors=16).fit(shop_data), TOP_N)
    path = tmp_path / "gf_cf.onnx"
    export_recommender(model, path, k=20, user_ids=shop_data.user_ids, item_ids=shop_data.item_ids)
    exported = OnnxRecommender(path, provider="cpu")
    items = np.arange(shop_data.n_items)
    idx, scores = related_from_export(item_neighbour_model(exported, provider="cpu"), items, 5, progress=False)
    native_idx, native_scores = model.related_items(items, 5)
    np.testing.assert_array_equal(idx, native_idx)
    np.testing.assert_allclose(scores, native_scores, rtol=1e-5)
    scorer = IdAlignedScorer(exported, shop_data.user_ids, shop_data.item_ids, shop_data.user_items)
    users = np.arange(20)
    np.testing.assert_allclose(scorer(users), model.score_users(users), rtol=1e-5, atol=1e-6)
