"""The answers folder: bought together (basket evidence) kept apart from also liked (taste), titled tables, the
one-page report, and ``answers/latest`` replaced whole. The asset is materialized on the synthetic shop with its
upstream tables made directly (a fitted item-kNN, no encoder, no registry), so it takes seconds."""
from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from orchestration.assets.answers import answers
from orchestration.assets.scoring import ScoredTable
from orchestration.assets.splits import SplitMatrices
from orchestration.definitions import build_resources, defs
from serving.answers import ANSWERS, also_liked, bought_together, publish_latest
from serving.batch_scoring import cold_item_neighbours_table, cold_item_partners_table
from serving.related import related_items_table
from training.evaluation import metrics_frame
from training.models import ItemKNN, Popularity


def test_bought_together_keeps_pairs_seen_often_enough_ranked_by_the_lift_it_shows():
    # items 0..3; pair (0, 1) in 4 baskets, (0, 2) in 2, item 3 bought alone in many baskets
    rows = [[0, 1]] * 4 + [[0, 2]] * 2 + [[3]] * 6 + [[0, 3]] * 3
    b = sp.csr_matrix((np.ones(sum(map(len, rows))), (np.repeat(np.arange(len(rows)), [len(r) for r in rows]),
                                                     np.concatenate(rows))), shape=(len(rows), 4))
    catalog = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["Apple", "Bread", "Cheese", "Dates"]})
    table = bought_together(b, np.array(["a", "b", "c", "d"]), catalog, min_count=3, k=5)
    assert (table["baskets_together"] >= 3).all()
    assert not ((table["item_id"] == "a") & (table["partner_id"] == "c")).any()  # only 2 baskets together
    for _, rows_of_item in table.groupby("item_id"):
        assert list(rows_of_item["rank"]) == list(range(1, len(rows_of_item) + 1))
        assert rows_of_item["lift"].is_monotonic_decreasing  # the ranking is the lift shown
    a = table[table["item_id"] == "a"].set_index("partner_id")
    assert list(a.index) == ["b", "d"] and a.loc["b", "baskets_together"] == 4
    assert a.loc["b", "partner_title"] == "Bread" and a.loc["b", "item_title"] == "Apple"
    assert a.loc["b", "confidence"] == pytest.approx(4 / 9, abs=1e-4)  # 4 of a's 9 baskets


def test_publish_latest_replaces_the_folder_whole(tmp_path):
    one, two = tmp_path / "run1", tmp_path / "run2"
    for folder, files in ((one, ["x.csv", "old.csv"]), (two, ["x.csv"])):
        folder.mkdir()
        for name in files:
            (folder / name).write_text(folder.name)
    latest = publish_latest(one, tmp_path / "latest")
    assert sorted(p.name for p in latest.iterdir()) == ["old.csv", "x.csv"]
    publish_latest(two, tmp_path / "latest")
    assert sorted(p.name for p in latest.iterdir()) == ["x.csv"] and (latest / "x.csv").read_text() == "run2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run1", "run2"]  # no staging left behind


@pytest.fixture(scope="module")
def upstream(shop, shop_clean, shop_split, shop_data, tmp_path_factory):
    """The tables ``answers`` reads, made from the synthetic shop without the rest of the pipeline."""
    from training.data import build_interaction_data

    folder = tmp_path_factory.mktemp("scored")
    catalog = shop_clean.items
    test = build_interaction_data(shop_split.test, catalog["item_id"])
    knn = ItemKNN().fit(shop_data)
    related = related_items_table(knn, shop_data, catalog, k=10)
    users = np.arange(shop_data.n_users)
    idx, scores = knn.recommend(users, 5)
    recs = pd.DataFrame({"user_id": np.repeat(shop_data.user_ids, idx.shape[1]).astype(str),
                         "rank": np.tile(np.arange(1, idx.shape[1] + 1), len(users)),
                         "item_id": shop_data.item_ids[idx.ravel()].astype(str), "score": scores.ravel()})
    recs.to_parquet(folder / "user_recommendations.parquet")
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(shop_data.n_items, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    neighbours = cold_item_neighbours_table(emb, shop_data, catalog, k=5)
    partners = cold_item_partners_table(neighbours, shop_data, catalog, k=5, n_twins=5)
    metrics = metrics_frame([knn, Popularity().fit(shop_data)], shop_data, test.user_items)
    matrices = SplitMatrices(train=shop_data, test=test.user_items, fit=shop_data, validation=test.user_items)
    return {"interaction_matrices": matrices, "validated_items": catalog, "quarantine": shop_clean.quarantine,
            "related_items": related, "cold_item_neighbours": neighbours, "cold_item_partners": partners,
            "model_metrics": metrics,
            "user_recommendations": ScoredTable(str(folder / "user_recommendations.parquet"), len(recs),
                                                "cobuy-itemknn", "1", "CPUExecutionProvider")}


def _stub(name: str, value):
    @dg.asset(name=name)
    def _made():
        return value
    return _made


@pytest.fixture(scope="module")
def materialized(upstream, tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    stubs = [_stub(name, value) for name, value in upstream.items()]
    with dg.instance_for_test() as instance:
        result = dg.materialize([*stubs, answers], resources=build_resources(str(base)), instance=instance,
                                run_config={"ops": {"answers": {"config": {"min_co_purchases": 3}}}})
        yield result, base


def test_the_answers_asset_writes_a_run_folder_and_latest(materialized):
    result, base = materialized
    assert result.success
    run_folder = base / "answers" / result.run_id
    latest = base / "answers" / "latest"
    for folder in (run_folder, latest):
        for a in ANSWERS:
            assert (folder / f"{a.name}.csv").exists(), a.name
        assert (folder / "report.html").exists() and (folder / "README.md").exists()
    readme = (latest / "README.md").read_text()
    assert all(a.title in readme for a in ANSWERS)
    # which model (name, version) produced each scored table, in the folder and in the metadata
    assert "- user recommendations produced by: cobuy-itemknn v1" in readme
    assert "- also liked produced by: itemknn" in readme
    md = result.asset_materializations_for_node("answers")[0].metadata
    assert md["user recommendations produced by"].value == "cobuy-itemknn v1"


def test_the_tables_carry_titles_and_the_two_kinds_of_related_items_stay_apart(materialized, shop):
    _, base = materialized
    latest = base / "answers" / "latest"
    together = pd.read_csv(latest / "bought_together.csv")
    liked = pd.read_csv(latest / "also_liked.csv")
    assert {"baskets_together", "lift", "item_title", "partner_title"} <= set(together.columns)
    assert {"score", "shared_customers_cosine", "model", "liked_title"} <= set(liked.columns)
    assert "lift" not in liked.columns and "score" not in together.columns
    assert (together["baskets_together"] >= 3).all()
    top1 = together[together["rank"] == 1].set_index("item_id")["partner_id"]
    for a, b in shop.planted_pairs:  # the planted co-purchases are each other's first partner
        assert top1[a] == b
    recs = pd.read_csv(latest / "user_recommendations.csv")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "item_title", "score"]
    assert recs["item_title"].notna().all()


def test_the_report_shows_quality_metrics_pairs_and_new_items(materialized):
    result, base = materialized
    html = (base / "answers" / "latest" / "report.html").read_text()
    for a in ANSWERS:
        assert a.title.replace("'", "&#x27;") in html
    assert "data:image/png;base64," in html  # the metrics plot, inline
    md = result.asset_materializations_for_node("answers")[0].metadata
    assert md["report"].value.startswith("http")  # the MLflow UI's page for the logged report
    assert isinstance(md["bought_together"], dg.TableMetadataValue) and md["bought_together"].schema.columns


def test_the_full_pipeline_and_retrain_build_the_answers():
    for job in ("full_pipeline", "retrain"):
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        assert dg.AssetKey("answers") in keys and dg.AssetKey("related_items") in keys
