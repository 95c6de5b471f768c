"""Cleaning rules: every input row ends up in the clean table or in quarantine with a reason.

Rules are applied in the order of :data:`REASONS`; a row gets the first reason that applies.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data_checks.readers import RawTables
from data_checks.schema import (
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    OPTIONAL_INTERACTION_COLUMNS,
    OPTIONAL_ITEM_COLUMNS,
    QUARANTINE_COLUMNS,
    UNPARSED_COLUMNS,
    conform,
    empty_frame,
)

REASONS: dict[str, str] = {
    # interactions
    "missing_item_id": "no item id",
    "missing_user_and_basket": "neither a user id nor a basket id: the row cannot be attributed",
    "id_too_long": "a user, item or basket id longer than the configured maximum (a broken or shifted field)",
    "unparseable_quantity": "quantity is not a number",
    "unparseable_price": "price is not a number",
    "unparseable_timestamp": "timestamp cannot be parsed",
    "cancellation": "cancelled order (invoice number starts with the cancellation prefix)",
    "non_positive_quantity": "quantity is zero or negative (a return or stock adjustment)",
    "quantity_out_of_range": "quantity is not finite or above the configured maximum",
    "non_positive_price": "unit price is zero or negative (free sample, adjustment or bad debt)",
    "price_out_of_range": "unit price is not finite or above the configured maximum",
    "non_product_code": "a fee, postage, discount or manual line, not a product",
    "timestamp_out_of_range": "timestamp before the configured minimum or in the future",
    "duplicate_row": "duplicate of an earlier row (same user, item, basket, time, quantity and price)",
    "item_not_in_catalog": "the item is not in the catalog",
    # items
    "duplicate_item_id": "item id already listed earlier in the catalog",
}

# Online Retail's non-product stock codes (postage, fees, manual lines, discounts, samples).
ONLINE_RETAIL_NON_PRODUCT_CODES = ["POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE",
                                   "CRUK", "PADS", "ADJUST", "ADJUST2", "TEST001", "TEST002"]


@dataclass
class CleaningRules:
    """Thresholds and source-specific rules. ``non_product_pattern`` is a regex on item ids
    (Online Retail's gift vouchers are ``gift_0001_10`` and so on)."""

    min_timestamp: str = "1990-01-01"
    max_future_days: float = 1.0
    max_quantity: float = 1e5
    max_price: float = 1e5
    cancellation_prefix: str | None = None
    non_product_codes: list[str] = field(default_factory=list)
    non_product_pattern: str | None = None
    require_timestamp: bool = False
    max_id_length: int = 256

    @classmethod
    def for_source(cls, source: str) -> "CleaningRules":
        if source == "online_retail":
            return cls(cancellation_prefix="C", non_product_codes=list(ONLINE_RETAIL_NON_PRODUCT_CODES),
                       non_product_pattern=r"^gift_", require_timestamp=True)
        return cls()


@dataclass
class CleanResult:
    interactions: pd.DataFrame
    items: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict


def _quarantine_rows(df: pd.DataFrame, reason: pd.Series, detail: pd.Series, table: str) -> pd.DataFrame:
    bad = df[reason.notna()]
    if bad.empty:
        return empty_frame(QUARANTINE_COLUMNS)
    records = bad.drop(columns=[c for c in ("source_row", "source_file") if c in bad.columns]).dropna(axis=1, how="all")
    if records.shape[1] == 0:  # every field missing
        json_lines = ["{}"] * len(bad)
    else:  # split on "\n" only: str.splitlines would also split inside values at U+2028, U+0085, ...
        json_lines = records.to_json(orient="records", lines=True, date_format="iso").rstrip("\n").split("\n")
    return conform(pd.DataFrame({
        "table": table,
        "source_file": bad["source_file"].astype("string") if "source_file" in bad else pd.NA,
        "source_row": bad["source_row"].astype("int64"),
        "reason": reason[reason.notna()].astype("string"),
        "detail": detail[reason.notna()].astype("string"),
        "record": json_lines,
    }), QUARANTINE_COLUMNS, {})


class _Flagger:
    """Assigns the first applicable reason to each row."""

    def __init__(self, index: pd.Index):
        self.reason = pd.Series(pd.NA, index=index, dtype="string")
        self.detail = pd.Series(pd.NA, index=index, dtype="string")

    def flag(self, mask: pd.Series | np.ndarray, reason: str, detail: pd.Series | str | None = None) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=self.reason.index) & self.reason.isna()
        self.reason[mask] = reason
        if isinstance(detail, pd.Series):
            self.detail[mask] = detail[mask].astype("string")
        else:
            self.detail[mask] = detail or REASONS[reason]


def clean(raw: RawTables, rules: CleaningRules | None = None, now: pd.Timestamp | None = None) -> CleanResult:
    """Split raw canonical tables into clean tables and quarantine.

    Raises ``AssertionError`` if any row were lost (rows in != clean + quarantined).
    """
    rules = rules or CleaningRules.for_source(raw.source)
    now = now or pd.Timestamp.now(tz="UTC").tz_localize(None)
    inter = raw.interactions.reset_index(drop=True)
    f = _Flagger(inter.index)

    f.flag(inter["item_id"].isna(), "missing_item_id")
    f.flag(inter["user_id"].isna() & inter["basket_id"].isna(), "missing_user_and_basket")
    id_length = pd.concat([inter[c].str.len().astype("float64") for c in ("user_id", "item_id", "basket_id")],
                          axis=1).max(axis=1)
    f.flag((id_length > rules.max_id_length).fillna(False), "id_too_long",
           "an id has " + id_length.fillna(0).astype("int64").astype(str) + f" characters (max {rules.max_id_length})")
    if "unparsed_timestamp" in inter:
        beyond = _beyond_timestamp_range(inter["unparsed_timestamp"])
        f.flag(beyond, "timestamp_out_of_range",
               "timestamp " + inter["unparsed_timestamp"].astype(str).str.slice(0, 40).map(repr)
               + " is outside the representable range (years 1678-2261)")
    for col in ("quantity", "price", "timestamp"):
        if f"unparsed_{col}" in inter:
            text = inter[f"unparsed_{col}"]
            f.flag(text.notna().to_numpy(), f"unparseable_{col}",
                   "could not parse " + text.astype(str).str.slice(0, 80).map(repr))
    if rules.require_timestamp:
        f.flag(inter["timestamp"].isna(), "unparseable_timestamp", "timestamp is missing")
    if rules.cancellation_prefix:
        f.flag(inter["basket_id"].str.startswith(rules.cancellation_prefix).fillna(False).to_numpy(), "cancellation")
    q = inter["quantity"]
    f.flag((q <= 0).fillna(False), "non_positive_quantity")
    f.flag(q.isna(), "quantity_out_of_range", "quantity is missing")
    f.flag(~np.isfinite(q.fillna(0)) | (q > rules.max_quantity), "quantity_out_of_range")
    p = inter["price"]
    f.flag((p <= 0).fillna(False), "non_positive_price")
    f.flag((~np.isfinite(p) & p.notna()) | (p > rules.max_price).fillna(False), "price_out_of_range")
    non_product = inter["item_id"].isin(rules.non_product_codes).fillna(False)
    if rules.non_product_pattern:
        non_product |= inter["item_id"].str.contains(rules.non_product_pattern, regex=True).fillna(False)
    f.flag(non_product, "non_product_code")
    ts = inter["timestamp"]
    too_early = ts < pd.Timestamp(rules.min_timestamp)
    too_late = ts > now + pd.Timedelta(days=rules.max_future_days)
    f.flag((too_early | too_late).fillna(False), "timestamp_out_of_range")
    # Same purchase line twice: identical on every canonical field (the free-text title is ignored:
    # Online Retail repeats some lines with a second description of the same stock code).
    content = [c for c in inter.columns if c not in ("source_row", "source_file", "title", *UNPARSED_COLUMNS)]
    f.flag(inter.duplicated(subset=content, keep="first"), "duplicate_row")

    # Catalog: given by the source, or derived from the clean rows.
    items_raw = raw.items.reset_index(drop=True)
    item_quarantine = empty_frame(QUARANTINE_COLUMNS)
    if len(items_raw):
        fi = _Flagger(items_raw.index)
        fi.flag(items_raw["item_id"].isna(), "missing_item_id")
        fi.flag(items_raw["item_id"].duplicated(keep="first"), "duplicate_item_id")
        item_quarantine = _quarantine_rows(items_raw, fi.reason, fi.detail, "items")
        items = items_raw[fi.reason.isna()]
        f.flag(~inter["item_id"].isin(items["item_id"]).fillna(False), "item_not_in_catalog")
    else:
        items = _derive_catalog(inter[f.reason.isna()])

    quarantine = pd.concat([_quarantine_rows(inter, f.reason, f.detail, "interactions"), item_quarantine],
                           ignore_index=True)
    clean_inter = inter[f.reason.isna()].drop(columns=["title", *UNPARSED_COLUMNS], errors="ignore")
    clean_inter = conform(clean_inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS)
    items = conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS)
    n_q_inter = int(f.reason.notna().sum())
    assert len(clean_inter) + n_q_inter == len(inter), "interaction rows lost in cleaning"
    assert len(items) + len(item_quarantine) == len(items_raw) or not len(items_raw), "catalog rows lost"
    by_reason = quarantine.groupby(["table", "reason"]).size()
    summary = {
        "source": raw.source,
        "interactions_in": int(len(inter)),
        "interactions_clean": int(len(clean_inter)),
        "interactions_quarantined": n_q_inter,
        "interactions_quarantine_rate": n_q_inter / max(len(inter), 1),
        "items_in": int(len(items_raw)) if len(items_raw) else None,
        "items_clean": int(len(items)),
        "items_quarantined": int(len(item_quarantine)),
        "anonymous_rows": int(clean_inter["user_id"].isna().sum()),
        "items_with_several_titles": int((items["n_titles"] > 1).sum()) if "n_titles" in items else 0,
        "reasons": {f"{t}:{r}": int(n) for (t, r), n in by_reason.items()},
    }
    return CleanResult(clean_inter, items, quarantine, summary)


def _beyond_timestamp_range(text: pd.Series) -> pd.Series:
    """True where an unparsed timestamp is a real date outside pandas' nanosecond range (e.g. year
    3000 or 1066): out of range rather than unparseable. Only the (few) unparsed values are tried."""
    from dateutil import parser

    def beyond(value: object) -> bool:
        if not isinstance(value, str) or not any(ch.isdigit() for ch in value):
            return False
        try:
            year = parser.parse(value).year
        except (ValueError, OverflowError, TypeError):
            return False
        return not (pd.Timestamp.min.year < year < pd.Timestamp.max.year)

    present = text.dropna()
    out = np.zeros(len(text), dtype=bool)
    out[text.index.get_indexer(present.index)] = [beyond(v) for v in present]
    return pd.Series(out, index=text.index)


def _derive_catalog(rows: pd.DataFrame) -> pd.DataFrame:
    """One catalog row per item from its transaction rows: the most used title (ties: the latest),
    the number of distinct titles, and the median price."""
    if "title" not in rows.columns:
        rows = rows.assign(title=pd.NA)
    g = rows.assign(_t=rows["timestamp"]).dropna(subset=["title"])
    counts = (g.groupby(["item_id", "title"], observed=True)
              .agg(n=("title", "size"), last=("_t", "max")).reset_index()
              .sort_values(["item_id", "n", "last"], ascending=[True, False, False]))
    best = counts.drop_duplicates("item_id").set_index("item_id")["title"]
    n_titles = counts.groupby("item_id").size()
    ids = pd.Index(rows["item_id"].dropna().unique(), name="item_id").sort_values()
    price = rows.groupby("item_id")["price"].median()
    return pd.DataFrame({
        "item_id": ids.astype("string"),
        "title": best.reindex(ids).astype("string").values,
        "category": pd.array([pd.NA] * len(ids), dtype="string"),
        "brand": pd.array([pd.NA] * len(ids), dtype="string"),
        "price": price.reindex(ids).astype("float64").values,
        "n_titles": n_titles.reindex(ids).fillna(0).astype("int64").values,
    })
