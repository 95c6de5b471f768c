"""Batch scoring of a registered export against the current data: user recommendations, related items
from the same export, and text neighbours for cold items.

The export (``serving.onnx_export``) was fitted on *its* data; the data scored now may index users and
items differently (new catalog items, users gone). ``align_history`` maps the current interactions onto
the export's positions by canonical id, through two 0/1 selection matrices, so nothing depends on the
two sides sharing an order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper
from tqdm.auto import tqdm

from serving.onnx_export import ExportInfo, factor_graph, read_ids, read_info
from serving.onnx_scoring import OnnxRecommender, write_user_recommendations
from serving.related import RELATED_COLUMNS, assemble_related
from cobuy_files.storage import atomic_path
from training.cold_start import partner_shares, partners_from_twins
from training.data import InteractionData
from training.models.base import FactorForm
from training.ranking import top_k


@dataclass
class AlignedHistory:
    """The current interactions in the export's coordinates.

    ``user_ids`` (n_rows,): canonical id of each scored row; ``history`` (n_rows, n_model_items) binary
    CSR (the seen items, and the model input for item-item exports); ``item_ids`` (n_model_items,)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    history: sp.csr_matrix
    unknown_items: int  # current items the export has never seen (they cannot be scored or excluded)


def _selection(src_ids: np.ndarray, dst_ids: np.ndarray) -> sp.csr_matrix:
    """(len(dst_ids), len(src_ids)) 0/1 matrix with a 1 at (d, s) where ``dst_ids[d] == src_ids[s]``."""
    pos = pd.Index(np.asarray(src_ids, dtype=object)).get_indexer(np.asarray(dst_ids, dtype=object))
    rows = np.flatnonzero(pos >= 0)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, pos[rows])), shape=(len(dst_ids), len(src_ids)))


def export_ids(model: OnnxRecommender, data: InteractionData) -> tuple[np.ndarray, np.ndarray | None]:
    """(item_ids, user_ids) of the export's positions. Exports without ids are accepted only when their
    sizes match ``data`` (then they are taken to share its order); otherwise ValueError naming the file."""
    user_ids, item_ids = read_ids(model.path)
    if item_ids is None:
        if model.info.n_items != data.n_items:
            raise ValueError(f"{model.path}: export stores no item ids and has {model.info.n_items} items, "
                             f"the data has {data.n_items}; re-export with item_ids")
        item_ids = np.asarray(data.item_ids, dtype=object).astype(str)
    if model.info.kind == "factor" and user_ids is None:
        if model.info.n_users != data.n_users:
            raise ValueError(f"{model.path}: factor export stores no user ids and has {model.info.n_users} "
                             f"users, the data has {data.n_users}; re-export with user_ids")
        user_ids = np.asarray(data.user_ids, dtype=object).astype(str)
    return item_ids, user_ids


def align_history(model: OnnxRecommender, data: InteractionData) -> AlignedHistory:
    """Rows to score and their seen items in the export's item positions.

    Factor exports score their own users (row r = the export's user r; users absent from ``data`` get an
    empty history); item-item exports score every user of ``data`` from their history."""
    item_ids, user_ids = export_ids(model, data)
    cur_items = np.asarray(data.item_ids, dtype=object).astype(str)
    to_model_items = _selection(item_ids, cur_items)  # (n_cur_items, n_model_items)
    unknown = int(len(cur_items) - to_model_items.nnz)
    x = data.user_items.tocsr()
    if model.info.kind == "factor":
        rows = _selection(np.asarray(data.user_ids, dtype=object).astype(str), user_ids) @ x
        row_ids = user_ids
    else:
        rows, row_ids = x, np.asarray(data.user_ids, dtype=object).astype(str)
    history = (rows @ to_model_items).tocsr()
    history.data[:] = 1.0
    return AlignedHistory(np.asarray(row_ids, dtype=object), np.asarray(item_ids, dtype=object), history, unknown)


def score_users_to_parquet(model: OnnxRecommender, data: InteractionData, path: str | Path,
                           chunk_size: int = 1024, progress: bool = True, preview_rows: int = 10
                           ) -> tuple[dict, pd.DataFrame]:
    """Every user's top-k (the export's k) streamed to ``path`` (user_id, rank, item_id, score),
    atomically; memory stays at one (chunk_size, n_items) block. Returns (facts, first rows)."""
    aligned = align_history(model, data)
    facts = write_user_recommendations(model, aligned.history, aligned.user_ids, aligned.item_ids, path,
                                       chunk_size=chunk_size, progress=progress)
    facts["unknown_items"] = aligned.unknown_items
    preview = next(pq.ParquetFile(path).iter_batches(batch_size=preview_rows)).to_pandas() if facts["rows"] else \
        pd.DataFrame(columns=["user_id", "rank", "item_id", "score"])
    return facts, preview


def neighbour_graph(export_path: str | Path) -> onnx.ModelProto:
    """A related-items graph derived from an export, in the factor graph's contract: ``user_index`` holds
    item positions (B,), ``seen_index`` the (row, item) pairs to exclude (the item itself), then TopK.

    * item-item exports: ``scores = weights[item]``; a one-item history times W is W's row, so a Gather
      replaces the (B, n) x (n, n) product (n^2 times less work). The weights initializer is carried over
      by reference: when it lives in an external data file, the derived graph (saved beside the export)
      reads the same file and nothing n^2-sized is copied.
    * factor exports: cosine of the item factors, ``V_n[item] @ V_n.T`` with L2-normalised rows (what the
      native factor models' ``related_items`` rank by)."""
    proto = onnx.load(str(export_path), load_external_data=False)
    info = read_info(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    name = f"{proto.graph.name}_related"
    if info.kind == "factor":
        onnx.load_external_data_for_model(proto, str(Path(export_path).parent))
        v = numpy_helper.to_array(inits["item_factors_t"]).T.astype(np.float32)  # (n_items, d)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        out = factor_graph(FactorForm(v, v), info.k, name)
    elif info.kind == "item_item":
        # the factor graph's masking and TopK, its Gather+MatMul replaced by a Gather of W's rows
        out = factor_graph(FactorForm(np.zeros((1, 1), np.float32), np.zeros((info.n_items, 1), np.float32)),
                           info.k, name)
        g = out.graph
        rest = [n for n in g.node if n.op_type not in ("Gather", "MatMul")]
        del g.node[:]
        g.node.extend([helper.make_node("Gather", ["weights", "user_index"], ["scores"], axis=0), *rest])
        kept = [t for t in g.initializer if t.name not in ("user_factors", "item_factors_t")]
        del g.initializer[:]
        g.initializer.extend([inits["weights"], *kept])
    elif info.kind == "rules":
        out = rules_neighbour_graph(proto, info.n_items, name)
    elif info.kind == "item_item_sparse":
        out = sparse_neighbour_graph(inits, info.n_items, info.k, name)
    else:
        raise ValueError(f"{export_path}: unknown export kind {info.kind!r}")
    derived = ExportInfo(info.family, "factor", info.n_items, info.k, n_users=info.n_items, dim=info.dim)
    props = {p.key: p.value for p in proto.metadata_props}
    props = {"cobuy": json.dumps(derived.__dict__), **({"item_ids": props["item_ids"], "user_ids": props["item_ids"]}
                                                         if "item_ids" in props else {})}
    helper.set_model_props(out, props)
    return out


def sparse_neighbour_graph(inits: dict, n_items: int, k: int, name: str) -> onnx.ModelProto:
    """A sparse item-item export (top-N neighbours) in the factor graph's contract: the item's row of W is its
    neighbour ids and weights (``inits``: the export's initializers, carried over by reference), written into a
    (B, n_items) block of zeros with ScatterElements; then the factor graph's masking and TopK."""
    out = factor_graph(FactorForm(np.zeros((1, 1), np.float32), np.zeros((n_items, 1), np.float32)), k, name)
    g = out.graph
    rest = [n for n in g.node if n.op_type not in ("Gather", "MatMul")]
    node = helper.make_node
    del g.node[:]
    g.node.extend([node("Gather", ["neighbours", "user_index"], ["nb"], axis=0),  # (B, N)
                   node("Gather", ["weights", "user_index"], ["wt"], axis=0),
                   node("Shape", ["user_index"], ["batch"]),
                   node("Concat", ["batch", "n_items"], ["score_shape"], axis=0),
                   node("ConstantOfShape", ["score_shape"], ["zeros"],
                        value=numpy_helper.from_array(np.zeros(1, np.float32))),
                   node("ScatterElements", ["zeros", "nb", "wt"], ["scores"], axis=1), *rest])
    kept = [t for t in g.initializer if t.name not in ("user_factors", "item_factors_t")]
    del g.initializer[:]
    g.initializer.extend([inits["neighbours"], inits["weights"],
                          numpy_helper.from_array(np.array([n_items], np.int64), "n_items"), *kept])
    return out


def rules_neighbour_graph(proto: onnx.ModelProto, n_items: int, name: str) -> onnx.ModelProto:
    """A rules export (``serving.rules_onnx``) in the factor graph's contract: ``user_index`` (B,) item positions
    become one-item histories (OneHot), which fire the item's pair rules (a multi-item antecedent needs more than
    one item); the graph's own masking excludes the item itself. ``seen_index`` is accepted and not needed."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    g.name = name
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("user_index", TensorProto.INT64, ["batch"]),
                    helper.make_tensor_value_info("seen_index", TensorProto.INT64, ["n_seen", 2])])
    g.initializer.extend([numpy_helper.from_array(np.array([n_items], np.int64), "one_hot_depth"),
                          numpy_helper.from_array(np.array([0, 1], np.float32), "one_hot_values")])
    g.node.insert(0, helper.make_node("OneHot", ["user_index", "one_hot_depth", "one_hot_values"], ["history"],
                                      axis=-1))
    return out


def item_neighbour_model(model: OnnxRecommender, provider: str = "auto", threads: int | None = None
                         ) -> OnnxRecommender:
    """The export's related-items graph (``neighbour_graph``), written beside the export and opened in ORT."""
    path = model.path.with_name(f"{model.path.stem}.related.onnx")
    with atomic_path(path) as tmp:
        onnx.save_model(neighbour_graph(model.path), str(tmp))
    return OnnxRecommender(path, provider=provider, threads=threads)


def related_from_export(neighbours: OnnxRecommender, items: np.ndarray, k: int, chunk_size: int = 1024,
                        min_score: float = 0.0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Related items of export item positions ``items`` (n,) from ``item_neighbour_model``'s graph:
    (n, k) positions (-1 padded) and float32 scores (NaN padded), best first, the item itself excluded,
    only scores above ``min_score`` kept (as ``training.models.base.top_k_rows``)."""
    if k > neighbours.info.k:
        raise ValueError(f"{neighbours.path}: exported with top-{neighbours.info.k}; cannot give {k} related items")
    n_items = neighbours.info.n_items
    out_i = np.full((len(items), k), -1, np.int64)
    out_s = np.full((len(items), k), np.nan, np.float32)
    for start in tqdm(range(0, len(items), chunk_size), desc="related items", unit="chunk", disable=not progress):
        chunk = np.asarray(items[start:start + chunk_size])
        itself = sp.csr_matrix((np.ones(len(chunk), np.float32), (np.arange(len(chunk)), chunk)),
                               shape=(len(chunk), n_items))
        idx, scores = neighbours.top_k(chunk, itself)
        idx, scores = idx[:, :k], scores[:, :k]
        keep = np.isfinite(scores) & (scores > min_score)
        out_i[start:start + len(chunk)] = np.where(keep, idx, -1)
        out_s[start:start + len(chunk)] = np.where(keep, scores, np.nan)
    return out_i, out_s


def related_items_from_export(model: OnnxRecommender, data: InteractionData, catalog: pd.DataFrame, k: int,
                              label: str, chunk_size: int = 1024, progress: bool = True) -> pd.DataFrame:
    """The ``related_items`` table (``serving.related.RELATED_COLUMNS``) for every item of ``data`` with
    interactions that the export knows, scored by the export through ONNX Runtime, with the evidence of
    each pair computed on ``data``. ``label`` fills the ``model`` column (e.g. ``cobuy-itemknn v3``)."""
    item_ids, _ = export_ids(model, data)
    neighbours = item_neighbour_model(model, model.provider, model.threads)
    active = np.flatnonzero(np.asarray(data.user_items.sum(axis=0)).ravel()
                            + np.asarray(data.baskets.sum(axis=0)).ravel() > 0)
    in_model = pd.Index(np.asarray(item_ids, dtype=object)).get_indexer(
        np.asarray(data.item_ids, dtype=object)[active].astype(str))
    active, in_model = active[in_model >= 0], in_model[in_model >= 0]
    if not len(active):
        return pd.DataFrame(columns=RELATED_COLUMNS)
    idx, scores = related_from_export(neighbours, in_model, k, chunk_size, progress=progress)
    # back to the current data's positions (for evidence and titles); -1 stays -1
    ids = np.asarray(item_ids, dtype=object)[np.maximum(idx, 0).ravel()]
    related = np.where(idx >= 0, data.item_index(ids).reshape(idx.shape), -1)
    return assemble_related(data, catalog, active, related, scores, label)


def cold_and_warm_items(data: InteractionData) -> tuple[np.ndarray, np.ndarray]:
    """Positions of catalog items with no interaction in ``data`` (cold: new items) and with some (warm)."""
    seen = (np.asarray(data.user_items.sum(axis=0)).ravel() + np.asarray(data.baskets.sum(axis=0)).ravel()) > 0
    return np.flatnonzero(~seen), np.flatnonzero(seen)


NEIGHBOUR_COLUMNS = ["item_id", "rank", "neighbour_item_id", "score", "item_title", "neighbour_title"]


def cold_item_neighbours_table(embeddings: np.ndarray, data: InteractionData, catalog: pd.DataFrame, k: int = 20
                               ) -> pd.DataFrame:
    """For every cold item, the ``k`` warm items nearest by text: ``embeddings`` (n_items, d) unit rows in
    ``data``'s item order; ``score`` is their cosine similarity."""
    cold, warm = cold_and_warm_items(data)
    if not len(cold) or not len(warm):
        return pd.DataFrame(columns=NEIGHBOUR_COLUMNS)
    emb = np.asarray(embeddings, np.float32)
    idx, scores = top_k(emb[cold] @ emb[warm].T, k)  # (n_cold, k') positions among warm items
    k = idx.shape[1]
    a, b = np.repeat(cold, k), warm[idx.ravel()]
    titles = catalog.set_index("item_id")["title"] if "title" in catalog else pd.Series(dtype="string")
    a_ids, b_ids = data.item_ids[a], data.item_ids[b]
    return pd.DataFrame({
        "item_id": pd.array(a_ids, dtype="string"), "rank": np.tile(np.arange(1, k + 1), len(cold)),
        "neighbour_item_id": pd.array(b_ids, dtype="string"), "score": scores.ravel().astype(np.float64),
        "item_title": titles.reindex(a_ids).astype("string").values,
        "neighbour_title": titles.reindex(b_ids).astype("string").values})[NEIGHBOUR_COLUMNS]


PARTNER_COLUMNS = ["item_id", "rank", "partner_item_id", "score", "item_title", "partner_title"]


def cold_item_partners_table(neighbours: pd.DataFrame, data: InteractionData, catalog: pd.DataFrame, k: int = 20,
                             n_twins: int = 20, temperature: float = 0.1, prior: np.ndarray | None = None,
                             prior_weight: float = 0.0) -> pd.DataFrame:
    """For every cold item of ``neighbours`` (``cold_item_neighbours_table``: its warm text neighbours by rank,
    with cosine ``score``), the ``k`` items its ``n_twins`` nearest twins were bought with in ``data``'s baskets,
    each twin weighted by softmax(cosine / ``temperature``) (``training.cold_start.partners_from_twins``).
    ``score`` is the expected share of the twins' baskets holding the partner, plus ``prior_weight`` x ``prior``
    ((n_items,) in ``data``'s item order: the candidates' log popularity, ``training.cold_start.observed_log_prior``)
    when a prior is given."""
    if neighbours.empty:
        return pd.DataFrame(columns=PARTNER_COLUMNS)
    near = neighbours[neighbours["rank"] <= n_twins].sort_values(["item_id", "rank"])
    items = pd.Index(data.item_ids.astype(str))
    cold_ids = pd.unique(near["item_id"].astype(str))
    m = int(near.groupby("item_id").size().max())
    twins = np.full((len(cold_ids), m), -1, np.int64)
    sims = np.zeros((len(cold_ids), m), np.float32)
    row = pd.Index(cold_ids).get_indexer(near["item_id"].astype(str))
    col = near["rank"].to_numpy() - 1
    twins[row, col] = items.get_indexer(near["neighbour_item_id"].astype(str))
    sims[row, col] = near["score"].to_numpy(np.float32)
    shares, counts = partner_shares(data.baskets)
    scores = partners_from_twins(twins, sims, shares, counts, temperature)
    if prior is not None and prior_weight:
        scores += np.float32(prior_weight) * np.asarray(prior, np.float32)[None, :]
    scores[np.arange(len(cold_ids)), items.get_indexer(cold_ids)] = -np.inf  # never the item itself
    idx, best = top_k(scores, k)
    k = idx.shape[1]
    a, b = np.repeat(cold_ids, k), data.item_ids[idx.ravel()].astype(str)
    titles = catalog.set_index(catalog["item_id"].astype(str))["title"] if "title" in catalog else \
        pd.Series(dtype="string")
    return pd.DataFrame({
        "item_id": pd.array(a, dtype="string"), "rank": np.tile(np.arange(1, k + 1), len(cold_ids)),
        "partner_item_id": pd.array(b, dtype="string"), "score": best.ravel().astype(np.float64),
        "item_title": titles.reindex(a).astype("string").values,
        "partner_title": titles.reindex(b).astype("string").values})[PARTNER_COLUMNS]
