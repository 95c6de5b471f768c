"""Our sparse pair rules against mlxtend's ``fpgrowth(max_len=2)`` + ``association_rules`` (the reference in
``benchmarks.mlxtend_reference``): the same rules, and how long each takes, on all of a dataset's clean baskets
(called by ``python -m benchmarks.run --model association_rules``)."""
from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

SETTINGS = ((0.005, 0.0), (0.01, 0.0))  # (min_support, min_confidence) compared
# mlxtend needs the dense basket x item one-hot table (one byte a cell): above this many cells it is not run
MLXTEND_MAX_CELLS = 400_000_000
VALUES = ("support", "confidence", "lift", "leverage", "conviction")


def compare_rules(ours: pd.DataFrame, ref: pd.DataFrame) -> dict:
    """Whether two pair-rule tables hold the same (antecedent, consequent) pairs, and the largest relative
    difference of each value over the pairs they share (infinite conviction must be infinite in both)."""
    key = ["antecedent", "consequent"]
    same_pairs = set(map(tuple, ours[key].to_numpy().tolist())) == set(map(tuple, ref[key].to_numpy().tolist()))
    both = ours.merge(ref, on=key, suffixes=("", "_ref"))
    diffs = {}
    for v in VALUES:
        a, b = both[v].to_numpy(np.float64), both[f"{v}_ref"].to_numpy(np.float64)
        finite = np.isfinite(a) & np.isfinite(b)
        if not np.array_equal(np.isfinite(a), np.isfinite(b)):
            diffs[v] = float("inf")
            continue
        rel = np.abs(a[finite] - b[finite]) / np.maximum(np.abs(b[finite]), 1e-300)
        diffs[v] = float(rel.max()) if rel.size else 0.0
    return {"identical_rule_sets": bool(same_pairs),
            "identical_rule_values": bool(same_pairs and all(d <= 1e-9 for d in diffs.values())),
            "max_relative_difference": diffs}


def _median_seconds(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def speed_vs_mlxtend(baskets: sp.csr_matrix, repeats: int, settings=SETTINGS,
                     max_cells: int = MLXTEND_MAX_CELLS) -> dict:
    """``baskets``: (n_baskets, n_items) CSR. Per (min_support, min_confidence): our rules' count and timings, and,
    where the dense one-hot table fits ``max_cells``, mlxtend's (at most 3 runs: it is the slow one) with the
    comparison of the two rule tables. Otherwise ``mlxtend_skipped`` says why."""
    from training.association import pair_rules
    from benchmarks.mlxtend_reference import mlxtend_pair_rules, one_hot

    cells = int(baskets.shape[0]) * int(baskets.shape[1])
    skipped = None
    if cells > max_cells:
        skipped = (f"mlxtend needs a dense {baskets.shape[0]:,} x {baskets.shape[1]:,} one-hot table "
                   f"({cells / 1e9:.1f} GB), above the limit of {max_cells:,} cells (--mlxtend-max-cells)")
    onehot = one_hot(baskets) if skipped is None else None
    rows = []
    for min_support, min_conf in settings:
        ours_t, ours = _median_seconds(lambda: pair_rules(baskets, min_support, min_conf), repeats)
        row = {"min_support": min_support, "min_confidence": min_conf, "rules": int(len(ours)),
               "ours_seconds_median": statistics.median(ours_t), "ours_seconds": ours_t}
        if onehot is not None:
            ref_t, ref = _median_seconds(lambda: mlxtend_pair_rules(onehot, min_support, min_conf),
                                         min(repeats, 3))
            row.update({"mlxtend_rules": int(len(ref)), **compare_rules(ours, ref),
                        "mlxtend_seconds_median": statistics.median(ref_t), "mlxtend_seconds": ref_t,
                        "speedup": statistics.median(ref_t) / max(statistics.median(ours_t), 1e-12)})
        rows.append(row)
    out = {"baskets": int(baskets.shape[0]), "items": int(baskets.shape[1]), "speed_vs_mlxtend": rows}
    if skipped:
        out["mlxtend_skipped"] = skipped
    return out
