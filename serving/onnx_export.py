"""ONNX graphs for the recommenders: scoring, seen-item masking and TopK inside the graph.

Two graph shapes cover every exportable family (see ``Recommender.serving_form``):

* factor models (MF, LightGCN, popularity):
  inputs ``user_index`` int64 (B,) and ``seen_index`` int64 (N, 2) of (row in batch, item) pairs to exclude;
  ``scores = user_factors[user_index] @ item_factors.T`` with the user and item factors as initializers.
* item-item models (EASE, GF-CF, item-kNN, association rules):
  input ``history`` float32 (B, n_items), 1 where the user has the item; ``scores = history @ W``, and the
  history itself says which items to exclude. ``W`` (n_items^2 floats) goes to an external data file
  when it is large (ONNX protobufs stop at 2 GB), named afresh on each export so that
  replacing the model file is the one atomic step.

* sparse item-item models (any of those cut to their top-N neighbours, ``training.models.sparse``):
  inputs ``history_items`` int64 (M,) and ``history_rows`` int64 (M,), the (row in batch, item) pairs of the
  batch's histories, and ``batch_size`` int64 (1,). Each history item's N neighbour ids and weights are gathered
  from (n_items, N) initializers and added into the batch's (B, n_items) scores with ScatterElements
  (reduction ``add``); the history items are then set to -inf. The catalogue is never densified: the file
  holds n_items * N weights, and only the batch's own score block is dense.

* association rules with multi-item antecedents (``RuleForm``): input ``history`` as the item-item graph's; a rule
  adds its confidence only when the history holds its whole antecedent (``serving.rules_onnx``).

All graphs output ``scores`` (B, n_items, before masking: what the parity check compares),
``top_scores`` float32 (B, k) and ``top_items`` int64 (B, k), best first; ONNX TopK breaks ties
towards the lower index, as ``training.ranking.top_k`` does.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cobuy_files.storage import atomic_path
from training.models.base import FactorForm, ItemItemForm, Recommender, ServingForm
from training.models.sparse import SparseItemItemForm
from training.models.association import RuleForm
from serving.rules_onnx import rules_nodes

OPSET = 18
EXTERNAL_DATA_BYTES = 256 * 1024 * 1024  # initializers above this go to a side file


@dataclass
class ExportInfo:
    """What the exported file holds, also written into the model's metadata."""

    family: str
    kind: str  # "factor" | "item_item" | "item_item_sparse" | "rules"
    n_items: int
    k: int
    n_users: int | None = None
    dim: int | None = None
    n_neighbours: int | None = None  # item_item_sparse: weights kept per item


def _topk_nodes(k: int, n_items: int) -> tuple[list, list]:
    k = min(k, n_items)
    nodes = [helper.make_node("TopK", ["masked", "k"], ["top_scores", "top_items"], axis=1, largest=1, sorted=1)]
    inits = [numpy_helper.from_array(np.array([k], np.int64), "k")]
    return nodes, inits


def factor_graph(form: FactorForm, k: int, name: str) -> onnx.ModelProto:
    """Gather user factors, multiply by item factors, set seen items to -inf, take the top k."""
    u = np.ascontiguousarray(form.user_factors, dtype=np.float32)
    v_t = np.ascontiguousarray(form.item_factors.T, dtype=np.float32)  # (d, n_items)
    n_items = v_t.shape[1]
    nodes = [
        helper.make_node("Gather", ["user_factors", "user_index"], ["user_vectors"], axis=0),
        helper.make_node("MatMul", ["user_vectors", "item_factors_t"], ["scores"]),
        helper.make_node("Shape", ["seen_index"], ["seen_shape"]),
        helper.make_node("Slice", ["seen_shape", "zero", "one"], ["n_seen"]),
        helper.make_node("Expand", ["neg_inf", "n_seen"], ["seen_updates"]),
        helper.make_node("ScatterND", ["scores", "seen_index", "seen_updates"], ["masked"]),
    ]
    inits = [numpy_helper.from_array(u, "user_factors"), numpy_helper.from_array(v_t, "item_factors_t"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "neg_inf")]
    top_nodes, top_inits = _topk_nodes(k, n_items)
    graph = helper.make_graph(
        nodes + top_nodes, name,
        inputs=[helper.make_tensor_value_info("user_index", TensorProto.INT64, ["batch"]),
                helper.make_tensor_value_info("seen_index", TensorProto.INT64, ["n_seen", 2])],
        outputs=_outputs(n_items, k), initializer=inits + top_inits)
    return _model(graph)


def item_item_graph(form: ItemItemForm, k: int, name: str) -> onnx.ModelProto:
    """history @ W, items already in the history set to -inf, then the top k."""
    w = np.ascontiguousarray(form.weights, dtype=np.float32)
    return history_graph([helper.make_node("MatMul", ["history", "weights"], ["scores"])],
                         [numpy_helper.from_array(w, "weights")], w.shape[0], k, name)


def history_graph(nodes: list, inits: list, n_items: int, k: int, name: str) -> onnx.ModelProto:
    """A graph on input ``history`` float32 (B, n_items) whose ``nodes`` compute ``scores`` (B, n_items) (they may
    use the initializers ``zero_f`` (0) and ``seen`` (history > 0)); the history's items set to -inf, then TopK."""
    nodes = [helper.make_node("Greater", ["history", "zero_f"], ["seen"]), *nodes,
             helper.make_node("Where", ["seen", "neg_inf", "scores"], ["masked"])]
    inits = [*inits, numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "neg_inf")]
    top_nodes, top_inits = _topk_nodes(k, n_items)
    graph = helper.make_graph(
        nodes + top_nodes, name,
        inputs=[helper.make_tensor_value_info("history", TensorProto.FLOAT, ["batch", n_items])],
        outputs=_outputs(n_items, k), initializer=inits + top_inits)
    return _model(graph)


def sparse_item_item_graph(form: SparseItemItemForm, k: int, name: str) -> onnx.ModelProto:
    """Scores of a batch from its histories' (row, item) pairs: gather each history item's neighbours and
    weights ((M, N) each), add them at ``row * n_items + neighbour`` into a flat (B * n_items,) block of zeros,
    set the history items to -inf, reshape to (B, n_items), then the top k."""
    nb = np.ascontiguousarray(form.neighbours, dtype=np.int64)
    wt = np.ascontiguousarray(form.weights, dtype=np.float32)
    n_items = nb.shape[0]
    node = helper.make_node
    nodes = [
        node("Gather", ["neighbours", "history_items"], ["nb"], axis=0),  # (M, N)
        node("Gather", ["weights", "history_items"], ["wt"], axis=0),  # (M, N)
        node("Mul", ["history_rows", "n_items"], ["row_base"]),  # (M,)
        node("Unsqueeze", ["row_base", "one"], ["row_base_col"]),  # (M, 1)
        node("Add", ["nb", "row_base_col"], ["flat_nb"]),  # (M, N)
        node("Reshape", ["flat_nb", "minus_one"], ["flat_idx"]),  # (M * N,)
        node("Reshape", ["wt", "minus_one"], ["flat_wt"]),
        node("Mul", ["batch_size", "n_items"], ["n_cells"]),  # (1,)
        node("ConstantOfShape", ["n_cells"], ["zeros"], value=numpy_helper.from_array(np.zeros(1, np.float32))),
        node("ScatterElements", ["zeros", "flat_idx", "flat_wt"], ["flat_scores"], axis=0, reduction="add"),
        node("Concat", ["batch_size", "n_items"], ["score_shape"], axis=0),
        node("Reshape", ["flat_scores", "score_shape"], ["scores"]),  # (B, n_items)
        node("Add", ["row_base", "history_items"], ["seen_idx"]),  # (M,)
        node("Shape", ["history_items"], ["n_seen"]),
        node("Expand", ["neg_inf", "n_seen"], ["seen_updates"]),
        node("ScatterElements", ["flat_scores", "seen_idx", "seen_updates"], ["flat_masked"], axis=0),
        node("Reshape", ["flat_masked", "score_shape"], ["masked"]),
    ]
    inits = [numpy_helper.from_array(nb, "neighbours"), numpy_helper.from_array(wt, "weights"),
             numpy_helper.from_array(np.array([n_items], np.int64), "n_items"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "neg_inf")]
    top_nodes, top_inits = _topk_nodes(k, n_items)
    graph = helper.make_graph(
        nodes + top_nodes, name,
        inputs=[helper.make_tensor_value_info("history_items", TensorProto.INT64, ["n_pairs"]),
                helper.make_tensor_value_info("history_rows", TensorProto.INT64, ["n_pairs"]),
                helper.make_tensor_value_info("batch_size", TensorProto.INT64, [1])],
        outputs=_outputs(n_items, k), initializer=inits + top_inits)
    return _model(graph)


def _outputs(n_items: int, k: int) -> list:
    k = min(k, n_items)
    return [helper.make_tensor_value_info("top_items", TensorProto.INT64, ["batch", k]),
            helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_items])]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cobuy")
    model.ir_version = 9  # readable by every onnxruntime >= 1.16
    return model


def export_recommender(model: Recommender, path: str | Path, k: int = 20, form: ServingForm | None = None,
                       user_ids=None, item_ids=None) -> ExportInfo:
    """Write ``model`` as an ONNX file at ``path`` (atomically; large weights to ``<path>.<token>.data``
    beside it). ``user_ids`` (n_users,) and ``item_ids`` (n_items,), the canonical ids of the model's
    positions, travel in the file's metadata so that any later run can map its own data onto it."""
    form = form or model.serving_form()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = f"cobuy_{model.name}"
    if isinstance(form, FactorForm):
        proto = factor_graph(form, k, name)
        info = ExportInfo(model.name, "factor", form.item_factors.shape[0], min(k, form.item_factors.shape[0]),
                          n_users=form.user_factors.shape[0], dim=form.user_factors.shape[1])
    elif isinstance(form, ItemItemForm):
        proto = item_item_graph(form, k, name)
        info = ExportInfo(model.name, "item_item", form.weights.shape[0], min(k, form.weights.shape[0]))
    elif isinstance(form, RuleForm):  # rules with multi-item antecedents (serving.rules_onnx)
        proto = history_graph(*rules_nodes(form), form.n_items, k, name)
        info = ExportInfo(model.name, "rules", form.n_items, min(k, form.n_items))
    elif isinstance(form, SparseItemItemForm):
        proto = sparse_item_item_graph(form, k, name)
        info = ExportInfo(model.name, "item_item_sparse", form.n_items, min(k, form.n_items),
                          n_neighbours=int(form.neighbours.shape[1]))
    else:
        raise TypeError(f"unknown serving form {type(form).__name__}")
    props = {"cobuy": json.dumps(info.__dict__)}
    if item_ids is not None:
        props["item_ids"] = json.dumps([str(i) for i in item_ids])
    if user_ids is not None and info.kind == "factor":  # item-item models score any user from their history
        props["user_ids"] = json.dumps([str(u) for u in user_ids])
    helper.set_model_props(proto, props)
    if proto.ByteSize() < 2**31 - 1:
        onnx.checker.check_model(proto)
    if sum(len(t.raw_data) for t in proto.graph.initializer) > EXTERNAL_DATA_BYTES:
        _save_with_external_data(proto, path)
    else:
        with atomic_path(path) as tmp:
            onnx.save_model(proto, str(tmp))
        _remove_stale_data_files(path, keep=None)
    return info


def _save_with_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Weights to a side file with a fresh name, then the model file by rename: a reader sees the old
    model with its old weights or the new model with its new ones, never a mix."""
    token = uuid.uuid4().hex[:12]
    data_name = f"{path.name}.{token}.data"
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=path.parent) as tmp:
        onnx.save_model(proto, str(Path(tmp) / path.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        os.replace(Path(tmp) / data_name, path.parent / data_name)
        os.replace(Path(tmp) / path.name, path)
    _remove_stale_data_files(path, keep=data_name)


def _remove_stale_data_files(path: Path, keep: str | None) -> None:
    for old in path.parent.glob(f"{path.name}.*.data"):
        if old.name != keep:
            old.unlink(missing_ok=True)


def read_info(proto_or_path: onnx.ModelProto | str | Path) -> ExportInfo:
    """The ``ExportInfo`` stored in an exported file's metadata (raises ValueError if absent)."""
    proto = proto_or_path if isinstance(proto_or_path, onnx.ModelProto) else onnx.load(str(proto_or_path),
                                                                                      load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if "cobuy" not in props:
        raise ValueError(f"{proto_or_path}: not a cobuy recommender export (no 'cobuy' metadata)")
    return ExportInfo(**json.loads(props["cobuy"]))


def read_ids(path: str | Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(user_ids, item_ids) stored in an export's metadata (None where absent), as string arrays."""
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    get = lambda key: np.asarray(json.loads(props[key]), dtype=object) if key in props else None  # noqa: E731
    return get("user_ids"), get("item_ids")
