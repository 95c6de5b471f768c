"""Evaluate an exported (ONNX) model on held-out data by canonical ids, so that models trained on
different data (the champion from last month, today's challenger) are compared on the same users and
items."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from serving.onnx_scoring import OnnxRecommender
from training.metrics import DEFAULT_KS, evaluate_scores


class IdAlignedScorer:
    """Scores of ``model`` laid out on the current data's item positions (-inf for items it never saw).

    ``user_ids`` (n_users,) and ``item_ids`` (n_items,): canonical ids of the current data's positions;
    ``history``: (n_users, n_items) CSR of the current data (the input of item-item models)."""

    def __init__(self, model: OnnxRecommender, user_ids: Sequence, item_ids: Sequence, history: sp.csr_matrix) -> None:
        self.model, self.history = model, history
        from serving.onnx_export import read_ids  # the onnx package: only when a model is compared

        model_users, model_items = read_ids(model.path)
        if model_items is None:
            raise ValueError(f"{model.path}: export carries no item ids; cannot align it with other data")
        pos = {str(i): n for n, i in enumerate(model_items)}
        cur_items = np.asarray([pos.get(str(i), -1) for i in item_ids], dtype=np.int64)
        self.known_items = np.flatnonzero(cur_items >= 0)  # current positions the model knows
        self.model_item_of_known = cur_items[self.known_items]
        self.n_items, self.n_model_items = len(item_ids), len(model_items)
        if model.info.kind == "factor":
            upos = {str(u): n for n, u in enumerate(model_users)}
            self.user_pos = np.asarray([upos.get(str(u), -1) for u in user_ids], dtype=np.int64)
        else:  # item-item models score anyone with a history
            self.user_pos = np.arange(len(user_ids), dtype=np.int64)

    def scorable(self) -> np.ndarray:
        """(n_users,) bool: users this model can score."""
        return self.user_pos >= 0

    def __call__(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        if self.model.info.kind == "factor":
            raw = self.model.session.run(["scores"], {"user_index": self.user_pos[users],
                                                      "seen_index": np.zeros((0, 2), np.int64)})[0]
        else:  # item-item exports, dense or sparse: the histories in the model's item positions
            h = self.history[users][:, self.known_items].tocoo()
            rows = sp.csr_matrix((np.ones(h.nnz, np.float32), (h.row, self.model_item_of_known[h.col])),
                                 shape=(len(users), self.n_model_items))
            raw = self.model.scores(users, rows)
        out = np.full((len(users), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.known_items] = raw[:, self.model_item_of_known]
        return out


def evaluate_exports(models: dict[str, OnnxRecommender], user_ids: Sequence, item_ids: Sequence,
                     train: sp.csr_matrix, test: sp.csr_matrix, ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict]:
    """Metrics of each model on the held-out ``test`` ((n_users, n_items) CSR; ``train`` items excluded),
    restricted to the users every model can score, so the figures are comparable."""
    scorers = {name: IdAlignedScorer(m, user_ids, item_ids, train) for name, m in models.items()}
    common = np.logical_and.reduce([s.scorable() for s in scorers.values()])
    keep = sp.diags(common.astype(np.float32))
    test_common = (keep @ test).tocsr()
    test_common.eliminate_zeros()
    out = {}
    for name, scorer in scorers.items():
        metrics = evaluate_scores(scorer, train, test_common, ks)
        metrics["users_in_common"] = int(common.sum())
        out[name] = metrics
    return out


def heldout_evaluator(open_model: Callable[[Path], OnnxRecommender], user_ids: Sequence, item_ids: Sequence,
                      train: sp.csr_matrix, test: sp.csr_matrix, ks: Sequence[int] = DEFAULT_KS
                      ) -> Callable[[dict[str, Path]], dict[str, dict]]:
    """The promotion gate's ``evaluate``: {role: ONNX path} -> {role: metrics}, every export opened with
    ``open_model`` and scored by :func:`evaluate_exports` on the same held-out ``test`` ((n_users, n_items)
    CSR of the current data, ``train`` items excluded)."""
    def evaluate(paths: dict[str, Path]) -> dict[str, dict]:
        return evaluate_exports({role: open_model(Path(p)) for role, p in paths.items()}, user_ids, item_ids,
                                train, test, ks)
    return evaluate
