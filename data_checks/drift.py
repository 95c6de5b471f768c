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
from typing import Any, Iterable

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
MAX_BASKET_SIZE = 100  # baskets with more distinct items count in the last bin


# ---------------------------------------------------------------- hashing of ids
def hash_ids(ids: Iterable[str]) -> np.ndarray:
    """Sorted unique 64-bit blake2b hashes of ``ids`` (shape ``(n_unique,)``, uint64). blake2b is a
    stable, documented hash (unlike Python's ``hash``), so profiles compare across processes."""
    uniq = pd.unique(pd.Series(list(ids) if not isinstance(ids, pd.Series) else ids, dtype="string").dropna())
    out = np.fromiter((int.from_bytes(hashlib.blake2b(str(u).encode("utf-8"), digest_size=8).digest(), "little")
                       for u in uniq), dtype=np.uint64, count=len(uniq))
    return np.unique(out)


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
