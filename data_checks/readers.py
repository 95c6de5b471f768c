"""Readers: one per real-world format, each returning the canonical tables (see ``schema``).

Readers map columns and parse values; they never drop rows. Values that cannot be parsed become
missing and the cleaning rules quarantine those rows with a reason. Structural problems (missing
file or column, wrong delimiter, undecodable bytes, empty file) raise :class:`InputFileError`.
"""
from __future__ import annotations

import ast
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_checks.errors import InputFileError
from data_checks.schema import (
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    OPTIONAL_INTERACTION_COLUMNS,
    OPTIONAL_ITEM_COLUMNS,
    conform,
    empty_frame,
)
from data_checks.tables import (
    first_data_row,
    id_strings,
    numbers,
    prices,
    read_table,
    timestamps,
    trimmed_text,
    unparsed,
)
from data_checks.text_files import (
    WHITESPACE,
    RowNumbers,
    decode,
    peek_text,
    read_bytes,
    resolve_delimiter,
    split_fields,
)
from data_checks.times import TimeSettingError, implausible_reason, parse_times


@dataclass
class RawTables:
    """What a reader returns: canonical ``interactions`` and ``items`` (items may be empty when the
    source has no catalog; cleaning then derives one) and the source's name."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str


def _rows(df: pd.DataFrame, path: Path) -> np.ndarray:
    """Source row of each record: the line it starts on for text files (see ``read_table``)."""
    lines = df.attrs.get("source_rows")
    if isinstance(lines, RowNumbers) and len(lines) == len(df):
        return lines.values
    return np.arange(len(df), dtype=np.int64) + first_data_row(path)


# ---------------------------------------------------------------- UCI Online Retail
ONLINE_RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                         "CustomerID", "Country"]


@dataclass
class OnlineRetailSource:
    """UCI Online Retail in its original eight columns (xlsx, csv, csv.gz or parquet)."""

    path: str
    delimiter: str | None = ","  # None: by suffix, else sniffed (data_checks.text_files)
    encoding: str = "utf-8"


def read_online_retail(src: OnlineRetailSource) -> RawTables:
    path = Path(src.path)
    df = read_table(path, ONLINE_RETAIL_COLUMNS, src.delimiter, src.encoding)
    inter = pd.DataFrame({
        "user_id": id_strings(df["CustomerID"]),
        "item_id": id_strings(df["StockCode"]),
        "timestamp": timestamps(df["InvoiceDate"]),
        "basket_id": id_strings(df["InvoiceNo"]),
        "quantity": numbers(df["Quantity"]),
        "price": numbers(df["UnitPrice"]),
        "source_row": _rows(df, path),
        "country": df["Country"].astype("string").str.strip(),
        "title": df["Description"].astype("string").str.strip(),
        "source_file": str(path),
    })
    for canon, col in (("quantity", "Quantity"), ("price", "UnitPrice"), ("timestamp", "InvoiceDate")):
        inter[f"unparsed_{canon}"] = unparsed(inter[canon], df[col])
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     empty_frame(ITEM_COLUMNS), "online_retail")


# ---------------------------------------------------------------- LightGCN benchmark format
@dataclass
class LightGCNSource:
    """A folder with ``train.txt`` and ``test.txt`` (one line per user: ``user item item ...``) and
    optionally ``item_list.txt`` (``org_id remap_id``). The fixed split is kept in ``fixed_split``."""

    folder: str


def _read_adjacency(path: Path, split: str) -> pd.DataFrame:
    if not path.exists():
        raise InputFileError(path, "file not found")
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            ids = np.array([_int_id(p, path, lineno, i) for i, p in enumerate(parts)], dtype=np.int64)
            if len(ids) > 1:
                users.append(np.full(len(ids) - 1, ids[0]))
                items.append(ids[1:])
                rows.append(np.full(len(ids) - 1, lineno))
    if not users:
        raise InputFileError(path, "the file is empty")
    n = sum(len(u) for u in users)
    return pd.DataFrame({
        "user_id": pd.array(np.concatenate(users).astype(str), dtype="string"),
        "item_id": pd.array(np.concatenate(items).astype(str), dtype="string"),
        "quantity": np.ones(n),
        "source_row": np.concatenate(rows),
        "fixed_split": split,
        "source_file": str(path),
    })


def _int_id(token: bytes, path: Path, lineno: int, position: int) -> int:
    """One id of a LightGCN line: a non-negative integer that fits in int64."""
    field = "user_id" if position == 0 else f"item {position}"
    if not token.isdigit():
        raise InputFileError(path, f"{token[:40]!r} is not a non-negative integer id", row=lineno, field=field)
    value = int(token)
    if value > np.iinfo(np.int64).max:
        raise InputFileError(path, f"id {token[:40].decode()} is too large for a 64-bit integer", row=lineno,
                             field=field)
    return value


def read_lightgcn(src: LightGCNSource) -> RawTables:
    folder = Path(src.folder)
    inter = pd.concat([_read_adjacency(folder / "train.txt", "train"),
                       _read_adjacency(folder / "test.txt", "test")], ignore_index=True)
    item_list = folder / "item_list.txt"
    if item_list.exists():
        cat = read_table(item_list, ["remap_id"], delimiter=" ")
        items = pd.DataFrame({"item_id": id_strings(cat["remap_id"]),
                              "title": ("item " + cat["org_id"]).astype("string") if "org_id" in cat else None})
        items["source_row"] = _rows(cat, item_list)
        items["source_file"] = str(item_list)
    else:
        items = empty_frame(ITEM_COLUMNS)
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS), "lightgcn")


# ---------------------------------------------------------------- catalogs and times (events, baskets)
@dataclass
class CatalogFile:
    """A catalog file (delimited text, Parquet, xlsx or JSON lines) and how to read it. ``columns`` maps
    canonical item names to the file's (``item_id`` required; ``title``, ``category``, ``brand``, ``price``
    optional). ``delimiter``/``header``/``names`` as for the events file."""

    path: str
    columns: dict[str, str] = field(default_factory=lambda: {"item_id": "item_id", "title": "title"})
    delimiter: str | None = None
    encoding: str = "utf-8"
    header: bool = True
    names: list[str] | None = None


CATEGORY_SEPARATOR = " > "


def _category_path(value: object) -> list[str] | None:
    """A category as a path of levels, broad to fine: a JSON list (``["Grocery", "Snacks"]``), a list of such
    lists (Amazon 2014 ``categories``: the first), the text of one (``"['a', 'b']"``), or text whose levels
    are joined by `` > ``; None when missing or blank."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            for parse in (json.loads, ast.literal_eval):
                try:
                    return _category_path(parse(text))
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    continue
        levels = [v.strip() for v in text.split(CATEGORY_SEPARATOR.strip())] if CATEGORY_SEPARATOR in text else [text]
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if items and all(isinstance(v, (list, tuple, np.ndarray)) for v in items):
            return _category_path(items[0])
        levels = [str(v).strip() for v in items if v is not None and not isinstance(v, (list, dict))]
    else:
        levels = [str(value).strip()]
    levels = [v for v in levels if v]
    return levels or None


def _category_paths(values: pd.Series) -> tuple[np.ndarray, pd.arrays.StringArray]:
    """Each value's :func:`_category_path` (object array of lists or None) and the levels joined with
    `` > `` (missing where None); worked out once per distinct value (a catalog repeats its categories)."""
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # unhashable values (lists read from JSON): one by one
        codes, uniques = np.arange(len(values)), values.to_numpy(dtype=object)
    found = [_category_path(v) for v in uniques]
    paths = np.empty(len(found) + 1, dtype=object)  # the last slot: missing values (code -1)
    paths[:len(found)] = found
    text = np.array([CATEGORY_SEPARATOR.join(p) if p else None for p in found] + [None], dtype=object)
    at = np.where(codes < 0, len(found), codes)
    own = pd.Series([list(p) if p is not None else None for p in paths[at]], dtype=object)  # a list per row
    return own.to_numpy(), pd.array(text[at], dtype="string")


def _text_column(values: pd.Series) -> pd.Series:
    """Text fields as strings: JSON lists of strings joined with ", " (e.g. a list-valued brand)."""
    fast = trimmed_text(values, blanks_missing=False)
    if fast is not None:
        return fast
    if values.dtype == object:
        values = values.map(lambda v: ", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else v)
    return values.astype("string").str.strip()


def read_catalog(cat: CatalogFile) -> pd.DataFrame:
    """The catalog in the canonical item columns; a mapped category also gives ``category_path`` (its levels)
    and ``category`` (the levels joined with `` > ``). Prices may carry a currency and thousands separators."""
    cpath = Path(cat.path)
    ccols = dict(cat.columns)
    if "item_id" not in ccols:
        raise InputFileError(cpath, "the catalog column mapping must name the item column", field="item_id")
    df = read_table(cpath, list(dict.fromkeys(ccols.values())), cat.delimiter, cat.encoding, cat.header, cat.names)
    items = pd.DataFrame({
        "item_id": id_strings(df[ccols["item_id"]]),
        **{c: _text_column(df[ccols[c]]) for c in ("title", "brand") if c in ccols},
        "price": prices(df[ccols["price"]]) if "price" in ccols else np.nan,
        "source_row": _rows(df, cpath),
        "source_file": str(cpath),
    })
    if "category" in ccols:
        paths, joined = _category_paths(df[ccols["category"]])
        items["category_path"] = paths
        items["category"] = joined
    return conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS)


def _times(df: pd.DataFrame, column: str, path: Path, fmt: str | None, unit: str | None) -> pd.Series:
    """One timestamp column by the rule in :mod:`data_checks.times`; stops when none of the times can be right
    (:func:`data_checks.times.implausible_reason`) or the time settings are unusable."""
    try:
        parsed = parse_times(df[column], fmt, unit)
    except TimeSettingError as exc:
        raise InputFileError(path, str(exc), field=column) from exc
    why = implausible_reason(parsed, df[column])
    if why:
        raise InputFileError(path, why, field=column)
    return parsed.values


# ---------------------------------------------------------------- generic events + catalog
@dataclass
class EventsSource:
    """A generic events file and an optional catalog file.

    The events file may be delimited text of any suffix (``delimiter``: see :mod:`data_checks.text_files`;
    ``header=False`` with ``names`` for a file without a header line), Parquet, xlsx or JSON lines. ``columns``
    maps canonical interaction names to the file's names (``item_id`` is required; any of ``user_id``,
    ``timestamp``, ``basket_id``, ``quantity``, ``price`` may be mapped); ``catalog_columns`` does the same for
    the catalog (``item_id`` required; ``title``, ``category``, ``brand``, ``price`` optional). Timestamps:
    :mod:`data_checks.times` (``timestamp_format``, ``timestamp_unit``).
    """

    path: str
    columns: dict[str, str] = field(default_factory=lambda: {"user_id": "user_id", "item_id": "item_id",
                                                              "timestamp": "timestamp"})
    catalog_path: str | None = None
    catalog_columns: dict[str, str] = field(default_factory=lambda: {"item_id": "item_id", "title": "title"})
    delimiter: str | None = None
    encoding: str = "utf-8"
    timestamp_format: str | None = None
    timestamp_unit: str | None = None
    header: bool = True
    names: list[str] | None = None
    catalog_delimiter: str | None = None
    catalog_header: bool = True
    catalog_names: list[str] | None = None

    def catalog(self) -> CatalogFile | None:
        """The catalog file (its delimiter: ``catalog_delimiter``, else ``delimiter``), or None."""
        if not self.catalog_path:
            return None
        return CatalogFile(self.catalog_path, dict(self.catalog_columns), self.catalog_delimiter or self.delimiter,
                           self.encoding, self.catalog_header, self.catalog_names)


def read_events(src: EventsSource) -> RawTables:
    path = Path(src.path)
    cols = dict(src.columns)
    if "item_id" not in cols:
        raise InputFileError(path, "the column mapping must name the item column", field="item_id")
    try:
        df = read_table(path, list(dict.fromkeys(cols.values())), src.delimiter, src.encoding, src.header, src.names)
    except InputFileError as exc:
        if "fields, found" not in exc.reason:
            raise
        raise InputFileError(exc.path, exc.reason + "; if each line is one basket of items, set kind: baskets",
                             exc.row, exc.field) from exc
    n = len(df)
    inter = pd.DataFrame({
        "user_id": id_strings(df[cols["user_id"]]) if "user_id" in cols else pd.array([None] * n, dtype="string"),
        "item_id": id_strings(df[cols["item_id"]]),
        "timestamp": _times(df, cols["timestamp"], path, src.timestamp_format, src.timestamp_unit)
        if "timestamp" in cols else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]"),
        "basket_id": id_strings(df[cols["basket_id"]]) if "basket_id" in cols else None,
        "quantity": numbers(df[cols["quantity"]]) if "quantity" in cols else 1.0,
        "price": prices(df[cols["price"]]) if "price" in cols else np.nan,
        "source_row": _rows(df, path),
        "source_file": str(path),
    })
    for canon in ("quantity", "price", "timestamp"):
        if canon in cols:
            inter[f"unparsed_{canon}"] = unparsed(inter[canon], df[cols[canon]])
    cat = src.catalog()
    items = read_catalog(cat) if cat else empty_frame(ITEM_COLUMNS)
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS), "events")


# ---------------------------------------------------------------- one basket per line
@dataclass
class BasketsSource:
    """A file with one basket per line, its items separated by ``delimiter`` (the arules "Groceries" form:
    ``citrus fruit,semi-finished bread,margarine,ready soups``; or FIMI's ``1 5 23``), lines of any length.

    Each non-blank line is a basket; its id is the line number. No customer, no time. Blank items (``a,,b``,
    a trailing delimiter) are skipped, a line's repeated item is kept (and quarantined as a duplicate by
    cleaning). ``header=True`` skips the first line. ``delimiter`` None: ``.csv`` comma, ``.tsv`` tab, else the
    delimiter found on most of the first lines (whitespace when none is). ``catalog`` as for events."""

    path: str
    delimiter: str | None = None
    encoding: str = "utf-8"
    header: bool = False
    catalog: CatalogFile | None = None


def _basket_tokens(text: str, delimiter: str, header: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every non-blank item of every line, stripped (object array), and the line it is on (1-based int64), in
    file order; the first non-blank line left out when ``header``. Linear in the text, vectorised per line."""
    if delimiter != WHITESPACE and len(delimiter) == 1 and '"' in text:  # quoted items: follow csv quoting
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        tokens: list[str] = []
        starts: list[int] = []
        previous_end = 0
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            tokens.extend(record)
            starts.extend([start] * len(record))
        stripped = np.array([t.strip() for t in tokens], dtype=object)
        line_of = np.asarray(starts, dtype=np.int64)
    else:
        lines = text.split("\n")
        if delimiter == WHITESPACE or len(delimiter) > 1:
            per_line = [line.split() if delimiter == WHITESPACE else line.split(delimiter) for line in lines]
            counts = np.fromiter(map(len, per_line), dtype=np.int64, count=len(lines))
            flat = [t for parts in per_line for t in parts]
        else:  # one split of the whole text (a line break becomes a delimiter), counted per line
            counts = np.fromiter((line.count(delimiter) + 1 for line in lines), dtype=np.int64, count=len(lines))
            flat = delimiter.join(lines).split(delimiter)
        stripped = np.array([t.strip() for t in flat], dtype=object)
        line_of = np.repeat(np.arange(1, len(lines) + 1, dtype=np.int64), counts)
    keep = stripped != ""
    items, rows = stripped[keep], line_of[keep]
    if header and len(rows):
        items, rows = items[rows != rows[0]], rows[rows != rows[0]]
    return items, rows


def read_baskets(src: BasketsSource) -> RawTables:
    path = Path(src.path)
    raw = read_bytes(path)
    delimiter = resolve_delimiter(path, src.delimiter, peek_text(raw, src.encoding) if src.delimiter is None else "",
                                  ragged=True)

    def locate(before: str, _: str) -> tuple[int, str]:
        line = before[before.rfind("\n") + 1:]
        return before.count("\n") + 1, f"item {len(split_fields(line, delimiter)) if line else 1}"

    text = decode(path, raw, src.encoding, locate)
    items, row = _basket_tokens(text, delimiter, src.header)
    if not len(items):
        raise InputFileError(path, "no baskets: every line is blank" + (" after the header" if src.header else ""))
    lines, which = np.unique(row, return_inverse=True)
    inter = pd.DataFrame({
        "user_id": pd.array(np.full(len(items), None, dtype=object), dtype="string"),
        "item_id": pd.array(items, dtype="string"),
        "timestamp": pd.Series(pd.NaT, index=range(len(items)), dtype="datetime64[ns]"),
        "basket_id": pd.array(np.array([str(v) for v in lines], dtype=object)[which], dtype="string"),
        "quantity": 1.0,
        "price": np.nan,
        "source_row": row,
        "source_file": str(path),
    })
    catalog = read_catalog(src.catalog) if src.catalog else empty_frame(ITEM_COLUMNS)
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(catalog, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS), "baskets")


# ---------------------------------------------------------------- Instacart Market Basket
@dataclass
class InstacartSource:
    """The Instacart Market Basket folder: ``order_products__*``, ``products``, ``aisles``, ``departments`` and,
    when present, ``orders`` (which gives users and relative days; the dataset has no calendar dates, so
    timestamps count days from ``start_date``). Each table may be ``.csv``, ``.csv.gz`` or ``.parquet`` (it is
    published in either form)."""

    folder: str
    start_date: str = "2017-01-01"


def _bounded(df: pd.DataFrame, column: str, low: float, high: float) -> tuple[pd.Series, pd.Series]:
    """A numeric column with values outside ``[low, high)`` (or unparseable) made missing, and the
    raw text of those values (for the quarantine's detail); blank stays missing without text."""
    if column not in df:
        return pd.Series(np.nan, index=df.index), pd.Series(pd.NA, index=df.index, dtype="string")
    values = numbers(df[column])
    raw = df[column].astype("string").str.strip()
    bad = raw.notna() & (raw != "") & ~((values >= low) & (values < high)).fillna(False)
    return values.where(~bad), (f"{column} " + raw.str.slice(0, 40)).where(bad)


INSTACART_SUFFIXES = (".parquet", ".csv.gz", ".csv")


def _instacart_table(folder: Path, stem: str) -> Path | None:
    """The file holding one Instacart table (``stem`` + one of :data:`INSTACART_SUFFIXES`), or None."""
    for suffix in INSTACART_SUFFIXES:
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    return None


def read_instacart(src: InstacartSource) -> RawTables:
    folder = Path(src.folder)
    if not folder.is_dir():
        raise InputFileError(folder, "not a folder: point path at the folder holding the Instacart tables")
    stems = sorted({p.name.split(".")[0] for p in folder.glob("order_products__*")
                    if p.name.endswith(INSTACART_SUFFIXES)})
    files = [_instacart_table(folder, stem) for stem in stems]
    if not files:
        raise InputFileError(folder / "order_products__*", "no order_products__* table (.csv, .csv.gz or .parquet) "
                             "in the folder")
    parts = []
    for f in files:
        op = read_table(f, ["order_id", "product_id"])
        parts.append(pd.DataFrame({"basket_id": id_strings(op["order_id"]), "item_id": id_strings(op["product_id"]),
                                   "source_row": _rows(op, f), "source_file": str(f)}))
    inter = pd.concat(parts, ignore_index=True)
    inter["quantity"] = 1.0
    orders_path = _instacart_table(folder, "orders")
    if orders_path is not None:
        orders = read_table(orders_path, ["order_id", "user_id", "order_number"])
        o = pd.DataFrame({"basket_id": id_strings(orders["order_id"]), "user_id": id_strings(orders["user_id"]),
                          "order_number": numbers(orders["order_number"]), "row": _rows(orders, orders_path)})
        dup = o["basket_id"].duplicated(keep="first") & o["basket_id"].notna()
        if dup.any():
            first = o.index[dup][0]
            raise InputFileError(orders_path, f"order id {o.at[first, 'basket_id'][:40]!r} is listed twice",
                                 row=int(o.at[first, "row"]), field="order_id")
        # days since the previous order (0-366 in the dataset) and the hour (0-23); a value outside
        # that makes the order's time, and that of the user's later orders, unknown (quarantined).
        gap, gap_text = _bounded(orders, "days_since_prior_order", 0.0, 3660.0)
        hour, hour_text = _bounded(orders, "order_hour_of_day", 0.0, 24.0)
        o["gap"], o["hour"] = gap.values, hour.values
        o["why"] = gap_text.fillna(hour_text).values
        o = o.sort_values(["user_id", "order_number"])
        # an order without a user is a sequence of its own
        user = o["user_id"].astype(object).where(o["user_id"].notna(), "\x00" + o["row"].astype(str))
        o["gap"], o["broken"] = o["gap"].fillna(0.0), o["why"].notna()
        by_user = o.groupby(user, sort=False)
        o["days"] = by_user["gap"].cumsum()
        broken = by_user["broken"].cummax().astype(bool)
        o["timestamp"] = (pd.Timestamp(src.start_date) + pd.to_timedelta(o["days"], unit="D")
                          + pd.to_timedelta(o["hour"].fillna(0.0), unit="h")).where(~broken)
        o["unparsed_timestamp"] = by_user["why"].ffill().where(broken).astype("string")
        inter = inter.merge(o[["basket_id", "user_id", "timestamp", "unparsed_timestamp"]], on="basket_id", how="left")
    products_path = _instacart_table(folder, "products")
    if products_path is None:
        raise InputFileError(folder / "products.csv", "file not found (products.csv, products.csv.gz or "
                             "products.parquet): the catalog is required")
    products = read_table(products_path, ["product_id", "product_name"])
    items = pd.DataFrame({"item_id": id_strings(products["product_id"]),
                          "title": products["product_name"].astype("string").str.strip(),
                          "source_row": _rows(products, products_path),
                          "source_file": str(products_path)})
    category = pd.Series(pd.NA, index=products.index, dtype="string")
    levels: list[pd.Series] = []
    for stem, id_col, name_col in (("departments", "department_id", "department"), ("aisles", "aisle_id", "aisle")):
        p = _instacart_table(folder, stem)
        if p is not None and id_col in products.columns:
            lookup = read_table(p, [id_col, name_col])
            mapping = dict(zip(id_strings(lookup[id_col]), lookup[name_col].astype(str).str.strip()))
            names = id_strings(products[id_col]).map(mapping).astype("string")
            category = names if category.isna().all() else (category + " / " + names.fillna(""))
            levels.append(names)
    items["category"] = category.values
    if levels:  # [department, aisle], broad to fine; unknown levels left out
        items["category_path"] = [[v for v in path if isinstance(v, str) and v] or None
                                  for path in zip(*(lv.astype(object).where(lv.notna(), None) for lv in levels))]
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS), "instacart")
