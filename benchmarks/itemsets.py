"""Itemsets of any length: our miner and rules (``training.itemsets``) against mlxtend's ``fpgrowth`` +
``association_rules`` (the reference: same rule set, values compared), and beside them in the same run the C and
Rust miners that install here (pyfim: Borgelt's FP-growth in C; rusket: Rust), all on every clean basket of a dataset.

    python -m benchmarks.itemsets --dataset online_retail --out benchmarks/results
    python -m benchmarks.itemsets --dataset instacart --out benchmarks/results

Writes ``<out>/<dataset>-itemsets.json``: per (min_support, max_len) ``rules``, ``identical``, ``ours_s``,
``mlxtend_s``, ``speedup`` (medians of wall seconds; every run kept), the same from this process's CPU seconds
(``ours_cpu_s``, ``mlxtend_cpu_s``, ``speedup_cpu``: steadier on a shared machine), the other miners' seconds and
counts, and the load average before and after each setting. What each tool is given and timed on:

* ours: the (n_baskets, n_items) CSR basket matrix -> frequent itemsets and every rule (all antecedent/consequent
  splits, as mlxtend's ``association_rules``).
* mlxtend: the boolean one-hot DataFrame (built outside the timing). Where the whole basket x item table would
  exceed ``--mlxtend-max-cells`` (Instacart: 131k x 39k), it is given only the columns of items frequent at that
  min_support, which leaves its output unchanged and spares it a table of billions of cells.
* pyfim: its native input, a list of transactions (built outside the timing); itemsets (target 's') and, separately,
  rules (target 'r', rule support = support of body and head, mode 'o'). Its rules have one-item heads and include
  empty-body rules; both are accounted for when comparing counts.
* rusket: the CSR matrix, ``rusket.fpgrowth`` then ``rusket.association_rules``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.itemsets import ItemsetRules, frequent_itemsets, itemset_rules, min_count

if TYPE_CHECKING:
    from training.data import InteractionData

DEFAULT_SETTINGS: dict[str, dict[str, list]] = {
    "online_retail": {"supports": [0.02, 0.01, 0.005], "max_lens": [2, 3, 4, None]},
    # mlxtend's Python FP-tree over 131k baskets takes a minute or more per run; 0.001 holds the known answer
    # (4,334 pair rules, shared/datasets/README.md)
    "instacart": {"supports": [0.002, 0.001], "max_lens": [2, 3, 4]},
}
DATASET_SOURCES = {"online_retail": ("online_retail", "online_retail/online_retail.csv.gz"),
                   "instacart": ("instacart", "instacart")}
MLXTEND_MAX_CELLS = 400_000_000
METRIC_NAMES = {"antecedent_support": "antecedent support", "consequent_support": "consequent support",
                "support": "support", "confidence": "confidence", "lift": "lift", "leverage": "leverage",
                "conviction": "conviction"}
TOLERANCE = 1e-12


def load_data(dataset: str) -> "InteractionData":
    """Every clean interaction of a shared dataset, indexed (``training.data.InteractionData``, whole catalogue)."""
    from data_checks.cleaning import clean
    from data_checks.sources import SourceSpec, read_source
    from benchmarks.data import DATASETS, BenchmarkInputError
    from training.data import build_interaction_data

    if dataset not in DATASET_SOURCES:
        raise BenchmarkInputError(f"--dataset {dataset!r}: choose one of {', '.join(DATASET_SOURCES)}")
    kind, rel = DATASET_SOURCES[dataset]
    path = DATASETS / rel
    if not path.exists():
        raise BenchmarkInputError(f"dataset {dataset!r} not found at {path} (set COBUY_DATASETS to the folder "
                                  "holding it)")
    cleaned = clean(read_source(SourceSpec(kind=kind, path=str(path))))
    return build_interaction_data(cleaned.interactions, cleaned.items["item_id"])


def load_baskets(dataset: str) -> tuple[sp.csr_matrix, dict]:
    """Every clean basket of a shared dataset as a (n_baskets, n_items) CSR, and facts about it."""
    t0 = time.perf_counter()
    baskets = load_data(dataset).baskets.tocsr()
    sold = np.flatnonzero(np.diff(baskets.tocsc().indptr) > 0)  # items never in a basket cannot be frequent
    baskets = baskets[:, sold].tocsr()
    return baskets, {"baskets": int(baskets.shape[0]), "items_in_baskets": int(baskets.shape[1]),
                     "basket_item_pairs": int(baskets.nnz), "load_seconds": time.perf_counter() - t0}


def _timed(fn, repeats: int) -> tuple[list[float], Any, list[float]]:
    """Wall seconds of each of ``repeats`` runs, the last result, and this process's CPU seconds of each run (on a
    shared machine a short run's wall time swings with the other processes; its CPU time much less)."""
    wall, cpu, out = [], [], None
    for _ in range(max(repeats, 1)):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, out, cpu


def _key(items) -> tuple[int, ...]:
    return tuple(sorted(int(i) for i in items))


def compare_with_mlxtend(ours: ItemsetRules, ref: pd.DataFrame, labels: np.ndarray | None = None) -> dict:
    """Same rule set (antecedent and consequent itemsets) and the largest relative difference of each metric
    (infinite conviction must be infinite in both). ``labels``: item position of each mlxtend column, when it was
    given a subset of the columns."""
    lab = (lambda s: _key(labels[list(s)])) if labels is not None else _key  # noqa: E731
    ref_keys = [(lab(a), lab(c)) for a, c in zip(ref["antecedents"], ref["consequents"])]
    our_keys = ours.keys()
    at = {k: i for i, k in enumerate(our_keys)}
    same = len(at) == len(our_keys) and set(at) == set(ref_keys) and len(ref_keys) == len(our_keys)
    diffs = {}
    if same and ref_keys:
        order = np.array([at[k] for k in ref_keys])
        for ours_name, ref_name in METRIC_NAMES.items():
            a = ours.metrics[ours_name][order]
            b = ref[ref_name].to_numpy(np.float64)
            if not np.array_equal(np.isinf(a), np.isinf(b)):
                diffs[ours_name] = float("inf")
                continue
            f = np.isfinite(a)
            rel = np.abs(a[f] - b[f]) / np.maximum(np.abs(b[f]), 1e-300)
            diffs[ours_name] = float(rel.max()) if rel.size else 0.0
    return {"identical_rule_sets": bool(same), "max_relative_difference": diffs,
            "identical": bool(same and all(d <= TOLERANCE for d in diffs.values()))}


def _mlxtend(baskets: sp.csr_matrix, min_support: float, max_len: int | None, min_confidence: float,
             repeats: int, max_cells: int) -> tuple[list[float], pd.DataFrame, int, np.ndarray | None, str]:
    from mlxtend.frequent_patterns import association_rules, fpgrowth

    n = baskets.shape[0]
    labels = None
    if n * baskets.shape[1] <= max_cells:
        cols, given = baskets, f"the whole {n:,} x {baskets.shape[1]:,} boolean one-hot table"
    else:
        labels = np.flatnonzero(np.bincount(baskets.indices, minlength=baskets.shape[1]) >= min_count(n, min_support))
        cols = baskets[:, labels]
        given = (f"the {len(labels):,} columns of items frequent at this min_support ({n:,} rows): the whole table "
                 f"({n * baskets.shape[1]:,} cells) is over --mlxtend-max-cells; the output is the same")
    onehot = pd.DataFrame(cols.toarray() > 0)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            isets = fpgrowth(onehot, min_support=min_support, max_len=max_len)
            if (isets["itemsets"].map(len) >= 2).sum() == 0:
                return isets, pd.DataFrame(columns=["antecedents", "consequents", *METRIC_NAMES.values()])
            return isets, association_rules(isets, num_itemsets=n, metric="confidence",
                                            min_threshold=min_confidence)

    times, (isets, rules), cpu = _timed(run, repeats)
    del onehot
    return (times, cpu), rules, len(isets), labels, given


def _pyfim(baskets: sp.csr_matrix, min_support: float, max_len: int | None, min_confidence: float,
           repeats: int) -> dict:
    try:
        import fim
    except ImportError as e:  # an optional comparison: say so in the result instead of failing
        return {"skipped": f"pyfim not installed ({e})"}
    tx = [baskets.indices[baskets.indptr[i]:baskets.indptr[i + 1]].tolist() for i in range(baskets.shape[0])]
    supp = -min_count(baskets.shape[0], min_support)  # negative: an absolute basket count
    zmax = {} if max_len is None else {"zmax": max_len}
    s_times, sets, _ = _timed(lambda: fim.fpgrowth(tx, target="s", supp=supp, report="a", **zmax), repeats)
    r_times, rules, _ = _timed(lambda: fim.fpgrowth(tx, target="r", supp=supp, conf=100 * min_confidence, report="a",
                                                    mode="o", **zmax), repeats)
    return {"itemsets": len(sets), "itemsets_s": statistics.median(s_times), "itemsets_runs_s": s_times,
            "one_item_head_rules": sum(1 for r in rules if len(r[1]) > 0),
            "rules_s": statistics.median(r_times), "rules_runs_s": r_times,
            "itemset_set": {_key(s) for s, _ in sets}}


def _rusket(baskets: sp.csr_matrix, min_support: float, max_len: int | None, min_confidence: float,
            repeats: int) -> dict:
    try:
        import rusket
    except ImportError as e:
        return {"skipped": f"rusket not installed ({e})"}

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            isets = rusket.fpgrowth(baskets, min_support=min_support, max_len=max_len)
            t = time.perf_counter()
            rules = rusket.association_rules(isets, num_itemsets=baskets.shape[0], min_threshold=min_confidence)
            return isets, rules, time.perf_counter() - t

    times, (isets, rules, _), _ = _timed(run, repeats)  # rusket is multi-threaded: its CPU time is not comparable
    return {"itemsets": len(isets), "rules": len(rules), "itemsets_and_rules_s": statistics.median(times),
            "runs_s": times, "rule_set": {(_key(a), _key(c)) for a, c in zip(rules["antecedents"],
                                                                            rules["consequents"])}}


def run_setting(baskets: sp.csr_matrix, min_support: float, max_len: int | None, min_confidence: float,
                repeats: int, mlxtend_repeats: int, max_cells: int, ours_repeats: int = 15) -> dict:
    """One (min_support, max_len): every tool's medians, counts, and whether each agrees with ours. Ours runs
    ``ours_repeats`` times (it takes well under a second, so a median of many is cheap and steadier)."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    ours_t, ours, ours_cpu = _timed(lambda: itemset_rules(baskets, min_support, min_confidence, max_len),
                                    max(repeats, ours_repeats))
    isets = frequent_itemsets(baskets, min_support, max_len)
    row: dict[str, Any] = {"min_support": min_support, "max_len": max_len, "min_confidence": min_confidence,
                           "itemsets": len(isets), "itemsets_by_length": [len(c) for c in isets.counts],
                           "rules": len(ours), "rules_one_item_consequent": int((ours.consequent_len == 1).sum()),
                           "rules_multi_item_antecedent": int((ours.antecedent_len >= 2).sum()),
                           "ours_s": statistics.median(ours_t), "ours_runs_s": ours_t,
                           "ours_cpu_s": statistics.median(ours_cpu)}
    (m_t, m_cpu), ref, m_isets, labels, given = _mlxtend(baskets, min_support, max_len, min_confidence,
                                                         mlxtend_repeats, max_cells)
    cmp = compare_with_mlxtend(ours, ref, labels)
    row.update({"mlxtend_rules": int(len(ref)), "mlxtend_itemsets": m_isets, **cmp, "mlxtend_s": statistics.median(m_t),
                "mlxtend_runs_s": m_t, "mlxtend_cpu_s": statistics.median(m_cpu), "mlxtend_input": given,
                "speedup": statistics.median(m_t) / max(statistics.median(ours_t), 1e-12),
                "speedup_cpu": statistics.median(m_cpu) / max(statistics.median(ours_cpu), 1e-12)})
    our_sets = {_key(r) for x in isets.items for r in x.tolist()}
    pf = _pyfim(baskets, min_support, max_len, min_confidence, repeats)
    if "itemset_set" in pf:
        pf["same_itemsets_as_ours"] = pf.pop("itemset_set") == our_sets
        pf["same_rule_count_as_ours"] = pf["one_item_head_rules"] == row["rules_one_item_consequent"]
    row["pyfim"] = pf
    rk = _rusket(baskets, min_support, max_len, min_confidence, repeats)
    if "rule_set" in rk:
        rk["same_rules_as_ours"] = rk.pop("rule_set") == set(ours.keys())
    row["rusket"] = rk
    itemset_times = {"ours": statistics.median(ours_t), "mlxtend": row["mlxtend_s"]}
    if "rules_s" in pf:
        itemset_times["pyfim"] = pf["itemsets_s"] + pf["rules_s"]
    if "itemsets_and_rules_s" in rk:
        itemset_times["rusket"] = rk["itemsets_and_rules_s"]
    row["fastest"] = min(itemset_times, key=itemset_times.get)
    row["load_average_1_5_15min"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    row["git_commit"] = _commit()  # a file updated with --update holds rows of several runs
    return row


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    except OSError:
        return ""


def markdown_table(result: dict) -> str:
    """The docs' table of one ``<dataset>-itemsets.json``: a row per (min_support, max_len), then the summary line
    (``python -m benchmarks.itemsets --table FILE`` prints it for docs/association_rules.md)."""
    head = ("| min_support | max_len | rules (multi-item antecedent) | identical | ours s (CPU s) | mlxtend s (CPU s) "
            "| speedup wall / CPU | pyfim s itemsets + rules | rusket s | fastest | load 1 min |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in result["settings"]:
        pf, rk = r["pyfim"], r["rusket"]
        lines.append(
            f"| {r['min_support']:g} | {r['max_len'] or 'any'} | {r['rules']:,} ({r['rules_multi_item_antecedent']:,}) "
            f"| {'yes' if r['identical'] else 'NO'} | {r['ours_s']:.3f} ({r['ours_cpu_s']:.3f}) "
            f"| {r['mlxtend_s']:.1f} ({r['mlxtend_cpu_s']:.1f}) | {r['speedup']:.0f}x / {r['speedup_cpu']:.0f}x "
            f"| {pf.get('itemsets_s', float('nan')):.3f} + {pf.get('rules_s', float('nan')):.3f} "
            f"| {rk.get('itemsets_and_rules_s', float('nan')):.3f} | {r['fastest']} "
            f"| {r['load_average_1_5_15min']['before'][0]} |")
    lines += ["", f"all identical: {result['all_identical']}; min speedup wall {result['min_speedup']:.0f}x, "
                  f"CPU {result['min_speedup_cpu']:.0f}x"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import machine
    from cobuy_files.storage import write_result_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=Path, metavar="JSON", help="print the docs' markdown table of a result file")
    ap.add_argument("--dataset", choices=sorted(DATASET_SOURCES))
    ap.add_argument("--supports", type=float, nargs="+", help="min_support values (default: per dataset)")
    ap.add_argument("--max-lens", nargs="+", help="max_len values; 'none' for any length (default: per dataset)")
    ap.add_argument("--min-confidence", type=float, default=0.0)
    ap.add_argument("--repeats", type=int, default=5, help="runs of pyfim and rusket (median reported)")
    ap.add_argument("--ours-repeats", type=int, default=15, help="runs of ours (median reported)")
    ap.add_argument("--mlxtend-repeats", type=int, default=3, help="runs of mlxtend, the slow one")
    ap.add_argument("--mlxtend-max-cells", type=int, default=MLXTEND_MAX_CELLS)
    ap.add_argument("--out", type=Path, default=Path("data/benchmark-results"))
    ap.add_argument("--update", action="store_true",
                    help="rerun only the given settings, keeping the other settings of an existing result file")
    args = ap.parse_args(argv)
    if args.table:
        import json
        print(markdown_table(json.loads(args.table.read_text())))
        return 0
    if args.dataset is None:
        ap.error("--dataset is required (or --table JSON)")
    settings = DEFAULT_SETTINGS[args.dataset]
    supports = args.supports or settings["supports"]
    max_lens = ([None if m.lower() == "none" else int(m) for m in args.max_lens] if args.max_lens
                else settings["max_lens"])
    baskets, facts = load_baskets(args.dataset)
    print(f"{args.dataset}: {facts}", flush=True)
    out = args.out / f"{args.dataset}-itemsets.json"
    kept = []
    if args.update and out.exists():
        import json
        chosen = {(s, m) for s in supports for m in max_lens}
        kept = [r for r in json.loads(out.read_text())["settings"] if (r["min_support"], r["max_len"]) not in chosen]
    rows = []
    for s in supports:
        for m in max_lens:
            row = run_setting(baskets, s, m, args.min_confidence, args.repeats, args.mlxtend_repeats,
                              args.mlxtend_max_cells, args.ours_repeats)
            rows.append(row)
            print(f"min_support={s} max_len={m}: {row['rules']:,} rules, identical={row['identical']}, "
                  f"ours {row['ours_s']:.3f}s, mlxtend {row['mlxtend_s']:.1f}s ({row['speedup']:.0f}x; CPU "
                  f"{row['speedup_cpu']:.0f}x), "
                  f"pyfim {row['pyfim'].get('itemsets_s', float('nan')):.3f}+"
                  f"{row['pyfim'].get('rules_s', float('nan')):.3f}s, "
                  f"rusket {row['rusket'].get('itemsets_and_rules_s', float('nan')):.3f}s, "
                  f"load {row['load_average_1_5_15min']['after']}", flush=True)
            every = sorted(kept + rows, key=lambda r: (-r["min_support"], r["max_len"] or 10**9))
            result = {"dataset": args.dataset, **facts, "repeats": args.repeats,
                      "mlxtend_repeats": args.mlxtend_repeats, "settings": every,
                      "all_identical": all(r["identical"] for r in every),
                      "min_speedup": min(r["speedup"] for r in every),
                      "min_speedup_cpu": min(r["speedup_cpu"] for r in every), "machine": machine()}
            write_result_json(result, out)  # after every setting: a long run leaves what it measured
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
