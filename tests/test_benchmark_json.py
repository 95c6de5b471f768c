"""Benchmark JSON is committed: it must name files relative to the project root, never one machine's paths."""
import json

from serving.storage import PROJECT_ROOT, write_result_json


def test_result_json_names_paths_relative_to_the_project_root(tmp_path):
    result = {"storage": f"sqlite:///{PROJECT_ROOT / 'data' / 'optuna.db'}",
              "files": [str(PROJECT_ROOT / "benchmarks" / "results" / "x.png")], "recall@20": 0.18,
              "elsewhere": "/srv/datasets/gowalla"}
    written = json.loads(write_result_json(result, tmp_path / "out.json").read_text())
    assert written == {"storage": "sqlite:///data/optuna.db", "files": ["benchmarks/results/x.png"],
                       "recall@20": 0.18, "elsewhere": "/srv/datasets/gowalla"}
    assert str(PROJECT_ROOT) not in (tmp_path / "out.json").read_text()
