"""Benchmark JSON is committed: it must name files relative to the project root, never one machine's paths."""
import json

from cobuy_files.storage import PROJECT_ROOT, write_result_json


def test_result_json_names_paths_relative_to_the_project_root(tmp_path):
    result = {"storage": f"sqlite:///{PROJECT_ROOT / 'data' / 'optuna.db'}",
              "files": [str(PROJECT_ROOT / "benchmarks" / "results" / "x.png")], "recall@20": 0.18,
              "elsewhere": "/srv/datasets/gowalla"}
    written = json.loads(write_result_json(result, tmp_path / "out.json").read_text())
    assert written == {"storage": "sqlite:///data/optuna.db", "files": ["benchmarks/results/x.png"],
                       "recall@20": 0.18, "elsewhere": "/srv/datasets/gowalla"}
    assert str(PROJECT_ROOT) not in (tmp_path / "out.json").read_text()


def test_lightgcn_curves_are_plotted_from_every_gowalla_result(tmp_path, monkeypatch):
    from benchmarks import run as benchmark

    monkeypatch.setattr(benchmark, "RESULTS", tmp_path)
    assert benchmark.lightgcn_curves_png() is None  # nothing to plot yet
    curve = [{"epoch": e, "seconds": 60.0 * (e + 1), "recall@20": 0.1 + 0.01 * e, "ndcg@20": 0.05 + 0.005 * e}
             for e in range(3)]
    for name, loss in (("gowalla-lightgcn", None), ("gowalla-lightgcn-ssm", "ssm")):
        params = {"dim": 64} if loss is None else {"dim": 64, "loss": loss}
        (tmp_path / f"{name}.json").write_text(json.dumps({"params": params, "fit_facts": {"curve": curve}}))
    (tmp_path / "gowalla-lightgcn-nocurve.json").write_text(json.dumps({"params": {}, "fit_facts": {}}))
    png = benchmark.lightgcn_curves_png()
    assert png == tmp_path / "gowalla-lightgcn-curve.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_result_json_names_the_environment_relative_to_its_folder(tmp_path, monkeypatch):
    """A benchmark run from a git worktree with another checkout's venv: the venv's files lose that checkout's path."""
    import sys

    monkeypatch.setattr(sys, "prefix", "/elsewhere/checkout/.venv")
    result = {"text_encoder": "/elsewhere/checkout/.venv/lib/site-packages/model"}
    written = json.loads(write_result_json(result, tmp_path / "out.json").read_text())
    assert written == {"text_encoder": ".venv/lib/site-packages/model"}
