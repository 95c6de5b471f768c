"""The code location loads, and every job resolves."""
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.definitions import defs

EXPECTED_ASSETS = {"raw_interactions", "raw_items", "validated_interactions", "validated_items", "quarantine",
                   "training_split", "interaction_matrices", "popularity_model", "association_rules",
                   "itemknn_model", "model_metrics", "related_items", "ease_model", "graph_filter_model", "mf_model",
                   "lightgcn_model", "chebycf_model", "ials_model", "text_encoder", "item_text_embeddings", "cold_start_metrics",
                   "cold_partner_policy", "blend_model", "hybrid_model"}


def test_every_job_resolves():
    repo = defs.get_repository_def()
    names = {j.name for j in repo.get_all_jobs()}
    assert {"full_pipeline", "ingest_and_validate", "train_and_evaluate", "publish_related_items",
            "online_retail_pipeline", "gowalla_pipeline", "demo_pipeline", "retrain", "promote"} <= names
    for name in names:
        job = defs.resolve_job_def(name)
        assert job.graph.node_defs, name


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_configs_are_valid_run_config(path):
    """Each preset in configs/ is accepted by full_pipeline as it stands (a renamed field or op fails here, not after
    an hour of a dataset-sized run)."""
    result = dg.validate_run_config(defs.resolve_job_def("full_pipeline"), yaml.safe_load(path.read_text()))
    assert "ops" in result and "resources" in result


def test_asset_graph_and_checks():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert {("validated_interactions", "quarantine_rate_within_policy"),
            ("validated_interactions", "expectation_suites_pass"), ("quarantine", "rows_add_up")} <= checks
    assert graph.get(dg.AssetKey("training_split")).parent_keys == {dg.AssetKey("validated_interactions")}
    # one partner policy: the cold-start evaluation scores what cold_item_partners serves
    for child in ("cold_start_metrics", "cold_item_partners"):
        assert dg.AssetKey("cold_partner_policy") in graph.get(dg.AssetKey(child)).parent_keys, child
    assert {"model_exports", "model_versions", "champion_decisions"} <= keys
    parity = {name for key, name in checks if key == "model_exports"}
    assert parity == {f"{f}_onnx_parity" for f in ("popularity", "association_rules", "itemknn", "ease", "gf_cf",
                                                     "chebycf", "mf", "ials", "lightgcn")}
    assert all(graph.get_check_spec(k).blocking for k in graph.asset_check_keys
               if k.asset_key == dg.AssetKey("model_exports"))


def test_retrain_and_promote_jobs_select_the_lifecycle():
    def keys(job: str) -> set[str]:
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys}

    retrain = keys("retrain")
    assert {"training_split", "itemknn_model", "model_metrics", "model_exports", "model_versions",
            "champion_decisions"} <= retrain
    assert {"raw_interactions", "validated_interactions"} <= retrain  # the drift sensor configures raw_tables
    assert keys("promote") == {"champion_decisions"}


def test_nothing_below_orchestration_imports_dagster():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for pkg in ("training", "serving", "data_checks"):
        for f in (root / pkg).rglob("*.py"):
            text = f.read_text()
            assert "import dagster" not in text and "from dagster" not in text, f
