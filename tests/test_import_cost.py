"""Loading the code location (``import orchestration.definitions``, done by every Dagster process: the CLI, the
webserver, each step of a run) must not import the heavy libraries that only some assets use. Behaviour, not
timing: the seconds are measured by ``python -m benchmarks.import_time``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.import_time import HEAVY, _importtime

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loading_the_code_location_imports_none_of_the_heavy_libraries():
    assert _loaded_after("import orchestration.definitions") == []


def test_a_model_family_still_loads_its_libraries_when_asked_for():
    # the lazy registry resolves a name to its class, importing torch and Lightning at that moment
    loaded = _loaded_after("from training.models import MODELS\nassert MODELS['mf'].__name__ == "
                           "'MatrixFactorization'\nfrom training.models import LightGCN")
    assert {"torch", "lightning"} <= set(loaded)


def test_the_benchmark_reads_cumulative_import_times_per_package():
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       100 |        100 |     numpy.core\n"
              "import time:       200 |     250000 |   numpy\n"
              "import time:       300 |    1500000 | orchestration.definitions\n")
    assert _importtime(stderr) == {"numpy": 0.25, "orchestration.definitions": 1.5}


def test_validation_imports_from_a_command_line_snippet():
    # Great Expectations imports pyspark.sql.connect when pyspark is installed; without Spark Connect's gRPC
    # packages pyspark takes a `python -c` process for a doctest run and ends it with exit status 0, silently
    probe = "import great_expectations\nprint('validation loaded')"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("validation loaded"), done.stderr[-2000:]
