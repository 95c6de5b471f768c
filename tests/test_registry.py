"""MLflow tracking, the registry and the promotion gate, against an embedded SQLite MLflow."""
import numpy as np
import pytest

from serving.registry import CHALLENGER, CHAMPION, alias_version, decide, register_challenger, run_gate


@pytest.mark.parametrize("challenger, champion, margin, promoted", [
    (0.30, None, 0.01, True),   # first model becomes champion
    (0.30, 0.20, 0.01, True),   # better by more than the margin
    (0.205, 0.20, 0.01, False),  # better, but within the margin
    (0.20, 0.20, 0.0, False),   # a tie is not an improvement
    (0.10, 0.20, 0.0, False),   # worse: never
    (0.10, 0.20, -0.5, False),  # worse, even with a (misconfigured) negative margin
    (float("nan"), 0.20, 0.0, False),
])
def test_gate_decision_rule(challenger, champion, margin, promoted):
    assert decide(challenger, champion, margin)[0] is promoted


@pytest.fixture()
def mlflow_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _log(uri, tmp_path, model, data, tag):
    from serving.onnx_export import export_recommender
    from training.tracking import TrainingRun, dataset_fingerprint, log_training_run

    path = tmp_path / f"{tag}.onnx"
    info = export_recommender(model, path, k=10, user_ids=data.user_ids, item_ids=data.item_ids)
    run = TrainingRun(model.name, {"tag": tag}, metrics={"recall@20": 0.1},
                      tags={"dataset_fingerprint": dataset_fingerprint(data), "dagster_run_id": "test"},
                      onnx_path=str(path), onnx_kind=info.kind, onnx_n_items=info.n_items, onnx_k=info.k)
    return log_training_run(uri, "cobuy-test", run, artifact_location=(tmp_path / "artifacts").as_uri())


def test_gate_promotes_only_better_models_and_records_decisions(mlflow_uri, tmp_path, shop_data, shop_clean,
                                                               shop_split):
    from mlflow import MlflowClient

    from serving.heldout import evaluate_exports
    from serving.onnx_scoring import OnnxRecommender
    from training.models import ItemKNN, Popularity

    test = shop_data.matrix_for(shop_split.test)
    weak, strong = Popularity().fit(shop_data), ItemKNN().fit(shop_data)

    def evaluate(paths):
        models = {role: OnnxRecommender(p, provider="cpu") for role, p in paths.items()}
        return evaluate_exports(models, shop_data.user_ids, shop_data.item_ids, shop_data.user_items, test)

    name = "cobuy-test-family"
    decisions = []
    for tag, model in [("v1-weak", weak), ("v2-strong", strong), ("v3-weak-again", weak)]:
        logged = _log(mlflow_uri, tmp_path, model, shop_data, tag)
        version = register_challenger(mlflow_uri, name, logged.model_uri, logged.run_id)
        assert alias_version(mlflow_uri, name, CHALLENGER) == version
        decisions.append(run_gate(mlflow_uri, name, evaluate, "ndcg@20", margin=0.0, decided_by="pytest",
                                  workdir=tmp_path / f"gate-{tag}"))
    first, second, third = decisions
    assert first.promoted and first.champion_version is None
    assert second.promoted and second.challenger_value > second.champion_value
    assert not third.promoted and third.challenger_value < third.champion_value
    assert alias_version(mlflow_uri, name, CHAMPION) == second.challenger_version
    client = MlflowClient(mlflow_uri, registry_uri=mlflow_uri)
    tags = client.get_model_version(name, third.challenger_version).tags
    assert tags["gate.promoted"] == "False" and tags["gate.decided_by"] == "pytest"
    assert float(tags["gate.champion_value"]) == pytest.approx(second.challenger_value)
    import json
    history = json.loads(client.get_registered_model(name).tags["gate.history"])
    assert [h["promoted"] for h in history] == [True, True, False]


def test_training_run_logs_params_metrics_trials_and_signature(mlflow_uri, tmp_path, shop_data):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from serving.onnx_export import export_recommender
    from training.models import ItemKNN
    from training.tracking import TrainingRun, log_training_run, tracking

    tuning = tmp_path / "tuning"
    tuning.mkdir()
    pd.DataFrame({"number": [0, 1], "value": [0.1, 0.2], "params_k": [50, 100], "state": ["COMPLETE"] * 2}
                 ).to_csv(tuning / "trials.csv", index=False)
    (tuning / "best_params.json").write_text('{"k": 100}')
    model = ItemKNN().fit(shop_data)
    info = export_recommender(model, tmp_path / "m.onnx", item_ids=shop_data.item_ids)
    logged = log_training_run(mlflow_uri, "cobuy-test", TrainingRun(
        "itemknn", {"k": 100, "nested": {"a": 1}}, metrics={"ndcg@20": 0.5}, tags={"git_commit": "abc"},
        tuning_dir=str(tuning), onnx_path=str(tmp_path / "m.onnx"), onnx_kind=info.kind,
        onnx_n_items=info.n_items, onnx_k=info.k), artifact_location=(tmp_path / "artifacts").as_uri())
    client = MlflowClient(mlflow_uri, registry_uri=mlflow_uri)
    run = client.get_run(logged.run_id)
    assert run.data.params["k"] == "100" and run.data.metrics["ndcg_at_20"] == 0.5
    assert run.data.tags["git_commit"] == "abc"
    children = client.search_runs([logged.experiment_id], f"tags.mlflow.parentRunId = '{logged.run_id}'")
    assert sorted(c.data.metrics["objective"] for c in children) == [0.1, 0.2]
    assert {a.path for a in client.list_artifacts(logged.run_id, "optuna")} >= {"optuna/trials.csv"}
    with tracking(mlflow_uri):
        sig = mlflow.models.get_model_info(logged.model_uri).signature
    assert sig.inputs.input_names() == ["history"]
    assert sig.outputs.input_names() == ["top_items", "top_scores", "scores"]


def _closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released: connecting is refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_fast_naming_the_uri(tmp_path):
    import socket
    import time

    from orchestration.resources import MLflowRegistry
    from serving.registry import RegistryUnavailableError
    from training.tracking import LoggedRun, TrainingRun

    uri = f"http://127.0.0.1:{_closed_loopback_port()}"
    mlflow = MLflowRegistry(tracking_uri=uri)
    logged = LoggedRun("run-1", "models:/m-1", "0")
    calls = {"version_for": lambda: mlflow.version_for("itemknn", CHAMPION),
             "log_run": lambda: mlflow.log_run(TrainingRun("itemknn", {}, metrics={}, tags={})),
             "register_challenger": lambda: mlflow.register_challenger("itemknn", logged),
             "download": lambda: mlflow.download("itemknn", "1", tmp_path)}
    for name, call in calls.items():
        t0 = time.monotonic()
        with pytest.raises(RegistryUnavailableError) as err:
            call()
        assert time.monotonic() - t0 < 5.0, name  # MLflow's own retries would take minutes
        assert uri in str(err.value) and "unreachable" in str(err.value), name

    # a database URI: named with its password hidden
    db = MLflowRegistry(tracking_uri=f"postgresql+psycopg2://cobuy:s3cret@127.0.0.1:{_closed_loopback_port()}/mlflow")
    with pytest.raises(RegistryUnavailableError) as err:
        db.version_for("itemknn", CHAMPION)
    assert "cobuy:***@127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)

    # the positive control: a listening server passes the probe; local SQLite is never probed
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        MLflowRegistry(tracking_uri=f"http://127.0.0.1:{server.getsockname()[1]}").check_reachable()
    MLflowRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").check_reachable()


def test_a_failure_after_the_version_is_created_rolls_it_back(mlflow_uri, tmp_path, shop_data, monkeypatch):
    """The alias call fails after ``create_model_version``: no version is left without its alias, the version
    count is unchanged, ``challenger`` and ``champion`` still name what they named, the error says what failed."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from serving.registry import RegistrationError
    from training.models import ItemKNN, Popularity

    name = "cobuy-rollback"
    client = MlflowClient(mlflow_uri, registry_uri=mlflow_uri)
    v1 = register_challenger(mlflow_uri, name, _log(mlflow_uri, tmp_path, Popularity().fit(shop_data), shop_data,
                                                    "v1").model_uri, "r1")
    client.set_registered_model_alias(name, CHAMPION, v1)
    v2 = register_challenger(mlflow_uri, name, _log(mlflow_uri, tmp_path, ItemKNN().fit(shop_data), shop_data,
                                                    "v2").model_uri, "r2")
    before = sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))
    logged = _log(mlflow_uri, tmp_path, ItemKNN(k=5).fit(shop_data), shop_data, "v3")

    def unreachable(self, *args, **kwargs):
        raise MlflowException("connection reset by peer (injected)")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", unreachable)
    with pytest.raises(RegistrationError) as err:
        register_challenger(mlflow_uri, name, logged.model_uri, logged.run_id)
    monkeypatch.undo()
    message = str(err.value)
    assert name in message and mlflow_uri in message and "pointing 'challenger'" in message
    assert "injected" in message and "deleted again" in message
    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == before
    assert alias_version(mlflow_uri, name, CHALLENGER) == v2 and alias_version(mlflow_uri, name, CHAMPION) == v1
    # every version left is one an alias names: v3 was created, then deleted again
    assert {str(v.version) for v in client.search_model_versions(f"name = '{name}'")} == {v1, v2}


def test_tracking_block_leaves_mlflow_process_state_as_it_found_it(tmp_path, monkeypatch):
    """A registry call made after a logging block, with no registry URI of its own, must not land in the store
    the block pointed at (set_registry_uri exports MLFLOW_REGISTRY_URI; restoring through it pinned a stale one)."""
    import os

    import mlflow
    import mlflow.tracking._model_registry.utils as registry_state
    import mlflow.tracking._tracking_service.utils as tracking_state

    from training.tracking import tracking

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'outer.db'}")
    monkeypatch.setattr(registry_state, "_registry_uri", None)
    monkeypatch.setattr(tracking_state, "_tracking_uri", None)
    inner = f"sqlite:///{tmp_path / 'inner.db'}"
    with tracking(inner):
        assert mlflow.get_registry_uri() == inner and mlflow.get_tracking_uri() == inner
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'outer.db'}"
    assert registry_state._registry_uri is None and tracking_state._tracking_uri is None
    later = f"sqlite:///{tmp_path / 'later.db'}"
    assert mlflow.MlflowClient(later)._registry_uri == later
