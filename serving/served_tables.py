"""Batch tables from the one served model: user recommendations and related items scored by the serving bundle
(``<prefix>serving@champion``, loaded by ``serving.service.champion.load_served``) through the live service's own
scorer and ranking rule (``serving.service.ranking.top_positions``), so the tables and ``GET
/users/{id}/recommendations`` / ``GET /items/{id}/related`` give the same top-k on the same version.

The bundle was fitted on *its* data; the data scored now (``InteractionData``) may index users and items
otherwise. Both are matched by canonical id: a customer the bundle knows is scored exactly as the service scores
them (the bundle's own history, excluded from the list, plus any newer item of today's history excluded too); one
it does not know is folded in from today's history, as a cart; items the bundle never saw cannot be scored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from serving.onnx_scoring import RECOMMENDATION_SCHEMA
from serving.related import RELATED_COLUMNS, assemble_related, bought_items
from serving.service.ranking import top_positions
from cobuy_files.storage import atomic_path
from training.data import InteractionData

# families whose related list would not relate items: popularity ranks every item by its customers, whatever
# the anchor (its one factor makes every cosine 1)
NO_RELATED = {"popularity": "popularity has no relation between items (one factor: every item's cosine with "
                            "every other is 1), so it cannot rank related items"}


def served_label(served) -> str:
    """``<name> v<version> (<family>)``: the ``model`` column and the order label of a served table."""
    return f"{served.name} v{served.version} ({served.info.family})"


def related_refusal(served) -> str | None:
    """Why the served model cannot give the related-items table (None: it can)."""
    return NO_RELATED.get(served.info.family)


def _bundle_positions(served, data: InteractionData) -> np.ndarray:
    """(data.n_items,) each current item's position in the bundle (-1: the bundle never saw it)."""
    return np.asarray([served.item_index.get(str(i), -1) for i in data.item_ids], np.int64)


def served_user_recommendations(served, data: InteractionData, path: str | Path, k: int = 20,
                                chunk_size: int = 1024, progress: bool = True, preview_rows: int = 10
                                ) -> tuple[dict, pd.DataFrame]:
    """Every customer of ``data``'s top ``k`` from ``served``, streamed to Parquet ``path`` (user_id, rank,
    item_id, score; as ``serving.onnx_scoring.write_user_recommendations``), written atomically. A customer with
    nothing to score (unknown to the bundle and no item of theirs known to it) gets no row. Returns (facts,
    first rows)."""
    import time

    t0 = time.perf_counter()
    to_bundle = _bundle_positions(served, data)
    history = data.user_items.tocsr()
    bundle_ids = np.asarray(served.item_ids).astype(str)
    user_ids = np.asarray(data.user_ids).astype(str)
    scorer, empty_i, empty_w = served.scorer, np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows = known = folded = unscored = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, RECOMMENDATION_SCHEMA) as writer:
            for start in tqdm(range(0, len(user_ids), chunk_size), desc="user recommendations", unit="chunk",
                              disable=not progress):
                out_u, out_r, out_i, out_s = [], [], [], []
                for u in range(start, min(start + chunk_size, len(user_ids))):
                    today = to_bundle[history.indices[history.indptr[u]:history.indptr[u + 1]]]
                    today = today[today >= 0]
                    b = served.user_index.get(user_ids[u])
                    if b is not None:  # GET /users/{id}/recommendations: the bundle's history, excluded
                        scores = scorer.user_scores(int(b), empty_i, empty_w)
                        never = np.union1d(served.user_items[b].indices, today)
                        known += 1
                    elif len(today):  # unknown to the bundle: today's history folded in, as a cart
                        scores = scorer.cart_scores(today, np.ones(len(today), np.float32))
                        never = today
                        folded += 1
                    else:
                        unscored += 1
                        continue
                    idx = top_positions(scores, None, k, never=never)
                    out_u.append(np.full(len(idx), user_ids[u], dtype=object))
                    out_r.append(np.arange(1, len(idx) + 1, dtype=np.int32))
                    out_i.append(bundle_ids[idx])
                    out_s.append(np.asarray(scores, np.float32)[idx])
                if out_u:
                    table = pa.table({"user_id": np.concatenate(out_u).astype(str), "rank": np.concatenate(out_r),
                                      "item_id": np.concatenate(out_i), "score": np.concatenate(out_s)},
                                     schema=RECOMMENDATION_SCHEMA)
                    writer.write_table(table)
                    rows += table.num_rows
    facts = {"rows": rows, "users": int(len(user_ids)), "users_known_to_model": known,
             "users_folded_in": folded, "users_without_rows": unscored,
             "items_unknown_to_model": int((to_bundle < 0).sum()), "seconds": time.perf_counter() - t0}
    preview = (next(pq.ParquetFile(path).iter_batches(batch_size=preview_rows)).to_pandas() if rows else
               pd.DataFrame(columns=["user_id", "rank", "item_id", "score"]))
    return facts, preview


def served_related_items(served, data: InteractionData, catalog: pd.DataFrame, k: int = 20,
                         progress: bool = True) -> pd.DataFrame:
    """The ``related_items`` table (``serving.related.RELATED_COLUMNS``) from ``served``, as ``GET
    /items/{id}/related?k=<k>`` orders it (the model's score, positive scores only, the item itself excluded), for
    every item of ``data`` with interactions that the bundle knows, with the evidence of each pair on ``data``.
    ValueError when the served model cannot relate items (:func:`related_refusal`)."""
    refusal = related_refusal(served)
    if refusal:
        raise ValueError(f"{served_label(served)}: {refusal}")
    to_bundle = _bundle_positions(served, data)
    items = bought_items(data)
    items = items[to_bundle[items] >= 0]
    if not len(items):
        return pd.DataFrame(columns=RELATED_COLUMNS)
    to_data = data.item_index(np.asarray(served.item_ids).astype(str))  # bundle position -> current position
    idx = np.full((len(items), k), -1, np.int64)
    scores = np.full((len(items), k), np.nan, np.float32)
    for r, item in enumerate(tqdm(items, desc="related items", unit="item", disable=not progress)):
        b = int(to_bundle[item])
        s = served.scorer.related_scores(b)
        best = top_positions(s, None, k, positive=True, never=np.array([b]))
        best = best[to_data[best] >= 0]  # an item today's catalog dropped has no row to show
        idx[r, :len(best)] = to_data[best]
        scores[r, :len(best)] = np.asarray(s, np.float32)[best]
    return assemble_related(data, catalog, items, idx, scores, served_label(served))
