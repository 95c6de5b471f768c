"""Accuracy cost of differentially private association rules (``training/privacy.py``).

    .venv/bin/python -m benchmarks.privacy --dataset online_retail

For each epsilon (and each per-basket pair bound), rules from noisy counts are compared with the exact
rules on the training part of the temporal split: overlap of the top-100 pairs by lift, Jaccard of the
full sets of rule pairs, and related-items Recall@20 / NDCG@20 (each item sold before and after the cut
ranks the catalogue by lift; right answers: items bought in the same basket after the cut). Medians
over ``--seeds`` noise draws. Rows with epsilon ``inf`` are the exact rules and the clipping alone. Clipping
lowers every count, so the private runs use the min_support at which the clipped, noiseless baskets give as
many pairs as the exact rules (a row at the original min_support shows how many are left without that).
Writes ``benchmarks/results/<dataset>-dp_association.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cobuy_files.storage import write_result_json
from training.association import pair_rules
from training.privacy import clip_baskets, items_per_basket, private_pair_rules

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def top_pairs(rules: pd.DataFrame, n: int) -> set[tuple[int, int]]:
    """The first ``n`` distinct unordered pairs of ``rules`` (already sorted by lift)."""
    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for a, c in zip(rules["antecedent"].to_numpy(), rules["consequent"].to_numpy()):
        p = (min(a, c), max(a, c))
        if p not in seen:
            seen.add(p)
            out.append(p)
            if len(out) == n:
                break
    return set(out)


def related_metrics(rules: pd.DataFrame, n_items: int, task) -> dict[str, float]:
    """Recall@20 / NDCG@20 of related items ranked by lift for the task's items."""
    import scipy.sparse as sp

    from training.cold_start import evaluate_cold

    lift = sp.csr_matrix((rules["lift"].to_numpy(np.float32), (rules["antecedent"], rules["consequent"])),
                         shape=(n_items, n_items))
    r = evaluate_cold(task, lambda items: lift[items].toarray(), ks=(20,))
    return {"related_recall@20": float(r["recall@20"]), "related_ndcg@20": float(r["ndcg@20"])}


def compare(rules: pd.DataFrame, exact: pd.DataFrame, n_items: int, task) -> dict[str, float]:
    pairs, exact_pairs = top_pairs(rules, 10**9), top_pairs(exact, 10**9)
    union = pairs | exact_pairs
    return {"rules": int(len(rules)), "top100_overlap": len(top_pairs(rules, 100) & top_pairs(exact, 100)) / 100,
            "pair_jaccard": len(pairs & exact_pairs) / len(union) if union else 1.0,
            **related_metrics(rules, n_items, task)}


def matched_support(clipped, n_pairs: int) -> float:
    """The support of the ``n_pairs``-th most frequent pair of the (clipped) baskets."""
    rules = pair_rules(clipped, 1e-12, 0.0)
    supports = np.sort(rules.loc[rules["antecedent"] < rules["consequent"], "support"].to_numpy())[::-1]
    return float(supports[min(n_pairs, len(supports)) - 1]) if len(supports) else 1.0


def run(dataset: str, epsilons: list[float], max_pairs: list[int], min_support: float, min_confidence: float,
        seeds: int) -> dict:
    from benchmarks.common import machine
    from benchmarks.data import load_dataset
    from training.cold_start import build_task

    t0 = time.perf_counter()
    cleaned, split, train, _ = load_dataset(dataset)
    task = build_task(pd.concat([split.train, split.after_cutoff]), train.item_ids, split.cutoff, basis="basket",
                      items="warm")
    baskets = train.baskets
    exact = pair_rules(baskets, min_support, min_confidence)
    n_pairs = len(top_pairs(exact, 10**9))
    rows = [{"epsilon": "inf", "max_pairs_per_basket": None, "min_support": min_support, "noise": "none (exact)",
             **compare(exact, exact, train.n_items, task)}]
    for m in max_pairs:
        k = items_per_basket(m)
        # clipping lowers every count: at the same min_support few pairs are left, so the private runs use
        # the support at which the clipped (noiseless) baskets give as many pairs as the exact rules
        same = private_pair_rules(baskets, min_support, min_confidence, np.inf, m, seed=0)
        rows.append({"epsilon": "inf", "max_pairs_per_basket": m, "min_support": min_support,
                     "noise": "none (clipping only, same min_support)", **compare(same, exact, train.n_items, task)})
        matched = matched_support(clip_baskets(baskets, k, seed=0), n_pairs)
        clip_only = private_pair_rules(baskets, matched, min_confidence, np.inf, m, seed=0)
        rows.append({"epsilon": "inf", "max_pairs_per_basket": m, "min_support": matched,
                     "noise": "none (clipping only, matched min_support)",
                     **compare(clip_only, exact, train.n_items, task)})
        for eps in epsilons:
            runs = [compare(private_pair_rules(baskets, matched, min_confidence, eps, m, seed=s), exact,
                            train.n_items, task) for s in range(seeds)]
            med = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
            rows.append({"epsilon": eps, "max_pairs_per_basket": m, "min_support": matched,
                         "noise": f"Laplace scale {(1 + k + m) / eps:.1f}", **med})
            print(f"epsilon {eps:>6} m {m:>3}: top-100 overlap {med['top100_overlap']:.2f}, rules {med['rules']:.0f}, "
                  f"related R@20 {med['related_recall@20']:.4f}", flush=True)
    sizes = np.diff(baskets.tocsr().indptr)
    return {"dataset": dataset, "what": "differentially private pair rules vs exact (training/privacy.py)",
            "min_support": min_support, "min_confidence": min_confidence, "seeds": seeds,
            "baskets": int(baskets.shape[0]), "items": int(train.n_items), "exact_rules": int(len(exact)),
            "related_eval_items": int(len(task.cold)),
            "baskets_over_bound": {str(m): float((sizes > items_per_basket(m)).mean()) for m in max_pairs},
            "results": rows, "wall_s": round(time.perf_counter() - t0, 1), "machine": machine()}


def print_table(result: dict) -> None:
    print(f"{'epsilon':>8} {'m':>4} {'support':>8} {'rules':>7} {'top100':>7} {'jaccard':>8} {'rel R@20':>9} "
          f"{'rel N@20':>9}  noise")
    for r in result["results"]:
        print(f"{r['epsilon']!s:>8} {r['max_pairs_per_basket']!s:>4} {r['min_support']:>8.5f} {r['rules']:>7.0f} "
              f"{r['top100_overlap']:>7.2f} "
              f"{r['pair_jaccard']:>8.3f} {r['related_recall@20']:>9.4f} {r['related_ndcg@20']:>9.4f}  {r['noise']}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="online_retail", choices=["online_retail", "synthetic"])
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 5.0, 20.0, 100.0])
    p.add_argument("--max-pairs", type=int, nargs="+", default=[10, 45])
    p.add_argument("--min-support", type=float, default=0.005)
    p.add_argument("--min-confidence", type=float, default=0.0)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    result = run(args.dataset, args.epsilons, args.max_pairs, args.min_support, args.min_confidence, args.seeds)
    print_table(result)
    out = RESULTS / f"{args.dataset}-dp_association.json"
    write_result_json(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
