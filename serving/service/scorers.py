"""The served model behind one interface, whatever its family and form.

Every scorer returns one (n_items,) float32 score vector in the bundle's item order (higher is better;
callers mask and take the top k):

* ``cart_scores(items, weights)``: fold-in of a live cart (item positions (n,), weights (n,), e.g. quantities);
* ``user_scores(user, items, weights)``: a known customer (position in the bundle's users), with the session's
  items folded in where given;
* ``related_scores(item)``: the items that go with one item;
* ``cart_top(items, weights, mask, k, never)``: the top k of ``cart_scores`` and those scores (``Scorer``; the
  factor form reads fewer scores for the same answer).

Forms:
* ``ItemItemScorer`` (EASE, item-kNN, GF-CF, ChebyCF, rules, blend exports): ONNX Runtime on a graph derived
  from the export: Gather of the cart's rows of W, weighted sum (``history @ W`` without the dense history).
* ``RulesScorer`` (association rules with multi-item antecedents): the export's own graph on a one-row history.
* ``FactorScorer`` (MF, iALS, LightGCN, popularity exports): ONNX Runtime on the export's own graph for a known
  customer; a cart is folded in by ridge regression on the item factors; related items by cosine of factors.
* ``ExportGraphScorer`` (sparse top-N item-item exports, multi-item association rules): the export's own graph.
* ``NativeScorer``: models ONNX cannot express (the hybrid: per-request z-scores of several signals), run by
  their own Python code from the pickled model (``score_history``, ``related_items``).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper

from serving.onnx_export import read_ids, read_info
from serving.onnx_scoring import open_session
from serving.service.ranking import top_positions

FACTOR_BLOCK = 1024  # items per block product of a factor model's cart scores (FactorScorer.cart_top)
RELATED_POOL = 500  # a native model's related items are its top RELATED_POOL; the rest get -inf


def cart_graph(export_path: str | Path) -> onnx.ModelProto:
    """From an item-item export: inputs ``items`` int64 (n,), ``weights`` float32 (n,); output ``scores``
    float32 (1, n_items) = weights @ W[items]. The ``weights`` initializer is carried over by reference, so
    when it lives in an external data file the derived graph (saved beside the export) reads the same file."""
    proto = onnx.load(str(export_path), load_external_data=False)
    w = next(t for t in proto.graph.initializer if t.name == "weights")
    nodes = [helper.make_node("Gather", ["W", "items"], ["rows"], axis=0),
             helper.make_node("Unsqueeze", ["weights", "axis0"], ["row_weights"]),
             helper.make_node("MatMul", ["row_weights", "rows"], ["scores"])]
    w_ref = onnx.TensorProto()
    w_ref.CopyFrom(w)
    w_ref.name = "W"
    n_items = read_info(proto).n_items
    graph = helper.make_graph(
        nodes, "cobuy_cart", initializer=[w_ref, numpy_helper.from_array(np.array([0], np.int64), "axis0")],
        inputs=[helper.make_tensor_value_info("items", TensorProto.INT64, ["n"]),
                helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["n"])],
        outputs=[helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, n_items])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="cobuy")
    model.ir_version = 9
    return model


def _initializer(export_path: Path, name: str) -> np.ndarray:
    proto = onnx.load(str(export_path), load_external_data=False)
    onnx.load_external_data_for_model(proto, str(export_path.parent))
    return numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == name))


def _positions(model_ids: np.ndarray | None, bundle_ids: np.ndarray, what: str, path: Path) -> np.ndarray:
    """(len(bundle_ids),) model position of each bundle id; ValueError when the export lacks one."""
    if model_ids is None:
        return np.arange(len(bundle_ids))
    pos = {str(i): n for n, i in enumerate(model_ids)}
    out = np.asarray([pos.get(str(i), -1) for i in bundle_ids], np.int64)
    if (out < 0).any():
        raise ValueError(f"{path}: the export does not know {int((out < 0).sum())} {what} of the bundle "
                         f"(e.g. {bundle_ids[np.flatnonzero(out < 0)[0]]!r}); bundle and export must share the data")
    return out


class Scorer:
    """What every form shares: :meth:`cart_top`, the top k of a cart's scores, which a form may answer reading fewer
    scores (``FactorScorer``) as long as it answers the same."""

    def cart_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def cart_top(self, items: np.ndarray, weights: np.ndarray, mask: np.ndarray | None, k: int,
                 never: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(top ``k`` positions among ``mask`` but ``never``, best first; the (n_items,) scores they came from)."""
        scores = self.cart_scores(items, weights)
        return top_positions(scores, mask, k, never=never), scores


class ItemItemScorer(Scorer):
    """An item-item export run by ONNX Runtime through :func:`cart_graph`."""

    def __init__(self, export_path: str | Path, item_ids: np.ndarray, user_items: sp.csr_matrix,
                 threads: int = 1) -> None:
        export_path = Path(export_path)
        _, model_items = read_ids(export_path)
        self.item_pos = _positions(model_items, item_ids, "items", export_path)
        self.identity = bool(np.array_equal(self.item_pos, np.arange(len(item_ids))))
        derived = export_path.with_name(f"{export_path.stem}.cart.onnx")
        onnx.save_model(cart_graph(export_path), str(derived))
        self.session = open_session(derived, "cpu", threads)
        self.user_items, self.n_items = user_items, len(item_ids)

    def cart_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        feeds = {"items": self.item_pos[np.asarray(items, np.int64)], "weights": np.asarray(weights, np.float32)}
        raw = self.session.run(["scores"], feeds)[0][0]
        return raw if self.identity else raw[self.item_pos]

    def user_scores(self, user: int, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        row = self.user_items[user]
        hist = np.concatenate([row.indices, np.asarray(items, np.int64)])
        w = np.concatenate([np.ones(len(row.indices), np.float32), np.asarray(weights, np.float32)])
        return self.cart_scores(hist, w) if len(hist) else np.zeros(self.n_items, np.float32)

    def related_scores(self, item: int) -> np.ndarray:
        return self.cart_scores(np.array([item]), np.ones(1, np.float32))


class RulesScorer(ItemItemScorer):
    """A rules export (multi-item antecedents, ``serving.rules_onnx``), run as exported on the cart as a one-row
    history: a rule fires on the items present (quantities do not weight it)."""

    def __init__(self, export_path: str | Path, item_ids: np.ndarray, user_items: sp.csr_matrix,
                 threads: int = 1) -> None:
        export_path = Path(export_path)
        _, model_items = read_ids(export_path)
        self.item_pos = _positions(model_items, item_ids, "items", export_path)
        self.n_model_items = read_info(export_path).n_items
        self.session = open_session(export_path, "cpu", threads)
        self.user_items, self.n_items = user_items, len(item_ids)

    def cart_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        history = np.zeros((1, self.n_model_items), np.float32)
        history[0, self.item_pos[np.asarray(items, np.int64)]] = 1.0
        return self.session.run(["scores"], {"history": history})[0][0][self.item_pos]


class ExportGraphScorer(Scorer):
    """Exports whose own graph takes the history, run as exported by ONNX Runtime: ``item_item_sparse`` (the
    (row, item) pairs of a history; each item's top-N neighbours scattered into the row) and ``rules``
    (multi-item antecedents on a dense 0/1 history). Both graphs take which items a history holds, not how many:
    a cart's quantities do not weigh here."""

    def __init__(self, export_path: str | Path, kind: str, item_ids: np.ndarray, user_items: sp.csr_matrix,
                 threads: int = 1) -> None:
        export_path = Path(export_path)
        _, model_items = read_ids(export_path)
        self.item_pos = _positions(model_items, item_ids, "items", export_path)
        self.n_model_items = read_info(export_path).n_items
        self.session, self.kind = open_session(export_path, "cpu", threads), kind
        self.user_items, self.n_items = user_items, len(item_ids)

    def cart_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        model_items = np.unique(self.item_pos[np.asarray(items, np.int64)])
        if self.kind == "item_item_sparse":
            feeds = {"history_items": model_items, "history_rows": np.zeros(len(model_items), np.int64),
                     "batch_size": np.array([1], np.int64)}
        else:
            history = np.zeros((1, self.n_model_items), np.float32)
            history[0, model_items] = 1.0
            feeds = {"history": history}
        return self.session.run(["scores"], feeds)[0][0][self.item_pos]

    def user_scores(self, user: int, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        hist = np.concatenate([self.user_items[user].indices, np.asarray(items, np.int64)])
        return self.cart_scores(hist, np.ones(len(hist), np.float32)) if len(hist) else \
            np.zeros(self.n_items, np.float32)

    def related_scores(self, item: int) -> np.ndarray:
        return self.cart_scores(np.array([item]), np.ones(1, np.float32))


class FactorScorer(Scorer):
    """A factor export: the export's graph (ORT) for known customers, ridge fold-in for carts, cosine for
    related items. ``fold_in_l2``: the ridge penalty of the fold-in, relative to the mean squared factor norm."""

    def __init__(self, export_path: str | Path, item_ids: np.ndarray, user_ids: np.ndarray,
                 user_items: sp.csr_matrix, threads: int = 1, fold_in_l2: float = 0.1) -> None:
        export_path = Path(export_path)
        model_users, model_items = read_ids(export_path)
        self.item_pos = _positions(model_items, item_ids, "items", export_path)
        upos = {str(u): n for n, u in enumerate(model_users)} if model_users is not None else None
        self.user_pos = (np.arange(len(user_ids)) if upos is None else
                         np.asarray([upos.get(str(u), -1) for u in user_ids], np.int64))
        self.session = open_session(export_path, "cpu", threads)
        v = _initializer(export_path, "item_factors_t").T.astype(np.float32)  # (n_model_items, d)
        self.v = np.ascontiguousarray(v[self.item_pos])  # bundle item order
        norms = np.linalg.norm(self.v, axis=1, keepdims=True)
        self.v_unit = np.divide(self.v, norms, out=np.zeros_like(self.v), where=norms > 0)
        self.l2 = float(fold_in_l2 * max(np.mean(norms ** 2), 1e-12))
        self.user_items, self.n_items = user_items, len(item_ids)
        # the items by factor norm, largest first, scored in fixed blocks of FACTOR_BLOCK rows: a cart's top k can
        # stop after the first blocks (Cauchy-Schwarz), and reads the same block products the full scores do
        exact = np.linalg.norm(self.v.astype(np.float64), axis=1)
        self.by_norm = np.argsort(-exact, kind="stable")
        self.v_by_norm = np.ascontiguousarray(self.v[self.by_norm])
        self.norm_by_norm = exact[self.by_norm]  # (n_items,) descending

    def fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(d,) float32: u = argmin ||V_c u - w||^2 + l2 ||u||^2 over the cart's item factors V_c."""
        vc = self.v[np.asarray(items, np.int64)]
        w = np.asarray(weights, np.float32)
        return np.linalg.solve(vc.T @ vc + self.l2 * np.eye(vc.shape[1], dtype=np.float32), vc.T @ w)

    def _block(self, b: int, u: np.ndarray, out: np.ndarray) -> None:
        """Scores of the ``b``-th block of items by norm, written into ``out`` ((n_items,)) at their positions."""
        rows = slice(b * FACTOR_BLOCK, (b + 1) * FACTOR_BLOCK)
        out[self.by_norm[rows]] = self.v_by_norm[rows] @ u

    def cart_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Ridge fold-in (:meth:`fold_in`), scores = V u, computed block by block (:meth:`_block`)."""
        u, out = self.fold_in(items, weights), np.empty(self.n_items, np.float32)
        for b in range(-(-self.n_items // FACTOR_BLOCK)):
            self._block(b, u, out)
        return out

    def cart_top(self, items: np.ndarray, weights: np.ndarray, mask: np.ndarray | None, k: int,
                 never: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``top_positions(cart_scores(items, weights), mask, k, never=never)`` and the scores it read ((n_items,),
        -inf where not computed), scoring the items by decreasing factor norm, a block at a time, until no item
        left can reach the k-th best so far: v . u <= ||v|| ||u|| (with a margin of 1e-4 for rounding). The
        blocks are the same products as in :meth:`cart_scores`, so the answer is the same to the bit; on
        Gowalla's 64-d factors a 5-item cart stops after about 4% of the 40,981 items."""
        u, out = self.fold_in(items, weights), np.full(self.n_items, -np.inf, np.float32)
        reach = float(np.linalg.norm(u.astype(np.float64))) * (1 + 1e-4)
        n_blocks = -(-self.n_items // FACTOR_BLOCK)
        for b in range(n_blocks - 1):
            self._block(b, u, out)
            nxt = (b + 1) * FACTOR_BLOCK
            done = np.sort(self.by_norm[:nxt])  # the positions scored so far, ascending (ties go to the lower)
            s = out[done] if mask is None else np.where(mask[done], out[done], -np.inf)
            if never is not None and len(never):
                at = np.searchsorted(done, never).clip(0, len(done) - 1)
                s[at[done[at] == never]] = -np.inf  # the excluded items scored so far
            idx = done[top_positions(s, None, k)]
            if len(idx) == k and self.norm_by_norm[nxt] * reach < out[idx[-1]]:
                return idx, out
        self._block(n_blocks - 1, u, out)
        return top_positions(out, mask, k, never=never), out

    def user_scores(self, user: int, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        pos = int(self.user_pos[user]) if user < len(self.user_pos) else -1
        if len(items) or pos < 0:
            row = self.user_items[user]
            hist = np.concatenate([row.indices, np.asarray(items, np.int64)])
            w = np.concatenate([np.ones(len(row.indices), np.float32), np.asarray(weights, np.float32)])
            return self.cart_scores(hist, w) if len(hist) else np.zeros(self.n_items, np.float32)
        raw = self.session.run(["scores"], {"user_index": np.array([pos], np.int64),
                                            "seen_index": np.zeros((0, 2), np.int64)})[0][0]
        return raw[self.item_pos]

    def related_scores(self, item: int) -> np.ndarray:
        return self.v_unit @ self.v_unit[item]


class NativeScorer(Scorer):
    """A pickled model run by its own code (``training.models``' contract), for forms ONNX cannot express."""

    def __init__(self, pickle_path: str | Path, n_items: int, user_items: sp.csr_matrix) -> None:
        with open(pickle_path, "rb") as fh:
            self.model = pickle.load(fh)
        if getattr(self.model, "n_items", n_items) != n_items:
            raise ValueError(f"{pickle_path}: the model has {self.model.n_items} items, the bundle {n_items}")
        self.user_items, self.n_items = user_items, n_items
        c_order(self.model)


    def _row(self, items: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
        items = np.asarray(items, np.int64)
        return sp.csr_matrix((np.asarray(weights, np.float32), (np.zeros(len(items), np.int64), items)),
                             shape=(1, self.n_items))

    def cart_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.score_history(self._row(items, weights)), np.float32)[0]

    def user_scores(self, user: int, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if not len(items):
            return np.asarray(self.model.score_users(np.array([user])), np.float32)[0]
        row = self.user_items[user]
        hist = np.concatenate([row.indices, np.asarray(items, np.int64)])
        w = np.concatenate([np.ones(len(row.indices), np.float32), np.asarray(weights, np.float32)])
        return self.cart_scores(hist, w)

    def related_scores(self, item: int) -> np.ndarray:
        idx, vals = self.model.related_items(np.array([item]), min(RELATED_POOL, self.n_items - 1))
        out = np.full(self.n_items, -np.inf, np.float32)
        keep = idx[0] >= 0
        out[idx[0][keep]] = vals[0][keep]
        return out


def c_order(model: object, depth: int = 2, min_size: int = 1 << 16) -> None:
    """Store the large Fortran-ordered matrices of ``model`` and its components (``depth`` levels of attributes and
    lists) in C order, once at load: scipy's ``sparse @ dense`` copies a Fortran-ordered dense operand on every call,
    which for a one-row history is nearly all the work (EASE's (3,907 x 3,907) weights fitted on Online Retail: 30
    ms of a hybrid cart's 31 ms; 0.5 ms after)."""
    for name, value in list(vars(model).items()):
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.size >= min_size and \
                value.flags.f_contiguous and not value.flags.c_contiguous:
            setattr(model, name, np.ascontiguousarray(value))
        elif depth and hasattr(value, "__dict__") and not isinstance(value, (np.ndarray, sp.spmatrix)):
            c_order(value, depth - 1, min_size)
        elif depth and isinstance(value, (list, tuple)):
            for part in value:
                if hasattr(part, "__dict__") and not isinstance(part, (np.ndarray, sp.spmatrix)):
                    c_order(part, depth - 1, min_size)


def open_scorer(folder: Path, fmt: str, model_file: str, kind_hint: str | None, item_ids: np.ndarray,
                user_ids: np.ndarray, user_items: sp.csr_matrix, threads: int = 1):
    """The scorer for a bundle's model file (``fmt`` "onnx": by the export's kind; "native": the pickle)."""
    path = folder / model_file
    if fmt == "native":
        return NativeScorer(path, len(item_ids), user_items)
    kind = kind_hint or read_info(path).kind
    if kind == "item_item":
        return ItemItemScorer(path, item_ids, user_items, threads)
    if kind == "rules":
        return RulesScorer(path, item_ids, user_items, threads)
    if kind == "factor":
        return FactorScorer(path, item_ids, user_ids, user_items, threads)
    if kind in ("item_item_sparse", "rules"):
        return ExportGraphScorer(path, kind, item_ids, user_items, threads)
    raise ValueError(f"{path}: unknown export kind {kind!r}")
