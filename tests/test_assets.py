"""``materialize()`` of the asset graph on a small synthetic shop."""
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.resources import ValidationPolicy

pytestmark = pytest.mark.heavy(80)  # seconds on 2 quiet cores: make test starts the heaviest files first

SMALL = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 150}},
                 "association_rules": {"config": {"min_support": 0.002, "min_confidence": 0.05}},
                 "itemknn_model": {"config": {"tune_trials": 3}},
                 "ease_model": {"config": {"l2": 50.0}},
                 "graph_filter_model": {"config": {"n_factors": 32, "tune_trials": 3}},
                 "chebycf_model": {"config": {"n_factors": 32, "tune_trials": 3}},
                 "blend_model": {"config": {"tune_trials": 3}},
                 "hybrid_model": {"config": {"tune_trials": 6}},
                 "ials_model": {"config": {"dim": 16, "max_epochs": 8, "patience": 2}},
                 "mf_model": {"config": {"dim": 16, "lr": 0.01, "batch_size": 1024, "max_epochs": 15,
                                         "patience": 3}},
                 "lightgcn_model": {"config": {"dim": 16, "lr": 0.01, "batch_size": 1024, "max_epochs": 6,
                                               "patience": 2}},
                 "text_encoder": {"config": {"steps": 6, "batch_size": 16}}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], resources=build_resources(str(base)), run_config=SMALL,
                                instance=instance)
        yield result, base


def test_full_graph_materializes(run):
    result, base = run
    assert result.success
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
                    for m in [m.event_specific_data.materialization]}
    assert {"validated_interactions", "quarantine", "model_metrics", "related_items"} <= materialized
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"rows_add_up": True, "quarantine_rate_within_policy": True, "expectation_suites_pass": True,
                      **{f"{f}_onnx_parity": True for f in ("popularity", "association_rules", "itemknn", "ease",
                                                            "gf_cf", "chebycf", "mf", "ials", "lightgcn")}}
    assert (base / "assets" / "related_items.parquet").exists()
    plots = list((base / "runs").glob("*/metrics_vs_k.png"))  # model_metrics' plot (the registry's are per family)
    assert len(plots) == 1 and plots[0].read_bytes()[:4] == b"\x89PNG"
    docs = list((base / "runs").rglob("data_docs/index.html"))
    assert len(docs) == 1
    # the answers a person opens: this run's folder and latest, both with the report and the titled tables
    answers = base / "answers"
    assert (answers / "latest" / "report.html").exists() and (answers / result.run_id / "bought_together.csv").exists()


def test_outputs_hold_the_known_answers(run):
    result, _ = run
    shop = generate_shop(SyntheticShopConfig(n_users=150))
    related = result.output_for_node("related_items")
    top1 = related[related["rank"] == 1].set_index("item_id")["related_item_id"]
    for a, b in shop.planted_pairs:
        assert top1[a] == b
    assert {"co_purchase_count", "confidence", "lift", "cosine"} <= set(related.columns)
    pair = related[(related["item_id"] == shop.planted_pairs[0][0]) & (related["rank"] == 1)].iloc[0]
    assert pair["lift"] > 10 and pair["confidence"] > 0.5 and pair["co_purchase_count"] >= 5
    metrics = result.output_for_node("model_metrics")
    at20 = metrics[metrics["k"] == 20].set_index("model")
    assert set(at20.index) == {"popularity", "association_rules", "itemknn", "ease", "gf_cf", "chebycf", "mf",
                               "ials", "lightgcn", "blend", "hybrid"}
    assert at20.loc["itemknn", "recall"] > at20.loc["popularity", "recall"]
    # the blend is ChebyCF plus weighted item-kNN: its scores differ from ChebyCF's, so its metrics can too,
    # and with a weight of 0.3 it stays in the range of its two parts
    lo, hi = sorted([at20.loc["itemknn", "recall"], at20.loc["chebycf", "recall"]])
    assert lo - 0.05 <= at20.loc["blend", "recall"] <= hi + 0.05


def test_quarantine_over_policy_blocks_training(tmp_path):
    resources = build_resources(str(tmp_path))
    resources["policy"] = ValidationPolicy(max_quarantine_rate=0.001)  # the shop has ~1% dirty rows
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], resources=resources, run_config=SMALL,
                                instance=instance, raise_on_error=False)
    assert not result.success
    done = {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in result.get_asset_materialization_events()}
    assert "validated_interactions" in done
    assert "training_split" not in done and "model_metrics" not in done


def test_unreadable_source_stops_with_file_row_field(tmp_path):
    bad = tmp_path / "retail.csv"
    bad.write_text("InvoiceNo;StockCode;Description;Quantity;InvoiceDate;UnitPrice;CustomerID;Country\n1;2;x;1;2011-01-01;1;1;UK\n")
    cfg = {"ops": {"raw_tables": {"config": {"kind": "online_retail", "path": str(bad)}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], resources=build_resources(str(tmp_path / "d")),
                                run_config=cfg, instance=instance, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = failure.event_specific_data.error.cause.message if failure.event_specific_data.error.cause else \
        failure.event_specific_data.error.message
    assert str(bad) in message and "row 1" in message and "';'" in message
    assert not list((tmp_path / "d").rglob("*.parquet")), "nothing half-written"


def test_hybrid_model_is_tuned_on_validation_and_finds_the_planted_pairs(run):
    from training.models.hybrid import SIGNALS

    result, _ = run
    shop = generate_shop(SyntheticShopConfig(n_users=150))
    model = result.output_for_node("hybrid_model")
    # the synthetic shop's catalog has categories: the hybrid adds its category signal to the others
    assert set(model.weights) == set(model.related_weights) == set(SIGNALS) | {"category"}
    assert model.trend.shape == (model.n_items,) and np.isfinite(model.trend).all()
    mat = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
           if e.event_specific_data.materialization.asset_key.to_user_string() == "hybrid_model"][0]
    assert mat.metadata["tuning_trials"].value == 6
    table = mat.metadata["validation_user_recommendations"].value
    assert "tuned" in table and "collaborative only" in table
    items = result.output_for_node("interaction_matrices").train.item_ids
    pos = {str(i): p for p, i in enumerate(items)}
    idx, _ = model.related_items(np.array([pos[a] for a, _ in shop.planted_pairs]), 1)
    assert [str(items[i]) for i in idx[:, 0]] == [b for _, b in shop.planted_pairs]


def test_tuning_leaves_its_files_and_metadata(run):
    result, base = run
    mat = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
           if e.event_specific_data.materialization.asset_key.to_user_string() == "itemknn_model"][0]
    assert mat.metadata["tuning_trials"].value == 3
    assert "optimization_history" in mat.metadata
    folder = next((base / "runs").rglob("itemknn-*"))
    assert {p.name for p in folder.iterdir()} >= {"best_params.json", "trials.csv", "summary.json",
                                                  "optimization_history.png", "param_importances.png"}
    assert (base / "optuna.db").exists()


def test_text_assets(run):
    result, base = run
    shop = generate_shop(SyntheticShopConfig(n_users=150))
    emb = result.output_for_node("item_text_embeddings")
    assert len(emb) == len(shop.tables.items) and len(emb["embedding"].iloc[0]) == 384
    cold = result.output_for_node("cold_start_metrics")
    assert set(cold["method"]) == {"fine_tuned_encoder", "untuned_encoder", "tfidf_titles", "popularity",
                                   "fine_tuned_encoder+partners", "untuned_encoder+partners",
                                   "fine_tuned_encoder+partners+prior"}
    assert (cold["n_items"] > 0).all()  # the twins (and late items) are cold in the temporal split
    mat = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
           if e.event_specific_data.materialization.asset_key.to_user_string() == "cold_start_metrics"][0]
    assert mat.metadata["prior_weight_from"].value.startswith("validation window")  # chosen there, as served


def test_text_rows_follow_the_matrices_item_order_not_the_catalogs():
    """The cold-start evaluation and the hybrid index items by the matrices' positions: embeddings, biases and
    catalog rows are aligned by id, whatever order the catalog and the embedding table come in."""
    from orchestration.assets.text import catalog_in_order, text_matrix

    catalog = pd.DataFrame({"item_id": ["c", "a", "b"], "title": ["cup", "apple", "bowl"]})
    table = pd.DataFrame({"item_id": ["b", "c"], "embedding": [np.array([0.0, 1.0]), np.array([1.0, 0.0])],
                          "bias": [0.5, -0.5]})
    order = np.array(["a", "b", "c"], dtype=object)
    assert catalog_in_order(catalog, order)["title"].tolist() == ["apple", "bowl", "cup"]
    emb, bias = text_matrix(table, order)
    np.testing.assert_array_equal(emb, [[0, 0], [0, 1], [1, 0]])  # "a" has no embedding: zeros
    np.testing.assert_array_equal(bias, [0.0, 0.5, -0.5])
    with pytest.raises(ValueError, match="lacks 1 item.*'d'"):
        catalog_in_order(catalog, np.array(["a", "d"], dtype=object))
