"""Strict cold start, for data with or without time: a seeded share of the sold items is removed from training
entirely, and each is ranked against the catalog by its text alone.

Every row holding a held-out item leaves the training data (the rest of its baskets stay). Each held-out item c is
then a query: every catalog item but c is a candidate, and the right answers are the items bought with c in the
same basket, over all the data (``co_purchase_task``). Methods compared on the same held-out items:

* ``fine_tuned_encoder``: the text encoder fine-tuned on co-purchase pairs of the training data only, scored as
  ``TextEncoder.scorer`` serves it (<z_c, z_j> / temperature + its popularity-from-text head b_j);
* ``untuned_encoder``: the same encoder before fine-tuning (cosine similarity);
* ``tfidf_titles``: TF-IDF cosine of the texts (title, category, brand: ``text_encoder.item_texts``);
* ``popularity``: the candidates' training baskets;
* ``category_popularity``: popularity within the query's category first (Instacart: "department / aisle"), then
  the rest by popularity;
* ``fine_tuned_encoder+partners+prior``: the served partner policy (``cold_start.PartnerPolicy``: the textual twins'
  partners plus the log-popularity prior), its twins, temperature and prior weight chosen on a validation carve of
  the training items (a seeded share of the remaining sold items, removed from the encoder's fine-tuning data and
  from the twins' baskets), never on the held-out items.

Per held-out item Recall@K / NDCG@K (``training.metrics``), and for each pair of methods the paired bootstrap
interval of the mean difference. No target: the figures are reported as measured.

Command: ``python -m benchmarks.strict_cold_start --source instacart --out DIR [--steps N]``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.cold_start import (PRIOR_WEIGHTS, TWIN_SETTINGS, ColdStartTask, PartnerPolicy, choose_on_validation,
                                 choose_prior_weight, embedding_scorer, evaluate_cold, fit_partner_policy,
                                 observed_log_prior, partner_shares, popularity_scorer, tfidf_scorer,
                                 twin_partners_scorer)
from training.data import basket_keys, binary_matrix, build_interaction_data, item_pair_counts
from training.metrics import paired_bootstrap

Scorer = Callable[[np.ndarray], np.ndarray]
POLICY = "fine_tuned_encoder+partners+prior"
METHODS = ("fine_tuned_encoder", "untuned_encoder", "tfidf_titles", "popularity", "category_popularity", POLICY)


@dataclass
class StrictColdStartConfig:
    """``holdout_fraction`` of the sold items (seed ``seed``) held out of training; ``validation_fraction`` of the
    remaining sold items (at most ``max_validation_items``) carved out to choose the partner policy's settings;
    the encoder's popularity head is fitted on at most ``max_head_items`` sold training items (a seeded sample: one
    encoding pass over a large catalog costs minutes on a CPU). ``ks``: cut-offs reported (20 always included);
    differences are of Recall@20 / NDCG@20 with ``n_boot`` paired bootstrap resamples."""

    holdout_fraction: float = 0.1
    validation_fraction: float = 0.1
    max_validation_items: int | None = 1000
    max_head_items: int | None = 5000
    seed: int = 0
    ks: tuple[int, ...] = (10, 20, 50)
    n_boot: int = 10_000


def sold_items(rows: pd.DataFrame) -> np.ndarray:
    """(n_sold,) the distinct item ids of ``rows`` as strings, sorted."""
    return np.sort(pd.unique(rows["item_id"].astype(str)).astype(object))


def draw_items(items: np.ndarray, fraction: float, seed: int, cap: int | None = None) -> np.ndarray:
    """A seeded ``fraction`` of ``items`` (at least 1 when ``items`` has two or more, never all; at most ``cap``),
    sorted."""
    if not 0 < fraction < 1:
        raise ValueError(f"strict cold start: a held-out fraction must be between 0 and 1, got {fraction}")
    n = min(max(int(round(len(items) * fraction)), 1 if len(items) >= 2 else 0), max(len(items) - 1, 0))
    if cap is not None:
        n = min(n, cap)
    return np.sort(np.asarray(items, dtype=object)[np.random.default_rng(seed).permutation(len(items))[:n]])


def without_items(rows: pd.DataFrame, items: np.ndarray) -> pd.DataFrame:
    """``rows`` less every row holding one of ``items``."""
    return rows[~rows["item_id"].astype(str).isin(set(np.asarray(items, str)))].reset_index(drop=True)


def co_purchase_task(rows: pd.DataFrame, item_ids: np.ndarray, queries: np.ndarray) -> ColdStartTask:
    """The ``queries`` (item ids) as cold items of a ``cold_start.ColdStartTask`` over the catalog ``item_ids``
    (n_items,): the truth of each is the items sharing a basket with it in ``rows`` (itself excluded)."""
    items = pd.Index(np.asarray(item_ids, dtype=object).astype(str))
    cold = np.sort(items.get_indexer(np.asarray(queries, dtype=object).astype(str)))
    cold = cold[cold >= 0].astype(np.int64)
    col = items.get_indexer(rows["item_id"].astype(str).to_numpy(dtype=object))
    codes, _ = pd.factorize(basket_keys(rows))
    n = len(items)
    baskets = binary_matrix(codes.astype(np.int64), col, int(codes.max()) + 1 if len(codes) else 0, n)
    truth = (baskets[:, cold].T @ baskets).tocsr()
    truth.data[:] = 1.0
    self_mask = sp.csr_matrix((np.ones(len(cold), np.float32), (np.arange(len(cold)), cold)), shape=(len(cold), n))
    truth = (truth - truth.multiply(self_mask)).tocsr()
    truth.eliminate_zeros()
    return ColdStartTask(cold, truth, self_mask, np.asarray(item_ids, dtype=object))


def category_popularity_scorer(categories: np.ndarray, counts: np.ndarray) -> Scorer:
    """score(c, j) = counts_j, plus (max count + 1) when j shares c's category: the query's category by popularity,
    then every other item by popularity. ``categories``: (n_items,) strings, missing (None / NaN / "") for an item
    without one (its queries get plain popularity); ``counts``: (n_items,) training baskets per item."""
    cats = pd.Series(categories, dtype="string").replace("", pd.NA)
    codes, _ = pd.factorize(cats)  # missing: -1
    c = np.asarray(counts, np.float32)
    bonus = np.float32(c.max(initial=0.0) + 1.0)

    def score(items: np.ndarray) -> np.ndarray:
        q = codes[items][:, None]
        return c[None, :] + bonus * ((codes[None, :] == q) & (q >= 0)).astype(np.float32)

    return score


def remembered(fn: Scorer) -> Scorer:
    """``fn`` with its result kept per distinct query array: the validation grid scores the same items again and
    again. Holds (n_queries, n_items) float32 in memory."""
    kept: dict[bytes, np.ndarray] = {}

    def score(items: np.ndarray) -> np.ndarray:
        key = np.asarray(items, np.int64).tobytes()
        if key not in kept:
            kept[key] = np.asarray(fn(items), np.float32)
        return kept[key]

    return score


def choose_partner_policy(val_task: ColdStartTask, similarity: Scorer, fit_baskets: sp.csr_matrix,
                          train_rows: pd.DataFrame, train_baskets: sp.csr_matrix, item_ids: np.ndarray,
                          embeddings: np.ndarray, text_prior: np.ndarray | None) -> PartnerPolicy:
    """The served ``PartnerPolicy`` with every setting chosen on the validation items ``val_task`` (never the held-out
    ones): first (twins, temperature) over ``TWIN_SETTINGS``, then the prior weight over ``PRIOR_WEIGHTS``, the twins'
    baskets and the prior being ``fit_baskets`` ((n_baskets, n_items), which hold no validation item). The policy
    itself (``fit_partner_policy`` with that weight) takes its prior from ``train_baskets``.
    ``similarity``: (query positions) -> (n, n_items) cosine similarities of ``embeddings`` (n_items, dim)."""
    sim = remembered(similarity)
    shares, counts = partner_shares(fit_baskets)
    (m, t), twin_values = choose_on_validation(val_task, lambda mt: twin_partners_scorer(sim, shares, counts, *mt),
                                               TWIN_SETTINGS)
    partners = remembered(twin_partners_scorer(sim, shares, counts, m, t))
    weight, curve = choose_prior_weight(val_task, partners, observed_log_prior(counts, text_prior), PRIOR_WEIGHTS)
    policy = fit_partner_policy(train_rows, None, fit_baskets, train_baskets, item_ids, embeddings, text_prior,
                                m, t, prior_weight=weight)
    chosen = (f"validation carve: {len(val_task.cold)} training items held out of the encoder's and the twins' "
              f"data; twins/temperature then prior weight maximising Recall@20 + NDCG@20 "
              f"(twin settings tried: {json.dumps({f'{a}/{b}': round(v, 5) for (a, b), v in twin_values.items()})})")
    return dataclasses.replace(policy, chosen_from=chosen, validation_new_items=int(len(val_task.cold)), curve=curve)


def _encode(encoder: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``encoder.encode`` over ``texts`` taken shortest first (less padding per batch), returned in their order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    z, b = encoder.encode([texts[i] for i in order])
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return z[back], b[back]


def encoder_embeddings(texts: list[str], fit_baskets: sp.csr_matrix, counts: np.ndarray, encoder_cfg: Any,
                       max_head_items: int | None, seed: int, log: Callable[[str], None] = print,
                       untuned_from: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Fine-tune on the co-purchase pairs of ``fit_baskets`` ((n_baskets, n_items); ``encoder_cfg``:
    ``TextEncoderConfig``), fit its popularity head on the sold items' ``counts`` ((n_items,); a seeded sample of at
    most ``max_head_items``), and embed every text with it and with the untuned encoder.
    Returns ((n_items, dim) fine-tuned, (n_items,) head, (n_items, dim) untuned, facts). With ``steps`` 0 or too few
    pairs (< 2 batches) the "fine-tuned" encoder is the untuned one, and the facts say so.

    ``untuned_from``: an ``.npy`` of the untuned encoder's (n_items, dim) embeddings of these ``texts`` computed
    elsewhere; used when its shape fits and 32 of its rows (a seeded sample) match a fresh encoding within 1e-3,
    otherwise the texts are embedded here."""
    from training.text_encoder import TextEncoder, mine_pairs

    t0 = time.perf_counter()
    pairs, pair_counts = mine_pairs(fit_baskets, None, encoder_cfg.min_pair_count, 0.0)
    untuned = TextEncoder(encoder_cfg)
    facts: dict[str, Any] = {"co_purchase_pairs": int(len(pairs)), "base_model": untuned.model_name}
    if encoder_cfg.steps <= 0 or len(pairs) < 2 * encoder_cfg.batch_size:
        facts["fine_tuned"] = False
        facts["not_fine_tuned_because"] = (f"steps={encoder_cfg.steps}, {len(pairs)} co-purchase pairs (fine-tuning "
                                           f"needs steps > 0 and at least {2 * encoder_cfg.batch_size} pairs)")
        z_tuned = b_tuned = None
    else:
        tuned = TextEncoder(encoder_cfg)
        tuned.fit(texts, pairs, pair_counts)
        log(f"fine-tuned {tuned.history.get('steps')} steps in {tuned.fit_seconds:.0f}s")
        sold = np.flatnonzero(np.asarray(counts) > 0)
        if max_head_items is not None and len(sold) > max_head_items:
            sold = np.sort(np.random.default_rng(seed).choice(sold, max_head_items, replace=False))
        tuned.fit_popularity_head([texts[i] for i in sold], np.asarray(counts)[sold])
        z_tuned, b_tuned = _encode(tuned, texts)
        log(f"fine-tuned encoder: {len(texts)} texts embedded, {time.perf_counter() - t0:.0f}s so far")
        facts.update(fine_tuned=True, fit_seconds=tuned.fit_seconds, history=tuned.history,
                     popularity_head_items=int(len(sold)))
    z_untuned = None
    if untuned_from is not None and Path(untuned_from).exists():
        kept = np.load(untuned_from)
        check = np.sort(np.random.default_rng(seed).choice(len(texts), min(32, len(texts)), replace=False))
        if kept.ndim == 2 and kept.shape[0] == len(texts):
            gap = float(np.abs(untuned.embed([texts[i] for i in check]) - kept[check]).max())
            if gap < 1e-3:
                z_untuned = kept.astype(np.float32)
                facts["untuned_embeddings_read_from"] = str(untuned_from)
                facts["untuned_embeddings_checked"] = {"rows": int(len(check)), "max_abs_difference": gap}
    if z_untuned is None:
        z_untuned, _ = _encode(untuned, texts)
    log(f"untuned encoder: {len(texts)} texts, {time.perf_counter() - t0:.0f}s so far")
    if z_tuned is None:
        return z_untuned, np.zeros(len(texts), np.float32), z_untuned, facts
    return z_tuned, b_tuned, z_untuned, facts


def run_strict_cold_start(rows: pd.DataFrame, catalog: pd.DataFrame, cfg: StrictColdStartConfig | None = None,
                          encoder_cfg: Any = None, log: Callable[[str], None] = print, held_out: np.ndarray | None = None,
                          embeddings_file: Path | None = None, n_examples: int = 10,
                          untuned_from: Path | None = None) -> dict[str, Any]:
    """The strict cold-start evaluation of ``rows`` (interactions: ``item_id``, ``basket_id`` and/or ``user_id``,
    ``timestamp`` may be empty) over ``catalog`` (``item_id``, ``title``, optional ``category`` / ``brand``; the
    catalog order is the item positions). ``encoder_cfg``: ``TextEncoderConfig`` (default: its defaults).

    Returns a JSON-ready dict: ``methods`` ({name: {recall@K, ndcg@K, ..., n_users}}), ``differences`` ({"a - b":
    {recall@20 / ndcg@20: paired bootstrap}}), ``counts``, ``partner_policy`` (its settings and where they came from),
    ``encoder`` (the fine-tuning's facts), ``settings``, ``held_out_item_ids``, and ``examples``: for the first
    ``n_examples`` scored held-out items, each method's top 5 item ids. Raises ``ValueError`` saying why when the data
    cannot support the evaluation (fewer than 3 sold items; no held-out item bought with another).

    ``held_out``: item ids to hold out instead of the seeded draw (a known-answer test). ``embeddings_file``: an
    ``.npz`` keeping the encoders' item embeddings; when it exists for this catalog, held-out set and encoder config,
    they are read from it instead of fine-tuning and embedding again (a run that failed later resumes).
    ``untuned_from``: see ``encoder_embeddings``."""
    from training.text_encoder import TextEncoderConfig, item_texts

    cfg = cfg or StrictColdStartConfig()
    encoder_cfg = encoder_cfg or TextEncoderConfig()
    ks = tuple(sorted(set(cfg.ks) | {20}))
    item_ids = np.asarray(catalog["item_id"].astype(str), dtype=object)
    rows = rows[rows["item_id"].astype(str).isin(set(item_ids))]
    sold = sold_items(rows)
    if len(sold) < 3:
        raise ValueError(f"strict cold start needs at least 3 sold items (held out, validation, training); the data "
                         f"has {len(sold)}")
    held_out = draw_items(sold, cfg.holdout_fraction, cfg.seed) if held_out is None else \
        np.sort(np.asarray(held_out, dtype=object).astype(str))
    train_rows = without_items(rows, held_out)
    validation = draw_items(sold_items(train_rows), cfg.validation_fraction, cfg.seed + 1, cfg.max_validation_items)
    fit_rows = without_items(train_rows, validation)
    task = co_purchase_task(rows, item_ids, held_out)
    val_task = co_purchase_task(train_rows, item_ids, validation)
    scored = int(np.count_nonzero(np.diff(task.truth.indptr)))
    if scored == 0:
        raise ValueError(f"strict cold start: none of the {len(held_out)} held-out items was bought with another item "
                         f"(every basket holding one has a single item), so nothing can be scored")
    log(f"{len(sold)} sold items: {len(held_out)} held out ({scored} bought with others), {len(validation)} for "
        f"validation; {len(train_rows)} of {len(rows)} rows kept for training")
    train = build_interaction_data(train_rows, item_ids)
    fit = build_interaction_data(fit_rows, item_ids)
    fit_counts = item_pair_counts(fit.baskets)
    texts = item_texts(catalog)
    key = json.dumps({"items": len(item_ids), "held_out": [str(i) for i in held_out], "validation": list(validation),
                      "encoder": dataclasses.asdict(encoder_cfg), "head": cfg.max_head_items}, default=str)
    if embeddings_file is not None and Path(embeddings_file).exists() and \
            str(np.load(embeddings_file)["key"]) == key:
        kept = np.load(embeddings_file)
        z_tuned, b_tuned, z_untuned = kept["tuned"], kept["head"], kept["untuned"]
        facts = {**json.loads(str(kept["facts"])), "embeddings_read_from": str(embeddings_file)}
        log(f"embeddings read from {embeddings_file}")
    else:
        z_tuned, b_tuned, z_untuned, facts = encoder_embeddings(texts, fit.baskets, fit_counts, encoder_cfg,
                                                                cfg.max_head_items, cfg.seed, log, untuned_from)
        if embeddings_file is not None:
            Path(embeddings_file).parent.mkdir(parents=True, exist_ok=True)
            np.savez(embeddings_file, tuned=z_tuned, head=b_tuned, untuned=z_untuned, key=key,
                     facts=json.dumps(facts, default=str))
    t0 = time.perf_counter()
    tuned_similarity = embedding_scorer(z_tuned)
    policy = choose_partner_policy(val_task, tuned_similarity, fit.baskets, train_rows, train.baskets, item_ids,
                                   z_tuned, b_tuned if facts["fine_tuned"] else None)
    log(f"partner policy chosen on {len(validation)} validation items in {time.perf_counter() - t0:.0f}s: "
        f"{policy.n_twins} twins, temperature {policy.temperature}, prior weight {policy.prior_weight}")
    temperature = encoder_cfg.temperature
    shares, train_counts = partner_shares(train.baskets)
    scorers: dict[str, Scorer] = {
        "fine_tuned_encoder": lambda q: z_tuned[q] @ z_tuned.T / temperature + b_tuned[None, :],
        "untuned_encoder": embedding_scorer(z_untuned),
        "tfidf_titles": tfidf_scorer(texts),
        "popularity": popularity_scorer(train_counts),
        "category_popularity": category_popularity_scorer(
            catalog["category"].to_numpy() if "category" in catalog else np.full(len(catalog), None), train_counts),
        POLICY: policy.scorer(tuned_similarity, shares, train_counts),
    }
    evaluated = {}
    for name, fn in scorers.items():
        t1 = time.perf_counter()
        evaluated[name] = evaluate_cold(task, fn, ks, per_user=True)
        log(f"{name}: recall@20 {evaluated[name]['recall@20']:.4f}, ndcg@20 {evaluated[name]['ndcg@20']:.4f} "
            f"({time.perf_counter() - t1:.0f}s)")
    scored_items = task.cold[np.diff(task.truth.indptr) > 0][:n_examples]
    examples = [{"item_id": str(item_ids[i]), "text": texts[i], "top5": {}} for i in scored_items]
    for name, fn in scorers.items():
        s = np.array(fn(scored_items), dtype=np.float32)
        s[np.arange(len(scored_items)), scored_items] = -np.inf
        for ex, top in zip(examples, np.argsort(-s, axis=1, kind="stable")[:, :5]):
            ex["top5"][name] = [str(item_ids[j]) for j in top]
    names = list(evaluated)
    differences = {f"{a} - {b}": {key: paired_bootstrap(evaluated[a]["per_user"][key], evaluated[b]["per_user"][key],
                                                        n_boot=cfg.n_boot, seed=cfg.seed)
                                  for key in ("recall@20", "ndcg@20")}
                   for i, a in enumerate(names) for b in names[i + 1:]}
    return {
        "methods": {n: {k: v for k, v in r.items() if k != "per_user"} for n, r in evaluated.items()},
        "differences": differences,
        "counts": {"catalog_items": int(len(item_ids)), "sold_items": int(len(sold)),
                   "held_out_items": int(len(held_out)), "scored_held_out_items": scored,
                   "median_right_answers": float(np.median(np.diff(task.truth.indptr)[np.diff(task.truth.indptr) > 0])),
                   "validation_items": int(len(validation)),
                   "scored_validation_items": int(np.count_nonzero(np.diff(val_task.truth.indptr))),
                   "rows": int(len(rows)), "training_rows": int(len(train_rows)),
                   "fine_tuning_rows": int(len(fit_rows)), "baskets": int(len(pd.unique(basket_keys(rows))))},
        "partner_policy": {"n_twins": policy.n_twins, "temperature": policy.temperature,
                           "prior_weight": policy.prior_weight, "chosen_from": policy.chosen_from,
                           "validation_recall_plus_ndcg_by_weight": {str(k): v for k, v in (policy.curve or {}).items()}},
        "encoder": {**facts, "config": dataclasses.asdict(encoder_cfg)},
        "settings": {**dataclasses.asdict(cfg), "ks": list(ks), "truth": "items sharing a basket with the held-out "
                     "item, over all rows; candidates: the whole catalog but the item itself"},
        "held_out_item_ids": [str(i) for i in held_out],
        "examples": examples,
    }


def method_table(result: dict[str, Any], ks: tuple[int, ...]) -> pd.DataFrame:
    """One row per (method, k) of ``run_strict_cold_start``'s result: ``method``, ``k``, ``recall``, ``ndcg``,
    ``n_items`` (held-out items scored): the columns of the temporal cold-start table."""
    return pd.DataFrame([{"method": name, "k": k, "recall": r[f"recall@{k}"], "ndcg": r[f"ndcg@{k}"],
                          "n_items": r["n_users"]} for name, r in result["methods"].items() for k in ks])


def difference_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per compared pair: mean difference of Recall@20 / NDCG@20 with its 95% paired bootstrap interval."""
    return pd.DataFrame([{"difference": pair, **{f"{key} {part}": d[key][field] for key in ("recall@20", "ndcg@20")
                                                 for part, field in (("mean", "mean_difference"), ("low", "ci_low"),
                                                                     ("high", "ci_high"))}}
                         for pair, d in result["differences"].items()])
