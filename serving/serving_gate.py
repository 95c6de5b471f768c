"""One serving champion across families: bundle the run's best model, judge it against the served one.

The per-family gate (``serving.registry.run_gate``) keeps one champion per family as history. What the live
service answers from is one registered model, ``<prefix>serving``: each version a serving bundle
(``serving.service.bundle``) of whichever family won, in ONNX where the family has a serving form and as the
model's own pickled Python code where it has none (the hybrid: its per-request z-scores of several signals over
the candidate items are no fixed function of the history that an ONNX graph of the export's two forms holds).
The gate scores challenger and champion bundles through the same code the service runs, on the same validation
split, whatever their families, and moves the one alias ``champion``; the test split is scored beside it and
reported, never decided on, so it stays the unbiased figure of the model that serves."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from serving.service.bundle import BundleInfo, write_bundle
from training.data import InteractionData
from training.metrics import DEFAULT_KS, evaluate_scores
from training.models.base import Recommender

NATIVE_WHY = ("its score is per-request z-scores of several signals (collaborative, association lift, text, trend, "
              "category) over the candidate items, blended: no fixed matrix or factors of the history, which is what "
              "the ONNX exports hold; served by the model's own Python code (format native)")


@dataclass
class TextAssets:
    """The exported text encoder to bundle: ``folder`` holding ``model_file`` and its tokenizer, and the
    catalog's (n_items, d) embeddings by it in the data's item order."""

    folder: Path
    model_file: str
    embeddings: np.ndarray
    max_length: int = 64
    # new items' partners as ``cold_partner_policy`` chose them (training.cold_start.PartnerPolicy); None: defaults
    n_twins: int | None = None
    temperature: float | None = None
    prior_weight: float = 0.0
    prior: np.ndarray | None = None  # (n_items,) the candidates' log popularity


def rank_candidates(model_metrics: pd.DataFrame, metric: str, families: Sequence[str]) -> pd.DataFrame:
    """(family, value) of ``families`` on ``metric`` (e.g. ``ndcg@20``) from ``model_metrics`` (columns ``model``,
    ``k`` and the metric names), best first; families without a row are left out."""
    name, k = metric.split("@")
    at_k = model_metrics[model_metrics["k"] == int(k)]
    # a model's name is its family's (training.families), in model_metrics as in the registry and the plan
    rows = [{"family": str(m), "value": float(v)} for m, v in zip(at_k["model"], at_k[name])]
    table = pd.DataFrame(rows, columns=["family", "value"])
    table = table[table["family"].isin(list(families))]
    return table.sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


def bundle_model(model: Recommender | None, family: str, data: InteractionData, catalog: pd.DataFrame, folder: str | Path,
                 onnx_path: str | Path | None = None, text: TextAssets | None = None, k: int = 20,
                 source: dict | None = None) -> BundleInfo:
    """A serving bundle of ``model`` (fitted on ``data``) in ``folder``: ``onnx_path`` when an export exists
    (parity-checked upstream); else an ONNX export made here when the model has a serving form; else native."""
    from serving.onnx_export import export_recommender

    folder = Path(folder)
    parts = [str(c) for c, _ in getattr(model, "components", [])] if family == "blend" else []
    meaning = {"score_meaning": f"a tuned blend of {' and '.join(parts)} scores"} if parts else {}
    if onnx_path is None:
        if model is None:
            raise ValueError(f"bundle_model({family!r}): give the fitted model or its ONNX export")
        try:
            model.serving_form()
        except NotImplementedError:
            return write_bundle(folder, family, data, catalog, native_model=model, **_text(text), **meaning,
                                source={**(source or {}), "native_because": NATIVE_WHY})
        onnx_path = folder.parent / f".{folder.name}-export" / "model.onnx"
        export_recommender(model, onnx_path, k=k, user_ids=data.user_ids, item_ids=data.item_ids)
    return write_bundle(folder, family, data, catalog, onnx_path=onnx_path, **_text(text), source=source, **meaning)


def _text(text: TextAssets | None) -> dict:
    if text is None:
        return {}
    policy = None
    if text.n_twins is not None:
        policy = {"n_twins": int(text.n_twins), "temperature": float(text.temperature),
                  "prior_weight": float(text.prior_weight)}
    return {"text_dir": text.folder, "text_model": text.model_file, "text_embeddings": text.embeddings,
            "text_max_length": text.max_length, "partner_policy": policy, "partner_prior": text.prior}


class BundleScorer:
    """A serving bundle's scores on the current data's positions, through the service's own scorer.

    ``user_ids`` (n_users,), ``item_ids`` (n_items,): the current data's canonical ids; ``history``: its
    (n_users, n_items) CSR. A customer the bundle knows is scored as the service scores them; another one by
    folding in their current history; items the bundle never saw get -inf. ``fold_in_all``: every customer is
    scored by folding in ``history`` (a cart, ``POST /baskets/complete``'s path), never by what the bundle stored
    of them: on the validation split, whose pairs a bundle fitted on train has among its own histories."""

    def __init__(self, folder: str | Path, user_ids: Sequence, item_ids: Sequence, history: sp.csr_matrix,
                 fold_in_all: bool = False, served=None) -> None:
        from serving.service.champion import load_served

        # ``served``: the bundle already loaded from ``folder`` (serving.service.champion.Served)
        self.served = s = served if served is not None else load_served(folder, "gate", "0", with_text=False)
        pos = np.asarray([s.item_index.get(str(i), -1) for i in item_ids], np.int64)
        self.known = np.flatnonzero(pos >= 0)
        self.bundle_item_of_known = pos[self.known]
        self.user_pos = (np.full(len(user_ids), -1, np.int64) if fold_in_all else
                         np.asarray([s.user_index.get(str(u), -1) for u in user_ids], np.int64))
        self.history, self.n_items = history.tocsr(), len(item_ids)

    def __call__(self, users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), self.n_items), -np.inf, np.float32)
        scorer = self.served.scorer
        known_cols = np.full(self.n_items, -1, np.int64)
        known_cols[self.known] = self.bundle_item_of_known
        for r, u in enumerate(np.asarray(users)):
            b = int(self.user_pos[u])
            if b >= 0:
                scores = scorer.user_scores(b, np.zeros(0, np.int64), np.zeros(0, np.float32))
            else:
                items = known_cols[self.history[u].indices]
                items = items[items >= 0]
                if not len(items):
                    continue
                scores = scorer.cart_scores(items, np.ones(len(items), np.float32))
            out[r, self.known] = scores[self.bundle_item_of_known]
        return out


TEST_PREFIX = "test:"  # the test split's figures ride beside the validation ones under this prefix


class SplitEvaluator:
    """The serving gate's ``evaluate``: {role: bundle folder} -> {role: metrics}, decided on the validation split.

    ``user_ids`` (n_users,), ``item_ids`` (n_items,): the current data's ids, shared by every matrix below (the
    ``fit`` data is built on train's user positions). ``fit`` / ``validation``: (n_users, n_items) CSR of the
    history given and the pairs held out for tuning (validation is carved from train, so every customer is folded
    in from ``fit``, see :class:`BundleScorer`); ``train`` / ``test``: the same for the test split (scored as the
    service answers: a known customer from the bundle's own history). Each role's metrics are the validation ones
    (what ``serving.registry.run_gate`` compares), plus the test ones under ``test:<metric>``; ``results`` keeps
    the last call's."""

    def __init__(self, user_ids: Sequence, item_ids: Sequence, fit: sp.csr_matrix, validation: sp.csr_matrix,
                 train: sp.csr_matrix | None = None, test: sp.csr_matrix | None = None,
                 ks: Sequence[int] = DEFAULT_KS) -> None:
        if validation.nnz == 0:
            raise ValueError("the serving gate judges on the validation split, and it holds no pair: give the split "
                             "a validation_fraction > 0")
        self.user_ids, self.item_ids, self.ks = user_ids, item_ids, ks
        self.fit, self.validation, self.train, self.test = fit, validation, train, test
        self.results: dict[str, dict] = {}

    def __call__(self, paths: dict[str, Path]) -> dict[str, dict]:
        from serving.service.champion import load_served

        out = {}
        for role, p in paths.items():
            served = load_served(p, "gate", "0", with_text=False)
            scorer = BundleScorer(p, self.user_ids, self.item_ids, self.fit, fold_in_all=True, served=served)
            metrics = evaluate_scores(scorer, self.fit, self.validation, self.ks)
            if self.test is not None and self.test.nnz:
                on_test = evaluate_scores(BundleScorer(p, self.user_ids, self.item_ids, self.train, served=served),
                                          self.train, self.test, self.ks)
                metrics.update({f"{TEST_PREFIX}{k}": v for k, v in on_test.items()})
            out[role] = metrics
        self.results = out
        return out


def bundle_evaluator(user_ids: Sequence, item_ids: Sequence, fit: sp.csr_matrix, validation: sp.csr_matrix,
                     train: sp.csr_matrix | None = None, test: sp.csr_matrix | None = None,
                     ks: Sequence[int] = DEFAULT_KS) -> SplitEvaluator:
    """The serving gate's ``evaluate`` (see :class:`SplitEvaluator`): decided on ``validation`` with ``fit`` as
    the history; ``test`` (with ``train`` as the history) reported beside it when given."""
    return SplitEvaluator(user_ids, item_ids, fit, validation, train, test, ks)
