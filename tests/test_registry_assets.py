"""The registry stage in Dagster on the small synthetic shop, with MLflow on SQLite under tmp_path:
ONNX exports behind blocking parity checks, MLflow runs and challenger versions, and the promotion gate
(first run promotes, a deliberately worse retrain does not, a corrupt export stops everything)."""
import json

import dagster as dg
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from orchestration.assets import registry as registry_assets
from orchestration.definitions import all_assets, all_checks, build_resources
from training.families import SERVED as FAMILIES
from tests.test_assets import SMALL

pytestmark = pytest.mark.heavy(61)  # seconds on 2 quiet cores: make test starts the heaviest files first

# the gate and everything upstream of it (the hybrid's text embeddings included: the encoder is not fine-tuned
# here, to keep the test short)
UPSTREAM = dg.AssetSelection.assets("champion_decisions").upstream()
RUN_CONFIG = {"ops": {**SMALL["ops"], "text_encoder": {"config": {"steps": 0}},
                      "hybrid_model": {"config": {"tune_trials": 2}},
                      "itemknn_model": {"config": {"tune_trials": 2}},  # one tuned family: Optuna files + trials
                      "graph_filter_model": {"config": {"n_factors": 32}},
                      "mf_model": {"config": {"dim": 16, "lr": 0.01, "batch_size": 1024, "max_epochs": 4,
                                              "patience": 2}},
                      "lightgcn_model": {"config": {"dim": 16, "lr": 0.01, "batch_size": 1024, "max_epochs": 3,
                                                    "patience": 2}}}}


def _materialize(resources, selection, run_config, instance):
    return dg.materialize([*all_assets, *all_checks], selection=selection, resources=resources,
                          run_config=run_config, instance=instance, raise_on_error=False)


def _failures(result) -> list[str]:
    return [f"{e.step_key}: " + str(e.event_specific_data.error.cause or e.event_specific_data.error.message)[:3000]
            for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def _materialized(result) -> set[str]:
    return {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    base = tmp_path_factory.mktemp("registry")
    resources = build_resources(str(base))
    with dg.instance_for_test() as instance:
        result = _materialize(resources, UPSTREAM, RUN_CONFIG, instance)
        yield result, resources, instance


def _client(resources):
    from mlflow import MlflowClient

    uri = resources["mlflow"].tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_run_exports_registers_and_promotes(first, tmp_path):
    result, resources, _ = first
    assert result.success, _failures(result)
    mlflow = resources["mlflow"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert {name: checks[name] for name in registry_assets.PARITY_CHECKS.values()} == {
        name: True for name in registry_assets.PARITY_CHECKS.values()}
    exports = result.output_for_node("model_exports", "model_exports")
    assert exports["passed"].all() and exports["max_abs_diff"].max() <= 1e-4
    assert exports["top_k_equivalent_fraction"].min() >= 0.999
    versions = result.output_for_node("model_versions").set_index("family")
    assert list(versions.index) == list(FAMILIES)
    decisions = result.output_for_node("champion_decisions").set_index("family")
    for family in FAMILIES:
        assert mlflow.version_for(family, "challenger") == versions.loc[family, "version"] == "1"
        assert mlflow.version_for(family, "champion") == "1"
        row = decisions.loc[family]
        assert row["promoted"] and row["reason"] == "no champion yet" and row["champion_version_before"] is None
        assert row["champion_version_after"] == "1" and row["challenger_value"] > 0

    client = _client(resources)
    run = client.get_run(versions.loc["itemknn", "mlflow_run_id"])
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["dagster_run_id"] == result.run_id and tags["family"] == "itemknn"
    assert len(tags["dataset_fingerprint"]) == 16 and tags["git_commit"]
    assert tags["train_start"] < tags["train_end"]
    assert {f"{m}_at_{k}" for m in ("recall", "ndcg") for k in (10, 20, 50)} <= set(metrics)
    assert metrics["ndcg_at_20"] == pytest.approx(versions.loc["itemknn", "ndcg@20"])
    assert "k" in run.data.params  # the tuned parameters it was fitted with
    root = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "data", "optuna", "reference_profile.json"} <= root
    assert {a.path for a in client.list_artifacts(run.info.run_id, "optuna")} >= {
        "optuna/trials.csv", "optuna/summary.json", "optuna/optimization_history.png"}
    trials = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(trials) == 2  # tune_trials: 2 nested runs
    untuned = {a.path for a in client.list_artifacts(versions.loc["ease", "mlflow_run_id"])}
    assert "optuna" not in untuned and "reference_profile.json" in untuned

    profile_path = mlflow.download_run_artifact("itemknn", "champion", "reference_profile.json", tmp_path)
    profile = json.loads(profile_path.read_text())
    assert profile["window_start"][:19] == tags["train_start"][:19] and profile["n_rows"] > 0
    assert mlflow.download_run_artifact("itemknn", "champion", "no_such_file.json", tmp_path / "x") is None


def test_worse_retrain_is_not_promoted_and_the_decision_is_recorded(first):
    _, resources, instance = first
    mlflow = resources["mlflow"]
    crippled = {"ops": {"itemknn_model": {"config": {"k": 1, "tune_trials": 0}},  # one neighbour per item
                        "model_exports": {"config": {"families": ["popularity", "itemknn"]}}}}
    selection = dg.AssetSelection.assets("itemknn_model", "model_metrics", "model_exports", "model_versions",
                                         "champion_decisions")
    result = _materialize(resources, selection, crippled, instance)
    assert result.success, _failures(result)
    decisions = result.output_for_node("champion_decisions").set_index("family")
    assert list(decisions.index) == ["popularity", "itemknn"]
    knn = decisions.loc["itemknn"]
    assert knn["challenger_version"] == "2" and knn["champion_version_before"] == "1"
    assert not knn["promoted"] and knn["challenger_value"] < knn["champion_value"]
    assert knn["champion_version_after"] == "1" and mlflow.version_for("itemknn", "champion") == "1"
    assert mlflow.version_for("itemknn", "challenger") == "2"
    pop = decisions.loc["popularity"]  # the same model again: a tie is not an improvement
    assert not pop["promoted"] and pop["challenger_value"] == pytest.approx(pop["champion_value"])

    client = _client(resources)
    tags = client.get_model_version("cobuy-itemknn", "2").tags
    assert tags["gate.promoted"] == "False" and result.run_id in tags["gate.decided_by"]
    assert float(tags["gate.champion_value"]) == pytest.approx(knn["champion_value"])
    assert tags["gate.metric"] == "ndcg@20"
    history = json.loads(client.get_registered_model("cobuy-itemknn").tags["gate.history"])
    assert [h["promoted"] for h in history] == [True, False]


def _corrupt_some(real_export):
    """Export as usual, then spoil two files: ease's becomes unreadable bytes, mf's gets other weights."""
    def export(model, data, path, k=20):
        info = real_export(model, data, path, k=k)
        if path.stem == "ease":
            path.write_bytes(b"\x08\x07not an onnx model")
        elif path.stem == "mf":
            proto = onnx.load(str(path))
            for init in proto.graph.initializer:
                if init.name == "item_factors_t":
                    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
            onnx.save_model(proto, str(path))
        return info
    return export


def test_corrupt_export_fails_its_blocking_check_and_nothing_registers(first, monkeypatch):
    _, resources, instance = first
    mlflow, client = resources["mlflow"], _client(resources)
    before = {f: len(client.search_model_versions(f"name = '{mlflow.model_name(f)}'")) for f in ("ease", "mf")}
    monkeypatch.setattr(registry_assets, "export_family", _corrupt_some(registry_assets.export_family))
    config = {"ops": {"model_exports": {"config": {"families": ["ease", "mf"]}}}}
    selection = dg.AssetSelection.assets("model_exports", "model_versions", "champion_decisions")
    result = _materialize(resources, selection, config, instance)
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"ease_onnx_parity", "mf_onnx_parity"}
    assert not checks["ease_onnx_parity"].passed and not checks["mf_onnx_parity"].passed
    assert checks["mf_onnx_parity"].metadata["max_abs_diff"].value > 1e-4
    assert "model_versions" not in _materialized(result) and "champion_decisions" not in _materialized(result)
    after = {f: len(client.search_model_versions(f"name = '{mlflow.model_name(f)}'")) for f in ("ease", "mf")}
    assert after == before
    assert mlflow.version_for("ease", "champion") == mlflow.version_for("mf", "champion") == "1"


class _Scores:
    """A model whose scores are a fixed (n_users, n_items) array, natively or 'exported' (top-k by ranking)."""

    def __init__(self, scores, k):
        from types import SimpleNamespace

        from training.ranking import mask_seen, top_k

        self.s, self.info, self._mask, self._top = np.asarray(scores, np.float32), SimpleNamespace(k=k), mask_seen, top_k

    def score_users(self, users):
        return self.s[users].copy()

    def scores(self, users, history):
        return self.s[users].copy()

    def top_k(self, users, history):
        return self._top(self._mask(self.s[users].copy(), history), self.info.k)


@pytest.mark.parametrize("native, exported, identical, passed", [
    ([1.0, 0.9999999, 0.5, 0.1], [0.9999999, 1.0, 0.5, 0.1], 0.0, True),  # tied items swapped by rounding
    ([1.0, 0.99999, 0.5, 0.1], [0.99999, 0.99998, 0.5, 0.1], 1.0, True),  # same order, scores within 1e-4
    ([1.0, 0.99998, 0.5, 0.1], [0.99998, 1.0, 0.5, 0.1], 0.0, False),     # within 1e-4 but not tied: reordered
    ([1.0, 0.9, 0.5, 0.1], [0.5, 0.9, 1.0, 0.1], 0.0, False),             # other scores: the bound fails
])
def test_parity_tolerates_only_swaps_of_tied_items(native, exported, identical, passed):
    import scipy.sparse as sp

    from serving.onnx_scoring import check_parity

    report = check_parity(_Scores([native], k=3), _Scores([exported], k=3), sp.csr_matrix((1, 4), dtype=np.float32), n_users=1)
    assert report.top_k_identical_fraction == identical and report.passed is passed


def test_unreachable_mlflow_fails_the_registering_asset_fast_naming_the_uri(first):
    """``model_versions`` against a tracking server that is down (a closed loopback port): the step fails
    within seconds (not after MLflow's minutes of retries), the error names the URI, nothing registers."""
    import socket

    from orchestration.resources import MLflowRegistry

    _, resources, instance = first
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"  # released: connections are refused
    client = _client(resources)
    before = len(client.search_model_versions("name = 'cobuy-itemknn'"))
    down = {**resources, "mlflow": MLflowRegistry(tracking_uri=uri)}
    result = _materialize(down, dg.AssetSelection.assets("model_exports", "model_versions"),
                          {"ops": {"model_exports": {"config": {"families": ["popularity"]}}}}, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "model_versions"
    assert uri in _failures(result)[0] and "unreachable" in _failures(result)[0]
    records = {r.dagster_event.event_type_value: r.timestamp for r in instance.all_logs(result.run_id)
               if r.dagster_event is not None and r.dagster_event.step_key == "model_versions"}
    assert records["STEP_FAILURE"] - records["STEP_START"] < 10.0  # inputs loaded, then the first MLflow call
    assert len(client.search_model_versions("name = 'cobuy-itemknn'")) == before


def test_serving_gate_registers_the_best_family_as_the_one_serving_champion(first, tmp_path):
    """One serving champion across families: the run's best family on ndcg@20 (whatever it is: a registered
    export, the blend or the natively served hybrid) becomes cobuy-serving@champion, and the service loads it."""
    from serving.service.champion import load_served
    from serving.serving_gate import rank_candidates

    result, resources, instance = first
    run = _materialize(resources, dg.AssetSelection.assets("cold_partner_policy", "serving_champion"), {}, instance)
    assert run.success, _failures(run)
    row = run.output_for_node("serving_champion").iloc[0]
    metrics = result.output_for_node("model_metrics")
    families = set(result.output_for_node("model_versions")["family"]) | {"blend", "hybrid"}
    best = rank_candidates(metrics, "ndcg@20", families)["family"].iloc[0]
    assert row["challenger_family"] == row["serving_family"] == best
    assert row["promoted"] and row["champion_version_after"] == "1"
    # decided on validation, the test split's figure reported beside it
    assert row["split"] == "validation" and 0 < row["challenger_test_value"] <= 1
    assert row["challenger_value"] != row["challenger_test_value"]
    assert row["challenger_format"] == ("native" if best == "hybrid" else "onnx")
    client = _client(resources)
    version = client.get_model_version_by_alias("cobuy-serving", "champion")
    assert version.tags["family"] == best and version.tags["gate.promoted"] == "True"
    assert version.tags["gate.split"] == "validation"
    assert float(version.tags["gate.test_challenger_value"]) == pytest.approx(row["challenger_test_value"], abs=1e-6)
    from serving.registry import download_serving_version

    folder = download_serving_version(resources["mlflow"].tracking_uri, "cobuy-serving", "1", tmp_path / "v1")
    served = load_served(folder, "cobuy-serving", "1")
    assert served.info.family == best and served.text is not None
    policy = run.output_for_node("cold_partner_policy")  # new items' partners served as the policy chose them
    assert (served.text.n_twins, served.text.temperature) == (policy.n_twins, policy.temperature)
    item = int(np.argmax(served.evidence.counts))
    assert np.isfinite(served.scorer.related_scores(item)).any()
