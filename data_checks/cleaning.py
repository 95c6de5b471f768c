"""Cleaning rules: every input row ends up in the clean table or in quarantine with a reason.

Each rule is a Great Expectations expectation run on the rows as read (``data_checks.expectations``); a row
failing one is quarantined with that rule's reason and a detail naming the expectation. Rules are applied in the
order of :data:`REASONS`; a row gets the first reason that applies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

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

if TYPE_CHECKING:
    from data_checks.expectations import ExpectationResult, GxSession

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
    """``expectations``: the row-level expectations' results (``data_checks.expectations.ExpectationResult``)."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict
    expectations: list = field(default_factory=list)


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


# GX walks an expectation's value set through pydantic each time it reads its configuration (many times a run):
# minutes at 10^6 catalog ids. Above this many, "item in the catalog" is decided in pandas (a RowRule's ``pandas``).
MAX_GX_VALUE_SET = 100_000

# columns holding a list per row (``schema.OPTIONAL_ITEM_COLUMNS``): kept in the tables, not given to GX (see _decide)
LIST_COLUMNS = ("category_path",)

# A row's detail: fixed text, or text computed for the flagged rows only (given their boolean mask).
Detail = Union[str, Callable[[np.ndarray], pd.Series], None]


class _Flagger:
    """Assigns the first applicable reason to each row."""

    def __init__(self, index: pd.Index):
        self.reason = pd.Series(pd.NA, index=index, dtype="string")
        self.detail = pd.Series(pd.NA, index=index, dtype="string")

    def flag(self, mask: pd.Series | np.ndarray, reason: str, detail: Detail = None, by: str = "") -> None:
        """``by``: what decided it (the expectation), appended to each row's detail."""
        mask = pd.Series(np.asarray(mask, dtype=bool), index=self.reason.index) & self.reason.isna()
        if not mask.any():
            return
        self.reason[mask] = reason
        if callable(detail):
            text = detail(mask.to_numpy()).astype("string")
        else:
            text = pd.Series(detail or REASONS[reason], index=self.reason.index[mask], dtype="string")
        self.detail[mask] = (text + f" [{by}]") if by else text


MAX_LABEL = 120  # characters of an expectation's description quoted in a row's detail


@dataclass
class RowRule:
    """One way a row earns ``reason``.

    ``expectation``: a Great Expectations expectation run on the rows as read; its unexpected rows get the
    reason. ``keep_first_of``: GX marks *every* copy of a repeated value (``expect_..._to_be_unique``); which copy
    stays (the first, in file order) is decided in pandas among the rows GX marked.
    ``pandas``: for the one rule GX cannot express (a date beyond pandas' representable range, read from the
    unparsed text with ``dateutil``), a boolean mask computed in pandas, said so in the row's detail."""

    reason: str
    expectation: Any = None
    detail: Detail = None
    keep_first_of: list[str] | None = None
    pandas: Callable[[], np.ndarray] | None = None
    pandas_name: str = ""


def _decide(frame: pd.DataFrame, table: str, suite: str, rules: list[RowRule], session: "GxSession",
            flagger: _Flagger) -> list["ExpectationResult"]:
    """Run the rules' expectations as one row-level suite on ``frame`` (as read, RangeIndex), then give each
    row the first reason, in ``rules`` order, whose expectation it fails. The order of reasons is ours (GX
    reports each expectation on its own); it is applied here, in pandas."""
    gx_rules = [r for r in rules if r.expectation is not None]
    # GX fingerprints each batch by hashing it, and pickles the whole frame when a column holds lists (a catalog's
    # category paths: 40 s a pass at 10^6 items); no rule reads them, so GX does not get them
    checked = frame.drop(columns=[c for c in LIST_COLUMNS if c in frame.columns])
    outcomes = session.run(suite, table, checked, [r.expectation for r in gx_rules], level="row",
                           reasons=[r.reason for r in gx_rules]) if len(frame) else []
    found = {id(r): o for r, o in zip(gx_rules, outcomes)}
    for rule in rules:
        mask = np.zeros(len(frame), dtype=bool)
        if rule.expectation is None:
            mask = np.asarray(rule.pandas(), dtype=bool) if len(frame) else mask
            by = f"rule {rule.pandas_name} (pandas, not a GX expectation)"
        elif id(rule) in found:
            result, index = found[id(rule)]
            mask[index] = True
            if rule.keep_first_of and mask.any():
                marked = frame.loc[mask, rule.keep_first_of]
                later = marked.index[marked.duplicated(keep="first").to_numpy()]
                mask = np.zeros(len(frame), dtype=bool)
                mask[later] = True
            label = result.label()
            by = "expectation " + (label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 4] + " ...)")
        else:
            continue
        flagger.flag(mask, rule.reason, rule.detail, by)
    return [result for result, _ in outcomes]


def _item_rules() -> list[RowRule]:
    import great_expectations.expectations as gxe

    return [RowRule("missing_item_id", gxe.ExpectColumnValuesToNotBeNull(column="item_id")),
            RowRule("duplicate_item_id", gxe.ExpectColumnValuesToBeUnique(column="item_id"), keep_first_of=["item_id"])]


def _text(prefix: str, values: pd.Series, width: int, suffix: str = "") -> Callable[[np.ndarray], pd.Series]:
    """Detail quoting each flagged row's value (a bounded slice of it)."""
    return lambda mask: prefix + values[mask].astype(str).str.slice(0, width).map(repr) + suffix


def _interaction_rules(inter: pd.DataFrame, rules: CleaningRules, now: pd.Timestamp,
                       catalog_ids: pd.Series | None) -> list[RowRule]:
    """The cleaning rules, in the order of :data:`REASONS` (a row gets the first that applies), each as the
    expectation it is on the rows as read."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    def values(col: str) -> bool:
        """Whether ``col`` has a value: an expectation that skips missing values (all but the not-null ones)
        is not run on a column without any, where it could not fail (GX's per-expectation cost is ~10 ms)."""
        return col in inter and bool(inter[col].notna().any())

    out = [RowRule("missing_item_id", gxe.ExpectColumnValuesToNotBeNull(column="item_id")),
           RowRule("missing_user_and_basket",
                   gxe.ExpectColumnValuesToNotBeNull(column="user_id", row_condition=Column("basket_id").is_null()))]
    for col in filter(values, ("user_id", "item_id", "basket_id")):
        lengths = inter[col].str.len()
        out.append(RowRule("id_too_long", gxe.ExpectColumnValueLengthsToBeBetween(column=col,
                                                                                  max_value=rules.max_id_length),
                           lambda mask, n=lengths, c=col: f"{c} has " + n[mask].astype("int64").astype(str)
                           + f" characters (max {rules.max_id_length})"))
    if "unparsed_timestamp" in inter:
        text = inter["unparsed_timestamp"]
        out.append(RowRule("timestamp_out_of_range", detail=_text("timestamp ", text, 40,
                                                                  " is outside the representable range (years 1678-2261)"),
                           pandas=lambda: _beyond_timestamp_range(text).to_numpy(),
                           pandas_name="date beyond pandas' timestamp range"))
    for col in ("quantity", "price", "timestamp"):
        if values(f"unparsed_{col}"):
            out.append(RowRule(f"unparseable_{col}", gxe.ExpectColumnValuesToBeNull(column=f"unparsed_{col}"),
                               _text("could not parse ", inter[f"unparsed_{col}"], 80)))
    if rules.require_timestamp:
        out.append(RowRule("unparseable_timestamp", gxe.ExpectColumnValuesToNotBeNull(column="timestamp"),
                           "timestamp is missing"))
    if rules.cancellation_prefix and values("basket_id"):
        out.append(RowRule("cancellation", gxe.ExpectColumnValuesToNotMatchRegex(
            column="basket_id", regex="^" + re.escape(rules.cancellation_prefix))))
    if values("quantity"):
        out.append(RowRule("non_positive_quantity", gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0,
                                                                                      strict_min=True)))
    out.append(RowRule("quantity_out_of_range", gxe.ExpectColumnValuesToNotBeNull(column="quantity"),
                       "quantity is missing"))
    if values("quantity"):  # +inf is above any maximum; NaN was caught as missing just above
        out.append(RowRule("quantity_out_of_range", gxe.ExpectColumnValuesToBeBetween(column="quantity",
                                                                                      max_value=rules.max_quantity)))
    if values("price"):
        out += [RowRule("non_positive_price", gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0,
                                                                                strict_min=True)),
                RowRule("price_out_of_range", gxe.ExpectColumnValuesToBeBetween(column="price",
                                                                                 max_value=rules.max_price))]
    if rules.non_product_codes:
        out.append(RowRule("non_product_code", gxe.ExpectColumnValuesToNotBeInSet(
            column="item_id", value_set=list(rules.non_product_codes))))
    if rules.non_product_pattern:  # GX matches with re.search semantics (pandas str.contains), as before
        out.append(RowRule("non_product_code", gxe.ExpectColumnValuesToNotMatchRegex(
            column="item_id", regex=rules.non_product_pattern)))
    if values("timestamp"):
        out.append(RowRule("timestamp_out_of_range", gxe.ExpectColumnValuesToBeBetween(
            column="timestamp", min_value=pd.Timestamp(rules.min_timestamp),
            max_value=now + pd.Timedelta(days=rules.max_future_days))))
    # Same purchase line twice: identical on every canonical field (the free-text title is ignored:
    # Online Retail repeats some lines with a second description of the same stock code).
    content = [c for c in inter.columns if c not in ("source_row", "source_file", "title", *UNPARSED_COLUMNS)]
    out.append(RowRule("duplicate_row", gxe.ExpectCompoundColumnsToBeUnique(column_list=content, ignore_row_if="never"),
                       keep_first_of=content))
    if catalog_ids is not None and values("item_id") and len(catalog_ids) > MAX_GX_VALUE_SET:
        known = pd.Index(catalog_ids.dropna().astype(str))
        ids = inter["item_id"]
        out.append(RowRule("item_not_in_catalog", detail=f"the item is not among the catalog's {len(known):,} ids",
                           pandas=lambda: (ids.notna() & ~ids.isin(known)).to_numpy(),
                           pandas_name=f"item id in the catalog (more than {MAX_GX_VALUE_SET:,} ids: too many for "
                                       "a GX value set)"))
    elif catalog_ids is not None and values("item_id"):
        out.append(RowRule("item_not_in_catalog", gxe.ExpectColumnValuesToBeInSet(
            column="item_id", value_set=catalog_ids.dropna().astype(str).tolist())))
    return out


def clean(raw: RawTables, rules: CleaningRules | None = None, now: pd.Timestamp | None = None,
          gx: "GxSession | None" = None, accepted_items: pd.DataFrame | None = None) -> CleanResult:
    """Split raw canonical tables into clean tables and quarantine.

    Great Expectations decides: the rules are expectations (``_interaction_rules``, ``_item_rules``) run on the
    rows as read, and each row failing one goes to quarantine with that reason, the detail naming the
    expectation. ``gx``: the session to run them in (its Data Docs then show them); a private one otherwise.
    The row-level results are in ``CleanResult.expectations``.

    ``accepted_items``: a catalog cleaned already (an earlier chunk's ``CleanResult.items``, when a large source is
    validated a chunk at a time): interactions are checked against it, it is returned as the items and is not
    validated again (``raw.items`` is then ignored).

    Raises ``AssertionError`` if any row were lost (rows in != clean + quarantined).
    """
    from data_checks.expectations import GxSession

    rules = rules or CleaningRules.for_source(raw.source)
    now = now or pd.Timestamp.now(tz="UTC").tz_localize(None)
    session = gx or GxSession()
    inter = raw.interactions.reset_index(drop=True)
    f = _Flagger(inter.index)
    row_results = []

    # Catalog first (given by the source, or derived from the clean rows): interactions are checked against
    # the items it accepts.
    items_raw = raw.items.reset_index(drop=True)
    item_quarantine = empty_frame(QUARANTINE_COLUMNS)
    catalog_ids = None
    if accepted_items is not None:
        items_raw = items_raw.iloc[:0]
        items, catalog_ids = accepted_items, accepted_items["item_id"]
    elif len(items_raw):
        fi = _Flagger(items_raw.index)
        row_results += _decide(items_raw, "items", "items_as_read_rows", _item_rules(), session, fi)
        item_quarantine = _quarantine_rows(items_raw, fi.reason, fi.detail, "items")
        items = items_raw[fi.reason.isna()]
        catalog_ids = items["item_id"]
    row_results += _decide(inter, "interactions", "interactions_as_read_rows",
                           _interaction_rules(inter, rules, now, catalog_ids), session, f)
    if not len(items_raw) and accepted_items is None:
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
        "row_expectations_failed": sum(not r.success for r in row_results),
    }
    return CleanResult(clean_inter, items, quarantine, summary, row_results)


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
