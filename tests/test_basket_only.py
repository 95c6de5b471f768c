"""Basket-only data (no customer, no time: the Groceries form) end to end, on the synthetic shop's baskets."""
import dagster as dg
import numpy as np
import pytest

from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.resources import TrainingPlan
from training.families import PLANNED as PLAN_FAMILIES

pytestmark = pytest.mark.heavy(58)  # seconds on 2 quiet cores: make test starts the heaviest files first

N_USERS = 150  # the shop's hidden customers; only their baskets are read
SHOP = {"kind": "synthetic", "synthetic_users": N_USERS, "synthetic_baskets_only": True}
# cheap settings for every family: no tuning, small factors, few epochs, the text encoder as packaged
CHEAP = {"raw_tables": {"config": SHOP},
         "association_rules": {"config": {"min_support": 0.002, "min_confidence": 0.05}},
         "ease_model": {"config": {"l2": 50.0}},
         "graph_filter_model": {"config": {"n_factors": 32}},
         "chebycf_model": {"config": {"n_factors": 32}},
         "hybrid_model": {"config": {"tune_trials": 0}},
         "ials_model": {"config": {"dim": 16, "max_epochs": 4, "patience": 2}},
         "mf_model": {"config": {"dim": 16, "lr": 0.01, "batch_size": 1024, "max_epochs": 4, "patience": 2}},
         "lightgcn_model": {"config": {"dim": 16, "lr": 0.01, "batch_size": 1024, "max_epochs": 3, "patience": 2}},
         "text_encoder": {"config": {"steps": 0}}}
MODEL_ASSETS = {"popularity": "popularity_model", "association_rules": "association_rules",
                "itemknn": "itemknn_model", "ease": "ease_model", "gf_cf": "graph_filter_model",
                "chebycf": "chebycf_model", "mf": "mf_model", "ials": "ials_model", "lightgcn": "lightgcn_model",
                "blend": "blend_model", "hybrid": "hybrid_model"}


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()}


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [f"{e.step_key}: {e.event_specific_data.error.message[:800]}" for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"]


def _positions(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    items = result.output_for_node("interaction_matrices").train.item_ids
    return {str(i): p for p, i in enumerate(items)}


@pytest.fixture(scope="module")
def shop():
    return generate_shop(SyntheticShopConfig(n_users=N_USERS, baskets_only=True))


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    """Every asset and check on the basket-only shop, with no setting but the shop and cheap model sizes."""
    base = tmp_path_factory.mktemp("baskets")
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], resources=build_resources(str(base)),
                                run_config={"ops": CHEAP}, instance=instance, raise_on_error=False)
        yield result


def test_the_shop_has_baskets_only(shop):
    inter = shop.tables.interactions
    assert inter["user_id"].isna().all() and inter["timestamp"].isna().all()
    assert inter["basket_id"].notna().mean() > 0.99 and len(shop.planted_pairs) == 8


def test_basket_only_pipeline_succeeds_with_every_family_run_or_skipped_with_its_reason(everything):
    result = everything
    assert result.success, _failures(result)
    done = _materializations(result)
    assert done["training_split"].metadata["strategy"].value == "basket_completion"
    assert {"model_metrics", "model_exports", "model_versions", "champion_decisions", "related_items",
            "user_recommendations"} <= set(done)
    evaluated = set(result.output_for_node("model_metrics")["model"])
    for family, asset in MODEL_ASSETS.items():
        model = result.output_for_node(asset)
        skipped = done[asset].metadata.get("skipped")
        if skipped is None:
            assert model.name in evaluated, family
        else:
            assert model.family == family and model.reason == skipped.value and len(model.reason) > 20
    assert len(evaluated) >= 9  # on this small shop everything fits: the item-item families and factor models run


def test_planted_pairs_are_found_by_rules_and_item_knn(everything, shop):
    result = everything
    pos = _positions(result)
    anchors = np.array([pos[a] for a, _ in shop.planted_pairs])
    partners = [pos[b] for _, b in shop.planted_pairs]
    for asset in ("association_rules", "itemknn_model"):
        idx, _ = result.output_for_node(asset).related_items(anchors, 1)
        assert idx[:, 0].tolist() == partners, asset
    related = result.output_for_node("related_items")  # from the one serving champion, whatever its family
    top1 = related[related["rank"] == 1].set_index("item_id")["related_item_id"]
    assert [top1[a] for a, _ in shop.planted_pairs] == [b for _, b in shop.planted_pairs]
    serving = result.output_for_node("serving_champion")["serving_family"].iloc[0]
    assert serving in {"association_rules", "itemknn", "ease", "gf_cf", "chebycf", "blend", "hybrid"}
    assert _materializations(result)["related_items"].metadata["family"].value == serving


def test_a_plan_with_two_families_trains_only_those(tmp_path):
    """``families: [association_rules, itemknn]`` set under resources in run config: the other families come out
    skipped, naming the setting, and evaluation covers the two."""
    selection = (dg.AssetSelection.groups("ingestion", "validation", "splits", "models")
                 - dg.AssetSelection.assets("hybrid_model")) | dg.AssetSelection.assets("model_exports")
    config = {"ops": {"raw_tables": {"config": SHOP},
                      "association_rules": {"config": {"min_support": 0.002}}},
              "resources": {"training_plan": {"config": {"families": ["association_rules", "itemknn"]}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], selection=selection, resources=build_resources(str(tmp_path)),
                                run_config=config, instance=instance, raise_on_error=False)
    assert result.success, _failures(result)
    done = _materializations(result)
    for family, asset in MODEL_ASSETS.items():
        if asset == "hybrid_model":
            continue
        model = result.output_for_node(asset)
        if family in ("association_rules", "itemknn"):
            assert model.name == family and "skipped" not in done[asset].metadata
        else:
            assert model.family == family and "training_plan.families" in done[asset].metadata["skipped"].value
    exports = result.output_for_node("model_exports", "model_exports")
    assert sorted(exports["family"]) == ["association_rules", "itemknn"] and exports["passed"].all()
    checks = {e.check_name for e in result.get_asset_check_evaluations()}
    assert checks >= {"association_rules_onnx_parity", "itemknn_onnx_parity"}
    assert "ease_onnx_parity" not in checks
    assert "not trained" in done["model_exports"].metadata["not_exported"].value


def test_memory_refusal_names_the_estimate(tmp_path, monkeypatch):
    """EASE on a fake 256 KiB budget: refused before fitting, with the estimate and the budget in the reason, and,
    where SANSA would fit but is not installed, how to install it."""
    import orchestration.assets.models as model_assets

    monkeypatch.setattr(model_assets, "sansa_available", lambda: False)
    monkeypatch.setattr(model_assets, "sansa_fit_bytes", lambda size, density: 100 * 1024)
    selection = dg.AssetSelection.groups("ingestion", "validation", "splits") | dg.AssetSelection.assets(
        "ease_model")
    resources = build_resources(str(tmp_path))
    resources["training_plan"] = TrainingPlan(memory_budget_gb=1 / 4096)  # 256 KiB
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], selection=selection, resources=resources,
                                run_config={"ops": {"raw_tables": {"config": SHOP}}}, instance=instance)
    reason = _materializations(result)["ease_model"].metadata["skipped"].value
    assert reason.startswith("ease at 212 items") and "needs about 702.2 KiB" in reason  # 2 x 212^2 float64
    assert "more than the 192.0 KiB allowed (75% of 256.0 KiB available, memory_budget_gb in config)" in reason
    assert "leave 'ease' out of training_plan.families" in reason
    assert reason.endswith("or install SANSA (pip install 'cobuy[scale]', which needs SuiteSparse: apt-get install "
                           "libsuitesparse-dev), with which EASE is fitted as a sparse approximate inverse in about "
                           "100.0 KiB")


def test_unknown_family_in_the_plan_is_refused_with_the_vocabulary():
    with pytest.raises(ValueError, match="'eas'.*choose from"):
        TrainingPlan(families=["eas"]).not_planned("ease")
    assert TrainingPlan().not_planned("blend") is None and set(PLAN_FAMILIES) == set(MODEL_ASSETS)


def test_item_item_exports_are_refused_at_instacart_size_and_factor_exports_are_not():
    """49,688 items: a dense item-item export holds the 9.2 GiB matrix twice while it is written, over the 75% of
    a 23 GiB machine; a factor export of the same data (131,209 baskets as users) is a few hundred MiB."""
    from serving.exports import export_refusal
    from training.families import ITEM_ITEM as ITEM_ITEM_FAMILIES, SERVED as FAMILIES
    from training.models.footprint import MemoryBudget

    budget = MemoryBudget.given(23.0)
    refused = {f: export_refusal(f, 131_209, 49_688, budget) for f in FAMILIES}
    assert {f for f, why in refused.items() if why} == set(ITEM_ITEM_FAMILIES)
    assert refused["itemknn"].startswith("the ONNX export of itemknn (a dense 49,688 x 49,688 float32 matrix) needs "
                                         "about 18.4 GiB, more than the 17.2 GiB allowed")
    assert "leave 'itemknn' out of model_exports.families" in refused["itemknn"]
    assert all(export_refusal(f, 131_209, 49_688, MemoryBudget.given(64.0)) is None for f in FAMILIES)
