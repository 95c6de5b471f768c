"""How long loading the code location takes (``import orchestration.definitions``), and which heavy libraries it
pulls in. Dagster loads the code location in every process it starts (``dg launch``, ``dagster dev``, each step of
a run), so seconds here are paid many times.

    python -m benchmarks.import_time --repeats 5 --out benchmarks/results

Each repeat is a fresh interpreter (``python -X importtime -c "import orchestration.definitions"``): the wall time
of the whole process, the import time Python reports for ``orchestration.definitions``, and the slowest top-level
packages. Writes ``<out>/import-time.json`` with medians and the load average before and after (the machine may
be shared: compare ``dagster_and_pandas_s``, the floor the code location cannot go under, measured the same way).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# libraries that take a second or more to import and that only some assets need
HEAVY = ("torch", "lightning", "transformers", "onnxruntime", "onnx", "mlflow", "great_expectations", "optuna",
         "matplotlib", "sklearn", "pyspark")
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _importtime(stderr: str) -> dict[str, float]:
    """Cumulative seconds per top-level package (a name without a dot, where it was first imported, so its
    dependencies' time included) and for ``orchestration.definitions``, from ``-X importtime`` output."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if m and ("." not in m.group(4) or m.group(4) == "orchestration.definitions"):
            out[m.group(4)] = out.get(m.group(4), 0.0) + int(m.group(2)) / 1e6
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_import(code: str) -> tuple[float, dict[str, float], list[str], float]:
    """(wall seconds, cumulative import seconds per package, heavy libraries in sys.modules, CPU seconds) of one
    fresh interpreter running ``code`` then listing ``HEAVY`` modules it loaded."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    t0, cpu0 = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"`{code}` failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return wall, _importtime(done.stderr), json.loads(done.stdout.strip().splitlines()[-1]), cpu


def measure(repeats: int) -> dict:
    """Medians over ``repeats`` fresh interpreters, the floor (dagster and pandas alone) beside them."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = [one_import("import orchestration.definitions") for _ in range(repeats)]
    floors = [one_import("import dagster, pandas") for _ in range(repeats)]
    floor = [f[0] for f in floors]
    walls = [r[0] for r in runs]
    packages = sorted({p for r in runs for p in r[1]})
    per_package = {p: round(statistics.median(r[1].get(p, 0.0) for r in runs), 3) for p in packages}
    slowest = dict(sorted(per_package.items(), key=lambda kv: -kv[1])[:12])
    return {
        "command": "python -X importtime -c 'import orchestration.definitions' (fresh interpreter each)",
        "repeats": repeats, "wall_s_median": round(statistics.median(walls), 3),
        "wall_s": [round(w, 3) for w in walls],
        "definitions_import_s_median": per_package.get("orchestration.definitions"),
        "dagster_and_pandas_s_median": round(statistics.median(floor), 3),
        # CPU seconds (user + system) of each interpreter: what an idle machine's wall time would be, near enough,
        # since importing is single-threaded; steadier than wall time on a shared machine
        "cpu_s_median": round(statistics.median(r[3] for r in runs), 3),
        "dagster_and_pandas_cpu_s_median": round(statistics.median(f[3] for f in floors), 3),
        "heavy_libraries_loaded": sorted({m for r in runs for m in r[2]}),
        "slowest_packages_s_median": slowest,
        "target_s": 3.0, "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.import_time", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="fresh interpreters per measurement (default 5)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for import-time.json")
    args = ap.parse_args(argv)
    result = measure(args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "import-time.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"import orchestration.definitions: median {result['wall_s_median']:.2f} s wall, "
          f"{result['cpu_s_median']:.2f} s CPU "
          f"(dagster + pandas alone {result['dagster_and_pandas_s_median']:.2f} s) at load {result['load_before']}; "
          f"heavy libraries loaded: {result['heavy_libraries_loaded'] or 'none'} -> {path}")


if __name__ == "__main__":
    main()
