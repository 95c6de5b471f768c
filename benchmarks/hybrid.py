"""Hybrid benchmark on a temporal split (called by ``python -m benchmarks.run --model hybrid``).

Collaborative + association lift + text similarity + sales trend (``training.models.hybrid``): the collaborative
family is picked on validation, the blend weights are tuned with Optuna on the validation split carved
from train (components fitted on the rest of train; ``training.hybrid_tuning``), then everything is refitted on
all of train and test is touched once per row of the ablation table (each signal alone, each signal removed), for
user recommendations and for related items (basket co-purchases after the cut).
"""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from training.hybrid_tuning import (RECENCY_DAYS, TREND_DAYS, WEIGHT_STEP, fit_hybrid, related_scores, tune_hybrid,
                                    validation_related_task)


def run_hybrid(dataset, trials: int, encoder_path: str | None) -> dict:
    """``dataset``: a built-in name or a ``benchmarks.data.BenchmarkDataset``; its split must be temporal
    (related items are scored on the baskets after the cut)."""
    from benchmarks.common import default_params, machine
    from benchmarks.data import dataset_name, prepare, require_temporal
    from training.cold_start import build_task, evaluate_cold
    from training.data import build_interaction_data
    from training.metrics import evaluate_scores
    from training.models import MODELS, AssociationRules
    from training.models.hybrid import SIGNALS
    from training.text_encoder import TextEncoder, TextEncoderConfig, item_texts

    t_start = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    prepared = prepare(dataset)
    require_temporal(prepared.split, "the hybrid benchmark", prepared.chosen_because)
    cleaned, split, train, test = prepared.cleaned, prepared.split, prepared.train, prepared.test
    fit = build_interaction_data(split.fit, cleaned.items["item_id"])
    validation = fit.matrix_for(split.validation)
    texts = item_texts(cleaned.items)
    enc = TextEncoder(TextEncoderConfig(model_name=encoder_path or ""))
    emb = enc.embed(texts)
    params = {fam: default_params(dataset, fam) for fam in ("itemknn", "gf_cf", "ease")}

    # pick the collaborative component on validation
    collab_scores = {}
    for fam in ("itemknn", "gf_cf", "ease"):
        m = MODELS[fam](**params.get(fam, {})).fit(fit)
        collab_scores[fam] = evaluate_scores(m.score_users, fit.user_items, validation, ks=(20,))["ndcg@20"]
    collab_family = max(collab_scores, key=collab_scores.get)

    def components(data):
        c = MODELS[collab_family](**params.get(collab_family, {})).fit(data)
        a = AssociationRules(min_support=0.002, min_confidence=0.0)  # broad lift coverage for blending
        return c, a.fit(data)

    val_cut = split.validation["timestamp"].min()
    c_fit, a_fit = components(fit)
    tuned = tune_hybrid(fit_hybrid(c_fit, a_fit, emb, fit, split.fit), fit, validation,
                        validation_related_task(split.fit, split.train, fit, val_cut), trials)
    user_w, rel_w = tuned.user_weights, tuned.related_weights

    # final components on train; test touched once per configuration of the ablation
    c_tr, a_tr = components(train)
    final = fit_hybrid(c_tr, a_tr, emb, train, split.train)
    rel_test = build_task(pd.concat([split.train, split.after_cutoff]), train.item_ids, split.cutoff, basis="basket",
                          items="warm")
    configs = {"hybrid": None, **{f"{s} only": {t: float(t == s) for t in SIGNALS} for s in SIGNALS},
               **{f"without {s}": {t: (0.0 if t == s else None) for t in SIGNALS} for s in SIGNALS}}
    table = []
    for name, override in configs.items():
        row = {"configuration": name}
        for task_name, weights in (("user_recommendations", user_w), ("related_items", rel_w)):
            final.weights = dict(weights) if override is None else {
                t: (weights[t] if v is None else v) for t, v in override.items()}
            if task_name == "user_recommendations":
                r = evaluate_scores(final.score_users, train.user_items, test, ks=(20,))
            else:
                r = evaluate_cold(rel_test, lambda it: related_scores(final, it), ks=(20,))
            row[f"{task_name}_recall@20"] = r["recall@20"]
            row[f"{task_name}_ndcg@20"] = r["ndcg@20"]
        table.append(row)
    return {"dataset": dataset_name(dataset), "model": "hybrid", "collaborative_family": collab_family,
            "collaborative_params": params.get(collab_family, {}),
            "collaborative_validation_ndcg@20": collab_scores, "text_encoder": enc.model_name,
            "recency_days": RECENCY_DAYS, "trend_days": TREND_DAYS,
            "normalisation": "z-score per row over candidate (unseen) items",
            "weight_search": {"collaborative": [0.0, 1.0], "others": [0.0, 2.0], "step": WEIGHT_STEP,
                              "objective": "validation recall@20 + ndcg@20"},
            "weights_user_recommendations": user_w, "weights_related_items": rel_w,
            "validation_user_recommendations": tuned.user_validation,
            "validation_related_items": tuned.related_validation,
            "ablation": table, "related_items_eval_items": int(len(rel_test.cold)), "trials": trials,
            "wall_seconds": time.perf_counter() - t_start, "load_average_at_start_1_5_15min": load_at_start,
            "machine": machine()}
