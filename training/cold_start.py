"""Cold-start evaluation: items first sold after the cut, ranked against the catalog by text alone.

For each cold item c, the right answers are the items bought with it after the cut: in the same
basket, or by the same customer. Every catalog item but c itself is a candidate. Metrics are those
of :mod:`training.metrics` with cold items in the role of users.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.data import basket_keys, binary_matrix, item_pair_counts
from training.metrics import evaluate_scores, paired_bootstrap


@dataclass
class ColdStartTask:
    """``cold``: (n_cold,) catalog positions; ``truth``: (n_cold, n_items) CSR of right answers;
    ``self_mask``: (n_cold, n_items) CSR marking each cold item itself (excluded from ranking)."""

    cold: np.ndarray
    truth: sp.csr_matrix
    self_mask: sp.csr_matrix
    item_ids: np.ndarray


def build_task(interactions: pd.DataFrame, item_ids: np.ndarray, cutoff: pd.Timestamp,
               basis: str = "basket_or_customer", items: str = "cold") -> ColdStartTask:
    """``basis``: ``basket_or_customer`` (bought in the same basket or by the same customer after the
    cut) or ``basket`` (same basket only). ``items``: ``cold`` (first sold after the cut) or ``warm``
    (sold before and after: the related-items evaluation)."""
    items_kind = items
    items = pd.Index(np.asarray(item_ids, dtype=object))
    before = interactions[interactions["timestamp"] < cutoff]
    after = interactions[interactions["timestamp"] >= cutoff]
    warm = set(before["item_id"].astype(str))
    sold_after = pd.unique(after["item_id"].astype(str))
    chosen = [i for i in sold_after if (i not in warm) == (items_kind == "cold")]
    cold = np.array(sorted(items.get_indexer(chosen)), dtype=np.int64)
    cold = cold[cold >= 0]
    n = len(items)
    col = items.get_indexer(after["item_id"].astype(str).to_numpy(dtype=object))
    b_codes, _ = pd.factorize(basket_keys(after))
    baskets = binary_matrix(b_codes.astype(np.int64), col, int(b_codes.max()) + 1 if len(b_codes) else 0, n)
    known = after["user_id"].notna().to_numpy()
    u_codes, _ = pd.factorize(after.loc[known, "user_id"])
    users = binary_matrix(u_codes.astype(np.int64), col[known], int(u_codes.max()) + 1 if len(u_codes) else 0, n)
    truth = baskets[:, cold].T @ baskets
    if basis == "basket_or_customer":
        truth = truth + users[:, cold].T @ users
    truth = truth.tocsr()
    truth.data[:] = 1.0
    self_mask = sp.csr_matrix((np.ones(len(cold), np.float32), (np.arange(len(cold)), cold)), shape=(len(cold), n))
    truth = (truth - truth.multiply(self_mask)).tocsr()
    truth.eliminate_zeros()
    return ColdStartTask(cold, truth, self_mask, np.asarray(item_ids, dtype=object))


def evaluate_cold(task: ColdStartTask, score_fn: Callable[[np.ndarray], np.ndarray],
                  ks: tuple[int, ...] = (10, 20, 50), per_user: bool = False) -> dict[str, Any]:
    """``score_fn(cold_positions)`` -> (n, n_items) scores for those cold items. ``per_user``: also each cold
    item's values (see :func:`training.metrics.evaluate_scores`)."""
    return evaluate_scores(lambda rows: score_fn(task.cold[rows]), task.self_mask, task.truth, ks,
                           per_user=per_user)


FINE_TUNED_FORMS = ("fine_tuned_encoder", "fine_tuned_encoder+prior", "fine_tuned_encoder+partners",
                    "fine_tuned_encoder+partners+prior")


def compare_methods(per_item: dict[str, dict[str, np.ndarray]], ks: tuple[int, ...] = (20,),
                    seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Each fine-tuned form against every other method on the same cold items: the mean difference of
    Recall@K and NDCG@K with a paired bootstrap 95% interval (``per_item[name]`` is the ``per_user`` dict of
    :func:`evaluate_cold`). With a few dozen cold items most differences are within noise; this says which."""
    out = {}
    for mine in (f for f in FINE_TUNED_FORMS if f in per_item):
        for other in (o for o in per_item if o not in FINE_TUNED_FORMS):
            out[f"{mine} - {other}"] = {
                key: paired_bootstrap(per_item[mine][key], per_item[other][key], seed=seed)
                for k in ks for key in (f"recall@{k}", f"ndcg@{k}")}
    return out


def tfidf_scorer(texts: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Cosine similarity of TF-IDF vectors of word uni- and bigrams."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(texts).astype(np.float32)
    return lambda items: np.asarray((x[items] @ x.T).todense(), dtype=np.float32)


def embedding_scorer(emb: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda items: emb[items] @ emb.T


def popularity_scorer(counts: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    c = counts.astype(np.float32)
    return lambda items: np.broadcast_to(c, (len(items), len(c))).copy()


def observed_log_prior(counts: np.ndarray, text_prior: np.ndarray | None = None) -> np.ndarray:
    """(n_items,) log(1 + purchases) of each candidate before the cut; a candidate never sold takes
    ``text_prior`` (the encoder's popularity-from-text head, same scale), or 0 without one. Only the query
    item is cold: its candidates are catalog items whose sales are known at the cut."""
    prior = np.log1p(np.asarray(counts, dtype=np.float64)).astype(np.float32)
    if text_prior is not None:
        unsold = np.asarray(counts) <= 0
        prior[unsold] = np.asarray(text_prior, dtype=np.float32)[unsold]
    return prior


def prior_mix_scorer(similarity: Callable[[np.ndarray], np.ndarray], prior: np.ndarray,
                     weight: float) -> Callable[[np.ndarray], np.ndarray]:
    """score(c, j) = similarity(c, j) + weight * prior_j.

    ``similarity``: (query positions) -> (n, n_items) text similarity (an encoder's <z_c, z_j> / temperature,
    or TF-IDF cosine); ``prior``: (n_items,) log popularity of each candidate (``observed_log_prior``).
    An encoder trained with the logQ correction (Yi et al., RecSys 2019) learns similarity with the
    candidates' log sampling probability taken out; adding the log prior back is the score that sampled
    softmax estimates. ``weight`` 0 is text similarity alone; a large weight tends to popularity order."""
    p = np.asarray(prior, dtype=np.float32)[None, :]
    return lambda items: similarity(items) + np.float32(weight) * p


# 0, then log-spaced from 1e-3 to 100 (the scale of the similarity differs by method), then popularity order
PRIOR_WEIGHTS = (0.0, *(float(w) for w in np.round(np.geomspace(1e-3, 100.0, 16), 6)), 1e3)


def choose_on_validation(task: ColdStartTask, make_scorer: Callable[[Any], Callable[[np.ndarray], np.ndarray]],
                         grid: Iterable[Any]) -> tuple[Any, dict[Any, float]]:
    """The ``grid`` value whose ``make_scorer(value)`` maximises Recall@20 + NDCG@20 on ``task``, which must be a
    validation task (items before a cut inside train), never the cold test items.
    Returns (best value, {value: validation value})."""
    values = {}
    for v in grid:
        r = evaluate_cold(task, make_scorer(v), ks=(20,))
        values[v] = r["recall@20"] + r["ndcg@20"]
    return max(values, key=values.get), values


def choose_prior_weight(task: ColdStartTask, similarity: Callable[[np.ndarray], np.ndarray], prior: np.ndarray,
                        weights: tuple[float, ...] = PRIOR_WEIGHTS) -> tuple[float, dict[float, float]]:
    """The ``weights`` value maximising Recall@20 + NDCG@20 of ``prior_mix_scorer`` on the validation ``task``."""
    return choose_on_validation(task, lambda w: prior_mix_scorer(similarity, prior, w), weights)


def partner_shares(baskets: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """From (n_baskets, n_items) baskets: (n_items, n_items) CSR P[k, j], the share of item k's baskets that also
    hold j (0 on the diagonal), and (n_items,) the number of baskets of each item."""
    b = baskets.tocsr().copy()
    b.data[:] = 1.0
    co = (b.T @ b).tocsr().astype(np.float32)
    counts = co.diagonal().copy()
    co.setdiag(0)
    co.eliminate_zeros()
    return (sp.diags(1.0 / np.maximum(counts, 1.0)) @ co).tocsr().astype(np.float32), counts


def partners_from_twins(twins: np.ndarray, twin_similarity: np.ndarray, shares: sp.csr_matrix, counts: np.ndarray,
                        temperature: float = 0.05) -> np.ndarray:
    """(n, n_items) sum over each row's twins k of softmax_k(twin_similarity / ``temperature``) * shares[k, j], plus
    log(1 + counts_j) x 1e-6 to break ties among items no twin was bought with.

    ``twins``: (n, m) item positions (-1 pads a row with fewer); ``twin_similarity``: (n, m) their cosine
    similarities to the query; ``shares``, ``counts``: see ``partner_shares``."""
    twins = np.asarray(twins)
    v = np.where(twins >= 0, np.asarray(twin_similarity, np.float64), -np.inf)
    top = v.max(axis=1, keepdims=True)
    w = np.where(np.isfinite(v), np.exp((v - np.where(np.isfinite(top), top, 0.0)) / temperature), 0.0)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    rows = np.repeat(np.arange(len(twins)), twins.shape[1])
    keep = twins.ravel() >= 0
    mix = sp.csr_matrix((w.ravel()[keep].astype(np.float32), (rows[keep], twins.ravel()[keep])),
                        shape=(len(twins), shares.shape[0]))
    tie_break = (1e-6 * np.log1p(np.asarray(counts, np.float64))).astype(np.float32)[None, :]
    return np.asarray((mix @ shares).todense(), dtype=np.float32) + tie_break


def twin_partners_scorer(similarity: Callable[[np.ndarray], np.ndarray], shares: sp.csr_matrix, counts: np.ndarray,
                         n_twins: int = 20, temperature: float = 0.05) -> Callable[[np.ndarray], np.ndarray]:
    """score(c, j) = sum over the ``n_twins`` items k closest to c in text, among items sold before the cut, of
    softmax_k(similarity(c, k) / ``temperature``) * shares[k, j]: what the new item's textual twins were bought
    with (``partners_from_twins``). ``similarity``: (query positions) -> (n, n_items) cosine similarities;
    ``shares``, ``counts``: see ``partner_shares``. The query item's own sales are never used."""
    sold = np.asarray(counts) > 0

    def score(items: np.ndarray) -> np.ndarray:
        s = np.asarray(similarity(items), dtype=np.float32).copy()
        s[:, ~sold] = -np.inf
        s[np.arange(len(items)), items] = -np.inf
        m = int(min(n_twins, max(sold.sum() - 1, 1)))
        twins = np.argpartition(-s, m - 1, axis=1)[:, :m]
        return partners_from_twins(twins, np.take_along_axis(s, twins, axis=1), shares, counts, temperature)

    return score


# (number of twins, softmax temperature) tried on validation
TWIN_SETTINGS = tuple((m, t) for m in (5, 20, 50) for t in (0.02, 0.05, 0.1))


def choose_partner_prior_weight(train_rows: pd.DataFrame, fit_baskets: sp.csr_matrix, item_ids: np.ndarray,
                                validation_start: pd.Timestamp, embeddings: np.ndarray,
                                text_prior: np.ndarray | None = None, n_twins: int = 20, temperature: float = 0.1,
                                basis: str = "basket_or_customer"
                                ) -> tuple[float | None, dict[float, float], int]:
    """The weight of the log-popularity prior added to a new item's twins' partners (``+partners+prior``), chosen
    on the items first sold in the validation window [``validation_start``, end of ``train_rows``): their twins are
    found by ``embeddings`` ((n_items, dim) unit rows in ``item_ids``' order) among the items sold before the
    window, whose baskets ``fit_baskets`` ((n_baskets, n_items)) give the partners' shares and the prior
    (``observed_log_prior``; never-sold candidates take ``text_prior``, (n_items,), when given).

    Returns (weight, {weight: validation Recall@20 + NDCG@20}, number of validation items); the weight is None
    when the window holds no new item with a right answer."""
    task = build_task(train_rows, item_ids, validation_start, basis, items="cold")
    if not len(task.cold) or task.truth.nnz == 0:
        return None, {}, int(len(task.cold))
    shares, counts = partner_shares(fit_baskets)
    partners = twin_partners_scorer(embedding_scorer(np.asarray(embeddings, np.float32)), shares, counts, n_twins,
                                    temperature)
    weight, values = choose_prior_weight(task, partners, observed_log_prior(counts, text_prior))
    return weight, values, int(len(task.cold))


@dataclass
class PartnerPolicy:
    """How a new item's partners are scored, fitted once and shared by the cold-start evaluation and the served
    ``cold_item_partners``: its ``n_twins`` nearest textual twins among sold items, weighted by softmax(cosine /
    ``temperature``), lend what they were bought with (``partners_from_twins``), plus ``prior_weight`` x ``prior``.

    ``prior``: (n_items,) the candidates' log popularity in ``item_ids``' order (``observed_log_prior``);
    ``chosen_from``: where ``prior_weight`` came from; ``validation_new_items`` and ``curve`` ({weight: validation
    Recall@20 + NDCG@20}) when it was chosen on a validation window."""

    n_twins: int
    temperature: float
    prior_weight: float
    prior: np.ndarray
    item_ids: np.ndarray
    chosen_from: str
    validation_new_items: int | None = None
    curve: dict[float, float] | None = None

    def scorer(self, similarity: Callable[[np.ndarray], np.ndarray], shares: sp.csr_matrix,
               counts: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """``twin_partners_scorer`` over ``similarity`` with this policy's twins, temperature and prior."""
        partners = twin_partners_scorer(similarity, shares, counts, self.n_twins, self.temperature)
        return prior_mix_scorer(partners, self.prior, self.prior_weight)

    def aligned_to(self, item_ids: np.ndarray) -> None:
        """Raises unless the policy's prior is in the order of ``item_ids`` (the caller's matrices)."""
        if list(np.asarray(self.item_ids).astype(str)) != list(np.asarray(item_ids).astype(str)):
            raise ValueError(f"the partner policy was fitted on another item order ({len(self.item_ids)} items) than "
                             f"these matrices ({len(item_ids)} items); materialize cold_partner_policy again")


def fit_partner_policy(train_rows: pd.DataFrame, validation_start: pd.Timestamp | None, fit_baskets: sp.csr_matrix,
                       train_baskets: sp.csr_matrix, item_ids: np.ndarray, embeddings: np.ndarray,
                       text_prior: np.ndarray | None = None, n_twins: int = 20, temperature: float = 0.1,
                       prior_weight: float | None = None) -> PartnerPolicy:
    """The ``PartnerPolicy`` for serving after ``train_rows``. Its prior is the log popularity in ``train_baskets``
    ((n_baskets, n_items); never-sold candidates take ``text_prior``, (n_items,), the encoder's popularity-from-text
    head). ``prior_weight`` None chooses the weight on the items first sold in [``validation_start``, end of
    ``train_rows``) (``choose_partner_prior_weight``, twins and shares from ``fit_baskets``, the baskets before that
    window); no window (``validation_start`` None) or no new item with a right answer in it gives weight 0 (no
    prior). A number is used as given. ``embeddings``: (n_items, dim) unit rows in ``item_ids``' order."""
    if n_twins < 1 or not temperature > 0 or (prior_weight is not None and not prior_weight >= 0):
        raise ValueError(f"partner policy: need n_twins >= 1, temperature > 0 and prior_weight >= 0 (or None to choose "
                         f"it), got n_twins={n_twins}, temperature={temperature}, prior_weight={prior_weight}")
    prior = observed_log_prior(item_pair_counts(train_baskets), text_prior)
    common = {"n_twins": int(n_twins), "temperature": float(temperature), "prior": prior,
              "item_ids": np.asarray(item_ids, dtype=object)}
    if prior_weight is not None:
        return PartnerPolicy(prior_weight=float(prior_weight), chosen_from="config", **common)
    if validation_start is None:
        return PartnerPolicy(prior_weight=0.0, chosen_from="no temporal validation window: no prior", **common)
    weight, values, n_new = choose_partner_prior_weight(train_rows, fit_baskets, item_ids, validation_start,
                                                        embeddings, text_prior, n_twins, temperature)
    if weight is None:
        return PartnerPolicy(prior_weight=0.0, chosen_from="no new item in the validation window: no prior",
                             validation_new_items=n_new, **common)
    return PartnerPolicy(prior_weight=float(weight), chosen_from=f"validation window from {validation_start}",
                         validation_new_items=n_new, curve=values, **common)
