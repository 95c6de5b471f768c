"""Cold-start benchmark on a temporal split (called by ``python -m benchmarks.run --model text_encoder``).

One fold is the split's own: the items first sold after the temporal cut are ranked against the catalog by text
alone, for both definitions of the right answers, by the fine-tuned encoder, the same encoder untuned, TF-IDF on
titles and popularity. Each text method also runs in two more forms, their settings chosen per method on the items
first sold inside the validation window: ``+prior`` (the candidates' log popularity at the cut added to the
similarity) and ``+partners`` (what the item's nearest textual twins among sold items were bought with). The
encoder is fine-tuned on pairs from before that window only, so those validation items are as new to it as the
test's cold items are.

A single cut holds a few dozen new items, too few to tell the methods apart. ``folds`` > 1 adds a rolling-origin
evaluation (Tashman, Int. J. Forecasting 2000): fold k moves the cut back by k validation-window lengths, so its
test window is the window just before fold k-1's cut and its validation window the one before that; each fold
fine-tunes its own encoder on the pairs before its validation window and chooses its own settings there. Every
item is cold in exactly one fold's test window, so the folds' cold items are disjoint and their per-item values
are pooled for the paired bootstrap.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FoldWindows:
    """Fold ``fold``: encoder fine-tuned on rows before ``validation_start``; settings chosen on the items first
    sold in [``validation_start``, ``cut``); evaluated on the items first sold in [``cut``, ``end``)."""

    fold: int
    validation_start: pd.Timestamp
    cut: pd.Timestamp
    end: pd.Timestamp

    def as_dict(self) -> dict[str, Any]:
        return {"fold": self.fold, "validation_start": str(self.validation_start), "cut": str(self.cut),
                "end": str(self.end)}


def fold_windows(cut: pd.Timestamp, validation_start: pd.Timestamp, end: pd.Timestamp,
                 folds: int) -> list[FoldWindows]:
    """Fold 0 is the split itself (test window [cut, end)); fold k > 0 moves every boundary back by k lengths of
    the validation window, so fold k's test window is fold k-1's validation window."""
    cut, validation_start, end = pd.Timestamp(cut), pd.Timestamp(validation_start), pd.Timestamp(end)
    if not validation_start < cut < end:
        raise ValueError(f"need validation_start < cut < end, got {validation_start}, {cut}, {end}")
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    step = cut - validation_start
    out = [FoldWindows(0, validation_start, cut, end)]
    for k in range(1, folds):
        c = cut - k * step
        out.append(FoldWindows(k, c - step, c, c + step))
    return out


def fold_embeddings(texts: list[str], item_ids: pd.Series, fit: Any, item_counts: np.ndarray, cfg: Any,
                    save_to: Path | None = None, embeddings_to: Path | None = None,
                    embeddings_from: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """A fold's item embeddings: the encoder fine-tuned on ``fit``'s pairs (``training.data.InteractionData``; ``cfg``:
    ``TextEncoderConfig``) with its popularity head fitted to ``item_counts`` ((n_items,) baskets per item), and the
    same encoder untuned; or, with ``embeddings_from``, those a run of this fold kept. Returns ((n_items, dim)
    fine-tuned, (n_items,) popularity head, (n_items, dim) untuned, the fine-tuning's facts: ``fit_seconds``,
    ``history``, ``base_model``, ``saved_to``)."""
    from training.text_encoder import TextEncoder, mine_pairs

    if embeddings_from is not None:
        kept = np.load(embeddings_from)
        if list(kept["item_ids"]) != list(np.asarray(item_ids, str)):
            raise ValueError(f"{embeddings_from} embeds another catalog; run the fold without reusing embeddings")
        facts = json.loads(Path(embeddings_from).with_suffix(".json").read_text())
        return kept["tuned"], kept["popularity_head"], kept["untuned"], {
            k: facts[k] for k in ("fit_seconds", "history", "base_model")} | {"saved_to": None}
    pairs, pair_counts = mine_pairs(fit.baskets, fit.user_items, cfg.min_pair_count, cfg.user_weight)
    tuned = TextEncoder(cfg)
    tuned.fit(texts, pairs, pair_counts)
    tuned.fit_popularity_head(texts, item_counts)
    saved = tuned.save(save_to) if save_to is not None else None
    z_tuned, b_tuned = tuned.encode(texts)
    z_untuned = TextEncoder(cfg).embed(texts)
    if embeddings_to is not None:
        import io

        from cobuy_files.storage import write_bytes

        buf = io.BytesIO()
        np.savez(buf, tuned=z_tuned, popularity_head=b_tuned, untuned=z_untuned, item_ids=np.asarray(item_ids, str))
        write_bytes(buf.getvalue(), embeddings_to)
    return z_tuned, b_tuned, z_untuned, {"fit_seconds": tuned.fit_seconds, "history": tuned.history,
                                         "base_model": tuned.model_name, "saved_to": str(saved) if saved else None}


def fold_checkpoint(checkpoints: Path, dataset: str, steps: int, fold: int) -> Path:
    """Where a run of ``fold`` (``steps`` fine-tuning steps) keeps its result (``.json``); its item embeddings sit
    beside it as ``.npz``."""
    return Path(checkpoints) / f"{dataset}-steps{steps}-fold{fold}.json"


def rolling_folds(dataset: Any, folds: int) -> tuple[Any, Any, pd.DataFrame, list[FoldWindows]]:
    """The dataset's cleaned tables and temporal split (``benchmarks.data.prepare``; ``dataset``: a built-in
    name or a ``BenchmarkDataset``), every interaction row (before and after the cut) and the ``folds``
    rolling-origin windows over them. A dataset whose split has no time cut stops with the reason."""
    from benchmarks import data
    from benchmarks.data import require_temporal

    cleaned, split, _, _ = data.load_dataset(dataset)
    require_temporal(split, "the text encoder's cold-start benchmark")
    rows_all = pd.concat([split.train, split.after_cutoff], ignore_index=True)
    end = rows_all["timestamp"].max() + pd.Timedelta(seconds=1)
    return cleaned, split, rows_all, fold_windows(split.cutoff, split.validation["timestamp"].min(), end, folds)


def run_fold(windows: FoldWindows, texts: list[str], item_ids: pd.Series, rows_all: pd.DataFrame, steps: int,
             fit_rows: pd.DataFrame | None = None, save_to: Path | None = None,
             embeddings_to: Path | None = None, embeddings_from: Path | None = None,
             batch_size: int | None = None) -> dict[str, Any]:
    """Fine-tune on the rows before ``windows.validation_start`` (``fit_rows`` when given: the split's own), choose
    every setting on that fold's validation items, evaluate every method on its test items. ``save_to``: a folder
    for the fine-tuned encoder; ``embeddings_to``: an ``.npz`` for the fold's item embeddings (``tuned``, (n_items,
    dim), ``popularity_head``, (n_items,), ``untuned``, (n_items, dim)), so that another scorer can be tried on the
    same folds without fine-tuning again: ``embeddings_from`` such a file (written by a run of this fold) skips the
    fine-tuning, and the fine-tuning's facts are read from the fold's checkpoint beside it.

    ``rows_all``: every interaction row (before and after the cut). Returns the fold's tables, each method with
    ``per_item`` values (for pooling; dropped from the result file)."""
    from training.cold_start import (TWIN_SETTINGS, build_task, choose_on_validation, choose_prior_weight,
                                     compare_methods, embedding_scorer, evaluate_cold, observed_log_prior,
                                     partner_shares, popularity_scorer, prior_mix_scorer, tfidf_scorer,
                                     twin_partners_scorer)
    from training.data import build_interaction_data
    from training.text_encoder import TextEncoderConfig

    ts = rows_all["timestamp"]
    if fit_rows is None:
        fit_rows = rows_all[ts < windows.validation_start]
    train_rows = rows_all[ts < windows.cut]
    window_rows = rows_all[ts < windows.end]
    fit = build_interaction_data(fit_rows, item_ids)
    train = build_interaction_data(train_rows, item_ids)
    shares = {"validation": partner_shares(fit.baskets), "test": partner_shares(train.baskets)}
    fit_counts, train_counts = shares["validation"][1], shares["test"][1]
    cfg = TextEncoderConfig(steps=steps, **({"batch_size": batch_size} if batch_size else {}))
    z_tuned, b_tuned, z_untuned, facts = fold_embeddings(texts, item_ids, fit, fit_counts, cfg, save_to,
                                                         embeddings_to, embeddings_from)
    similarity = {"fine_tuned_encoder": embedding_scorer(z_tuned), "untuned_encoder": embedding_scorer(z_untuned),
                  "tfidf_titles": tfidf_scorer(texts)}  # cosine similarities
    methods = {"fine_tuned_encoder": lambda items: z_tuned[items] @ z_tuned.T / cfg.temperature + b_tuned[None, :],
               "untuned_encoder": similarity["untuned_encoder"], "tfidf_titles": similarity["tfidf_titles"],
               "popularity": popularity_scorer(train_counts)}  # the fine-tuned one: TextEncoder.scorer's score

    # candidates never sold before the cut: the fine-tuned encoder's popularity-from-text head; the others 0
    def prior(name: str, counts: np.ndarray) -> np.ndarray:
        return observed_log_prior(counts, b_tuned if name == "fine_tuned_encoder" else None)

    tables = {}
    for basis in ("basket_or_customer", "basket"):
        task = build_task(window_rows, train.item_ids, windows.cut, basis)
        val_task = build_task(train_rows, train.item_ids, windows.validation_start, basis, items="cold")
        scorers, weights, twins = dict(methods), {}, {}
        for name, sim in similarity.items():
            lam, values = choose_prior_weight(val_task, sim, prior(name, fit_counts))
            weights[name] = {"weight": lam, "validation_recall_plus_ndcg": {str(k): v for k, v in values.items()}}
            scorers[f"{name}+prior"] = prior_mix_scorer(sim, prior(name, train_counts), lam)
            (m, t), values = choose_on_validation(
                val_task, lambda mt, sim=sim: twin_partners_scorer(sim, *shares["validation"], *mt), TWIN_SETTINGS)
            twins[name] = {"n_twins": m, "temperature": t,
                           "validation_recall_plus_ndcg": {f"{k[0]}/{k[1]}": v for k, v in values.items()}}
            scorers[f"{name}+partners"] = twin_partners_scorer(sim, *shares["test"], m, t)
            # both: the twins' partners (their settings as chosen above) plus the prior, its weight chosen again
            lam, values = choose_prior_weight(val_task, twin_partners_scorer(sim, *shares["validation"], m, t),
                                              prior(name, fit_counts))
            weights[f"{name}+partners+prior"] = {"weight": lam,
                                                 "validation_recall_plus_ndcg": {str(k): v for k, v in values.items()}}
            scorers[f"{name}+partners+prior"] = prior_mix_scorer(scorers[f"{name}+partners"], prior(name, train_counts),
                                                                 lam)
        evaluated = {name: evaluate_cold(task, fn, per_user=True) for name, fn in scorers.items()}
        tables[basis] = {"cold_items": int(len(task.cold)), "validation_cold_items": int(len(val_task.cold)),
                         "scored_cold_items": int(len(next(iter(evaluated.values()))["per_user"]["users"])),
                         "median_right_answers": float(np.median(np.diff(task.truth.indptr))),
                         "prior_weights": weights, "partner_settings": twins,
                         "methods": {name: {k: v for k, v in res.items() if k not in ("scoring_seconds", "per_user")}
                                     for name, res in evaluated.items()},
                         # paired bootstrap over the cold items: which differences are more than noise
                         "differences": compare_methods({n: r["per_user"] for n, r in evaluated.items()}),
                         "per_item": {n: {k: np.asarray(v).tolist() for k, v in r["per_user"].items()
                                          if k in ("recall@20", "ndcg@20")} for n, r in evaluated.items()}}
    return {"windows": windows.as_dict(), "config": cfg.__dict__, **facts, "cold_start": tables,
            "embeddings_reused_from": str(embeddings_from) if embeddings_from is not None else None}


def pool_folds(fold_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per basis: every method's Recall@20 / NDCG@20 averaged over the cold items of all folds (each item weighs the
    same), and the paired bootstrap differences over those pooled items."""
    from training.cold_start import compare_methods

    pooled = {}
    for basis in fold_results[0]["cold_start"]:
        per_item: dict[str, dict[str, np.ndarray]] = {}
        for r in fold_results:
            for name, values in r["cold_start"][basis]["per_item"].items():
                slot = per_item.setdefault(name, {})
                for key, v in values.items():
                    slot[key] = np.concatenate([slot.get(key, np.zeros(0)), np.asarray(v, np.float64)])
        pooled[basis] = {
            "cold_items": int(len(next(iter(per_item.values()))["ndcg@20"])),
            "cold_items_per_fold": [r["cold_start"][basis]["scored_cold_items"] for r in fold_results],
            "methods": {n: {k: float(v.mean()) for k, v in values.items()} for n, values in per_item.items()},
            "differences": compare_methods(per_item)}
    return pooled


# where the plan of the confirmation folds (``--confirm-from``) was written before they ran
CONFIRMATION_PLAN = "benchmarks/cold_start_confirmation.md"


def summarise(results: list[dict[str, Any]], confirm_from: int | None = None) -> dict[str, Any]:
    """The result file's body from the folds' results (``run_fold``; fold 0 first): fold 0's tables as
    ``cold_start`` (the split's own cut), and with more folds ``rolling``: each fold's figures and their pooling;
    with ``confirm_from`` K (< the number of folds) also ``rolling.confirmation``, the pooling of folds K onwards
    alone: folds that a plan written before they were run set apart to confirm what the earlier folds suggested.
    Per-item values are left out."""
    first = results[0]
    out = {"validation_start": first["windows"]["validation_start"],
           "fine_tuned_on": "pairs before the validation window", "config": first["config"],
           "fit_seconds": first["fit_seconds"], "history": first["history"], "base_model": first["base_model"],
           "cold_start": {b: {k: v for k, v in t.items() if k != "per_item"} for b, t in first["cold_start"].items()},
           "saved_to": first["saved_to"]}
    if len(results) > 1:
        kept = ("cold_items", "scored_cold_items", "validation_cold_items", "median_right_answers", "methods",
                "prior_weights", "partner_settings")
        out["rolling"] = {"folds": [{"windows": r["windows"], "fit_seconds": r["fit_seconds"],
                                     "cold_start": {b: {k: t[k] for k in kept} for b, t in r["cold_start"].items()}}
                                    for r in results],
                          "pooled": pool_folds(results)}
        if confirm_from is not None and 0 < confirm_from < len(results):
            out["rolling"]["confirmation"] = {"folds": [r["windows"]["fold"] for r in results[confirm_from:]],
                                              "plan": CONFIRMATION_PLAN, **pool_folds(results[confirm_from:])}
    return out


def run_cold_start(dataset: Any, steps: int, folds: int = 1, checkpoints: Path | None = None,
                   resume: bool = False, reuse_embeddings: bool = False,
                   confirm_from: int | None = None, encoder_dir: Path | None = None,
                   batch_size: int | None = None) -> dict[str, Any]:
    """The fold of the split (``cold_start``, as before), and with ``folds`` > 1 the rolling-origin folds and their
    pooled comparison (``rolling``). ``checkpoints``: a folder where each finished fold is kept as JSON, with its
    item embeddings as ``.npz``; with ``resume`` a fold kept there with the same windows and steps is reused instead
    of run again (a long run killed part-way loses at most one fold; the code is not compared, so resume only runs of
    the same code); with ``reuse_embeddings`` such a fold is evaluated again, every method and setting, from its
    kept embeddings without fine-tuning (a new scorer tried on the same encoders). ``confirm_from``: see
    ``summarise``. ``dataset``: a built-in name or a ``benchmarks.data.BenchmarkDataset``;
    ``encoder_dir``: where fold 0's fine-tuned encoder is saved (default ``data/text_encoder/<dataset>``);
    ``batch_size``: the fine-tuning batch (default ``TextEncoderConfig``'s; pairs drawn = steps x batch)."""
    from benchmarks.common import ROOT, machine
    from benchmarks.data import BenchmarkInputError, dataset_name
    from training.text_encoder import TextEncoderConfig, item_texts

    default_batch = TextEncoderConfig().batch_size
    if confirm_from is not None and not 0 < confirm_from < folds:
        raise BenchmarkInputError(f"confirm_from (--confirm-from) must name a fold after 0 and before --folds {folds}, "
                                  f"got {confirm_from}")
    name = dataset_name(dataset)
    encoder_dir = Path(encoder_dir) if encoder_dir is not None else ROOT / "data" / "text_encoder" / name

    t_start = time.perf_counter()
    cleaned, split, rows_all, windows = rolling_folds(dataset, folds)
    texts = item_texts(cleaned.items)
    item_ids = cleaned.items["item_id"]
    results, reused, rescored = [], [], []
    for w in windows:
        path = fold_checkpoint(checkpoints, name, steps, w.fold) if checkpoints else None
        kept = json.loads(path.read_text()) if path is not None and path.exists() else None
        same = (kept is not None and kept["windows"] == w.as_dict() and kept["config"]["steps"] == steps
                and kept["config"].get("batch_size", default_batch) == (batch_size or default_batch))
        if resume and same:
            print(f"fold {w.fold}: reusing {path}")
            results.append(kept)
            reused.append(w.fold)
            continue
        embeddings = path.with_suffix(".npz") if path is not None else None
        from_kept = reuse_embeddings and same and embeddings.exists()
        if from_kept:
            print(f"fold {w.fold}: evaluating again from the embeddings in {embeddings}")
            rescored.append(w.fold)
        else:
            print(f"fold {w.fold}: fine-tune before {w.validation_start}, validate to {w.cut}, test to {w.end}")
        r = run_fold(w, texts, item_ids, rows_all, steps, fit_rows=split.fit if w.fold == 0 else None,
                     save_to=encoder_dir if w.fold == 0 and not from_kept else None,
                     embeddings_to=embeddings, embeddings_from=embeddings if from_kept else None,
                     **({"batch_size": batch_size} if batch_size else {}))
        if path is not None:
            from cobuy_files.storage import write_text

            write_text(json.dumps(r, default=str), path)
        results.append(r)
    out = {"dataset": name, "model": "text_encoder", "cutoff": str(split.cutoff), **summarise(results, confirm_from)}
    out["wall_seconds"] = time.perf_counter() - t_start  # of this run: folds reused from checkpoints not counted
    out["reused_folds"], out["folds_evaluated_from_kept_embeddings"] = reused, rescored
    out["machine"] = machine()
    return out
