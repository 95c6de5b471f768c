"""``python -m benchmarks.run``: every path of the command on tiny data (a 60-customer synthetic shop described by
a source file in tmp_path), asserting on the JSON it writes to ``--out``; source files in each accepted form; its
errors. The rolling-origin options of the text encoder run on a stand-in fold (the real fine-tuning runs once, on one
fold, with two steps)."""
import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from benchmarks import run as benchmark
from benchmarks.data import BenchmarkInputError, read_source_file, resolve_dataset

TINY = "kind: synthetic\nsynthetic_users: 60\n"
TINY_PARAMS = {  # small enough for a test; every other family runs with its own defaults
    "gf_cf": {"n_factors": 16}, "chebycf": {"n_factors": 16, "order": 3},
    "mf": {"dim": 8, "max_epochs": 2, "batch_size": 256}, "ials": {"dim": 8, "max_epochs": 2},
    "lightgcn": {"dim": 8, "n_layers": 1, "max_epochs": 2, "batch_size": 512},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    (d / "tiny.yaml").write_text(TINY)
    return d


@pytest.fixture
def one_thread():
    """The text encoder's few tiny batches on one torch thread: on a busy machine more threads only spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def bench(folder, model: str, *args: str, source: str = "tiny.yaml", name: str = "tiny", tag: str = "") -> dict:
    """Run the command as a user would (``main`` with its arguments) and read back the JSON it wrote."""
    argv = ["--source", str(folder / source), "--model", model, "--out", str(folder / "out"),
            "--work", str(folder / "work"), "--repeats", "1", *args] + (["--tag", tag] if tag else [])
    benchmark.main(argv)
    return json.loads((folder / "out" / f"{name}-{model}{'-' + tag if tag else ''}.json").read_text())


def check_ranking(r: dict, model: str) -> None:
    m = r["metrics"]
    assert r["dataset"] == "tiny" and r["model"] == model and r["n_test_users"] > 0
    for k in (10, 20, 50):
        assert 0.0 < m[f"recall@{k}"] <= 1.0 and 0.0 < m[f"ndcg@{k}"] <= 1.0
    assert m["recall@10"] <= m["recall@20"] <= m["recall@50"]
    assert r["data"]["split"]["strategy"] == "temporal" and "time" in r["data"]["split"]["chosen_because"]
    assert r["source"]["config"] == {"kind": "synthetic", "synthetic_users": 60} and "published" not in r
    assert r["fit_seconds_median"] >= 0 and r["data"]["items"] == 212


@pytest.mark.parametrize("model", [f for f in benchmark.FAMILIES
                                   if f not in ("association_rules", "text_encoder", "hybrid")])
def test_every_ranking_family_writes_its_metrics_to_out(folder, model):
    before = sorted(p.name for p in benchmark.RESULTS.iterdir())
    r = bench(folder, model, *(["--params", json.dumps(TINY_PARAMS[model])] if model in TINY_PARAMS else []))
    check_ranking(r, model)
    assert r["params"] == TINY_PARAMS.get(model, {})  # a source file's data gets no built-in dataset's defaults
    if model in ("mf", "ials", "lightgcn"):
        assert 1 <= r["fit_facts"]["epochs"] <= 2
    assert sorted(p.name for p in benchmark.RESULTS.iterdir()) == before  # the committed results untouched


@pytest.fixture(scope="module")
def association(folder):
    return bench(folder, "association_rules")


def test_association_rules_are_scored_and_identical_to_mlxtend(association):
    check_ranking(association, "association_rules")
    assert association["baskets"] > 100 and association["items"] == 212
    assert [row["min_support"] for row in association["speed_vs_mlxtend"]] == [0.005, 0.01]
    for row in association["speed_vs_mlxtend"]:
        assert row["rules"] == row["mlxtend_rules"] > 0
        assert row["identical_rule_sets"] and row["identical_rule_values"]
        assert max(row["max_relative_difference"].values()) < 1e-9
        assert row["speedup"] > 0 and row["ours_seconds_median"] > 0
    assert association["speed_vs_mlxtend"][0]["rules"] > association["speed_vs_mlxtend"][1]["rules"]


def test_association_rules_without_mlxtend_where_its_dense_table_is_too_big(folder, association):
    r = bench(folder, "association_rules", "--mlxtend-max-cells", "1000", tag="nomlx")
    assert "1,000 cells" in r["mlxtend_skipped"] and "--mlxtend-max-cells" in r["mlxtend_skipped"]
    for ours, full in zip(r["speed_vs_mlxtend"], association["speed_vs_mlxtend"]):
        assert ours["rules"] == full["rules"] and "mlxtend_rules" not in ours and "speedup" not in ours


def test_tuning_keeps_its_study_under_out_and_its_storage_under_work(folder):
    r = bench(folder, "itemknn", "--tune", "2", tag="tuned")
    check_ranking(r, "itemknn")
    t = r["tuning"]
    assert t["trials"] == 2 and set(t["best_params"]) == {"k", "alpha", "shrink", "weighting"}
    assert r["params"] == t["best_params"] and 0.0 < t["best_validation_value"] <= 2.0
    assert (folder / "out" / "tuning" / "tiny-itemknn-tuned" / "summary.json").exists()
    assert (folder / "work" / "optuna.db").exists()
    fast = bench(folder, "gf_cf", "--tune", "2", "--params", json.dumps(TINY_PARAMS["gf_cf"]), tag="tuned")
    assert fast["tuning"]["trials"] == 2 and fast["params"] == fast["tuning"]["best_params"]
    assert (folder / "out" / "tuning" / "tiny-gf_cf-tuned" / "summary.json").exists()


def test_hybrid_writes_its_ablation(folder, one_thread):
    from training.models.hybrid import SIGNALS

    r = bench(folder, "hybrid", "--tune", "2")
    assert r["dataset"] == "tiny" and r["trials"] == 2
    assert r["collaborative_family"] in r["collaborative_validation_ndcg@20"]
    rows = {a["configuration"]: a for a in r["ablation"]}
    assert len(rows) == 1 + 2 * len(SIGNALS) and "hybrid" in rows
    for a in rows.values():
        assert all(0.0 <= a[k] <= 1.0 for k in a if k != "configuration")
    assert rows["hybrid"]["user_recommendations_recall@20"] > 0


def test_text_encoder_fine_tunes_and_ranks_the_cold_items(folder, one_thread):
    r = bench(folder, "text_encoder", "--steps", "2", "--batch-size", "8")
    assert r["dataset"] == "tiny" and r["config"]["steps"] == 2 and r["config"]["batch_size"] == 8
    assert r["history"]["steps"] == 2 and r["history"]["train_pairs"] == 16
    assert set(r["cold_start"]) == {"basket_or_customer", "basket"}
    for table in r["cold_start"].values():
        assert table["cold_items"] >= 1
        for name in ("fine_tuned_encoder", "untuned_encoder", "tfidf_titles", "popularity"):
            assert 0.0 <= table["methods"][name]["recall@20"] <= 1.0
    assert (folder / "work" / "text_encoder" / "tiny" / "config.json").exists()  # the fine-tuned encoder, in --work
    assert "rolling" not in r


def test_text_encoder_rolling_folds_resume_and_confirmation_from_the_command(folder, monkeypatch):
    """``--folds``, ``--confirm-from``, ``--resume``, ``--reuse-embeddings`` reach the cold-start benchmark and its
    checkpoints go to ``--work``; a stand-in fold replaces the fine-tuning."""
    from tests.test_cold_start_folds import _full_fold
    from benchmarks import cold_start as csb

    calls = []

    def fake_fold(windows, texts, item_ids, rows_all, steps, fit_rows=None, save_to=None, embeddings_to=None,
                  embeddings_from=None):
        calls.append((windows.fold, embeddings_from is not None))
        return {**_full_fold(0, 4 + windows.fold, 0.05, windows.fold), "windows": windows.as_dict(),
                "config": {"steps": steps}}

    monkeypatch.setattr(csb, "run_fold", fake_fold)
    args = ("--steps", "3", "--folds", "3", "--confirm-from", "2")
    r = bench(folder, "text_encoder", *args)
    assert calls == [(0, False), (1, False), (2, False)]
    assert [f["windows"]["fold"] for f in r["rolling"]["folds"]] == [0, 1, 2]
    assert r["rolling"]["pooled"]["basket"]["cold_items"] == 4 + 5 + 6
    assert r["rolling"]["confirmation"]["folds"] == [2]
    kept = sorted(p.name for p in (folder / "work" / "cold_start_folds").glob("tiny-steps3-*"))
    assert kept == [f"tiny-steps3-fold{k}.json" for k in range(3)]
    assert (folder / "out" / "tiny-text_encoder-differences.png").read_bytes()[:4] == b"\x89PNG"
    calls.clear()
    assert bench(folder, "text_encoder", *args, "--resume")["reused_folds"] == [0, 1, 2] and calls == []
    (folder / "work" / "cold_start_folds" / "tiny-steps3-fold1.npz").write_bytes(b"kept")
    again = bench(folder, "text_encoder", *args, "--reuse-embeddings")
    assert calls == [(0, False), (1, True), (2, False)] and again["folds_evaluated_from_kept_embeddings"] == [1]


def test_benchmark_doc_tables_are_rebuilt_from_results(folder, association, monkeypatch, capsys):
    results = folder / "readme-results"
    results.mkdir()
    (results / "tiny-association_rules.json").write_text(json.dumps(association))
    (folder / "docs").mkdir(exist_ok=True)
    (folder / "docs" / "benchmarks.md").write_text("intro\n<!-- benchmarks:start -->\nold\n<!-- benchmarks:end -->\nrest\n")
    monkeypatch.setattr(benchmark, "RESULTS", results)
    monkeypatch.setattr(benchmark, "ROOT", folder)
    benchmark.main(["--docs"])
    text = (folder / "docs" / "benchmarks.md").read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "\nold\n" not in text
    s = association["speed_vs_mlxtend"][0]
    assert f"| tiny | 0.005 | {s['rules']} | True | {s['ours_seconds_median']:.4f} |" in text
    assert f"| tiny | association_rules | {association['metrics']['recall@20']:.4f} |" in text
    assert "| tiny | association_rules |" in capsys.readouterr().out


# source files: each form, the split they set, relative paths


def test_a_source_file_is_read_bare_or_in_run_config_nesting(tmp_path):
    (tmp_path / "bare.yaml").write_text(TINY)
    (tmp_path / "raw.yaml").write_text("raw_tables:\n  config:\n    kind: synthetic\n    synthetic_users: 60\n")
    (tmp_path / "run.yaml").write_text("ops:\n  raw_tables:\n    config:\n      kind: synthetic\n"
                                       "      synthetic_users: 60\n  training_split:\n    config:\n"
                                       "      strategy: customer_holdout\n      seed: 3\n"
                                       "  association_rules:\n    config:\n      min_support: 0.01\n")
    forms = {n: read_source_file(tmp_path / f"{n}.yaml") for n in ("bare", "raw", "run")}
    assert all(d.source == {"kind": "synthetic", "synthetic_users": 60} for d in forms.values())
    assert forms["bare"].split == forms["raw"].split == {"strategy": "auto"} and forms["bare"].name == "bare"
    assert forms["run"].split == {"strategy": "customer_holdout", "seed": 3} and not forms["run"].builtin
    assert resolve_dataset(source=str(tmp_path / "run.yaml"), split="temporal").split["strategy"] == "temporal"
    assert resolve_dataset(dataset="synthetic").builtin


def test_the_split_comes_from_the_source_file_or_split(folder):
    (folder / "holdout.yaml").write_text("ops:\n  raw_tables:\n    config:\n      kind: synthetic\n"
                                         "      synthetic_users: 60\n  training_split:\n    config:\n"
                                         "      strategy: customer_holdout\n")
    r = bench(folder, "popularity", source="holdout.yaml", name="holdout")
    assert r["data"]["split"]["strategy"] == "customer_holdout" and "set by" in r["data"]["split"]["chosen_because"]
    b = bench(folder, "itemknn", "--split", "basket_completion", "--name", "baskets", name="baskets")
    assert b["data"]["split"]["strategy"] == "basket_completion" and b["metrics"]["recall@20"] > 0


def test_an_events_file_beside_its_source_file(folder, tmp_path):
    """A shop's own export: events and catalog CSVs, the source file naming them relative to itself."""
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

    shop = generate_shop(SyntheticShopConfig(n_users=60)).tables
    shop.interactions[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "events.csv", index=False)
    shop.items[["item_id", "title"]].to_csv(tmp_path / "catalog.csv", index=False)
    (tmp_path / "myshop.yaml").write_text("kind: events\npath: events.csv\ncatalog_path: catalog.csv\n"
                                          "delimiter: ','\n")
    benchmark.main(["--source", str(tmp_path / "myshop.yaml"), "--model", "itemknn", "--repeats", "1",
                    "--out", str(tmp_path / "out")])
    r = json.loads((tmp_path / "out" / "myshop-itemknn.json").read_text())
    assert r["dataset"] == "myshop" and r["data"]["items"] == shop.items["item_id"].nunique()
    assert r["source"]["config"]["path"] == str(tmp_path / "events.csv")
    assert r["data"]["split"]["strategy"] == "temporal" and r["metrics"]["recall@20"] > 0


def test_the_default_out_folder_is_ignored_by_git():
    if not (benchmark.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    rel = (benchmark.DEFAULT_OUT / "x-itemknn.json").relative_to(benchmark.ROOT)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=benchmark.ROOT)
    assert ignored.returncode == 0


# errors: each names what is wrong and what to set


def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        benchmark.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_unknown_names_list_the_valid_ones(folder, capsys):
    err = _error(capsys, ["--dataset", "groceries", "--model", "itemknn"])
    assert "unknown dataset 'groceries'" in err and "gowalla, online_retail, synthetic" in err and "--source" in err
    err = _error(capsys, ["--source", str(folder / "tiny.yaml"), "--model", "knn", "--out", str(folder / "out")])
    assert "unknown model 'knn'" in err and "itemknn" in err and "association_rules" in err
    err = _error(capsys, ["--source", str(folder / "tiny.yaml"), "--model", "itemknn", "--split", "random"])
    assert "unknown split 'random'" in err and "basket_completion" in err
    err = _error(capsys, ["--model", "itemknn"])
    assert "--dataset or --source" in err
    err = _error(capsys, ["--source", str(folder / "tiny.yaml"), "--model", "itemknn", "--params", "{k: 1}"])
    assert "--params" in err and "not JSON" in err


def test_source_file_problems_name_the_file_and_field(tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    err = _error(capsys, ["--source", str(missing), "--model", "itemknn"])
    assert f"source file not found: {missing}" in err
    cases = {"typo.yaml": ("kind: events\npth: x.csv\n", ["'pth'", "path", "catalog_path"]),
             "kind.yaml": ("kind: parquet\npath: x\n", ["'parquet'", "events", "instacart"]),
             "nopath.yaml": ("kind: events\n", ["needs 'path'"]),
             "nokind.yaml": ("path: shop.csv\n", ["no kind", "set kind", "events"]),
             "gone.yaml": ("kind: events\npath: gone.csv\n", ["path", "gone.csv", "does not exist"]),
             "bad.yaml": ("kind: [events\n", ["not valid YAML", "line"]),
             "ops.yaml": ("ops:\n  text_encoder: {}\n", ["ops: raw_tables: config:"])}
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        err = _error(capsys, ["--source", str(tmp_path / name), "--model", "itemknn"])
        assert str(tmp_path / name) in err and all(e in err for e in expected), (name, err)


def test_a_text_benchmark_on_a_split_without_time_says_why(folder):
    d = resolve_dataset(source=str(folder / "tiny.yaml"), split="customer_holdout")
    for run in (lambda: benchmark.run_cold_start(d, 2, work=folder / "work"),
                lambda: benchmark.run_hybrid(d, 2, None)):
        with pytest.raises(BenchmarkInputError, match="needs the temporal split.*'customer_holdout'"):
            run()


def test_rule_comparison_tells_different_rules_apart():
    from benchmarks.association import compare_rules

    ours = pd.DataFrame({"antecedent": [0, 1], "consequent": [1, 0], "support": [0.1, 0.1],
                         "confidence": [0.5, 0.25], "lift": [2.0, 2.0], "leverage": [0.05, 0.05],
                         "conviction": [np.inf, 1.5]})
    assert compare_rules(ours, ours)["identical_rule_values"]
    off = ours.assign(confidence=[0.5, 0.26])
    c = compare_rules(ours, off)
    assert c["identical_rule_sets"] and not c["identical_rule_values"]
    assert c["max_relative_difference"]["confidence"] == pytest.approx(0.01 / 0.26)
    assert not compare_rules(ours, ours.iloc[:1])["identical_rule_sets"]
    assert compare_rules(ours, ours.assign(conviction=[2.0, 1.5]))["max_relative_difference"]["conviction"] == np.inf


def test_a_basket_per_line_file_gets_basket_completion_and_the_mlxtend_check(tmp_path):
    """The Groceries form: one basket a line, no customer, no time. The split is chosen by the data's shape."""
    from data_checks.sources import SourceKind
    from typing import get_args

    if "baskets" not in get_args(SourceKind):
        pytest.skip("this checkout has no basket-per-line reader")
    rng = np.random.default_rng(0)
    items = [f"item {i}" for i in range(30)]
    lines = []
    for _ in range(400):
        basket = set(rng.choice(items, size=rng.integers(1, 5), replace=False))
        if rng.random() < 0.3:
            basket |= {"bread", "butter"}  # a planted pair
        lines.append(",".join(sorted(basket)))
    (tmp_path / "groceries.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "groceries.yaml").write_text("kind: baskets\npath: groceries.csv\ndelimiter: ','\n")
    benchmark.main(["--source", str(tmp_path / "groceries.yaml"), "--model", "association_rules", "--repeats", "1",
                    "--out", str(tmp_path / "out")])
    r = json.loads((tmp_path / "out" / "groceries-association_rules.json").read_text())
    assert r["data"]["split"]["strategy"] == "basket_completion"
    assert "no customers and no time" in r["data"]["split"]["chosen_because"]
    assert r["baskets"] == 400 and r["items"] == 32 and r["metrics"]["recall@20"] > 0
    for row in r["speed_vs_mlxtend"]:
        assert row["rules"] == row["mlxtend_rules"] > 0 and row["identical_rule_values"]
