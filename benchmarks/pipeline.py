"""One whole pipeline run, measured as a user would run it: wall time, peak memory of the process tree, which
families ran and which were skipped (with their reasons), and each family's held-out metrics.

    python -m benchmarks.pipeline --config configs/instacart.yaml --name instacart --out DIR

The job runs through Dagster's command line in a subprocess, against a fresh Dagster home and data folder under
``DIR/run`` (nothing of the user's ``data/`` is touched); a sampler walks ``/proc`` every ``--interval`` seconds
and sums the resident memory (RSS) of the command and every process it started (Dagster's step processes,
Lightning's workers). Shared pages count once per process in RSS, so the sum is an upper bound; the
proportional set size (PSS, shared pages split between their processes) is recorded beside it.
Writes ``DIR/<name>-full_pipeline.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from cobuy_files.storage import write_result_json

ROOT = Path(__file__).resolve().parent.parent
GB = 2**30


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # the command name may hold spaces
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_memory(root: int) -> tuple[int, int, int]:
    """(RSS bytes summed, PSS bytes summed, processes) over ``root`` and all its descendants."""
    tree, stack, rss, pss, n = _children(), [root], 0, 0, 0
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
            n += 1
        except (OSError, ValueError):
            continue
    return rss, pss, n


class TreeSampler(threading.Thread):
    """Samples :func:`tree_memory` of one process until stopped; keeps the peaks."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss, pss, n = tree_memory(self.pid)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, n)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _latest_run(dagster_home: Path):
    """(the Dagster instance under ``dagster_home``, its latest run or None)."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(limit=1)
    return instance, (runs[0] if runs else None)


def _asset_outcomes(dagster_home: Path) -> tuple[str, dict[str, dict]]:
    """The latest run's status and, per materialized asset, its metadata as plain values."""
    import dagster as dg

    instance, run = _latest_run(dagster_home)
    if run is None:
        return "NOT_STARTED", {}
    outcomes: dict[str, dict] = {}
    for record in instance.get_records_for_run(run.run_id,
                                               of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        mat = record.event_log_entry.asset_materialization
        outcomes["/".join(mat.asset_key.path)] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return run.status.value, outcomes


def step_seconds(dagster_home: Path) -> dict[str, float]:
    """The latest run's steps and how long each ran (Dagster's STEP_SUCCESS / STEP_FAILURE durations), longest
    first: where a whole run's wall time went."""
    import dagster as dg

    instance, run = _latest_run(dagster_home)
    if run is None:
        return {}
    out: dict[str, float] = {}
    for kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
        for record in instance.get_records_for_run(run.run_id, of_type=kind, limit=10_000).records:
            event = record.event_log_entry.dagster_event
            duration = getattr(event.event_specific_data, "duration_ms", None)
            if event.step_key and duration is not None:
                out[event.step_key] = round(duration / 1000, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def summarise(status: str, outcomes: dict[str, dict], metrics: pd.DataFrame | None) -> dict:
    """Families run and skipped (an asset whose metadata holds ``skipped``) and each family's metrics at K=20."""
    skipped = {key: str(md["skipped"]) for key, md in outcomes.items() if "skipped" in md}
    per_model = {}
    if metrics is not None and len(metrics):
        at20 = metrics[metrics["k"] == 20]
        per_model = {str(r["model"]): {"recall@20": float(r["recall"]), "ndcg@20": float(r["ndcg"]),
                                       "users": int(r["n_users"])} for _, r in at20.iterrows()}
    return {"status": status, "families_run": sorted(per_model), "families_skipped": skipped, "metrics": per_model}


def run_pipeline(config: Path, out: Path, job: str, interval: float) -> dict:
    """Run ``job`` with run config ``config`` in a fresh Dagster home under ``out/run``; returns the summary."""
    work = out / "run"
    shutil.rmtree(work, ignore_errors=True)
    home, data = work / "dagster_home", work / "data"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "infra" / "local" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "COBUY_DATA_DIR": str(data)}
    command = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "orchestration.definitions",
               "-j", job, "-c", str(config)]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with open(work / "dagster.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        rc = proc.wait()
        sampler.stop()
    wall = time.perf_counter() - t0
    status, outcomes = _asset_outcomes(home)
    metrics_path = data / "assets" / "model_metrics.parquet"
    metrics = pd.read_parquet(metrics_path) if metrics_path.exists() else None
    return {**summarise(status, outcomes, metrics), "exit_code": rc, "wall_s": round(wall, 1),
            "peak_rss_gb": round(sampler.peak_rss / GB, 3), "peak_pss_gb": round(sampler.peak_pss / GB, 3),
            "peak_processes": sampler.peak_processes, "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
            "command": " ".join(command[1:]), "config": str(config), "log": str(work / "dagster.log"),
            "step_seconds": step_seconds(home),
            "asset_metadata": {k: {m: v for m, v in md.items() if isinstance(v, (int, float, str, bool))}
                               for k, md in outcomes.items()}}


def relative_to_out(result: dict, out: Path) -> dict:
    """``result`` with the paths under ``out`` (the run's data and log) named relative to it."""
    return json.loads(json.dumps(result, default=str).replace(str(out.resolve()) + "/", ""))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="Dagster run config (YAML), e.g. configs/instacart.yaml")
    p.add_argument("--name", required=True, help="dataset name for the result file <name>-full_pipeline.json")
    p.add_argument("--out", type=Path, required=True, help="folder for the result file and the run's own folders")
    p.add_argument("--job", default="full_pipeline")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_pipeline(args.config.resolve(), args.out.resolve(), args.job, args.interval)
    path = args.out / f"{args.name}-full_pipeline.json"
    result = relative_to_out(result, args.out)
    write_result_json(result, path)  # and relative to the project (committed results carry no machine's paths)
    print(json.dumps({k: result[k] for k in ("status", "wall_s", "peak_rss_gb", "families_run",
                                             "families_skipped")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
