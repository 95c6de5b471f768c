"""The whole-pipeline benchmark's measurements: process-tree memory and the run summary."""
import os
import subprocess
import sys
import time

import pandas as pd

from benchmarks.pipeline import summarise, tree_memory


def test_tree_memory_counts_a_child_process():
    alone, _, n_alone = tree_memory(os.getpid())
    # a child that holds ~200 MB of its own while we sample
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 * 2**20); time.sleep(30)"])
    try:
        for _ in range(100):
            with_child, pss, n = tree_memory(os.getpid())
            if with_child - alone > 150 * 2**20:
                break
            time.sleep(0.1)
        assert n == n_alone + 1
        assert with_child - alone > 150 * 2**20
        assert 0 < pss <= with_child
    finally:
        child.kill()
        child.wait()


def test_summary_lists_skipped_families_and_metrics_at_20():
    metrics = pd.DataFrame({"model": ["itemknn", "itemknn", "popularity"], "k": [10, 20, 20],
                            "recall": [0.1, 0.2, 0.05], "ndcg": [0.1, 0.15, 0.04], "n_users": [9, 9, 9]})
    outcomes = {"ease_model": {"skipped": "needs 9.9 GB, 4.0 GB available"}, "itemknn_model": {"neighbours": 10}}
    s = summarise("SUCCESS", outcomes, metrics)
    assert s["families_run"] == ["itemknn", "popularity"]
    assert s["families_skipped"] == {"ease_model": "needs 9.9 GB, 4.0 GB available"}
    assert s["metrics"]["itemknn"] == {"recall@20": 0.2, "ndcg@20": 0.15, "users": 9}
    assert summarise("FAILURE", {}, None)["families_run"] == []


def test_sampler_stops_and_keeps_its_peak():
    from benchmarks.pipeline import TreeSampler

    sampler = TreeSampler(os.getpid(), 0.05)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()  # Thread.join: the sampler must not shadow Thread's own attributes
    assert not sampler.is_alive() and sampler.peak_rss > 0 and sampler.peak_processes >= 1


def test_step_seconds_lists_the_latest_runs_steps_longest_first(tmp_path, monkeypatch):
    import time

    import dagster as dg

    from benchmarks.pipeline import step_seconds

    @dg.asset
    def quick() -> int:
        return 1

    @dg.asset
    def slow(quick: int) -> int:
        time.sleep(0.3)
        return quick

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([quick, slow], instance=instance).success
    steps = step_seconds(tmp_path)
    assert list(steps) == ["slow", "quick"] and steps["slow"] >= 0.3


def test_result_names_the_runs_files_relative_to_its_folder(tmp_path):
    from benchmarks.pipeline import relative_to_out

    result = {"log": str(tmp_path / "run" / "dagster.log"), "assets": {"a": {"path": str(tmp_path / "run" / "x")}}}
    assert relative_to_out(result, tmp_path) == {"log": "run/dagster.log", "assets": {"a": {"path": "run/x"}}}
