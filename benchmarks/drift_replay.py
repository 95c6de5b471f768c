"""Replay a dataset month by month through the drift sensor's decision logic.

The first ``--reference-months`` months are the window the first champion was trained on. Every following
month is landed as a file (in the source's own layout) into a fresh landing folder and judged exactly as
the sensor judges it (:func:`data_checks.drift_trigger.evaluate_landing` with :class:`DriftThresholds`).
When a month fires, retraining is simulated: the reference becomes the profile of everything up to and
including that month (what a retrained champion would have been trained on).

    python -m benchmarks.drift_replay --dataset online_retail
    python -m benchmarks.drift_replay --dataset synthetic

Writes ``benchmarks/results/<dataset>-drift-replay.json`` and ``.md`` (the table in the README).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from tqdm import tqdm

from data_checks.drift import METRICS, DriftThresholds, interaction_profile
from data_checks.drift_trigger import WatchState, evaluate_landing
from data_checks.landing import LandedLayout, clean_landed, land_by_period, list_landed
from cobuy_files.storage import write_text

ROOT = Path(__file__).resolve().parent.parent
ONLINE_RETAIL = ROOT.parent / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
RESULTS = ROOT / "benchmarks" / "results"


def land_months(dataset: str, folder: Path, path: Optional[Path] = None) -> tuple[list[Path], LandedLayout, str]:
    """Write the dataset as one file per month into ``folder``; returns the files (time order), their
    layout and the source name (which picks the cleaning rules)."""
    if dataset == "online_retail":
        src = path or ONLINE_RETAIL
        if not src.exists():
            raise FileNotFoundError(f"{src} not found: pass --path to the Online Retail csv(.gz)")
        raw = pd.read_csv(src, dtype=str, keep_default_na=False, na_values=[""])
        return (land_by_period(raw, folder, "InvoiceDate", prefix="online_retail", fmt="csv"), "online_retail",
                "online_retail")
    if dataset == "synthetic":
        from data_checks.synthetic_shop import generate_shop

        rows = generate_shop().tables.interactions
        cols = ["user_id", "item_id", "timestamp", "basket_id", "quantity", "price"]
        return land_by_period(rows[cols], folder, prefix="synthetic"), "canonical", "synthetic"
    raise ValueError(f"unknown dataset {dataset!r}: choose online_retail or synthetic")


def replay(files: list[Path], layout: LandedLayout, source: str, reference_months: int,
           thresholds: DriftThresholds) -> dict[str, Any]:
    """Judge ``files[reference_months:]`` one at a time against the reference (see the module docstring)."""
    if len(files) <= reference_months:
        raise ValueError(f"{len(files)} months: need more than --reference-months {reference_months}")
    ref_paths = [str(p) for p in files[:reference_months]]
    reference = interaction_profile(clean_landed(ref_paths, layout, source=source).interactions)
    ref_label = f"{files[0].stem.split('-', 1)[1]}..{files[reference_months - 1].stem.split('-', 1)[1]}"
    trained_on = list(ref_paths)
    landing = Path(tempfile.mkdtemp(prefix="cobuy-replay-landing-"))
    state, rows = WatchState(), []
    try:
        for f in tqdm(files[reference_months:], desc="months", unit="month"):
            shutil.copy2(f, landing / f.name)
            listing = list_landed(landing, known=state.known(str(landing)))
            t0 = time.perf_counter()
            ev = evaluate_landing(state, listing, lambda: (reference, ref_label), thresholds, cooldown_s=0.0,
                                  now=time.time(), layout=layout, source=source)
            seconds = time.perf_counter() - t0
            state = ev.state
            metrics = (ev.report or {}).get("metrics", {})
            rows.append({"month": f.stem.split("-", 1)[1], "reference": ref_label, "status": ev.status,
                         "fire": ev.fire, "exceeded": ev.decision.exceeded if ev.decision else [],
                         "rows": (ev.report or {}).get("current", {}).get("n_rows"),
                         "quarantined_rows": ev.quarantined_rows, "n_new_items": (ev.report or {}).get("n_new_items"),
                         "reason": ev.reason, "seconds": round(seconds, 3), **{m: metrics.get(m) for m in METRICS}})
            trained_on += [x.path for x in ev.window]
            if ev.fire:  # simulated retraining: the new champion is trained on everything seen so far
                reference = interaction_profile(clean_landed(trained_on, layout, source=source).interactions)
                ref_label = f"{files[0].stem.split('-', 1)[1]}..{rows[-1]['month']}"
    finally:
        shutil.rmtree(landing, ignore_errors=True)
    return {"rows": rows, "n_fired": sum(r["fire"] for r in rows), "n_months": len(rows)}


def markdown(rows: list[dict[str, Any]], thresholds: DriftThresholds) -> str:
    """The replay as a markdown table: each metric per month (``*`` marks a metric past its threshold)."""
    limits = thresholds.limits()
    head = ["month", "reference", "rows", *[f"{m} (>{limits[m]})" if limits[m] is not None else m for m in METRICS],
            "decision"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["month"], r["reference"], f"{r['rows']:,}" if r["rows"] is not None else "n/a"]
        for m in METRICS:
            v = r[m]
            cells.append("n/a" if v is None else f"{v:.3f}{' *' if m in r['exceeded'] else ''}")
        cells.append("**fire**" if r["fire"] else f"skip ({r['status']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["online_retail", "synthetic"], default="online_retail")
    ap.add_argument("--path", type=Path, default=None, help="Online Retail csv(.gz); default ../shared/datasets")
    ap.add_argument("--reference-months", type=int, default=None,
                    help="months in the first reference window (default: 3 for online_retail, 2 for synthetic)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    for m in METRICS:
        ap.add_argument(f"--{m.replace('_', '-')}", type=float, default=None, help=f"threshold for {m}")
    args = ap.parse_args(argv)
    defaults = DriftThresholds()
    thresholds = DriftThresholds(**{m: getattr(args, m) if getattr(args, m) is not None else getattr(defaults, m)
                                    for m in METRICS})
    n_ref = args.reference_months or (3 if args.dataset == "online_retail" else 2)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cobuy-replay-months-") as tmp:
        files, layout, source = land_months(args.dataset, Path(tmp), args.path)
        result = replay(files, layout, source, n_ref, thresholds)
    table = markdown(result["rows"], thresholds)
    out = {"dataset": args.dataset, "reference_months": n_ref, "thresholds": thresholds.limits(),
           "min_rows": thresholds.min_rows, **result, "wall_seconds": round(time.perf_counter() - t0, 2),
           "loadavg": list(os.getloadavg()), "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "note": "cooldown 0 (data time); a firing month makes the reference everything up to it"}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(out, indent=2, default=str) + "\n", args.out / f"{args.dataset}-drift-replay.json")
    write_text(table, args.out / f"{args.dataset}-drift-replay.md")
    print(table)
    print(f"{result['n_fired']} of {result['n_months']} months fired; {out['wall_seconds']} s; "
          f"load average {out['loadavg'][0]:.1f} on {out['cpu_count']} CPUs")
    return out


if __name__ == "__main__":
    main()
