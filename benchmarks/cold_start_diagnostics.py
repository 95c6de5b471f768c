"""Where a new item's right answers could come from: diagnostics over the rolling-origin cold-start folds.

Run after the cold-start benchmark has kept its folds' embeddings (``python -m benchmarks.run --dataset
online_retail --model text_encoder --folds 10``, which writes ``data/cold_start_folds/*.npz``):

    python -m benchmarks.cold_start_diagnostics --folds 10

writes ``benchmarks/results/online_retail-cold_start-diagnostics.json``. Two questions, on the wider right answers
(same basket or same customer after the cut), each fold's new items pooled:

- ``twin_overlap``: does the text carry per-item signal at all? For each new item, the Jaccard index between its
  right answers and those of the ``n_near`` other new items of the same window nearest to it by the fine-tuned
  encoder, against ``n_near`` random and the ``n_near`` farthest ones.
- ``unsold_hit_rates``: would not-yet-sold items that read like the new one be worth a place in its list? The share of
  new items for which their k-th nearest such item is a right answer, against popularity's k-th item.

These read the test windows' sales of other new items, which no ranking made at the cut can see: they explain the
benchmark's figures, they are not a method.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from training.cold_start import ColdStartTask, build_task
from training.metrics import paired_bootstrap


def truth_overlap(task: ColdStartTask, embeddings: np.ndarray, n_near: int = 3, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """For every cold item of ``task`` with a right answer and at least 3 x ``n_near`` others that have one: the mean
    Jaccard index between its right answers and those of the ``n_near`` other such items nearest to it by
    ``embeddings`` ((n_items, dim) unit rows, catalog positions), of ``n_near`` drawn at random (``seed``), and of
    the ``n_near`` farthest. Returns {"near", "random", "far"}: (n_scored,) arrays, one value per scored item."""
    truth = (task.truth > 0).astype(np.float32).tocsr()
    sizes = np.asarray(truth.sum(axis=1)).ravel()
    answered = np.flatnonzero(sizes > 0)
    out: dict[str, list[float]] = {"near": [], "random": [], "far": []}
    if len(answered) <= 3 * n_near:
        return {k: np.zeros(0) for k in out}
    t = truth[answered]
    inter = (t @ t.T).toarray()
    s = sizes[answered]
    jaccard = inter / np.maximum(s[:, None] + s[None, :] - inter, 1.0)
    z = np.asarray(embeddings, np.float32)[task.cold[answered]]
    similarity = z @ z.T
    rng = np.random.default_rng(seed)
    for i in range(len(answered)):
        others = np.delete(np.arange(len(answered)), i)
        order = others[np.argsort(-similarity[i, others], kind="stable")]
        out["near"].append(float(jaccard[i, order[:n_near]].mean()))
        out["far"].append(float(jaccard[i, order[-n_near:]].mean()))
        out["random"].append(float(jaccard[i, rng.choice(others, n_near, replace=False)].mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def unsold_hit_rates(task: ColdStartTask, embeddings: np.ndarray, counts: np.ndarray, depth: int = 10,
                     popular: int = 20) -> tuple[np.ndarray, np.ndarray, int]:
    """Over the cold items of ``task`` with a right answer: (``depth``,) the share for which the k-th item nearest by
    ``embeddings`` among items never sold before the cut (``counts`` (n_items,) <= 0; the item itself excluded) is a
    right answer, (``popular``,) the same for the k-th most sold item, and the number of items scored."""
    truth = task.truth.tocsr()
    counts = np.asarray(counts)
    unsold = np.flatnonzero(counts <= 0)
    top = np.argsort(-counts, kind="stable")[:popular]
    z = np.asarray(embeddings, np.float32)
    near_hits, pop_hits = [], []
    for row, item in enumerate(task.cold):
        answers = truth.indices[truth.indptr[row]:truth.indptr[row + 1]]
        if not len(answers):
            continue
        candidates = unsold[unsold != item]
        nearest = candidates[np.argsort(-(z[candidates] @ z[item]), kind="stable")[:depth]]
        near_hits.append(np.pad(np.isin(nearest, answers).astype(float), (0, depth - len(nearest)),
                                constant_values=np.nan))
        pop_hits.append(np.isin(top, answers).astype(float))
    if not near_hits:
        return np.full(depth, np.nan), np.full(len(top), np.nan), 0
    return np.nanmean(near_hits, axis=0), np.mean(pop_hits, axis=0), len(near_hits)


def run(folds: int, steps: int = 250, n_near: int = 3, seed: int = 0) -> dict[str, Any]:
    """Both diagnostics over the rolling-origin folds 0..``folds``-1 of Online Retail, from the fine-tuned embeddings
    the cold-start benchmark (``steps`` fine-tuning steps) kept for each (raises naming the first one missing)."""
    from benchmarks.common import COLD_START_FOLDS, machine
    from benchmarks.cold_start import fold_checkpoint, rolling_folds
    from training.data import build_interaction_data, item_pair_counts

    cleaned, _, rows_all, windows = rolling_folds("online_retail", folds)
    item_ids = cleaned.items["item_id"]
    ts = rows_all["timestamp"]
    overlap: dict[str, list[np.ndarray]] = {"near": [], "random": [], "far": []}
    near_rates, pop_rates, weights, per_fold = [], [], [], []
    for w in windows:
        kept = fold_checkpoint(COLD_START_FOLDS, "online_retail", steps, w.fold).with_suffix(".npz")
        if not kept.exists():
            raise FileNotFoundError(f"{kept}: run the cold-start benchmark with --folds {folds} --steps {steps} first")
        z = np.load(kept)["tuned"]
        train = build_interaction_data(rows_all[ts < w.cut], item_ids)
        task = build_task(rows_all[ts < w.end], train.item_ids, w.cut, "basket_or_customer")
        o = truth_overlap(task, z, n_near, seed + w.fold)
        for k in overlap:
            overlap[k].append(o[k])
        near, pop, n = unsold_hit_rates(task, z, item_pair_counts(train.baskets))
        if n:
            near_rates.append(near)
            pop_rates.append(pop)
            weights.append(n)
        per_fold.append({"fold": w.fold, "cold_items": int(len(task.cold)), "overlap_items": int(len(o["near"])),
                         **{f"jaccard_{k}": float(v.mean()) if len(v) else None for k, v in o.items()}})
    pooled = {k: np.concatenate(v) for k, v in overlap.items()}
    return {"dataset": "online_retail", "model": "cold_start_diagnostics", "folds": folds, "steps": steps,
            "n_near": n_near,
            "right_answers": "basket_or_customer",
            "twin_overlap": {"items": int(len(pooled["near"])),
                             **{f"jaccard_{k}": float(v.mean()) for k, v in pooled.items()},
                             "near_minus_random": paired_bootstrap(pooled["near"], pooled["random"], seed=seed),
                             "per_fold": per_fold},
            "unsold_hit_rates": {"items": int(sum(weights)),
                                 "nearest_unsold_by_rank": np.average(near_rates, axis=0, weights=weights).tolist(),
                                 "popularity_by_rank": np.average(pop_rates, axis=0, weights=weights).tolist()},
            "machine": machine()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=10, help="rolling-origin folds whose kept embeddings to read")
    ap.add_argument("--steps", type=int, default=250, help="fine-tuning steps of the benchmark run whose folds to read")
    ap.add_argument("--n-near", type=int, default=3, help="nearest / random / farthest new items compared")
    args = ap.parse_args(argv)
    from cobuy_files.storage import write_result_json
    from benchmarks.common import RESULTS

    result = run(args.folds, args.steps, args.n_near)
    path = write_result_json(result, Path(RESULTS) / "online_retail-cold_start-diagnostics.json")
    o, u = result["twin_overlap"], result["unsold_hit_rates"]
    d = o["near_minus_random"]
    print(f"twin overlap over {o['items']} new items: Jaccard near {o['jaccard_near']:.4f}, random "
          f"{o['jaccard_random']:.4f}, far {o['jaccard_far']:.4f}; near - random {d['mean_difference']:+.4f} "
          f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
    print("hit rate of the k-th nearest unsold item:", np.round(u["nearest_unsold_by_rank"], 3).tolist())
    print("hit rate of popularity's k-th item:", np.round(u["popularity_by_rank"], 3).tolist())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
