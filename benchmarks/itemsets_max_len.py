"""Choosing ``association_rules.max_len``: the rules model's accuracy and cost at each max_len on a dataset's own
split (as the benchmark command splits it), with the tuned min_support / min_confidence of that dataset.

    python -m benchmarks.itemsets_max_len --dataset online_retail --out benchmarks/results

Writes ``<out>/<dataset>-itemsets-max_len.json``: per max_len, recall/ndcg@20 (and @10), users scored, rules (pair
and multi-item-antecedent), fit seconds (median of ``--repeats``) and scoring seconds, and the ONNX export (kind,
bytes, parity against the native model on 1,000 users); load average beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity
    from cobuy_files.storage import write_result_json
    from benchmarks.common import default_params, machine
    from benchmarks.data import prepare
    from training.evaluation import metrics_frame
    from training.models.association import AssociationRules

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="online_retail")
    ap.add_argument("--max-lens", nargs="+", default=["2", "3", "4", "none"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("data/benchmark-results"))
    args = ap.parse_args(argv)
    p = prepare(args.dataset)
    params = {k: v for k, v in default_params(args.dataset, "association_rules").items()
              if k in ("min_support", "min_confidence")}
    rows = []
    for text in args.max_lens:
        max_len = None if text.lower() == "none" else int(text)
        load_before = [round(x, 2) for x in os.getloadavg()]
        fits = []
        for _ in range(max(args.repeats, 1)):
            model = AssociationRules(**params, max_len=max_len)
            t = time.perf_counter()
            model.fit(p.train)
            fits.append(time.perf_counter() - t)
        frame = metrics_frame([model], p.train, p.test, ks=(10, 20))
        with tempfile.TemporaryDirectory() as tmp:  # the export every max_len is served by, checked like any export
            info = export_recommender(model, Path(tmp) / "rules.onnx", k=20, item_ids=p.train.item_ids)
            t = time.perf_counter()
            parity = check_parity(model, OnnxRecommender(Path(tmp) / "rules.onnx", provider="cpu"),
                                  p.train.user_items, n_users=1000)
            parity_s = time.perf_counter() - t
            export = {"kind": info.kind, "bytes": (Path(tmp) / "rules.onnx").stat().st_size,
                      "parity": parity.as_dict(), "parity_seconds": parity_s}
        at = {int(r.k): r for r in frame.itertuples()}
        multi = 0 if model.multi_rules is None else len(model.multi_rules)
        rows.append({"max_len": max_len, "pair_rules": int(len(model.rules)), "multi_item_antecedent_rules": multi,
                     "recall@20": float(at[20].recall), "ndcg@20": float(at[20].ndcg),
                     "recall@10": float(at[10].recall), "ndcg@10": float(at[10].ndcg),
                     "n_users": int(at[20].n_users), "fit_seconds": statistics.median(fits), "fit_runs_s": fits,
                     "scoring_seconds": float(at[20].scoring_seconds), "onnx_export": export,
                     "load_average_1_5_15min": {"before": load_before,
                                                "after": [round(x, 2) for x in os.getloadavg()]}})
        print(rows[-1], flush=True)
    out = args.out / f"{args.dataset}-itemsets-max_len.json"
    write_result_json({"dataset": args.dataset, "params": params, "split": p.chosen_because,
                       "train_baskets": int(p.train.baskets.shape[0]), "settings": rows, "machine": machine()}, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
