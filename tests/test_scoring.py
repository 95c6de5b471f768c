"""Batch scoring with ONNX Runtime: the champion named by MLflow's alias is what gets scored.

A champion is registered here by hand (log a run, register the version, move ``champion``), the way the
promotion gate or a person in the MLflow UI does; the scoring assets then run on the synthetic shop."""
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from orchestration.assets import scoring
from orchestration.definitions import build_resources
from serving.registry import CHAMPION

pytestmark = pytest.mark.heavy(28)  # seconds on 2 quiet cores: make test starts the heaviest files first

CONFIG = {"user_recommendations": {"config": {"family": "itemknn", "chunk_size": 64}},
          "related_items": {"config": {"family": "itemknn", "k": 10, "chunk_size": 64}},
          "cold_item_neighbours": {"config": {"k": 5}},
          "cold_item_partners": {"config": {"k": 5}}}
# the upstream partner policy: three twins, as many as the neighbours above hold and fewer than the shop's items
UPSTREAM_CONFIG = {"ops": {"cold_partner_policy": {"config": {"n_twins": 3}}}}
SCORING = dg.load_assets_from_modules([scoring])
K = 10


def stand_in(name: str, group: str, value) -> dg.AssetsDefinition:
    """An upstream asset that just returns ``value``."""
    @dg.asset(name=name, group_name=group)
    def _asset():
        return value

    return _asset


def upstream_assets(shop_data, shop_clean, shop_split) -> tuple[list, object]:
    """Stand-ins for the upstream assets, holding the session's synthetic shop (built once in conftest): the split,
    its matrices, the catalog, the untuned encoder and its item embeddings (no popularity head: biases 0); and the
    real ``cold_partner_policy`` fitted on them (materialize with ``UPSTREAM_CONFIG``).
    Returns (the assets, the matrices)."""
    from orchestration.assets.splits import SplitMatrices
    from orchestration.assets.text import TextEncoderArtifact, catalog_in_order, cold_partner_policy
    from training.data import build_interaction_data
    from training.text_encoder import TextEncoder, TextEncoderConfig, default_model_path, item_texts

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    matrices = SplitMatrices(shop_data, shop_data.matrix_for(shop_split.test), fit,
                             fit.matrix_for(shop_split.validation))
    encoder = TextEncoderArtifact(default_model_path(), default_model_path(), 0.05, 32, {})
    catalog = catalog_in_order(shop_clean.items, shop_data.item_ids)
    embeddings = pd.DataFrame({"item_id": catalog["item_id"].astype("string").values,
                               "embedding": list(TextEncoder(TextEncoderConfig()).embed(item_texts(catalog))),
                               "bias": np.zeros(len(catalog), np.float32)})
    return [stand_in("interaction_matrices", "splits", matrices),
            stand_in("validated_items", "validation", shop_clean.items), stand_in("text_encoder", "text", encoder),
            stand_in("training_split", "splits", shop_split),
            stand_in("item_text_embeddings", "text", embeddings), cold_partner_policy], matrices


def register_champion(mlflow, family: str, model, data, tmp_path, tag: str) -> str:
    """Export ``model``, log it to MLflow, register it as a new version of ``family`` and make it champion."""
    from mlflow import MlflowClient

    from serving.onnx_export import export_recommender
    from serving.registry import register_challenger
    from training.tracking import TrainingRun, log_training_run

    path = tmp_path / f"{tag}.onnx"
    info = export_recommender(model, path, k=K, user_ids=data.user_ids, item_ids=data.item_ids)
    logged = log_training_run(mlflow.tracking_uri, "cobuy-test", TrainingRun(
        model.name, {"tag": tag}, metrics={}, tags={}, onnx_path=str(path), onnx_kind=info.kind,
        onnx_n_items=info.n_items, onnx_k=info.k), artifact_location=mlflow.artifact_location)
    version = register_challenger(mlflow.tracking_uri, mlflow.model_name(family), logged.model_uri, logged.run_id)
    MlflowClient(mlflow.tracking_uri, registry_uri=mlflow.tracking_uri).set_registered_model_alias(mlflow.model_name(family), CHAMPION, version)
    return version


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory, shop_data, shop_clean, shop_split):
    """Two item-kNN variants registered as versions of one family; a function that materializes scoring assets."""
    from training.models import ItemKNN

    base = tmp_path_factory.mktemp("scoring")
    resources = build_resources(str(base))
    upstream, matrices = upstream_assets(shop_data, shop_clean, shop_split)
    models = {"broad": ItemKNN(k=200).fit(shop_data), "narrow": ItemKNN(k=3, shrink=50.0).fit(shop_data)}
    versions = {tag: register_champion(resources["mlflow"], "itemknn", m, shop_data, base, tag)
                for tag, m in models.items()}  # "narrow" registered last: it is champion
    with dg.instance_for_test() as instance:
        stored = dg.materialize(upstream, resources=resources, instance=instance, run_config=UPSTREAM_CONFIG)

        def score(selection, config=None):
            return dg.materialize([*upstream, *SCORING], selection=selection, resources=resources,
                                  run_config={"ops": config or {k: v for k, v in CONFIG.items() if k in selection}},
                                  instance=instance, raise_on_error=config is None)

        yield {"resources": resources, "matrices": matrices, "models": models, "versions": versions,
               "score": score, "items": shop_clean.items, "policy": stored.output_for_node("cold_partner_policy"),
               "policy_metadata": _metadata(stored, "cold_partner_policy")}


def _metadata(result, key: str) -> dict:
    mat = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
           if e.event_specific_data.materialization.asset_key.to_user_string() == key][0]
    return {k: v.value for k, v in mat.metadata.items()}


def _native_top_k(model, data, k: int) -> pd.DataFrame:
    users = np.arange(data.n_users)
    idx, scores = model.recommend(users, k, exclude=data.user_items)
    return pd.DataFrame({"user_id": np.repeat(data.user_ids, k).astype(str), "rank": np.tile(np.arange(1, k + 1),
                         len(users)), "item_id": data.item_ids[idx.ravel()].astype(str), "score": scores.ravel()})


def _check_recommendations(recs: pd.DataFrame, model, data) -> None:
    assert recs.groupby("user_id").size().eq(K).all() and recs["user_id"].nunique() == data.n_users
    seen = set(zip(np.repeat(data.user_ids, np.diff(data.user_items.indptr)).astype(str),
                   data.item_ids[data.user_items.indices].astype(str)))
    assert not seen & set(zip(recs["user_id"], recs["item_id"])), "a seen item was recommended"
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 0).all(), "scores not descending within a user"
    native = _native_top_k(model, data, K)
    merged = recs.merge(native, on=["user_id", "rank"], suffixes=("", "_native"))
    assert len(merged) == len(recs)
    assert (merged["item_id"] == merged["item_id_native"]).all()
    np.testing.assert_allclose(merged["score"], merged["score_native"], rtol=1e-5, atol=1e-5)


def test_champion_alias_is_what_gets_scored(shop_run):
    import onnxruntime as ort

    data, models, versions = shop_run["matrices"].train, shop_run["models"], shop_run["versions"]
    result = shop_run["score"](["user_recommendations"])
    meta = _metadata(result, "user_recommendations")
    assert meta["model"] == "cobuy-itemknn" and meta["model_version"] == versions["narrow"]
    assert meta["rows"] == data.n_users * K and meta["users"] == data.n_users
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert meta["provider"] == "CPUExecutionProvider"  # "auto" falls back to CPU on this machine
    narrow = pd.read_parquet(result.output_for_node("user_recommendations").path)
    _check_recommendations(narrow, models["narrow"], data)

    # a person promotes the other version in the MLflow UI: the next scoring run follows the alias
    from mlflow import MlflowClient

    mlflow = shop_run["resources"]["mlflow"]
    MlflowClient(mlflow.tracking_uri, registry_uri=mlflow.tracking_uri).set_registered_model_alias("cobuy-itemknn", CHAMPION, versions["broad"])
    result = shop_run["score"](["user_recommendations"])
    assert _metadata(result, "user_recommendations")["model_version"] == versions["broad"]
    broad = pd.read_parquet(result.output_for_node("user_recommendations").path)
    _check_recommendations(broad, models["broad"], data)
    assert not broad[["item_id", "score"]].equals(narrow[["item_id", "score"]])
    MlflowClient(mlflow.tracking_uri, registry_uri=mlflow.tracking_uri).set_registered_model_alias("cobuy-itemknn", CHAMPION, versions["narrow"])


def test_related_items_come_from_the_champion_with_evidence(shop_run, shop):
    from serving.related import related_items_table

    data, items = shop_run["matrices"].train, shop_run["items"]
    result = shop_run["score"](["related_items"])
    related = result.output_for_node("related_items")
    native = related_items_table(shop_run["models"]["narrow"], data, items, k=10)
    # the order label names what served it (registered name and version) where the native table names the family
    assert related["ranked_by"].str.startswith("score of cobuy-itemknn v").all()
    served_reasons = related["reason"].str.replace(r"cobuy-itemknn v\d+", "itemknn", regex=True)
    assert served_reasons.tolist() == native["reason"].tolist()
    pd.testing.assert_frame_equal(related.drop(columns=["model", "score", "ranked_by", "reason"]),
                                  native.drop(columns=["model", "score", "ranked_by", "reason"]))
    np.testing.assert_allclose(related["score"], native["score"], rtol=1e-5)
    assert (related["model"] == f"cobuy-itemknn v{shop_run['versions']['narrow']}").all()
    top1 = related[related["rank"] == 1].set_index("item_id")["related_item_id"]
    for a, b in shop.planted_pairs:
        assert top1[a] == b
    planted = related[(related["item_id"] == shop.planted_pairs[0][0]) & (related["rank"] == 1)].iloc[0]
    assert planted["lift"] > 10 and planted["co_purchase_count"] >= 5


def test_cold_items_get_warm_text_neighbours(shop_run, shop):
    from serving.batch_scoring import cold_and_warm_items

    data = shop_run["matrices"].train
    result = shop_run["score"](["cold_item_neighbours"])
    table = result.output_for_node("cold_item_neighbours")
    cold, warm = cold_and_warm_items(data)
    assert len(cold) > 0 and set(table["item_id"]) == set(data.item_ids[cold])
    assert table.groupby("item_id").size().eq(5).all()
    assert set(table["neighbour_item_id"]) <= set(data.item_ids[warm])
    assert (table.groupby("item_id")["score"].diff().dropna() <= 1e-7).all()
    meta = _metadata(result, "cold_item_neighbours")
    assert meta["cold_items"] == len(cold) and meta["precision"] == "int8"
    # known answer: each "Deluxe" twin (new) finds its anchor (same title otherwise) among its nearest
    for twin, anchor, _ in shop.twins:
        assert anchor in set(table.loc[table["item_id"] == twin, "neighbour_item_id"].head(3)), twin


def test_cold_items_get_the_partners_of_their_textual_twins(shop_run, shop):
    """Known answer: each new "Deluxe" twin is bought in place of its anchor, so it belongs with the anchor's planted
    partner; the partner must come first among what the twin's text neighbours were bought with, and stay among the
    first five once the popularity prior is added."""
    from serving.batch_scoring import cold_and_warm_items, cold_item_partners_table
    from training.cold_start import PRIOR_WEIGHTS

    data = shop_run["matrices"].train
    result = shop_run["score"](["cold_item_neighbours", "cold_item_partners"])
    table = result.output_for_node("cold_item_partners")
    cold, _ = cold_and_warm_items(data)
    assert set(table["item_id"]) == set(data.item_ids[cold]) and table.groupby("item_id").size().eq(5).all()
    assert not (table["item_id"] == table["partner_item_id"]).any()
    assert (table.groupby("item_id")["score"].diff().dropna() <= 1e-7).all()
    meta = _metadata(result, "cold_item_partners")
    neighbours = result.output_for_node("cold_item_neighbours")
    # the twins' partners alone (no prior) put the planted partner first; served with the prior at the weight the
    # validation window chose (it leans to best-sellers on this shop), the partner stays in the top 5
    alone = cold_item_partners_table(neighbours, data, shop_run["items"], 5, 3, 0.1)
    for twin, anchor, partner in shop.twins:
        assert alone.loc[alone["item_id"] == twin].sort_values("rank")["partner_item_id"].iloc[0] == partner, twin
        assert partner in set(table.loc[table["item_id"] == twin, "partner_item_id"]), twin
    assert meta["cold_items"] == len(cold)
    # the prior's weight was chosen on the new items of the split's validation window, and what it adds is its
    # weight times the candidates' log popularity: at an overwhelming weight the ranking is the best-sellers'
    policy, chosen = shop_run["policy"], shop_run["policy_metadata"]
    assert chosen["prior_weight_from"].startswith("validation window") and chosen["validation_new_items"] > 0
    assert chosen["prior_weight"] in PRIOR_WEIGHTS and "prior_weight_curve" in chosen
    assert chosen["prior_weight_plot"].startswith("![prior weight](data:image/png;base64,iVBOR")  # a PNG, inline
    # served as the policy says: its weight, its three twins
    assert (meta["prior_weight"], meta["prior_weight_from"], meta["twins_served"]) == (
        policy.prior_weight, policy.chosen_from, 3)
    counts = np.bincount(data.baskets.indices, minlength=data.n_items)
    prior = np.log1p(counts).astype(np.float32)
    loud = cold_item_partners_table(neighbours, data, shop_run["items"], 5, 3, 0.1, prior, 1e6)
    position = pd.Index(data.item_ids.astype(str))
    tops = loud.sort_values("rank").groupby("item_id")["partner_item_id"].first()
    assert (counts[position.get_indexer(tops.astype(str))] == counts.max()).all()
    same = cold_item_partners_table(neighbours, data, shop_run["items"], 5, 3, 0.1, prior, meta["prior_weight"])
    pd.testing.assert_frame_equal(same.reset_index(drop=True), table.reset_index(drop=True))


def test_factor_export_with_its_own_item_order(tmp_path, shop_data):
    """A factor export whose items are in another order than today's data: users are scored by id, and
    the derived cosine graph gives the factors' related items."""
    from serving.batch_scoring import item_neighbour_model, related_from_export, score_users_to_parquet
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender
    from training.models.base import FactorForm

    rng = np.random.default_rng(0)
    perm = rng.permutation(shop_data.n_items)  # export position p holds today's item perm[p]
    form = FactorForm(rng.normal(size=(shop_data.n_users, 8)).astype(np.float32),
                      rng.normal(size=(shop_data.n_items, 8)).astype(np.float32))

    class Factors:
        name = "factors"

        def serving_form(self):
            return form

    export_recommender(Factors(), tmp_path / "f.onnx", k=K, user_ids=shop_data.user_ids,
                       item_ids=shop_data.item_ids[perm])
    model = OnnxRecommender(tmp_path / "f.onnx", provider="cpu")
    facts, preview = score_users_to_parquet(model, shop_data, tmp_path / "recs.parquet", chunk_size=50,
                                            progress=False)
    assert facts["rows"] == shop_data.n_users * K and len(preview) == 10
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    scores = form.user_factors @ form.item_factors.T  # (users, export items)
    want = scores[:, np.argsort(perm)]  # today's item order
    want[shop_data.user_items.nonzero()] = -np.inf
    best = np.argsort(-want, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(recs["item_id"].to_numpy().reshape(-1, K), shop_data.item_ids[best])

    neighbours = item_neighbour_model(model, provider="cpu")
    items = np.arange(30)
    idx, sims = related_from_export(neighbours, items, 5, progress=False, min_score=-1.0)
    v = form.item_factors / np.linalg.norm(form.item_factors, axis=1, keepdims=True)
    cos = v[items] @ v.T
    cos[np.arange(len(items)), items] = -np.inf
    np.testing.assert_array_equal(idx, np.argsort(-cos, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(sims, np.sort(cos, axis=1)[:, ::-1][:, :5], atol=1e-5)


def test_no_champion_stops_with_the_model_named(shop_run):
    result = shop_run["score"](["user_recommendations"], {"user_recommendations": {"config": {"family": "ease"}}})
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "cobuy-ease" in failure.event_specific_data.error.message


def test_cuda_preference_fails_clearly_without_cuda():
    import onnxruntime as ort

    from serving.onnx_scoring import choose_providers

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert choose_providers("cuda")[0] == "CUDAExecutionProvider"
    else:
        assert choose_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(ValueError, match="CUDAExecutionProvider"):
            choose_providers("cuda")


def test_related_graph_reads_an_external_data_export_in_place(tmp_path, shop_data, monkeypatch):
    """Item-item weights stored as external data: the related-items graph gathers W's rows from the same
    side file (no n^2 copy) and gives the native model's related items."""
    import serving.onnx_export as onnx_export
    from serving.batch_scoring import item_neighbour_model, related_from_export
    from serving.onnx_scoring import OnnxRecommender
    from training.models import ItemKNN

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)  # every export writes its weights beside it
    model = ItemKNN(k=20).fit(shop_data)
    onnx_export.export_recommender(model, tmp_path / "knn.onnx", k=K, item_ids=shop_data.item_ids)
    side_files = list(tmp_path.glob("knn.onnx.*.data"))
    assert len(side_files) == 1
    neighbours = item_neighbour_model(OnnxRecommender(tmp_path / "knn.onnx", provider="cpu"), provider="cpu")
    assert neighbours.path.stat().st_size < side_files[0].stat().st_size / 10
    items = np.arange(shop_data.n_items)
    idx, sims = related_from_export(neighbours, items, K, chunk_size=64, progress=False)
    want_idx, want_sims = model.related_items(items, K)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(sims, want_sims, rtol=1e-6)


def test_score_job_and_nightly_schedule_are_defined():
    from orchestration.definitions import defs

    job = defs.resolve_job_def("score")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "user_recommendations", "related_items", "cold_item_neighbours", "cold_item_partners"}
    schedule = defs.resolve_schedule_def("nightly_score")
    assert schedule.job_name == "score" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    graph = defs.resolve_asset_graph()
    for key in ("user_recommendations", "related_items"):  # scored after the promotion gate
        assert dg.AssetKey("champion_decisions") in graph.get(dg.AssetKey(key)).parent_keys


def test_tables_come_from_the_serving_champion_or_say_which_model_made_them(shop_run, shop, tmp_path, shop_clean):
    """``family: serving`` (the default): no serving champion yet -> a family's own champion, and why; popularity
    served -> its user recommendations, but related items from item-kNN's champion, saying so in ``ranked_by``;
    item-kNN served -> both tables from cobuy-serving, named with its version and family."""
    from mlflow import MlflowClient

    from serving.registry import register_serving_version
    from serving.serving_gate import bundle_model
    from training.models import Popularity

    data, mlflow = shop_run["matrices"].train, shop_run["resources"]["mlflow"]
    both = ["user_recommendations", "related_items"]
    config = {"user_recommendations": {"config": {"chunk_size": 64, "k": K}}, "related_items": {"config": {"k": K}}}

    def serve(model, family: str) -> str:
        bundle_model(model, family, data, shop_clean.items, tmp_path / family)
        version, _ = register_serving_version(mlflow.tracking_uri, "cobuy-serving", "cobuy-test", tmp_path / family,
                                              f"serving-{family}", {"family": family}, mlflow.artifact_location)
        MlflowClient(mlflow.tracking_uri, registry_uri=mlflow.tracking_uri).set_registered_model_alias(
            "cobuy-serving", CHAMPION, version)
        return version

    result = shop_run["score"](both, config)
    assert result.success
    for key in both:
        meta = _metadata(result, key)
        assert meta["model"] == "cobuy-itemknn" and "cobuy-serving has no 'champion'" in meta["fallback_reason"]
    assert result.output_for_node("user_recommendations").fallback_reason.startswith("cobuy-serving has no")

    popularity = Popularity().fit(data)
    v1 = serve(popularity, "popularity")
    result = shop_run["score"](both, config)
    recs_meta, related_meta = _metadata(result, "user_recommendations"), _metadata(result, "related_items")
    assert (recs_meta["model"], recs_meta["model_version"], recs_meta["family"]) == ("cobuy-serving", v1, "popularity")
    assert "fallback_reason" not in recs_meta and recs_meta["users_known_to_model"] == data.n_users
    recs = pd.read_parquet(result.output_for_node("user_recommendations").path)
    counts = popularity.counts.astype(np.float64)
    for u in range(0, data.n_users, 37):  # the best-sellers the customer has not bought, ties to the lower position
        c = counts.copy()
        c[data.user_items[u].indices] = -np.inf
        want = data.item_ids[np.argsort(-c, kind="stable")[:K]].astype(str).tolist()
        assert recs[recs["user_id"] == str(data.user_ids[u])].sort_values("rank")["item_id"].tolist() == want
    assert related_meta["model"] == "cobuy-itemknn" and "popularity has no relation" in related_meta["fallback_reason"]
    related = result.output_for_node("related_items")
    assert related["ranked_by"].str.contains(f"not the serving champion: cobuy-serving v{v1} \\(popularity\\)").all()

    v2 = serve(shop_run["models"]["narrow"], "itemknn")
    result = shop_run["score"](both, config)
    related_meta = _metadata(result, "related_items")
    assert (related_meta["model"], related_meta["model_version"]) == ("cobuy-serving", v2)
    assert "fallback_reason" not in related_meta
    related = result.output_for_node("related_items")
    assert (related["model"] == f"cobuy-serving v{v2} (itemknn)").all()
    top1 = related[related["rank"] == 1].set_index("item_id")["related_item_id"]
    for a, b in shop.planted_pairs:
        assert top1[a] == b
