"""``validated_tables`` in Dagster: a subset selection (only what ``association_rules`` needs), a catalog of HTML
fragments blocked by ``expectation_suites_pass``, and the Data Docs served over http through MLflow."""
import dagster as dg
import pandas as pd
from mlflow import MlflowClient

from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
from orchestration.definitions import all_assets, all_checks, build_resources

RULES = {"association_rules": {"config": {"min_support": 0.002, "min_confidence": 0.05}}}
NEEDED_BY_RULES = dg.AssetSelection.assets("association_rules").upstream()


def _materialized(result) -> set[str]:
    return {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in result.get_asset_materialization_events()}


def _check(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_selecting_association_rules_runs_the_validation_subset_and_links_data_docs_over_http(tmp_path):
    run_config = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 150}}, **RULES}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], selection=NEEDED_BY_RULES, run_config=run_config,
                                resources=build_resources(str(tmp_path)), instance=instance)
    assert result.success
    done = _materialized(result)
    assert {"validated_interactions", "validated_items", "association_rules"} <= done
    assert "quarantine" not in done  # not needed by the rules: not selected, not yielded
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"quarantine_rate_within_policy": True, "expectation_suites_pass": True}

    meta = _check(result, "expectation_suites_pass").metadata
    url = meta["data_docs_url"].value
    assert url.startswith("http://127.0.0.1:5000/#/experiments/") and url.endswith("/artifactPath/data_docs/index.html")
    run_id = meta["data_docs_mlflow_run"].value
    assert f"/runs/{run_id}/" in url
    logged = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run_id, "data_docs")
    assert "data_docs/index.html" in {a.path for a in logged}
    assert "interactions_as_read_rows" in meta["data_docs_pages"].value


def test_a_catalog_of_html_fragments_blocks_the_run(tmp_path):
    shop = generate_shop(SyntheticShopConfig(n_users=150))
    inter = shop.tables.interactions.dropna(subset=["item_id", "user_id"])
    events, catalog = tmp_path / "events.csv", tmp_path / "catalog.csv"
    inter[["user_id", "item_id", "timestamp"]].to_csv(events, index=False)
    items = pd.DataFrame({"item_id": sorted(inter["item_id"].unique())})
    n_bad = int(len(items) * 0.93)
    items["title"] = ['<span class="a-size-medium a-color-secondary"'] * n_bad + [
        f"Product {i}" for i in range(len(items) - n_bad)]
    items.to_csv(catalog, index=False)
    run_config = {"ops": {"raw_tables": {"config": {"kind": "events", "path": str(events),
                                                    "catalog_path": str(catalog)}}, **RULES}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*all_assets, *all_checks], selection=NEEDED_BY_RULES, run_config=run_config,
                                resources=build_resources(str(tmp_path / "data")), instance=instance,
                                raise_on_error=False)
    assert not result.success
    check = _check(result, "expectation_suites_pass")
    assert check.passed is False and "titles contain HTML markup" in check.description
    assert "one title is shared by a large share of the items" in check.description
    done = _materialized(result)
    assert "validated_interactions" in done and "training_split" not in done and "association_rules" not in done


def test_mlflow_log_folder_keeps_the_tree_and_gives_its_ui_url(tmp_path):
    from orchestration.resources import MLflowRegistry

    folder = tmp_path / "docs"
    (folder / "validations" / "suite").mkdir(parents=True)
    (folder / "index.html").write_text("<html>index</html>")
    (folder / "validations" / "suite" / "page.html").write_text("<html>page</html>")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MLflowRegistry(tracking_uri=uri, artifact_location=(tmp_path / "artifacts").as_uri(),
                              ui_url="http://mlflow.example:8080/")
    run_id, prefix = registry.log_folder(folder, "data_docs", run_name="docs", tags={"kind": "data_docs"})
    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert prefix == f"http://mlflow.example:8080/#/experiments/{run.info.experiment_id}/runs/{run_id}/artifactPath/data_docs"
    assert run.data.tags["kind"] == "data_docs"
    assert [a.path for a in client.list_artifacts(run_id, "data_docs/validations/suite")] == [
        "data_docs/validations/suite/page.html"]
    got = client.download_artifacts(run_id, "data_docs/index.html", str(tmp_path / "back"))
    assert open(got).read() == "<html>index</html>"
