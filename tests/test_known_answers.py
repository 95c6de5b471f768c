"""Known answers on the real Gowalla split, and the benchmark command's output."""
import json

import pandas as pd
import pytest

from tests.conftest import GOWALLA, need

pytestmark = pytest.mark.heavy(28)  # seconds on 2 quiet cores: make test starts the heaviest files first


@pytest.mark.benchmark  # dataset-sized: all 29,858 Gowalla users ranked over 40,981 items (about a minute)
def test_gowalla_popularity_reproduces_the_known_answer():
    need(GOWALLA)
    from benchmarks import run as benchmark
    from training.metrics import evaluate_scores
    from training.models import Popularity

    _, _, train, test = benchmark.load_dataset("gowalla")
    assert (train.n_users, train.n_items, train.user_items.nnz, test.nnz) == (29_858, 40_981, 810_128, 217_242)
    res = evaluate_scores(Popularity().fit(train).score_users, train.user_items, test, ks=(20,))
    assert round(res["recall@20"], 4) == 0.0416
    assert round(res["ndcg@20"], 4) == 0.0317


def test_benchmark_command_writes_json(tmp_path, monkeypatch, capsys):
    from benchmarks import run as benchmark

    benchmark.main(["--dataset", "synthetic", "--model", "itemknn", "--repeats", "2", "--out", str(tmp_path)])
    out = json.loads((tmp_path / "synthetic-itemknn.json").read_text())
    assert set(out["metrics"]) >= {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit_rate", "coverage")
                                   for k in (10, 20, 50)}
    assert len(out["fit_seconds"]) == 2 and out["fit_seconds_median"] > 0
    assert 0 < out["metrics"]["recall@20"] <= 1
    printed = capsys.readouterr().out
    assert "synthetic / itemknn" in printed and "recall" in printed


def test_benchmark_params_override_the_defaults(tmp_path, monkeypatch):
    from benchmarks import run as benchmark

    benchmark.main(["--dataset", "synthetic", "--model", "itemknn", "--repeats", "1", "--tag", "k5",
                    "--params", '{"k": 5, "shrink": 2.0}', "--out", str(tmp_path)])
    out = json.loads((tmp_path / "synthetic-itemknn-k5.json").read_text())
    assert out["params"]["k"] == 5 and out["params"]["shrink"] == 2.0


def test_benchmark_tunes_the_blend_weights(tmp_path, monkeypatch):
    from benchmarks import run as benchmark

    benchmark.main(["--dataset", "synthetic", "--model", "blend", "--repeats", "1", "--tune", "3", "--params",
                    '{"components": [["ease", {"l2": 50.0}], ["itemknn", {"k": 50}]]}', "--out", str(tmp_path),
                    "--work", str(tmp_path / "work")])
    out = json.loads((tmp_path / "synthetic-blend.json").read_text())
    assert out["tuning"]["trials"] == 3
    assert out["params"]["components"] == [["ease", {"l2": 50.0}], ["itemknn", {"k": 50}]]
    assert out["params"]["weights"] == out["tuning"]["best_params"]["weights"]
    assert out["params"]["weights"][0] == 1.0 and 0.0 <= out["params"]["weights"][1] <= 2.0


def test_cold_start_benchmark_chooses_prior_weights_on_validation_items_only(tmp_path, monkeypatch):
    """Each text method gets '+prior' and '+partners' rows whose settings were chosen on the items first sold inside
    the validation window (before the cut), never on the test's cold items; in the rolling-origin fold too, on its
    own validation items, never on its own test's."""
    from benchmarks import run as benchmark
    from training import cold_start

    work = ["--out", str(tmp_path), "--work", str(tmp_path / "work")]  # the fine-tuned encoder is saved under work
    seen_tasks = []
    choose = cold_start.choose_on_validation  # every setting (prior weight, twins) is chosen through it

    def recording(task, *args, **kwargs):
        seen_tasks.append(task)
        return choose(task, *args, **kwargs)

    monkeypatch.setattr(cold_start, "choose_on_validation", recording)
    benchmark.main(["--dataset", "synthetic", "--model", "text_encoder", "--steps", "2", "--folds", "2", *work])
    out = json.loads((tmp_path / "synthetic-text_encoder.json").read_text())
    _, split, train, _ = benchmark.load_dataset("synthetic")
    rows_all = pd.concat([split.train, split.after_cutoff])
    per_fold = len(seen_tasks) // 2  # fold 0 runs first, then fold 1, each choosing the same settings
    for w, tasks in zip(out["rolling"]["folds"], (seen_tasks[:per_fold], seen_tasks[per_fold:])):
        cut, end = pd.Timestamp(w["windows"]["cut"]), pd.Timestamp(w["windows"]["end"])
        test_cold = set(cold_start.build_task(rows_all[rows_all["timestamp"] < end], train.item_ids, cut).cold)
        assert test_cold and tasks and all(len(t.cold) and not set(t.cold) & test_cold for t in tasks)
    assert out["rolling"]["pooled"]["basket"]["cold_items"] == sum(out["rolling"]["pooled"]["basket"][
        "cold_items_per_fold"])
    # evaluated again from the folds' kept embeddings, without fine-tuning: the same figures
    benchmark.main(["--dataset", "synthetic", "--model", "text_encoder", "--steps", "2", "--folds", "2",
                    "--reuse-embeddings", *work])
    again = json.loads((tmp_path / "synthetic-text_encoder.json").read_text())
    assert again["folds_evaluated_from_kept_embeddings"] == [0, 1]
    assert again["rolling"]["pooled"] == out["rolling"]["pooled"] and again["cold_start"] == out["cold_start"]
    for table in out["cold_start"].values():
        texts = {"fine_tuned_encoder", "untuned_encoder", "tfidf_titles"}
        assert set(table["methods"]) == {"popularity"} | texts | {f"{m}+{x}" for m in texts
                                                                  for x in ("prior", "partners", "partners+prior")}
        assert all(w["weight"] in cold_start.PRIOR_WEIGHTS for w in table["prior_weights"].values())
        assert all((s["n_twins"], s["temperature"]) in cold_start.TWIN_SETTINGS
                   for s in table["partner_settings"].values())
        assert table["validation_cold_items"] > 0
        # every fine-tuned form against every other method, with a bootstrap interval around the mean difference
        others = set(table["methods"]) - set(cold_start.FINE_TUNED_FORMS)
        assert set(table["differences"]) == {f"{f} - {o}" for f in cold_start.FINE_TUNED_FORMS for o in others}
        for name, diff in table["differences"].items():
            mine, other = name.split(" - ")
            for key in ("recall@20", "ndcg@20"):
                d = diff[key]
                assert d["mean_difference"] == pytest.approx(
                    table["methods"][mine][key] - table["methods"][other][key], abs=1e-9)
                assert d["ci_low"] <= d["mean_difference"] <= d["ci_high"]
