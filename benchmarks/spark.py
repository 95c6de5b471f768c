"""The counting stages in process and on Spark, side by side on a shared dataset: same results, and what each costs.

    nice -n 10 python -m benchmarks.spark --dataset online_retail
    nice -n 10 python -m benchmarks.spark --dataset instacart --repeats 0 --driver-memory 4g
    nice -n 10 python -m benchmarks.spark --dataset instacart --stages scale --scale 1 4 8

Writes (merging by dataset) ``benchmarks/results/spark-engine.json``. Per dataset and setting:

* ``rules``: every clean basket -> frequent itemsets -> every rule (all splits, min_confidence 0), in process
  (``training.association.pair_rules`` for pairs, ``training.itemsets.itemset_rules`` beyond) and on Spark
  (``SparkCounting.pair_rules`` / ``itemset_rules`` with ``itemsets`` = ``sql`` prefix joins or MLlib ``fpgrowth``).
* ``itemknn``: the top-``k`` cosine neighbours of every item (shrink 10), from users' histories (Online Retail) or
  baskets standing in for them (Instacart has no customers), in process (``knn_similarity``) and on Spark.
* ``scale`` (``--scale``): pair rules and item-kNN on the dataset's baskets repeated m times (the same supports and
  neighbours, m times the events): how the two paths grow with the event log on this machine.

Each row: ``identical`` (the same rule set, every metric within 1e-12 relative, here compared bit for bit too:
``bit_identical``; for item-kNN the same CSR arrays), ``local_s`` and ``spark_s`` (medians of ``--repeats`` runs
after one untimed warm-up run each; ``spark_first_s`` is Spark's first, cold run), ``rows`` (rules or neighbour
entries), ``local_peak_mb`` (the in-process path's peak of Python-tracked memory, numpy's arrays included, from a
separate run under tracemalloc), and the load average before and after. Spark runs ``--master`` (default
``local[2]``, driver memory 2g) in this process's JVM child, started once per dataset (``spark_session_start_s``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

OUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "spark-engine.json"
TOLERANCE = 1e-12
SETTINGS: dict[str, dict[str, list]] = {
    # (min_support, max_len, Spark's itemset method); None = any length
    "online_retail": {"rules": [(0.01, 2, "sql"), (0.005, 2, "sql"), (0.005, 3, "sql"), (0.005, 3, "fpgrowth"),
                                (0.005, None, "fpgrowth")],
                      "itemknn": [("none", 200), ("tfidf", 200)]},
    "instacart": {"rules": [(0.001, 2, "sql"), (0.001, 2, "fpgrowth"), (0.001, 3, "sql"), (0.001, None, "fpgrowth")],
                  "itemknn": [("none", 200)]},
}
SCALE_SUPPORT = {"online_retail": 0.005, "instacart": 0.001}


def load(dataset: str) -> tuple[sp.csr_matrix, sp.csr_matrix, dict]:
    """A shared dataset's clean baskets and the rows item-kNN learns from (users' histories; baskets where the
    data has no customers), both (n, n_items) CSR over the whole catalogue, and facts about them."""
    from benchmarks.itemsets import load_data

    t0 = time.perf_counter()
    data = load_data(dataset)
    baskets = data.baskets.tocsr()
    rows, rows_are = (data.user_items, "users") if data.user_items.nnz else (baskets, "baskets (no customers)")
    return baskets, rows.tocsr(), {
        "baskets": int(baskets.shape[0]), "items": int(baskets.shape[1]), "basket_item_pairs": int(baskets.nnz),
        "itemknn_rows": rows_are, "itemknn_row_count": int(rows.shape[0]), "itemknn_row_item_pairs": int(rows.nnz),
        "load_seconds": round(time.perf_counter() - t0, 2)}


def row_key(row: dict) -> tuple:
    """What a row measured: stage and setting (its place in the result file)."""
    return (row["stage"], row.get("min_support"), row.get("max_len"), row.get("spark_itemsets"), row.get("weighting"),
            row.get("k"), row.get("scale"))


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall seconds of ``repeats`` runs after one untimed warm-up run (whose result is returned, with its seconds
    first in the list's place 0: [first, run 1, ...])."""
    t = time.perf_counter()
    out = fn()
    times = [time.perf_counter() - t]
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times, out


def _peak_mb(fn: Callable[[], Any]) -> float:
    """Peak Python-tracked memory (numpy's buffers included) of one run of ``fn``, in MB."""
    tracemalloc.start()
    try:
        fn()
        return round(tracemalloc.get_traced_memory()[1] / 1e6, 1)
    finally:
        tracemalloc.stop()


def compare_pair_rules(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict:
    """Same (antecedent, consequent) set and each metric's largest relative difference."""
    key = ["antecedent", "consequent"]
    same = len(ours) == len(theirs) and set(map(tuple, ours[key].to_numpy())) == set(map(tuple, theirs[key].to_numpy()))
    diffs = {}
    if same and len(ours):
        a, b = ours.sort_values(key, ignore_index=True), theirs.sort_values(key, ignore_index=True)
        for col in ("pair_count", "antecedent_support", "consequent_support", "support", "confidence", "lift",
                    "leverage", "conviction"):
            diffs[col] = _max_rel(a[col].to_numpy(np.float64), b[col].to_numpy(np.float64))
    return {"identical_rule_sets": bool(same), "max_relative_difference": diffs,
            "identical": bool(same and all(d <= TOLERANCE for d in diffs.values())),
            "bit_identical": bool(same and ours.equals(theirs))}


def compare_itemset_rules(ours: Any, theirs: Any) -> dict:
    """Same rules (antecedent and consequent itemsets) and each metric's largest relative difference."""
    ko, kt = ours.keys(), theirs.keys()
    same = len(ko) == len(kt) and set(ko) == set(kt) and len(set(ko)) == len(ko)
    diffs = {}
    if same and ko:
        at = {k: i for i, k in enumerate(kt)}
        order = np.array([at[k] for k in ko])
        for name, values in ours.metrics.items():
            diffs[name] = _max_rel(values, theirs.metrics[name][order])
        diffs["count"] = _max_rel(ours.count.astype(np.float64), theirs.count[order].astype(np.float64))
    bit = same and ko == kt and all(np.array_equal(v, theirs.metrics[n]) for n, v in ours.metrics.items())
    return {"identical_rule_sets": bool(same), "max_relative_difference": diffs,
            "identical": bool(same and all(d <= TOLERANCE for d in diffs.values())), "bit_identical": bool(bit)}


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    if not np.array_equal(np.isinf(a), np.isinf(b)):
        return float("inf")
    f = np.isfinite(a)
    rel = np.abs(a[f] - b[f]) / np.maximum(np.abs(b[f]), 1e-300)
    return float(rel.max()) if rel.size else 0.0


def same_csr(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices()
    b.sort_indices()
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data))


def _row(stage: str, local_t: list[float], spark_t: list[float] | None, rows: int, cmp: dict, before: list[float],
         **extra: Any) -> dict:
    spark = {"spark_s": None, "spark_first_s": None, "spark_runs_s": []} if spark_t is None else {
        "spark_s": statistics.median(spark_t[1:] or spark_t), "spark_first_s": spark_t[0], "spark_runs_s": spark_t[1:]}
    return {"stage": stage, **extra, "rows": rows, **cmp, "local_s": statistics.median(local_t[1:] or local_t),
            "local_runs_s": local_t[1:], **spark, "load_average_1_5_15min": {"before": before, "after": _load_average()}}


def rules_row(engine: Any, baskets: sp.csr_matrix, min_support: float, max_len: int | None, method: str,
              repeats: int, with_spark: bool = True) -> dict:
    from training.association import pair_rules
    from training.itemsets import itemset_rules

    engine.itemsets = method
    before = _load_average()
    if max_len == 2:
        local = lambda: pair_rules(baskets, min_support, 0.0)  # noqa: E731
        remote = lambda: engine.pair_rules(baskets, min_support, 0.0)  # noqa: E731
        compare = compare_pair_rules
    else:
        local = lambda: itemset_rules(baskets, min_support, 0.0, max_len)  # noqa: E731
        remote = lambda: engine.itemset_rules(baskets, min_support, 0.0, max_len)  # noqa: E731
        compare = compare_itemset_rules
    local_t, ours = _timed(local, repeats)
    spark_t, cmp = None, {"identical": None, "bit_identical": None}
    if with_spark:
        spark_t, theirs = _timed(remote, repeats)
        cmp = compare(ours, theirs)
    return _row("rules", local_t, spark_t, len(ours), cmp, before, min_support=min_support, max_len=max_len,
                spark_itemsets=method if with_spark else None, local_peak_mb=_peak_mb(local))


def itemknn_row(engine: Any, rows: sp.csr_matrix, weighting: str, k: int, repeats: int,
                with_spark: bool = True) -> dict:
    from training.models.itemknn import item_norms, knn_similarity, weight_users

    before = _load_average()
    x = weight_users(rows, weighting)
    norm_a, norm_b = item_norms(x, 0.5)
    kk = min(k, x.shape[1] - 1)
    local = lambda: knn_similarity(x, norm_a, norm_b, 10.0, kk)  # noqa: E731
    local_t, ours = _timed(local, repeats)
    spark_t, cmp = None, {"identical": None, "bit_identical": None}
    if with_spark:
        spark_t, theirs = _timed(lambda: engine.knn_similarity(x, norm_a, norm_b, 10.0, kk), repeats)
        same = same_csr(ours, theirs)
        cmp = {"identical": same, "bit_identical": same}
    return _row("itemknn", local_t, spark_t, int(ours.nnz), cmp, before, weighting=weighting, k=k, shrink=10.0,
                local_peak_mb=_peak_mb(local))


def scale_rows(engine: Any, baskets: sp.csr_matrix, min_support: float, factors: list[int], repeats: int,
               spark_max_scale: int) -> Iterator[dict]:
    """Pair rules and item-kNN (k 200, unweighted, over baskets) on the baskets repeated ``m`` times; Spark beside
    the in-process path up to ``spark_max_scale``."""
    for m in factors:
        big = sp.vstack([baskets] * m, format="csr") if m > 1 else baskets
        print(f"  scale x{m}: {big.shape[0]:,} baskets, {big.nnz:,} basket-item pairs", flush=True)
        facts = {"scale": m, "baskets": int(big.shape[0]), "basket_item_pairs": int(big.nnz)}
        yield {**rules_row(engine, big, min_support, 2, "sql", repeats, m <= spark_max_scale),
               "stage": "scale_rules", **facts}
        yield {**itemknn_row(engine, big, "none", 200, repeats, m <= spark_max_scale), "stage": "scale_itemknn",
               **facts}


def main(argv: list[str] | None = None) -> int:
    from cobuy_files.storage import write_result_json
    from benchmarks.common import machine
    from training.spark_counting import SparkCounting, spark_unavailable

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, choices=sorted(SETTINGS))
    ap.add_argument("--stages", nargs="+", default=["rules", "itemknn"], choices=["rules", "itemknn", "scale"])
    ap.add_argument("--scale", type=int, nargs="+", default=[1, 4, 8], help="repetitions of the baskets (scale)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up run (median reported)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--spark-max-scale", type=int, default=1,
                    help="scale: Spark runs only up to this repetition (the in-process path at every one)")
    ap.add_argument("--resume", action="store_true", help="skip the settings the result file already holds")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    reason = spark_unavailable()
    if reason is not None:
        print(f"Spark cannot start here: {reason}")
        return 2
    baskets, rows, facts = load(args.dataset)
    print(f"{args.dataset}: {facts}", flush=True)
    engine = SparkCounting(args.master, conf={"spark.driver.memory": args.driver_memory})
    t0 = time.perf_counter()
    spark = engine.session()
    facts["spark_session_start_s"] = round(time.perf_counter() - t0, 2)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    entry: dict[str, Any] = {**facts, "spark_version": spark.version, "master": args.master,
                             "spark_settings": engine.settings(),
                             "repeats": args.repeats, "rows": []}
    previous = result.get("datasets", {}).get(args.dataset, {})
    entry["rows"] = list(previous.get("rows", []))  # a setting measured again replaces its row; others stay
    done = {row_key(r) for r in entry["rows"]} if args.resume else set()

    def save() -> None:
        every = {**result.get("datasets", {}), args.dataset: entry}
        write_result_json({"description": __doc__.split("\n\n")[0], "commands": [
            "nice -n 10 python -m benchmarks.spark --dataset online_retail",
            "nice -n 10 python -m benchmarks.spark --dataset instacart --repeats 0 --driver-memory 4g",
            "nice -n 10 python -m benchmarks.spark --dataset instacart --stages scale --scale 1 4 8"],
            "identical": all(r["identical"] is not False for d in every.values() for r in d["rows"]),
            "datasets": every, "machine": machine()}, args.out)

    def measured(row: dict, what: str) -> None:
        entry["rows"] = [r for r in entry["rows"] if row_key(r) != row_key(row)] + [row]
        print(f"{what}: {row['rows']:,} rows, identical {row['identical']}, local {row['local_s']:.2f}s "
              f"(peak {row['local_peak_mb']} MB), spark {row['spark_s']} s (first {row['spark_first_s']}), load "
              f"{row['load_average_1_5_15min']['after']}", flush=True)
        save()

    try:
        if "rules" in args.stages:
            for s, m, method in SETTINGS[args.dataset]["rules"]:
                if ("rules", s, m, method, None, None, None) in done:
                    continue
                measured(rules_row(engine, baskets, s, m, method, args.repeats),
                         f"rules min_support={s} max_len={m} ({method})")
        if "itemknn" in args.stages:
            for weighting, k in SETTINGS[args.dataset]["itemknn"]:
                if ("itemknn", None, None, None, weighting, k, None) in done:
                    continue
                measured(itemknn_row(engine, rows, weighting, k, args.repeats), f"item-kNN {weighting} k={k}")
        if "scale" in args.stages:
            for row in scale_rows(engine, baskets, SCALE_SUPPORT[args.dataset], args.scale, args.repeats,
                                  args.spark_max_scale):
                measured(row, f"{row['stage']} x{row['scale']}")
    finally:
        engine.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
