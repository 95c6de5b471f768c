"""Jobs and a child-process entry point for the fault tests (``tests/test_faults.py``).

The jobs are the code location's own ``score`` and ``train_and_evaluate`` jobs with the resources built for
``$COBUY_DATA_DIR``, behind module-level functions so that ``dg.reconstructable`` (and so
``dg.execute_job`` and re-execution from failure) can rebuild them in any process.

``main`` runs one job in this process with the in-process executor and a *kill plan*: the ``n``-th write
into a chosen output's temporary file leaves that file half-written and sends SIGKILL to this process,
the way the OOM killer or a lost node ends a run: no Python cleanup, no Dagster failure event.

    python -c "from tests.faults_support import main; main()" '<json plan>'

plan: ``{"job": "score"|"train_and_evaluate", "run_config": {...}, "assets": [...], "kill": {"folder":
<name of the output's folder>, "prefix": <temporary file name prefix>, "nth": N, "how": "parquet"|"pickle"}}``;
``$DAGSTER_HOME`` names the instance, ``$COBUY_DATA_DIR`` the data folder.

``concurrent_main`` materializes ``fault_table`` -> ``fault_summary`` with the project's IO manager, as one of
several processes started at the same time; every process loads its input only once all of them have
written their upstream output (a barrier in files under ``$COBUY_FAULT_SYNC``).

    python -c "from tests.faults_support import concurrent_main; concurrent_main()" <label> <processes>
"""

import json
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.resources import TableIOManager

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def _definitions() -> dg.Definitions:
    from orchestration.definitions import all_assets, all_checks, build_resources, score_job, train_job

    return dg.Definitions(assets=all_assets, asset_checks=all_checks, jobs=[score_job, train_job],
                          resources=build_resources(os.environ["COBUY_DATA_DIR"]))


def scoring_job() -> dg.JobDefinition:
    """The ``score`` job (batch scoring from MLflow's ``@champion``) on ``$COBUY_DATA_DIR``."""
    return _definitions().resolve_job_def("score")


def training_job() -> dg.JobDefinition:
    """The ``train_and_evaluate`` job on ``$COBUY_DATA_DIR``."""
    return _definitions().resolve_job_def("train_and_evaluate")


JOBS: dict[str, Callable[[], dg.JobDefinition]] = {"score": scoring_job, "train_and_evaluate": training_job}


def _is_target(path: Any, kill: dict) -> bool:
    p = Path(str(path))
    return p.parent.name == kill["folder"] and p.name.startswith(kill["prefix"]) and p.name.endswith(".tmp")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(kill: dict) -> None:
    """Patch the chosen writer: its ``nth`` write into a matching temporary file is the last thing this
    process does. ``parquet``: after the n-th row group (``ParquetWriter.write_table``) reached the file
    (no footer: torn); ``pickle``: after half of the pickle's bytes."""
    calls = {"n": 0}
    if kill["how"] == "parquet":
        import pyarrow.parquet as pq

        original = pq.ParquetWriter.write_table

        def write_table(self, table, *args, **kwargs):
            original(self, table, *args, **kwargs)
            if _is_target(self.where, kill):
                calls["n"] += 1
                if calls["n"] == kill["nth"]:
                    _die()

        pq.ParquetWriter.write_table = write_table
    elif kill["how"] == "pickle":
        original_dump = pickle.dump

        def dump(obj, fh, *args, **kwargs):
            if not _is_target(getattr(fh, "name", ""), kill):
                return original_dump(obj, fh, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] < kill["nth"]:
                return original_dump(obj, fh, *args, **kwargs)
            data = pickle.dumps(obj, *args, **kwargs)
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.fsync(fh.fileno())
            _die()

        pickle.dump = dump
    else:
        raise ValueError(f"unknown kill plan {kill['how']!r}")


def run(job: str, run_config: dict, assets: list[str], instance: dg.DagsterInstance) -> dg.JobExecutionResult:
    """``job`` restricted to ``assets`` executed with the in-process executor against ``instance``."""
    return dg.execute_job(dg.reconstructable(JOBS[job]), instance=instance, run_config={**run_config, **IN_PROCESS},
                          asset_selection=[dg.AssetKey(a) for a in assets])


def main() -> None:
    plan = json.loads(sys.argv[1])
    install_kill(plan["kill"])
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        result = run(plan["job"], plan["run_config"], plan["assets"], instance)
    sys.exit(0 if result.success else 1)  # not reached when the kill plan fires


class Label(dg.Config):
    label: str


@dg.asset(name="fault_table")
def fault_table(context: dg.AssetExecutionContext, config: Label) -> pd.DataFrame:
    """A table that says which run wrote it (200 rows: label, run_id, row)."""
    return pd.DataFrame({"label": config.label, "run_id": context.run.run_id, "row": np.arange(200)})


@dg.asset(name="fault_summary")
def fault_summary(context: dg.AssetExecutionContext, fault_table: pd.DataFrame) -> dict:
    """What this run read from ``fault_table`` (pickled: a non-DataFrame output)."""
    return {"run_id": context.run.run_id, "read_label": str(fault_table["label"].iloc[0]),
            "read_run": str(fault_table["run_id"].iloc[0]), "rows": len(fault_table)}


FAULT_ASSETS = [fault_table, fault_summary]


class LoadAfterAllWrites(TableIOManager):
    """The project's IO manager; an input loads only once ``parties`` runs have reached their first load
    (so every one of them has written its upstream output): the interleaving in which one shared file per
    asset would hand a run another run's table."""

    sync_dir: str
    parties: int = 2
    timeout_s: float = 120.0

    def load_input(self, context: dg.InputContext) -> Any:
        sync = Path(self.sync_dir)
        sync.mkdir(parents=True, exist_ok=True)
        (sync / context.step_context.run_id).touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(sync.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(list(sync.iterdir()))} of {self.parties} runs reached the barrier")
            time.sleep(0.05)
        return super().load_input(context)


def concurrent_main() -> None:
    label, parties = sys.argv[1], int(sys.argv[2])
    io = LoadAfterAllWrites(base_dir=os.environ["COBUY_DATA_DIR"], sync_dir=os.environ["COBUY_FAULT_SYNC"],
                            parties=parties)
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        result = dg.materialize(FAULT_ASSETS, instance=instance, resources={"io_manager": io},
                                run_config={"ops": {"fault_table": {"config": {"label": label}}}})
    print(json.dumps({"run_id": result.run_id, "success": result.success}))
