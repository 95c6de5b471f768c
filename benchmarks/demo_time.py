"""``make demo`` as a new user meets it: a fresh ``git clone``, then the install and the run, each timed.

    python -m benchmarks.demo_time --out benchmarks/results

Clones this repository's committed ``HEAD`` next to it (``../<--name>``, so ``../shared`` resolves the same way),
runs ``make install`` and then ``make demo`` there, and writes ``<out>/demo-time.json``: the wall seconds of each
and their sum (``wall_s``), the CPU seconds of each (less sensitive to a shared machine's load than wall time),
the load average before and after (the machine may be shared), whether the run
succeeded (``RUN_SUCCESS`` printed, ``data/answers/latest/report.html`` written), each step's own duration as
Dagster reports it, and the demo's console output size. The clone is removed afterwards unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 300.0  # issue 20: make demo within five minutes, install included
_STEP = re.compile(r'Finished execution of step "([\w.\[\]]+)" in ([\d.]+)(ms|s|m)?(?:([\d.]+)s)?')


def step_seconds(console: str) -> dict[str, float]:
    """Each step's duration from Dagster's 'Finished execution of step "x" in 1m23s.' lines."""
    out: dict[str, float] = {}
    for name, a, unit, b in _STEP.findall(console):
        if unit == "ms":
            out[name] = float(a) / 1000
        elif unit == "m":
            out[name] = float(a) * 60 + float(b or 0)
        else:
            out[name] = float(a)
    return out


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds of the command's whole process tree, exit code, its output)."""
    t0, cpu0 = time.perf_counter(), _children_cpu()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0, _children_cpu() - cpu0, rc, log.read_text(errors="replace")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(name: str, keep: bool) -> dict:
    """Clone, install and run the demo in ``../<name>``; the measured facts."""
    clone = ROOT.parent / name
    if clone.exists():
        shutil.rmtree(clone)
    commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    load_before = _load()
    t0 = time.perf_counter()
    subprocess.check_call(["git", "clone", "--quiet", str(ROOT), str(clone)])
    clone_s = time.perf_counter() - t0
    logs = clone.parent / f"{name}-logs"
    logs.mkdir(exist_ok=True)
    install_s, install_cpu, install_rc, _ = _timed(["make", "install"], clone, logs / "install.log")
    load_between = _load()
    run_s, run_cpu, run_rc, console = (_timed(["make", "demo"], clone, logs / "demo.log") if install_rc == 0
                                       else (0.0, 0.0, -1, ""))
    report = clone / "data" / "answers" / "latest" / "report.html"
    steps = step_seconds(console)
    result = {
        "command": "git clone; make install; make demo (fresh clone, fresh .venv)", "commit": commit,
        "wall_s": round(clone_s + install_s + run_s, 1), "clone_s": round(clone_s, 1),
        "install_s": round(install_s, 1), "run_s": round(run_s, 1), "target_s": TARGET_S,
        # CPU seconds do not grow with other processes' load the way wall time does: on an idle 2-core machine the
        # wall time is at most about these (each phase uses one or two cores)
        "install_cpu_s": round(install_cpu, 1), "run_cpu_s": round(run_cpu, 1),
        "success": install_rc == 0 and run_rc == 0 and "RUN_SUCCESS" in console and report.exists(),
        "install_rc": install_rc, "run_rc": run_rc, "answers_report_written": report.exists(),
        "superseded_warning": "superseded" in console.lower(),
        "console_lines": len(console.splitlines()),
        "steps_s": dict(sorted(steps.items(), key=lambda kv: -kv[1])), "steps_total_s": round(sum(steps.values()), 1),
        "load_before": load_before, "load_after_install": load_between, "load_after": _load(),
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
    }
    if not keep:
        shutil.rmtree(clone, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.demo_time", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="cobuy-demo-clone", help="the clone's folder name, next to this repository")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for demo-time.json")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its data/answers) after measuring")
    args = ap.parse_args(argv)
    result = measure(args.name, args.keep)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "demo-time.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"make demo from a fresh clone: {result['wall_s']:.0f} s wall (install {result['install_s']:.0f} s, run "
          f"{result['run_s']:.0f} s), success={result['success']}, load before {result['load_before']} -> {path}")


if __name__ == "__main__":
    main()
