"""EASE at 50k+ items: SANSA (``training.models.sansa_ease``) next to exact EASE, accuracy, time and memory.

    python -m benchmarks.sansa --dataset gowalla --l2 1 5 20 --density 5e-3   # l2 picked on validation
    python -m benchmarks.sansa --dataset instacart --l2 20 --density 5e-3     # basket completion

Each setting is fitted on the validation split's fit part and scored on its validation users; the best l2 (NDCG@20)
is refitted on the whole train split and evaluated on test (Recall / NDCG @20), also through its sparse top-N cut
(``--top-n``, the serving form). Memory is this process's peak resident set (run one dataset per process; the
process does nothing else). Exact EASE's figures come from ``benchmarks/results/<dataset>-ease.json`` and
``<dataset>-sparse-top-n.json`` where they were measured. Writes ``<dataset>-ease-sansa.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cobuy_files.storage import write_result_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def dataset_for(name: str):
    from benchmarks.data import DATASETS, BenchmarkDataset

    if name == "instacart":
        return BenchmarkDataset("instacart", {"kind": "instacart", "path": str(DATASETS / "instacart")})
    return name


def exact_ease_figures(dataset: str) -> dict:
    from training.models.footprint import DataSize, ease_fit_bytes  # noqa: F401 (estimate beside the measured)

    out = {}
    path = RESULTS / f"{dataset}-ease.json"
    if path.exists():
        r = json.loads(path.read_text())
        out = {"params": r["params"], "recall@20": r["metrics"]["recall@20"], "ndcg@20": r["metrics"]["ndcg@20"],
               "fit_seconds": r["fit_seconds_median"], "source": str(path.relative_to(ROOT))}
    sweep = RESULTS / f"{dataset}-sparse-top-n.json"
    if sweep.exists():
        fam = json.loads(sweep.read_text())["families"].get("ease")
        if fam:
            out["sweep"] = {"dense": fam.get("dense"), "fit_seconds": fam["fit_seconds"],
                            "peak_rss_gb": fam["peak_rss_gb"]}
    return out


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import machine
    from benchmarks.data import prepare
    from training.data import build_interaction_data
    from training.metrics import evaluate_scores
    from training.models.footprint import DataSize, ease_fit_bytes, sansa_fit_bytes
    from training.models.sansa_ease import SansaEASE
    from training.models.sparse import SparseItemItem
    from benchmarks.sparse_top_n import peak_rss_gb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--l2", type=float, nargs="+", default=[20.0])
    ap.add_argument("--density", type=float, default=5e-3)
    ap.add_argument("--factorizer", default="icf", choices=["icf", "cholmod"])
    ap.add_argument("--top-n", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="recorded in the JSON (e.g. a validation figure from an earlier run)")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    t0 = time.perf_counter()
    p = prepare(dataset_for(args.dataset))
    load_s = time.perf_counter() - t0
    train, test = p.train, p.test
    size = DataSize(train.n_users, train.n_items, int(train.user_items.nnz))
    validation_scores = {}
    if len(args.l2) > 1:
        fit = build_interaction_data(p.split.fit, p.cleaned.items["item_id"], user_ids=train.user_ids)
        validation = fit.matrix_for(p.split.validation)
        for l2 in args.l2:
            m = SansaEASE(l2=l2, density=args.density, factorizer=args.factorizer).fit(fit)
            res = evaluate_scores(m.score_users, fit.user_items, validation, ks=(20,), chunk_size=2048)
            validation_scores[str(l2)] = {"ndcg@20": res["ndcg@20"], "recall@20": res["recall@20"],
                                          "fit_seconds": m.fit_seconds}
            print("validation", l2, validation_scores[str(l2)], flush=True)
        best = max(args.l2, key=lambda v: validation_scores[str(v)]["ndcg@20"])
    else:
        best = args.l2[0]
    model = SansaEASE(l2=best, density=args.density, factorizer=args.factorizer).fit(train)
    rss_after_fit = peak_rss_gb()
    res = evaluate_scores(model.score_users, train.user_items, test, ks=(20,), chunk_size=2048)
    result = {
        "dataset": args.dataset, "model": "ease (SANSA)", "package": "sansa 1.1.0 (Spisak et al., RecSys 2023)",
        "params": {"l2": best, "density": args.density, "factorizer": args.factorizer},
        "validation": validation_scores, "note": args.note, "n_users": train.n_users, "n_items": train.n_items,
        "train_pairs": int(train.user_items.nnz), "split": p.split.strategy,
        "recall@20": res["recall@20"], "ndcg@20": res["ndcg@20"], "n_test_users": res["n_users"],
        "fit_seconds": model.fit_seconds, "scoring_seconds": res["scoring_seconds"],
        "weight_nnz": model.weight_nnz, "weights_mb": model.weight_nnz * 12 / 2**20,
        "peak_rss_gb_after_fit": rss_after_fit, "load_clean_split_seconds": load_s,
        "estimates_gb": {"sansa_fit": sansa_fit_bytes(size, args.density) / 2**30,
                         "exact_ease_fit": ease_fit_bytes(size) / 2**30,
                         "dense_matrix": size.n_items ** 2 * 4 / 2**30},
    }
    if args.top_n:
        t1 = time.perf_counter()
        cut = SparseItemItem.from_model(model, args.top_n)
        cut_res = evaluate_scores(cut.score_users, train.user_items, test, ks=(20,), chunk_size=2048)
        result["top_n"] = {"n": args.top_n, "recall@20": cut_res["recall@20"], "ndcg@20": cut_res["ndcg@20"],
                           "build_seconds": time.perf_counter() - t1}
    result["peak_rss_gb"] = peak_rss_gb()
    result["exact_ease"] = exact_ease_figures(args.dataset)
    result["load_average_1_5_15_min"] = {"before": list(load), "after": list(os.getloadavg())}
    result["machine"] = machine()
    path = args.out / f"{args.dataset}-ease-sansa.json"
    write_result_json(result, path)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
