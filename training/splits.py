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

Strategy = Literal["fixed", "temporal", "leave_last_basket"]


@dataclass
class SplitConfig:
    strategy: Strategy = "temporal"
    cutoff: str | None = None  # temporal: a date; default: the ``test_fraction`` quantile of time
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 42


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

    def summary(self) -> dict:
        def users(df: pd.DataFrame) -> int:
            return int(df["user_id"].nunique())
        return {"strategy": self.strategy, "cutoff": str(self.cutoff) if self.cutoff is not None else None,
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


def make_split(df: pd.DataFrame, cfg: SplitConfig) -> Split:
    """Split the validated interactions according to ``cfg``."""
    cutoff = None
    if cfg.strategy == "fixed":
        if "fixed_split" not in df.columns or df["fixed_split"].isna().all():
            raise ValueError("strategy 'fixed' needs a source that ships its own split (column fixed_split)")
        train = df[df["fixed_split"] == "train"].reset_index(drop=True)
        test = _holdout_target(train, df[df["fixed_split"] == "test"])
    elif cfg.strategy == "temporal":
        if df["timestamp"].isna().all():
            raise ValueError("strategy 'temporal' needs timestamps; this source has none")
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
    return Split(cfg.strategy, train, fit, validation, test, cutoff, after)
