"""Train/validation/test splits of the canonical interactions table.

Every strategy carves the validation split out of train, never out of test:
``validation`` is held out of ``fit``; ``train`` = ``fit`` + ``validation`` is what final models see.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from training.data import basket_keys

Strategy = Literal["fixed", "temporal", "leave_last_basket", "customer_holdout", "basket_completion"]
BASKET_USER_PREFIX = "basket:"  # basket completion: a held-out basket stands in for a customer under this id


@dataclass
class SplitConfig:
    strategy: Strategy = "temporal"
    cutoff: str | None = None  # temporal: a date; default: the ``test_fraction`` quantile of time
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 42
    hidden_fraction: float = 0.5  # basket completion: share of a held-out basket's items hidden (>= 1, < all)


@dataclass
class Split:
    """``train``: everything models may learn from (anonymous rows included, for baskets).
    ``fit`` / ``validation``: ``train`` cut in two for tuning. ``test``: held out, touched once.
    Test and validation rows only hold users known in their training part, and (user, item)
    pairs not already seen there."""

    strategy: str
    train: pd.DataFrame
    fit: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp | None = None
    after_cutoff: pd.DataFrame | None = None  # temporal: every row at or after the cut (cold-start needs them)
    protocol: str = ""  # one sentence: what is held out and what is given (shown in the UI)

    def summary(self) -> dict:
        def users(df: pd.DataFrame) -> int:
            return int(df["user_id"].nunique())
        return {"strategy": self.strategy, "protocol": self.protocol,
                "cutoff": str(self.cutoff) if self.cutoff is not None else None,
                **{f"{n}_rows": int(len(getattr(self, n))) for n in ("train", "fit", "validation", "test")},
                **{f"{n}_users": users(getattr(self, n)) for n in ("train", "validation", "test")}}


def _holdout_target(train: pd.DataFrame, target: pd.DataFrame) -> pd.DataFrame:
    """Keep target rows whose user is known in ``train`` and whose (user, item) pair is new there."""
    t = target[target["user_id"].notna() & target["user_id"].isin(train["user_id"].dropna())]
    seen = pd.MultiIndex.from_frame(train.loc[train["user_id"].notna(), ["user_id", "item_id"]].astype(str))
    pairs = pd.MultiIndex.from_frame(t[["user_id", "item_id"]].astype(str))
    t = t[~pairs.isin(seen)]
    return t.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)


def _temporal(df: pd.DataFrame, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    before = df["timestamp"] < cutoff
    train = df[before].reset_index(drop=True)
    return train, _holdout_target(train, df[~before])


def _random_holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, hold out ``fraction`` of their rows at random (for sources without time)."""
    rng = np.random.default_rng(seed)
    u = df["user_id"].astype(str).to_numpy()
    r = rng.random(len(df))
    # rank of each row inside its user, by the random key
    order = np.lexsort((r, u))
    rank = np.empty(len(df), np.int64)
    _, start, counts = np.unique(u[order], return_index=True, return_counts=True)
    rank[order] = np.arange(len(df)) - np.repeat(start, counts)
    size = np.repeat(counts, counts)[np.argsort(order)]
    # every user with two or more rows contributes at least one validation row, so the validation
    # users look like the test users (flooring would leave out everyone with fewer than 1/fraction rows)
    hold = rank < np.where(size >= 2, np.maximum(np.round(size * fraction), 1), 0)
    fit = df[~hold].reset_index(drop=True)
    return fit, _holdout_target(fit, df[hold])


def _last_basket(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user with two or more baskets, the last basket (by time) is held out."""
    known = df["user_id"].notna()
    d = df.assign(_basket=basket_keys(df))
    last_time = d[known].groupby("_basket")["timestamp"].min()
    user_of = d[known].groupby("_basket")["user_id"].first()
    b = pd.DataFrame({"t": last_time, "u": user_of}).reset_index().sort_values(["u", "t", "_basket"])
    n = b.groupby("u")["_basket"].transform("size")
    last = b[(n >= 2) & ~b.duplicated("u", keep="last")]["_basket"]
    is_last = d["_basket"].isin(last) & known
    train = df[~is_last].reset_index(drop=True)
    return train, _holdout_target(train, df[is_last])


def _basket_completion(df: pd.DataFrame, fraction: float, hidden: float, seed: int,
                       exclude: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``fraction`` of the baskets holding two or more distinct items (seeded; baskets whose key is in
    ``exclude`` are never drawn) and, in each, hide ``hidden`` of its distinct items (at least one, never all).
    Returns (rows kept: every other row plus the held-out baskets' visible items, the hidden rows).
    ``df``'s ``user_id`` must already be the basket's stand-in id (see :func:`baskets_as_users`)."""
    rng = np.random.default_rng(seed)
    pair = df[["user_id", "item_id"]].astype(str)
    first = ~pair.duplicated()
    distinct = pair[first]
    sizes = distinct.groupby("user_id").size()
    eligible = sizes[sizes >= 2].index.to_numpy()
    if exclude is not None and len(exclude):
        eligible = eligible[~pd.Index(eligible).isin(exclude)]  # hash lookup: np.isin on ~10^5 strings took minutes
    n_out = int(round(len(eligible) * fraction))
    chosen = eligible[rng.permutation(len(eligible))[:n_out]] if n_out else eligible[:0]
    d = distinct[distinct["user_id"].isin(chosen)]
    # a random rank of each distinct item inside its basket; the first n_hide ranks are hidden
    order = np.lexsort((rng.random(len(d)), d["user_id"].to_numpy()))
    u = d["user_id"].to_numpy()[order]
    _, start, counts = np.unique(u, return_index=True, return_counts=True)
    rank = np.arange(len(d)) - np.repeat(start, counts)
    n_hide = np.clip(np.round(counts * hidden), 1, counts - 1).astype(np.int64)
    hide = rank < np.repeat(n_hide, counts)
    hidden_pairs = pd.MultiIndex.from_frame(d.iloc[order[hide]])
    is_hidden = pd.MultiIndex.from_frame(pair).isin(hidden_pairs)
    target = df[is_hidden].drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    return df[~is_hidden].reset_index(drop=True), target


def baskets_as_users(df: pd.DataFrame) -> pd.DataFrame:
    """Every row's ``user_id`` replaced by its basket's stand-in id (``basket:<key>``), so that families that
    need users treat each basket as one (a customer's id, where there is one, is not used)."""
    return df.assign(user_id=(BASKET_USER_PREFIX + basket_keys(df).astype(str)).astype("string"))


def choose_strategy(df: pd.DataFrame) -> tuple[str, str]:
    """The split for data of this shape, and why: the source's own split when it ships one; a temporal cut
    where every row has a time; a per-customer holdout where there are customers but no time; basket
    completion where there are only baskets."""
    if "fixed_split" in df.columns and df["fixed_split"].notna().any():
        return "fixed", "the source ships its own train/test split"
    if len(df) and df["timestamp"].notna().all():
        return "temporal", "every row has a time: a global cut, the future held out"
    if df["user_id"].notna().any():
        return "customer_holdout", "customers but no time on every row: a seeded share of each customer's items"
    return "basket_completion", "no customers and no time: held-out baskets with part of their items hidden"


def _protocol(cfg: SplitConfig) -> str:
    if cfg.strategy == "basket_completion":
        return (f"basket completion: {cfg.test_fraction:.0%} of the baskets with two or more items held out "
                f"(seed {cfg.seed}); in each, {cfg.hidden_fraction:.0%} of its items hidden (at least one, never "
                f"all) and ranked against the catalog with the rest given as the history; every basket stands in "
                f"for a customer; validation is carved the same way from the other baskets")
    if cfg.strategy == "customer_holdout":
        return (f"per-customer holdout: {cfg.test_fraction:.0%} of each customer's items held out at random "
                f"(seed {cfg.seed}, at least one for customers with two or more); validation carved the same way")
    if cfg.strategy == "temporal":
        return "temporal: rows from the cut on are held out; test users are those known before it"
    if cfg.strategy == "leave_last_basket":
        return "leave last basket: each customer's last basket (by time) is held out"
    return "fixed: the source's own train/test split"


def make_split(df: pd.DataFrame, cfg: SplitConfig) -> Split:
    """Split the validated interactions according to ``cfg``."""
    cutoff = None
    if cfg.strategy == "basket_completion":
        df = baskets_as_users(df)
        train, test = _basket_completion(df, cfg.test_fraction, cfg.hidden_fraction, cfg.seed)
        fit, validation = _basket_completion(train, cfg.validation_fraction / max(1.0 - cfg.test_fraction, 1e-9),
                                             cfg.hidden_fraction, cfg.seed + 1,
                                             exclude=test["user_id"].astype(str).unique())
        return Split(cfg.strategy, train, fit, validation, test, protocol=_protocol(cfg))
    if cfg.strategy == "customer_holdout":
        if df["user_id"].isna().all():
            raise ValueError("strategy 'customer_holdout' needs customer ids; this source has none: use "
                             "'basket_completion' (or 'auto')")
        train, test = _random_holdout(df[df["user_id"].notna()], cfg.test_fraction, cfg.seed)
        anonymous = df[df["user_id"].isna()]  # anonymous baskets: learned from (rules), never held out
        train = pd.concat([train, anonymous], ignore_index=True)
        fit, validation = _random_holdout(train[train["user_id"].notna()], cfg.validation_fraction, cfg.seed + 1)
        fit = pd.concat([fit, anonymous], ignore_index=True)
        return Split(cfg.strategy, train, fit, validation, test, protocol=_protocol(cfg))
    if cfg.strategy == "fixed":
        if "fixed_split" not in df.columns or df["fixed_split"].isna().all():
            raise ValueError("strategy 'fixed' needs a source that ships its own split (column fixed_split)")
        train = df[df["fixed_split"] == "train"].reset_index(drop=True)
        test = _holdout_target(train, df[df["fixed_split"] == "test"])
    elif cfg.strategy == "temporal":
        if df["timestamp"].isna().all():
            raise ValueError("strategy 'temporal' needs timestamps; this source has none: use 'basket_completion' "
                         "or 'customer_holdout' (or 'auto', which chooses by the data's shape)")
        cutoff = pd.Timestamp(cfg.cutoff) if cfg.cutoff else df["timestamp"].quantile(1 - cfg.test_fraction)
        train, test = _temporal(df, cutoff)
    elif cfg.strategy == "leave_last_basket":
        train, test = _last_basket(df)
    else:
        raise ValueError(f"unknown split strategy {cfg.strategy!r}")

    if cfg.strategy == "temporal":
        inner = train["timestamp"].quantile(1 - cfg.validation_fraction)
        fit, validation = _temporal(train, inner)
    elif cfg.strategy == "leave_last_basket":
        fit, validation = _last_basket(train)
    elif train["timestamp"].notna().all():
        fit, validation = _temporal(train, train["timestamp"].quantile(1 - cfg.validation_fraction))
    else:
        fit, validation = _random_holdout(train[train["user_id"].notna()], cfg.validation_fraction, cfg.seed)
    after = df[df["timestamp"] >= cutoff].reset_index(drop=True) if cutoff is not None else None
    return Split(cfg.strategy, train, fit, validation, test, cutoff, after, protocol=_protocol(cfg))
