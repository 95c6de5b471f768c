"""The counting stages on Spark (``training.spark_counting``, local[2]) give the in-process models exactly: the same
frequent itemsets and counts (FPGrowth and the SQL prefix joins, with and without max_len), the same rules and
metrics (pairs and multi-item antecedents), the same co-occurrence sums and item-kNN neighbours (unweighted and
TF-IDF), on the synthetic shop; and the pipeline's assets count where the ``counting`` resource says.

One SparkSession for the module; every test skips with the reason where Java or pyspark is missing."""
from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.counting import active_engine, using_engine
from training.itemsets import frequent_itemsets
from training.models.association import AssociationRules
from training.models.itemknn import ItemKNN, weight_users
from training.spark_counting import SparkCounting, spark_unavailable

pytestmark = [pytest.mark.timeout(300), pytest.mark.heavy(29)]


@pytest.fixture(scope="module")
def spark():
    reason = spark_unavailable()
    if reason is not None:
        pytest.skip(f"Spark cannot start here: {reason}")
    # small data: start and plan fast (C1 JIT only, no whole-stage code generation, no adaptive re-planning; measured
    # on the 2-core machine at load 7-9: session 38 -> 16 s, first job 52 -> 17 s, later jobs 12 -> 4 s)
    engine = SparkCounting("local[2]", conf={
        "spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "2",
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        "spark.sql.codegen.wholeStage": "false", "spark.sql.adaptive.enabled": "false"})
    engine.session()
    yield engine
    engine.stop()


def assert_same_itemsets(ours, theirs):
    assert ours.n_baskets == theirs.n_baskets
    assert len(ours.items) == len(theirs.items), ([len(c) for c in ours.counts], [len(c) for c in theirs.counts])
    for a, b, ca, cb in zip(ours.items, theirs.items, ours.counts, theirs.counts):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.parametrize("method,min_support,max_len", [
    ("sql", 0.002, 3), ("sql", 0.004, None), ("fpgrowth", 0.002, None)])
def test_itemsets_equal_the_local_miner(spark, shop_data, method, min_support, max_len):
    engine = SparkCounting(spark.master, spark.conf, itemsets=method)
    local = frequent_itemsets(shop_data.baskets, min_support, max_len)
    assert len(local.items) >= 2 and len(local.counts[1]) > 10  # pairs to find, not a vacuous comparison
    assert_same_itemsets(engine.frequent_itemsets(shop_data.baskets, min_support, max_len), local)


@pytest.mark.parametrize("max_len", [2, 3])
def test_rules_are_identical(spark, shop_data, max_len):
    settings = {"min_support": 0.003, "min_confidence": 0.05, "max_len": max_len}
    local = AssociationRules(**settings).fit(shop_data)
    with using_engine(spark):
        assert active_engine() is spark
        on_spark = AssociationRules(**settings).fit(shop_data)
    assert active_engine() is None
    assert len(local.rules) > 10
    pd.testing.assert_frame_equal(on_spark.rules, local.rules, check_exact=True)
    if max_len == 3:
        assert len(local.multi_rules) > 0
        assert on_spark.multi_rules.keys() == local.multi_rules.keys()
        for name, values in local.multi_rules.metrics.items():
            np.testing.assert_array_equal(on_spark.multi_rules.metrics[name], values, err_msg=name)
    assert (on_spark.confidence != local.confidence).nnz == 0


def test_weighted_cooccurrence_sums_equal_the_sparse_product(spark, shop_data):
    x = weight_users(shop_data.user_items, "tfidf")
    local = (x.T.tocsr() @ x).tocsr()
    local.setdiag(0)
    local.eliminate_zeros()
    theirs = spark.cooccurrence(x)
    assert theirs.nnz == local.nnz > 1000
    assert (theirs != local).nnz == 0  # bit for bit, float32 sums in scipy's order included


@pytest.mark.parametrize("weighting,k", [("none", 20), ("tfidf", 5)])
def test_itemknn_neighbours_are_identical(spark, shop_data, weighting, k):
    local = ItemKNN(k=k, shrink=10.0, weighting=weighting).fit(shop_data)
    with using_engine(spark):
        on_spark = ItemKNN(k=k, shrink=10.0, weighting=weighting).fit(shop_data)
    a, b = local.similarity, on_spark.similarity
    assert a.nnz > 0 and a.nnz == b.nnz
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)


def test_ties_at_the_kth_neighbour_break_the_same_way(spark):
    # item 0 shares exactly one user with each of items 1..12: twelve equal similarities, k = 4 keeps four of them
    n_items = 13
    rows = [[0, j] for j in range(1, n_items)] + [[j] for j in range(1, n_items)]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    x = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr), shape=(len(rows), n_items))
    from training.data import InteractionData

    data = InteractionData(np.arange(len(rows)), np.arange(n_items), x, x)
    local = ItemKNN(k=4, shrink=0.0).fit(data)
    with using_engine(spark):
        on_spark = ItemKNN(k=4, shrink=0.0).fit(data)
    assert local.similarity[0].nnz == 4
    assert (local.similarity != on_spark.similarity).nnz == 0


def test_the_assets_count_where_the_resource_says(spark, tmp_path):
    from orchestration.definitions import all_assets, build_resources
    from orchestration.resources import CountingEngine

    selection = dg.AssetSelection.groups("ingestion", "validation", "splits") | dg.AssetSelection.assets(
        "association_rules", "itemknn_model")
    resources = {**build_resources(str(tmp_path)),
                 "counting": CountingEngine(engine="spark", master=spark.master, spark_conf=spark.conf)}
    config = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 150}},
                      "association_rules": {"config": {"min_support": 0.003, "max_len": 3}}},
              "resources": {"training_plan": {"config": {"families": ["association_rules", "itemknn"]}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(all_assets, selection=selection, resources=resources, run_config=config,
                                instance=instance)
    train = result.output_for_node("interaction_matrices").train
    done = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()}
    rules, knn = result.output_for_node("association_rules"), result.output_for_node("itemknn_model")
    for asset in ("association_rules", "itemknn_model"):
        assert done[asset].metadata["counting_engine"].value == f"spark at {spark.master}"
    local_rules = AssociationRules(min_support=0.003, min_confidence=rules.min_confidence, max_len=3).fit(train)
    pd.testing.assert_frame_equal(rules.rules, local_rules.rules, check_exact=True)
    local_knn = ItemKNN(k=knn.k, shrink=knn.shrink, alpha=knn.alpha, weighting=knn.weighting).fit(train)
    assert knn.similarity.nnz > 0 and (knn.similarity != local_knn.similarity).nnz == 0


def test_the_environment_picks_the_engine(monkeypatch):
    from orchestration.definitions import build_resources
    from training.models.footprint import DataSize, itemknn_fit_bytes

    monkeypatch.delenv("COBUY_COUNTING_ENGINE", raising=False)
    monkeypatch.delenv("COBUY_SPARK_MASTER", raising=False)
    local = build_resources("unused")["counting"]
    assert local.counting() is None  # in process by default
    monkeypatch.setenv("COBUY_COUNTING_ENGINE", "spark")
    resource = build_resources("unused")["counting"]
    engine = resource.counting()
    # item-kNN's up-front memory estimate: the dense co-occurrence blocks are held here only when counting here
    size = DataSize(n_users=5_000_000, n_items=1_000_000, nnz=50_000_000)
    assert itemknn_fit_bytes(size, 200, resource.block_rows()) < itemknn_fit_bytes(size, 200, local.block_rows()) / 5
    assert isinstance(engine, SparkCounting) and engine.master == "local[2]"
    assert engine.settings()["spark.driver.memory"] == "2g"  # a local master on a small machine
    monkeypatch.delenv("COBUY_COUNTING_ENGINE")
    monkeypatch.setenv("COBUY_SPARK_MASTER", "spark://spark-master:7077")
    monkeypatch.setenv("COBUY_PSEUDONYM_KEY", "k")
    monkeypatch.setenv("OPTUNA_STORAGE_URL", "sqlite://")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite://")
    cluster = build_resources("unused", environment="production")["counting"].counting()
    assert cluster.master == "spark://spark-master:7077"
    assert "spark.driver.memory" not in cluster.settings()  # a cluster gets only what its conf says


def test_a_machine_without_java_is_named_as_the_reason(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = spark_unavailable()
    assert reason is not None and ("Java" in reason or "pyspark" in reason)
