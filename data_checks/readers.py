"""Readers: one per real-world format, each returning the canonical tables (see ``schema``).

Readers map columns and parse values; they never drop rows. Values that cannot be parsed become
missing and the cleaning rules quarantine those rows with a reason. Structural problems (missing
file or column, wrong delimiter, undecodable bytes, empty file) raise :class:`InputFileError`.
"""
from __future__ import annotations

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
from data_checks.tables import first_data_row, id_strings, numbers, read_table, timestamps, unparsed


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
    if lines is not None and len(lines) == len(df):
        return np.asarray(lines, dtype=np.int64)
    return np.arange(len(df), dtype=np.int64) + first_data_row(path)


# ---------------------------------------------------------------- UCI Online Retail
ONLINE_RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                         "CustomerID", "Country"]


@dataclass
class OnlineRetailSource:
    """UCI Online Retail in its original eight columns (xlsx, csv, csv.gz or parquet)."""

    path: str
    delimiter: str = ","
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


# ---------------------------------------------------------------- generic events + catalog
@dataclass
class EventsSource:
    """A generic events file (CSV or Parquet) and an optional catalog file.

    ``columns`` maps canonical interaction names to the file's names (``item_id`` is required; any of
    ``user_id``, ``timestamp``, ``basket_id``, ``quantity``, ``price`` may be mapped);
    ``catalog_columns`` does the same for the catalog (``item_id`` required; ``title``, ``category``,
    ``brand``, ``price`` optional).
    """

    path: str
    columns: dict[str, str] = field(default_factory=lambda: {"user_id": "user_id", "item_id": "item_id",
                                                              "timestamp": "timestamp"})
    catalog_path: str | None = None
    catalog_columns: dict[str, str] = field(default_factory=lambda: {"item_id": "item_id", "title": "title"})
    delimiter: str = ","
    encoding: str = "utf-8"
    timestamp_format: str | None = None


def read_events(src: EventsSource) -> RawTables:
    path = Path(src.path)
    cols = dict(src.columns)
    if "item_id" not in cols:
        raise InputFileError(path, "the column mapping must name the item column", field="item_id")
    df = read_table(path, list(cols.values()), src.delimiter, src.encoding)
    n = len(df)
    inter = pd.DataFrame({
        "user_id": id_strings(df[cols["user_id"]]) if "user_id" in cols else pd.array([None] * n, dtype="string"),
        "item_id": id_strings(df[cols["item_id"]]),
        "timestamp": timestamps(df[cols["timestamp"]], src.timestamp_format) if "timestamp" in cols
        else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]"),
        "basket_id": id_strings(df[cols["basket_id"]]) if "basket_id" in cols else None,
        "quantity": numbers(df[cols["quantity"]]) if "quantity" in cols else 1.0,
        "price": numbers(df[cols["price"]]) if "price" in cols else np.nan,
        "source_row": _rows(df, path),
        "source_file": str(path),
    })
    for canon in ("quantity", "price", "timestamp"):
        if canon in cols:
            inter[f"unparsed_{canon}"] = unparsed(inter[canon], df[cols[canon]])
    items = empty_frame(ITEM_COLUMNS)
    if src.catalog_path:
        cpath = Path(src.catalog_path)
        ccols = dict(src.catalog_columns)
        if "item_id" not in ccols:
            raise InputFileError(cpath, "the catalog column mapping must name the item column", field="item_id")
        cat = read_table(cpath, list(ccols.values()), src.delimiter, src.encoding)
        items = pd.DataFrame({
            "item_id": id_strings(cat[ccols["item_id"]]),
            **{c: cat[ccols[c]].astype("string").str.strip() for c in ("title", "category", "brand") if c in ccols},
            "price": numbers(cat[ccols["price"]]) if "price" in ccols else np.nan,
            "source_row": _rows(cat, cpath),
            "source_file": str(cpath),
        })
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS), "events")


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
    for stem, id_col, name_col in (("departments", "department_id", "department"), ("aisles", "aisle_id", "aisle")):
        p = _instacart_table(folder, stem)
        if p is not None and id_col in products.columns:
            lookup = read_table(p, [id_col, name_col])
            mapping = dict(zip(id_strings(lookup[id_col]), lookup[name_col].astype(str).str.strip()))
            names = id_strings(products[id_col]).map(mapping).astype("string")
            category = names if category.isna().all() else (category + " / " + names.fillna(""))
    items["category"] = category.values
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS), "instacart")
