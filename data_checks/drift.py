"""Data drift between the window a model was trained on and newly landed interactions.

:func:`interaction_profile` summarises a window of canonical interactions into a small, JSON-serialisable
*reference profile* (logged as ``reference_profile.json`` with every training run, so the champion's run
carries the window the champion was trained on). The drift metrics compare a current window against that
profile; :func:`drift_report` computes them all and :func:`decide` applies the thresholds of a
:class:`DriftThresholds`.

Profile layout (version 1)::

    {"version": 1, "n_rows", "n_items", "n_users", "n_baskets", "n_anonymous_rows",
     "window_start", "window_end" (ISO timestamps or None), "n_days" (calendar days spanned, inclusive),
     "n_active_days", "rows_per_day", "baskets_per_day" (None without timestamps),
     "item_counts": {item_id: rows, ...}            # every item, most popular first
     "user_hashes": base64 of sorted unique uint64   # blake2b-64 of each user id (pseudonymised, compact)
     "basket_key": "basket_id" | "user_day" | "user",
     "basket_sizes": {"sizes": [1, 2, ...], "counts": [...]},   # distinct items per basket, capped
     "basket_size_mean"}
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
MAX_BASKET_SIZE = 100  # baskets with more distinct items count in the last bin


# ---------------------------------------------------------------- hashing of ids
def hash_ids(ids: Iterable[str]) -> np.ndarray:
    """Sorted unique 64-bit blake2b hashes of ``ids`` (shape ``(n_unique,)``, uint64). blake2b is a
    stable, documented hash (unlike Python's ``hash``), so profiles compare across processes."""
    uniq = pd.unique(pd.Series(list(ids) if not isinstance(ids, pd.Series) else ids, dtype="string").dropna())
    return np.unique(_hash_each(uniq))


def _hash_each(ids: Iterable[str]) -> np.ndarray:
    """blake2b-64 of each id, in order (shape ``(n,)``, uint64)."""
    ids = list(ids)
    return np.fromiter((int.from_bytes(hashlib.blake2b(str(u).encode("utf-8"), digest_size=8).digest(), "little")
                        for u in ids), dtype=np.uint64, count=len(ids))


def encode_hashes(hashes: np.ndarray) -> str:
    """Sorted uint64 hashes (shape ``(n,)``) as base64 of their little-endian bytes."""
    return base64.b64encode(np.asarray(hashes, dtype="<u8").tobytes()).decode("ascii")


def decode_hashes(text: str) -> np.ndarray:
    """Inverse of :func:`encode_hashes`: shape ``(n,)`` uint64."""
    return np.frombuffer(base64.b64decode(text.encode("ascii")), dtype="<u8").astype(np.uint64)


# ---------------------------------------------------------------- profile
def basket_keys(interactions: pd.DataFrame) -> tuple[pd.Series, str]:
    """One basket key per row and how it was formed: the ``basket_id`` when every row has one, else
    user and calendar day (rows with a basket id keep it), else the user alone (sources without time)."""
    basket = interactions["basket_id"].astype("string")
    if basket.notna().all():
        return basket, "basket_id"
    user = interactions["user_id"].astype("string").fillna("<anonymous>")
    ts = pd.to_datetime(interactions["timestamp"])
    if ts.notna().any():
        day = ts.dt.strftime("%Y-%m-%d").astype("string").fillna("<no time>")
        return basket.fillna("u:" + user + "@" + day), "user_day"
    return basket.fillna("u:" + user), "user"


def basket_size_counts(interactions: pd.DataFrame, cap: int = MAX_BASKET_SIZE) -> tuple[np.ndarray, str]:
    """Histogram of distinct items per basket: ``counts[s - 1]`` baskets of size ``s`` (shape ``(cap,)``;
    the last bin holds every basket of ``cap`` items or more) and the basket key used."""
    keys, how = basket_keys(interactions)
    sizes = pd.DataFrame({"b": keys.to_numpy(), "i": interactions["item_id"].to_numpy()}).groupby("b")["i"].nunique()
    counts = np.bincount(np.clip(sizes.to_numpy(dtype=np.int64), 1, cap) - 1, minlength=cap)[:cap]
    return counts.astype(np.int64), how


def interaction_profile(interactions: pd.DataFrame) -> dict[str, Any]:
    """A JSON-serialisable reference profile of a window of canonical interactions (columns ``user_id``
    (may be missing), ``item_id``, ``timestamp``, ``basket_id``, ``quantity``, ``price``; one row per
    event). See the module docstring for the layout; item ids are kept in clear (popularity needs them),
    user ids only as 64-bit hashes."""
    missing = [c for c in ("item_id",) if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack required column(s) {missing}; got {list(interactions.columns)}")
    df = interactions.copy()
    for col in ("user_id", "basket_id"):
        if col not in df.columns:
            df[col] = pd.Series(pd.NA, index=df.index, dtype="string")
    if "timestamp" not in df.columns:
        df["timestamp"] = pd.NaT
    df = df[df["item_id"].notna()]
    item_counts = df["item_id"].astype("string").value_counts(sort=False)
    item_counts = item_counts.iloc[np.lexsort((item_counts.index.to_numpy(dtype=str), -item_counts.to_numpy()))]
    users = df["user_id"].astype("string").dropna()
    ts = pd.to_datetime(df["timestamp"]).dropna()
    start = ts.min() if len(ts) else None
    end = ts.max() if len(ts) else None
    n_days = int((end.normalize() - start.normalize()).days) + 1 if start is not None else None
    sizes, how = basket_size_counts(df) if len(df) else (np.zeros(MAX_BASKET_SIZE, np.int64), "basket_id")
    n_baskets = int(sizes.sum())
    last = int(np.flatnonzero(sizes)[-1]) + 1 if n_baskets else 0
    return {
        "version": PROFILE_VERSION,
        "n_rows": int(len(df)),
        "n_items": int(len(item_counts)),
        "n_users": int(users.nunique()),
        "n_baskets": n_baskets,
        "n_anonymous_rows": int(df["user_id"].isna().sum()),
        "window_start": start.isoformat() if start is not None else None,
        "window_end": end.isoformat() if end is not None else None,
        "n_days": n_days,
        "n_active_days": int(ts.dt.normalize().nunique()) if len(ts) else None,
        "rows_per_day": len(df) / n_days if n_days else None,
        "baskets_per_day": n_baskets / n_days if n_days else None,
        "item_counts": {str(k): int(v) for k, v in item_counts.items()},
        "user_hashes": encode_hashes(hash_ids(users)),
        "basket_key": how,
        "basket_sizes": {"sizes": list(range(1, last + 1)), "counts": [int(c) for c in sizes[:last]]},
        "basket_size_mean": float(np.dot(np.arange(1, last + 1), sizes[:last]) / n_baskets) if n_baskets else None,
    }


# ---------------------------------------------------------------- metrics
def _distribution(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-d array of non-negative numbers")
    total = counts.sum()
    if total <= 0:
        raise ValueError("counts sum to zero: no distribution to compare")
    return counts / total


def js_divergence(p_counts: np.ndarray, q_counts: np.ndarray, base: float = 2.0) -> float:
    """Jensen-Shannon divergence between two count vectors over the same bins (shape ``(k,)`` each).

    JS(P, Q) = (KL(P || M) + KL(Q || M)) / 2 with M = (P + Q) / 2 (Lin 1991, IEEE Trans. Inf. Theory 37(1)).
    Symmetric, finite, 0 for identical distributions and ``log_base(2)`` for disjoint supports (1 in base 2).
    """
    p, q = _distribution(p_counts), _distribution(q_counts)
    if p.shape != q.shape:
        raise ValueError(f"count vectors differ in length: {p.shape} vs {q.shape}")
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(max(0.0, (kl(p) + kl(q)) / 2 / np.log(base)))


def psi(expected_counts: np.ndarray, actual_counts: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index sum_i (a_i - e_i) ln(a_i / e_i) over bins (shape ``(k,)`` each); shares
    below ``eps`` are floored at ``eps`` so empty bins stay finite (the usual practice; rule of thumb:
    < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant shift; Yurdakul 2018, "Statistical properties of
    the population stability index", Western Michigan University)."""
    e = np.maximum(_distribution(expected_counts), eps)
    a = np.maximum(_distribution(actual_counts), eps)
    if e.shape != a.shape:
        raise ValueError(f"count vectors differ in length: {e.shape} vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def _aligned(reference: dict[str, int], current: dict[str, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Counts of both windows over the union of their items (reference order, then new items)."""
    keys = list(reference) + [k for k in current if k not in reference]
    return (np.array([reference.get(k, 0) for k in keys], dtype=np.float64),
            np.array([current.get(k, 0) for k in keys], dtype=np.float64), keys)


def item_popularity_js(reference: dict[str, int], current: dict[str, int]) -> float:
    """JS divergence (base 2, in [0, 1]) of item popularity, over the union of both windows' items."""
    ref, cur, _ = _aligned(reference, current)
    return js_divergence(ref, cur)


def item_popularity_psi(reference: dict[str, int], current: dict[str, int], top_k: int = 50) -> float:
    """PSI of item popularity among the items the reference knows, over ``top_k + 1`` bins: the
    reference's ``top_k`` most popular items one bin each and every other reference item together.
    Current rows on new items are left out (:func:`new_item_rate` measures them; an empty reference bin
    for them would make PSI mostly ``eps``-driven). Per-item PSI over a whole catalog mostly measures
    sampling noise in the long tail; a few dozen well-filled bins keep the usual PSI thresholds meaningful.
    Returns 0.0 when no current row is on a known item."""
    top = sorted(reference, key=lambda k: (-reference[k], k))[:top_k]
    top_set = set(top)
    other_ref = sum(v for k, v in reference.items() if k not in top_set)
    other_cur = sum(v for k, v in current.items() if k in reference and k not in top_set)
    ref = np.array([reference[k] for k in top] + [other_ref], dtype=np.float64)
    cur = np.array([current.get(k, 0) for k in top] + [other_cur], dtype=np.float64)
    return psi(ref, cur) if cur.sum() > 0 else 0.0


def new_item_rate(reference: dict[str, int], current: dict[str, int]) -> float:
    """Share of current interactions (rows) on items the reference never saw: traffic the model cannot score."""
    total = sum(current.values())
    return sum(v for k, v in current.items() if k not in reference) / total if total else 0.0


def new_user_rate(reference_user_hashes: np.ndarray, current_user_ids: pd.Series) -> float:
    """Share of current identified interactions (rows with a user id) from users the reference never saw.
    ``reference_user_hashes``: sorted uint64 from :func:`hash_ids` (shape ``(n_users,)``)."""
    users = pd.Series(current_user_ids, dtype="string").dropna()
    if users.empty:
        return 0.0
    per_user = users.value_counts()
    known = np.isin(_hash_each(per_user.index), np.asarray(reference_user_hashes, dtype=np.uint64))
    return float(per_user.to_numpy()[~known].sum() / per_user.sum())


def basket_size_shift(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Wasserstein-1 distance between two basket-size histograms (``counts[s - 1]`` baskets of size
    ``s``; lengths may differ), divided by the reference mean size: 0 when the distributions agree, ``d /
    mean`` when every basket grew by ``d`` items. W1 of 1-d distributions is the area between their CDFs."""
    n = max(len(reference_counts), len(current_counts))
    ref = np.zeros(n)
    cur = np.zeros(n)
    ref[:len(reference_counts)] = reference_counts
    cur[:len(current_counts)] = current_counts
    p, q = _distribution(ref), _distribution(cur)
    mean_ref = float(np.dot(np.arange(1, n + 1), p))
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() / mean_ref)


def volume_change(reference_rows_per_day: float | None, current_rows_per_day: float | None) -> float | None:
    """Relative change in interactions per calendar day (``cur / ref - 1``; +1.0 = doubled, -0.5 =
    halved); None when either window has no timestamps."""
    if not reference_rows_per_day or current_rows_per_day is None:
        return None
    return float(current_rows_per_day / reference_rows_per_day - 1.0)


# ---------------------------------------------------------------- report and decision
def _window_summary(profile: dict[str, Any]) -> dict[str, Any]:
    keys = ("window_start", "window_end", "n_rows", "n_items", "n_users", "n_baskets", "rows_per_day",
            "basket_size_mean")
    return {k: profile.get(k) for k in keys}


def drift_report(reference_profile: dict[str, Any], current_interactions: pd.DataFrame,
                 psi_top_k: int = 50) -> dict[str, Any]:
    """Every drift metric of ``current_interactions`` (canonical rows) against ``reference_profile``
    (from :func:`interaction_profile`). Metrics are None when a window is empty or lacks what they need."""
    if reference_profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"reference profile version {reference_profile.get('version')!r} is not {PROFILE_VERSION}")
    cur = interaction_profile(current_interactions)
    ref_items, cur_items = reference_profile["item_counts"], cur["item_counts"]
    both = bool(ref_items) and bool(cur_items)
    ref_sizes = np.asarray(reference_profile["basket_sizes"]["counts"], dtype=np.float64)
    cur_sizes = np.asarray(cur["basket_sizes"]["counts"], dtype=np.float64)
    users = current_interactions["user_id"] if "user_id" in current_interactions else pd.Series(dtype="string")
    new_items = [k for k in cur_items if k not in ref_items]
    metrics = {
        "item_js": item_popularity_js(ref_items, cur_items) if both else None,
        "item_psi": item_popularity_psi(ref_items, cur_items, psi_top_k) if both else None,
        "new_item_rate": new_item_rate(ref_items, cur_items) if cur_items else None,
        "new_user_rate": new_user_rate(decode_hashes(reference_profile["user_hashes"]), users)
        if cur["n_users"] else None,
        "basket_size_shift": basket_size_shift(ref_sizes, cur_sizes) if ref_sizes.sum() and cur_sizes.sum() else None,
        "volume_change": volume_change(reference_profile.get("rows_per_day"), cur["rows_per_day"]),
    }
    return {
        "metrics": metrics,
        "reference": _window_summary(reference_profile),
        "current": _window_summary(cur),
        "n_new_items": len(new_items),
        "new_items_top": new_items[:10],  # most popular first
    }


@dataclass(frozen=True)
class DriftThresholds:
    """Retrain when any metric passes its threshold (``volume_change`` compares its absolute value); None
    switches a metric off. ``min_rows``: a smaller current window is not judged (it waits for more data).
    Defaults: PSI 0.10, the customary edge of a "moderate" shift; the others chosen on the synthetic shop and the
    Online Retail replay (see README, "Retraining on drift"). Item JS has a sampling floor: two samples of
    ``n`` rows each from the same popularity over ``K`` items give about ``(K - 1) / (4 n ln 2)`` bits (the
    G-test's chi-squared(K - 1) approximation, G = 4 n JS in nats), about 0.05-0.08 for two halves of an
    Online Retail month, so ``item_js`` must sit above that for the data's window sizes."""

    item_js: Optional[float] = 0.15
    item_psi: Optional[float] = 0.10
    new_item_rate: Optional[float] = 0.05
    new_user_rate: Optional[float] = None  # reported; new customers are business as usual in retail
    basket_size_shift: Optional[float] = 0.20
    volume_change: Optional[float] = 0.50
    min_rows: int = 100

    def limits(self) -> dict[str, Optional[float]]:
        return {m: getattr(self, m) for m in METRICS}


METRICS = ("item_js", "item_psi", "new_item_rate", "new_user_rate", "basket_size_shift", "volume_change")


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    value: Optional[float]
    threshold: Optional[float]
    exceeded: bool

    def describe(self) -> str:
        if self.threshold is None:
            return f"{self.metric} {_fmt(self.value)} (no threshold)"
        if self.value is None:
            return f"{self.metric} n/a (threshold {_fmt(self.threshold)})"
        shown = f"|{_fmt(self.value)}|" if self.metric == "volume_change" else _fmt(self.value)
        return f"{self.metric} {shown} {'>' if self.exceeded else '<='} {_fmt(self.threshold)}"


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4g}"


@dataclass(frozen=True)
class DriftDecision:
    """``status``: ``fire`` (some metric passed its threshold), ``below_thresholds`` or ``insufficient_data``."""

    status: str
    checks: tuple[MetricCheck, ...]
    reason: str
    n_rows: int

    @property
    def fire(self) -> bool:
        return self.status == "fire"

    @property
    def exceeded(self) -> list[str]:
        return [c.metric for c in self.checks if c.exceeded]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "fire": self.fire, "reason": self.reason, "n_rows": self.n_rows,
                "exceeded": self.exceeded, "checks": [asdict(c) for c in self.checks]}


def decide(report: dict[str, Any], thresholds: DriftThresholds) -> DriftDecision:
    """Apply ``thresholds`` to a :func:`drift_report`: which metric passed which threshold, or that all
    were at or below theirs."""
    n_rows = int(report["current"]["n_rows"] or 0)
    checks = []
    for metric, limit in thresholds.limits().items():
        value = report["metrics"].get(metric)
        over = limit is not None and value is not None and (abs(value) if metric == "volume_change" else value) > limit
        checks.append(MetricCheck(metric, value, limit, over))
    if n_rows < thresholds.min_rows:
        return DriftDecision("insufficient_data", tuple(checks),
                             f"only {n_rows} rows in the current window (min_rows {thresholds.min_rows}); "
                             "waiting for more data", n_rows)
    fired = [c for c in checks if c.exceeded]
    if fired:
        return DriftDecision("fire", tuple(checks), "drift: " + "; ".join(c.describe() for c in fired), n_rows)
    judged = [c for c in checks if c.threshold is not None]
    return DriftDecision("below_thresholds", tuple(checks),
                         "no drift: " + "; ".join(c.describe() for c in judged), n_rows)
