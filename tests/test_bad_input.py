"""A corpus of broken inputs, written by the tests, across every reader.

Each case either reads and cleans with every row accounted for (rows in = clean + quarantined, each bad
row with its reason, odd ids kept verbatim as data) or stops with :class:`InputFileError` naming the
file, the row and the field. The basic Online Retail cases (';' delimiter, missing column, a non-UTF-8
byte, empty and header-only files, a ragged row, a truncated gzip) are in ``tests/test_readers.py``.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from data_checks.cleaning import REASONS, CleanResult, clean
from data_checks.errors import InputFileError
from data_checks.readers import (
    EventsSource,
    InstacartSource,
    LightGCNSource,
    OnlineRetailSource,
    RawTables,
    read_events,
    read_instacart,
    read_lightgcn,
    read_online_retail,
)
from tests.test_readers import HEADER

NOW = pd.Timestamp("2025-01-01")
GOOD = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
        "Quantity": "6", "InvoiceDate": "2010-12-01 08:26:00", "UnitPrice": "2.55", "CustomerID": "17850",
        "Country": "United Kingdom"}
ODD_IDS = ["../../etc/passwd", "/tmp/x", "a\\b", 'say "hi"', "it's", "tab\there", "line\nbreak", "bell\x07",
           "nul\x00byte", "cart 🛒", "ü-umlaut", "comma,inside", ";semi", "..", "."]


def retail_rows(*changes: dict) -> pd.DataFrame:
    """One good Online Retail row per change (each with its own invoice so none is a duplicate)."""
    return pd.DataFrame([{**GOOD, "InvoiceNo": str(536400 + i), **c} for i, c in enumerate(changes)], columns=HEADER)


def accounted(raw: RawTables, now: pd.Timestamp = NOW) -> CleanResult:
    """Clean and check that nothing is lost and every quarantined row has a known reason and a row."""
    r = clean(raw, now=now)
    q = r.quarantine
    n_q_inter = int((q["table"] == "interactions").sum())
    assert len(r.interactions) + n_q_inter == len(raw.interactions)
    if len(raw.items):
        assert len(r.items) + int((q["table"] == "items").sum()) == len(raw.items)
    assert set(q["reason"]) <= set(REASONS)
    assert (q["source_row"] >= 1).all() and q["record"].notna().all()
    return r


def reasons_by_row(r: CleanResult, table: str = "interactions") -> dict[int, str]:
    q = r.quarantine[r.quarantine["table"] == table]
    return dict(zip(q["source_row"].astype(int), q["reason"]))


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


# ----------------------------------------------------------------- Online Retail: rows that read and clean
NUMBER_CASES = [
    ({"Quantity": "NaN"}, "unparseable_quantity"),
    ({"Quantity": "-3"}, "non_positive_quantity"),
    ({"Quantity": "1e400"}, "quantity_out_of_range"),
    ({"Quantity": "99999999999999999999999"}, "quantity_out_of_range"),
    ({"Quantity": "-inf"}, "non_positive_quantity"),
    ({"UnitPrice": "inf"}, "price_out_of_range"),
    ({"UnitPrice": "-1.5"}, "non_positive_price"),
    ({"UnitPrice": "NaN"}, "unparseable_price"),
    ({"UnitPrice": "1e308"}, "price_out_of_range"),
    ({"InvoiceDate": "3000-01-01 10:00:00"}, "timestamp_out_of_range"),
    ({"InvoiceDate": "2200-06-01 10:00:00"}, "timestamp_out_of_range"),
    ({"InvoiceDate": "1989-12-31 23:59:00"}, "timestamp_out_of_range"),
    ({"InvoiceDate": "1066-10-14 09:00:00"}, "timestamp_out_of_range"),
    ({"InvoiceDate": "not a date"}, "unparseable_timestamp"),
    ({"StockCode": "X" * 1_000_000}, "id_too_long"),
    ({"Quantity": "9" * 1_000_000}, "quantity_out_of_range"),
]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz"])
def test_online_retail_bad_values_are_quarantined_with_reasons(tmp_path, fmt):
    df = retail_rows({}, *(c for c, _ in NUMBER_CASES), {"Description": "D" * 1_000_000})
    path = tmp_path / f"retail.{fmt}"
    text = df.to_csv(index=False).encode()
    path.write_bytes(gzip.compress(text) if fmt == "csv.gz" else text)
    r = accounted(read_online_retail(OnlineRetailSource(str(path))))
    got = reasons_by_row(r)
    assert got == {row: reason for row, (_, reason) in enumerate(NUMBER_CASES, start=3)}
    # the 1 MB description is text, not an error: the row stays and its title keeps every character
    assert len(r.interactions) == 2 and r.items.set_index("item_id").loc["85123A", "n_titles"] == 2
    q = r.quarantine.set_index("source_row")
    assert q["detail"].str.len().max() < 300, "details quote a bounded slice of the bad value"
    assert "'NaN'" in q.loc[3, "detail"]


def test_online_retail_typed_parquet_bad_numbers_and_times(tmp_path):
    """As saved from pandas: float NaN/inf, int64 overflow, timestamps at microsecond resolution."""
    n = 7
    df = pd.DataFrame({
        "InvoiceNo": [str(536400 + i) for i in range(n)], "StockCode": ["85123A"] * n, "Description": ["X"] * n,
        "Quantity": pd.array([6, np.nan, np.inf, 2**62, 6, 6, 6], dtype="float64"),
        "InvoiceDate": pd.array(pd.to_datetime(["2010-12-01"] * n)).astype("datetime64[us]"),
        "UnitPrice": [2.5, 2.5, 2.5, 2.5, np.nan, -np.inf, 2.5], "CustomerID": [17850.0] * n, "Country": ["UK"] * n})
    df["InvoiceDate"] = df["InvoiceDate"].astype(object)
    df.loc[6, "InvoiceDate"] = pd.Timestamp("2011-01-01").to_pydatetime().replace(year=3000)
    df.loc[5, "InvoiceDate"] = pd.Timestamp("1985-01-01").to_pydatetime()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df.assign(InvoiceDate=pa.array(list(df["InvoiceDate"]), pa.timestamp("us"))),
                                 preserve_index=False)
    pq.write_table(table, tmp_path / "retail.parquet")
    r = accounted(read_online_retail(OnlineRetailSource(str(tmp_path / "retail.parquet"))))
    assert reasons_by_row(r) == {2: "quantity_out_of_range", 3: "quantity_out_of_range", 4: "quantity_out_of_range",
                                 6: "non_positive_price", 7: "timestamp_out_of_range"}
    # a missing price is allowed (events sources often have none); the row stays
    assert r.interactions["source_row"].tolist() == [1, 5]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_odd_ids_are_kept_as_data_never_as_paths(tmp_path, fmt):
    # a NUL in a text file stops the read (see below); xlsx cannot hold control characters at all
    ids = [i for i in ODD_IDS if fmt == "parquet" or not any(ord(c) < 32 and c not in "\t\n" for c in i)
           or (fmt == "csv" and "\x00" not in i)]
    df = retail_rows(*({"CustomerID": i, "StockCode": f"S{i}", "InvoiceNo": f"I{i}"} for i in ids))
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = inputs / f"retail.{fmt}"
    {"csv": lambda: df.to_csv(path, index=False), "parquet": lambda: df.to_parquet(path),
     "xlsx": lambda: df.to_excel(path, index=False)}[fmt]()
    before = files_under(tmp_path)
    r = accounted(read_online_retail(OnlineRetailSource(str(path))))
    assert files_under(tmp_path) == before, "reading must not create files named after ids"
    assert r.quarantine.empty
    # ids are stripped of surrounding whitespace only; everything else survives exactly
    assert list(r.interactions["user_id"]) == [i.strip() for i in ids]
    assert list(r.interactions["item_id"]) == [f"S{i}".strip() for i in ids]
    first = 1 if fmt == "parquet" else 2
    if fmt == "csv":  # quoted line breaks: the row is where the record starts in the file
        lines = [first]
        for i in ids[:-1]:
            lines.append(lines[-1] + 1 + 3 * i.count("\n"))  # three fields carry the id
        assert r.interactions["source_row"].tolist() == lines
    else:
        assert r.interactions["source_row"].tolist() == list(range(first, first + len(ids)))


def test_extra_columns_are_ignored(tmp_path):
    df = retail_rows({}, {"StockCode": "71053"}).assign(Notes=["a", "b"], Unnamed="")
    df.to_csv(tmp_path / "r.csv", index=False)
    r = accounted(read_online_retail(OnlineRetailSource(str(tmp_path / "r.csv"))))
    assert len(r.interactions) == 2 and "Notes" not in r.interactions.columns


# ----------------------------------------------------------------- files that stop with file, row and field
def _csv_lines(*changes: dict) -> str:
    return retail_rows(*changes).to_csv(index=False)


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _truncated_csv(tmp: Path) -> Path:
    text = _csv_lines({}, {}, {})
    return _write(tmp / "r.csv", text[: text.rindex("2010-12-01")])  # cut inside the last record


def _truncated_in_quote(tmp: Path) -> Path:
    text = _csv_lines({}, {"Description": "SAYS, \"HELLO\""})
    return _write(tmp / "r.csv", text[: text.index("HELLO")])


def _short_row(tmp: Path) -> Path:
    lines = _csv_lines({}, {}).splitlines()
    lines[1] = ",".join(lines[1].split(",")[:5])
    return _write(tmp / "r.csv", "\n".join(lines) + "\n")


def _tab_delimited(tmp: Path) -> Path:
    return _write(tmp / "r.csv", retail_rows({}).to_csv(index=False, sep="\t"))


def _truncated_parquet(tmp: Path) -> Path:
    retail_rows({}, {}).to_parquet(tmp / "r.parquet")
    data = (tmp / "r.parquet").read_bytes()
    return _write(tmp / "r.parquet", data[: len(data) // 2])


def _truncated_xlsx(tmp: Path) -> Path:
    retail_rows({}, {}).to_excel(tmp / "r.xlsx", index=False)
    data = (tmp / "r.xlsx").read_bytes()
    return _write(tmp / "r.xlsx", data[: len(data) // 2])


def _header_only_parquet(tmp: Path) -> Path:
    retail_rows({}).iloc[:0].to_parquet(tmp / "r.parquet")
    return tmp / "r.parquet"


def _header_only_xlsx(tmp: Path) -> Path:
    retail_rows({}).iloc[:0].to_excel(tmp / "r.xlsx", index=False)
    return tmp / "r.xlsx"


def _missing_column_parquet(tmp: Path) -> Path:
    retail_rows({}).drop(columns=["CustomerID"]).to_parquet(tmp / "r.parquet")
    return tmp / "r.parquet"


def _nul_byte(tmp: Path) -> Path:
    return _write(tmp / "r.csv", _csv_lines({}, {"CustomerID": "178\x0050"}))


def _zero_filled_tail(tmp: Path) -> Path:  # what a crash mid-write leaves on some file systems
    return _write(tmp / "r.csv", _csv_lines({}, {}).encode() + b"\x00" * 4096)


def _latin1_in_gzip(tmp: Path) -> Path:
    return _write(tmp / "r.csv.gz", gzip.compress(_csv_lines({}, {"Description": "CAF\xc9"}).encode("latin-1")))


# (builder, row, field, words in the message); row None: the file as a whole is unreadable
RETAIL_ERRORS: dict[str, tuple[Callable[[Path], Path], int | None, str | None, str]] = {
    "truncated_csv": (_truncated_csv, 4, "UnitPrice", "truncated"),
    "truncated_inside_quotes": (_truncated_in_quote, 3, None, "truncated"),
    "short_row": (_short_row, 2, "UnitPrice", "expected 8 fields, found 5"),
    "tab_delimited": (_tab_delimited, 1, "InvoiceNo", "'\\t'"),
    "non_utf8_in_gzip": (_latin1_in_gzip, 3, "Description", "0xc9"),
    "nul_byte": (_nul_byte, 3, "CustomerID", "NUL"),
    "zero_filled_tail": (_zero_filled_tail, 4, "InvoiceNo", "NUL"),
    "truncated_parquet": (_truncated_parquet, None, None, "Parquet"),
    "truncated_xlsx": (_truncated_xlsx, None, None, "xlsx"),
    "header_only_parquet": (_header_only_parquet, 1, None, "no data rows"),
    "header_only_xlsx": (_header_only_xlsx, 2, None, "no data rows"),
    "missing_column_parquet": (_missing_column_parquet, None, "CustomerID", "missing required column"),
}


@pytest.mark.parametrize("case", list(RETAIL_ERRORS))
def test_online_retail_unreadable_files_name_file_row_field(tmp_path, case):
    build, row, field, words = RETAIL_ERRORS[case]
    path = build(tmp_path)
    with pytest.raises(InputFileError) as e:
        read_online_retail(OnlineRetailSource(str(path)))
    assert e.value.path == str(path) and str(path) in str(e.value)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


# ----------------------------------------------------------------- events + catalog
def _events(tmp: Path, events: str | bytes, catalog: str | bytes | None = None, **kw) -> RawTables:
    ev = _write(tmp / "events.csv", events)
    cat = _write(tmp / "catalog.csv", catalog) if catalog is not None else None
    return read_events(EventsSource(str(ev), catalog_path=str(cat) if cat else None, **kw))


EVENTS = "user_id,item_id,timestamp\nu1,a,2024-01-01\nu1,b,2024-01-02\nu2,a,2024-01-03\n"


def test_events_catalog_items_that_never_occur_stay_in_the_catalog(tmp_path):
    r = accounted(_events(tmp_path, EVENTS, "item_id,title\na,A\nb,B\nnever,Never sold\nalso_never,Nope\n"))
    assert r.quarantine.empty
    assert set(r.items["item_id"]) == {"a", "b", "never", "also_never"}
    assert set(r.interactions["item_id"]) == {"a", "b"}


def test_events_items_missing_from_the_catalog_are_quarantined(tmp_path):
    r = accounted(_events(tmp_path, EVENTS + "u3,ghost,2024-01-04\nu3,🛒,2024-01-05\n", "item_id,title\na,A\nb,B\n"))
    assert reasons_by_row(r) == {5: "item_not_in_catalog", 6: "item_not_in_catalog"}


def test_events_far_timestamps_and_timezones(tmp_path):
    text = ("user_id,item_id,timestamp\nu,a,2024-01-01T10:00:00+02:00\nu,b,2999-12-31\nu,c,1970-01-01\n"
            "u,d,12/31/1989\nu,e,2024-01-01T00:00:00Z\n")
    r = accounted(_events(tmp_path, text))
    assert reasons_by_row(r) == {3: "timestamp_out_of_range", 4: "timestamp_out_of_range", 5: "timestamp_out_of_range"}
    ts = r.interactions.set_index("item_id")["timestamp"]
    assert ts["a"] == pd.Timestamp("2024-01-01 08:00:00") and ts["e"] == pd.Timestamp("2024-01-01")


EVENT_ERRORS = {
    "empty_events": (lambda t: _events(t, b""), "events.csv", None, None, "empty"),
    "header_only_events": (lambda t: _events(t, "user_id,item_id,timestamp\n"), "events.csv", 2, None, "no data rows"),
    "missing_mapped_column": (lambda t: _events(t, "customer,item_id,timestamp\nu,a,2024-01-01\n"), "events.csv", 1,
                              "user_id", "missing required column"),
    "non_utf8_events": (lambda t: _events(t, b"user_id,item_id,timestamp\nu1,caf\xe9,2024-01-01\n"), "events.csv", 2,
                        "item_id", "0xe9"),
    "truncated_events": (lambda t: _events(t, EVENTS[:-12]), "events.csv", 4, "timestamp", "truncated"),
    "semicolon_events": (lambda t: _events(t, EVENTS.replace(",", ";")), "events.csv", 1, "user_id", "';'"),
    "empty_catalog": (lambda t: _events(t, EVENTS, b""), "catalog.csv", None, None, "empty"),
    "header_only_catalog": (lambda t: _events(t, EVENTS, "item_id,title\n"), "catalog.csv", 2, None, "no data rows"),
    "catalog_missing_column": (lambda t: _events(t, EVENTS, "sku,title\na,A\n"), "catalog.csv", 1, "item_id",
                               "missing required column"),
    "non_utf8_catalog": (lambda t: _events(t, EVENTS, b"item_id,title\na,Caf\xe9\n"), "catalog.csv", 2, "title",
                         "0xe9"),
}


@pytest.mark.parametrize("case", list(EVENT_ERRORS))
def test_events_unreadable_files_name_file_row_field(tmp_path, case):
    build, name, row, field, words = EVENT_ERRORS[case]
    with pytest.raises(InputFileError) as e:
        build(tmp_path)
    assert e.value.path == str(tmp_path / name)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


# ----------------------------------------------------------------- LightGCN folders
def _lightgcn(tmp: Path, train: bytes | str, test: bytes | str = "0 1\n", items: bytes | str | None = None) -> RawTables:
    _write(tmp / "train.txt", train)
    _write(tmp / "test.txt", test)
    if items is not None:
        _write(tmp / "item_list.txt", items)
    return read_lightgcn(LightGCNSource(str(tmp)))


def test_lightgcn_catalog_both_ways_and_duplicates(tmp_path):
    items = "org_id remap_id\n100 0\n101 1\n102 2\n103 3\n"  # item 3 is never bought
    r = accounted(_lightgcn(tmp_path, "0 0 1 1\n1 2 7\n", "0 9\n", items))
    q = r.quarantine
    assert sorted(zip(q["source_file"].str.rsplit("/", n=1).str[-1], q["source_row"], q["reason"])) == [
        ("test.txt", 1, "item_not_in_catalog"), ("train.txt", 1, "duplicate_row"),
        ("train.txt", 2, "item_not_in_catalog")]
    assert "3" in set(r.items["item_id"]) and "3" not in set(r.interactions["item_id"])


LIGHTGCN_ERRORS = {
    "non_utf8_id": (dict(train=b"0 1 \xe9\xe9\n"), "train.txt", 1, "item 2", "not a non-negative integer"),
    "overflowing_id": (dict(train="0 1\n1 99999999999999999999999\n"), "train.txt", 2, "item 1", "too large"),
    "negative_id": (dict(train="0 1\n-1 2\n"), "train.txt", 2, "user_id", "not a non-negative integer"),
    "double_minus": (dict(train="0 --1\n"), "train.txt", 1, "item 1", "not a non-negative integer"),
    "path_like_id": (dict(train="0 ../../etc/passwd\n"), "train.txt", 1, "item 1", "not a non-negative integer"),
    "empty_train": (dict(train=b""), "train.txt", None, None, "empty"),
    "users_without_items": (dict(train="0\n1\n"), "train.txt", None, None, "empty"),
    "empty_item_list": (dict(train="0 1\n", items=b""), "item_list.txt", None, None, "empty"),
    "item_list_missing_column": (dict(train="0 1\n", items="org_id id\n5 1\n"), "item_list.txt", 1, "remap_id",
                                 "missing required column"),
    "item_list_non_utf8": (dict(train="0 1\n", items=b"org_id remap_id\ncaf\xe9 1\n"), "item_list.txt", 2, "org_id",
                           "0xe9"),
}


@pytest.mark.parametrize("case", list(LIGHTGCN_ERRORS))
def test_lightgcn_unreadable_files_name_file_row_field(tmp_path, case):
    kwargs, name, row, field, words = LIGHTGCN_ERRORS[case]
    with pytest.raises(InputFileError) as e:
        _lightgcn(tmp_path, **kwargs)
    assert e.value.path == str(tmp_path / name)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


# ----------------------------------------------------------------- Instacart folders
PRODUCTS = "product_id,product_name,aisle_id,department_id\n10,Banana,24,4\n11,Milk,84,16\n12,Never sold,1,1\n"
ORDERS = ("order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
          "1,7,prior,1,2,8,\n2,7,prior,2,3,9,5.0\n3,7,prior,3,3,9,2\n4,8,train,1,1,10,\n")


def _instacart(tmp: Path, order_products: str | bytes, orders: str | None = ORDERS,
               products: str | bytes | None = PRODUCTS) -> RawTables:
    _write(tmp / "order_products__prior.csv", order_products)
    if orders is not None:
        _write(tmp / "orders.csv", orders)
    if products is not None:
        _write(tmp / "products.csv", products)
    return read_instacart(InstacartSource(str(tmp)))


OP_HEADER = "order_id,product_id,add_to_cart_order,reordered\n"


def test_instacart_unknown_products_and_unsold_catalog(tmp_path):
    r = accounted(_instacart(tmp_path, OP_HEADER + "1,10,1,0\n1,99,2,0\n4,11,1,0\n5,10,1,0\n"))
    assert reasons_by_row(r) == {3: "item_not_in_catalog"}
    assert "12" in set(r.items["item_id"])
    anonymous = r.interactions[r.interactions["basket_id"] == "5"]  # order 5 is not in orders.csv
    assert anonymous["user_id"].isna().all() and anonymous["timestamp"].isna().all()


def test_instacart_overflowing_day_gaps_are_quarantined_not_crashing(tmp_path):
    orders = ORDERS.replace("2,7,prior,2,3,9,5.0", "2,7,prior,2,3,9,1e300").replace("4,8,train,1,1,10,",
                                                                                     "4,8,train,1,1,99,")
    r = accounted(_instacart(tmp_path, OP_HEADER + "1,10,1,0\n2,10,1,0\n3,11,1,0\n4,11,1,0\n", orders))
    # order 2's gap is impossible: its time and user 7's later order 3 are unknown; order 4's hour is 99
    assert reasons_by_row(r) == {3: "unparseable_timestamp", 4: "unparseable_timestamp", 5: "unparseable_timestamp"}
    assert r.interactions["basket_id"].tolist() == ["1"]
    assert "1e300" in r.quarantine.set_index("source_row").loc[4, "detail"]


INSTACART_ERRORS = {
    "no_order_products": (dict(order_products=None), "order_products__*", None, None, "no order_products"),
    "header_only": (dict(order_products=OP_HEADER), "order_products__prior.csv", 2, None, "no data rows"),
    "empty_products": (dict(order_products=OP_HEADER + "1,10,1,0\n", products=b""), "products.csv", None, None,
                       "empty"),
    "missing_products": (dict(order_products=OP_HEADER + "1,10,1,0\n", products=None), "products.csv", None, None,
                         "not found"),
    "products_missing_name": (dict(order_products=OP_HEADER + "1,10,1,0\n", products="product_id,name\n10,x\n"),
                              "products.csv", 1, "product_name", "missing required column"),
    "non_utf8_products": (dict(order_products=OP_HEADER + "1,10,1,0\n",
                               products=b"product_id,product_name\n10,Caf\xe9\n"), "products.csv", 2, "product_name",
                          "0xe9"),
    "duplicate_order": (dict(order_products=OP_HEADER + "1,10,1,0\n", orders=ORDERS + "2,9,prior,1,1,1,\n"),
                        "orders.csv", 6, "order_id", "listed twice"),
    "truncated_order_products": (dict(order_products=OP_HEADER + "1,10,1,0\n1,1"), "order_products__prior.csv", 3,
                                 "add_to_cart_order", "truncated"),
}


@pytest.mark.parametrize("case", list(INSTACART_ERRORS))
def test_instacart_unreadable_files_name_file_row_field(tmp_path, case):
    kwargs, name, row, field, words = INSTACART_ERRORS[case]
    ops = kwargs.pop("order_products")
    if ops is None:
        with pytest.raises(InputFileError) as e:
            read_instacart(InstacartSource(str(tmp_path)))
    else:
        with pytest.raises(InputFileError) as e:
            _instacart(tmp_path, ops, **kwargs)
    assert e.value.path == str(tmp_path / name)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


# ----------------------------------------------------------------- formats brought as downloaded (issue 17)
def _cut(data: bytes) -> bytes:
    """A compressed file cut short, as an interrupted download leaves it."""
    return data[: len(data) // 2]


def _gz_repeat(text: str, n: int = 40) -> bytes:
    return gzip.compress((text * n).encode())


def _baskets(tmp: Path, data: str | bytes, name: str = "baskets.csv", **spec) -> RawTables:
    from data_checks.sources import SourceSpec, read_source

    return read_source(SourceSpec("baskets", str(_write(tmp / name, data)), **spec))


BASKETS = "milk,bread\nbutter\n"
BASKET_ERRORS = {
    "empty": (lambda t: _baskets(t, b""), "baskets.csv", None, None, "empty"),
    "blank_lines_only": (lambda t: _baskets(t, "\n  \n\n"), "baskets.csv", None, None, "empty"),
    "header_only": (lambda t: _baskets(t, "items\n", header=True), "baskets.csv", None, None, "no baskets"),
    "non_utf8_item": (lambda t: _baskets(t, b"milk,bread\nbutter,caf\xe9\n"), "baskets.csv", 2, "item 2", "0xe9"),
    "nul_byte": (lambda t: _baskets(t, "milk,bread\nbut\x00ter\n"), "baskets.csv", 2, "item 1", "NUL"),
    "truncated_gzip": (lambda t: _baskets(t, _cut(_gz_repeat(BASKETS * 50)), "baskets.csv.gz"), "baskets.csv.gz",
                       None, None, "truncated"),
    "truncated_xz": (lambda t: _baskets(t, _cut(__import__("lzma").compress((BASKETS * 500).encode())),
                                        "baskets.txt.xz"), "baskets.txt.xz", None, None, "truncated"),
    "zip_archive": (lambda t: _baskets(t, b"PK\x03\x04" + b"\x00" * 40, "groceries.zip"), "groceries.zip", None,
                    None, "unpack it"),
    "missing_catalog_column": (lambda t: _baskets(t, BASKETS, catalog_path=str(_write(t / "cat.csv", "sku\nmilk\n"))),
                               "cat.csv", 1, "item_id", "missing required column"),
}


@pytest.mark.parametrize("case", list(BASKET_ERRORS))
def test_baskets_unreadable_files_name_file_row_field(tmp_path, case):
    build, name, row, field, words = BASKET_ERRORS[case]
    with pytest.raises(InputFileError) as e:
        build(tmp_path)
    assert e.value.path == str(tmp_path / name)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


def test_baskets_odd_lines_are_accounted_for(tmp_path):
    long_item = "X" * 1_000_000
    r = accounted(_baskets(tmp_path, f"milk,milk,bread\n,,\n{long_item},jam\n../../etc/passwd;x,  ,🛒\n"))
    # a repeated item in a line is a duplicate row; a 1 MB item is a broken field; odd ids stay data
    assert sorted(reasons_by_row(r).items()) == [(1, "duplicate_row"), (3, "id_too_long")]
    assert set(r.interactions["item_id"]) == {"milk", "bread", "jam", "../../etc/passwd;x", "🛒"}
    assert set(r.interactions["basket_id"]) == {"1", "3", "4"}


def _events_file(tmp: Path, name: str, data: str | bytes, catalog: tuple[str, str | bytes] | None = None,
                 **spec) -> RawTables:
    from data_checks.sources import SourceSpec, read_source

    path = _write(tmp / name, data)
    cat = str(_write(tmp / catalog[0], catalog[1])) if catalog else None
    return read_source(SourceSpec("events", str(path), catalog_path=cat, **spec))


REVIEW = '{"user_id": "u1", "item_id": "a", "timestamp": 1400000000}\n'
REVIEWS = REVIEW + REVIEW.replace("u1", "u2") + REVIEW.replace('"a"', '"b"')
META = '{"item_id": "a", "title": "A", "category": ["Food", "Snacks"]}\n'
JSON_ERRORS = {
    "bad_line": (lambda t: _events_file(t, "r.jsonl", REVIEW + '{"user_id": u2}\n' + REVIEW), "r.jsonl", 2, None,
                 "not valid JSON"),
    "not_an_object": (lambda t: _events_file(t, "r.jsonl", REVIEW + '["u2", "a"]\n'), "r.jsonl", 2, None,
                      "expected a JSON object, found list"),
    "truncated_last_line": (lambda t: _events_file(t, "r.jsonl", REVIEWS[:-15]), "r.jsonl", 3, None, "truncated"),
    "truncated_gzip": (lambda t: _events_file(t, "r.json.gz", _cut(_gz_repeat(REVIEWS))), "r.json.gz", None, None,
                       "truncated"),
    "truncated_array": (lambda t: _events_file(t, "r.json", '[{"user_id": "u1", "item_id": "a"}, {"user_id"'),
                        "r.json", 1, None, "truncated"),
    "missing_key": (lambda t: _events_file(t, "r.jsonl", REVIEWS, columns={"user_id": "reviewerID",
                                                                            "item_id": "item_id"}),
                    "r.jsonl", None, "reviewerID", "missing required column"),
    "non_utf8": (lambda t: _events_file(t, "r.jsonl", REVIEW.encode() + b'{"item_id": "caf\xe9"}\n'), "r.jsonl", 2,
                 None, "0xe9"),
    "empty": (lambda t: _events_file(t, "r.ndjson", b""), "r.ndjson", None, None, "empty"),
    "catalog_bad_line": (lambda t: _events_file(t, "r.jsonl", REVIEWS, ("meta.jsonl", META + "{oops\n")),
                         "meta.jsonl", 2, None, "not valid JSON"),
    "catalog_truncated_gzip": (lambda t: _events_file(t, "r.jsonl", REVIEWS, ("meta.json.gz", _cut(_gz_repeat(META)))),
                               "meta.json.gz", None, None, "truncated"),
    "events_truncated_csv_gz": (lambda t: _events_file(t, "e.csv.gz", _cut(_gz_repeat(EVENTS))), "e.csv.gz", None,
                                None, "truncated"),
}


@pytest.mark.parametrize("case", list(JSON_ERRORS))
def test_json_lines_unreadable_files_name_file_row_field(tmp_path, case):
    build, name, row, field, words = JSON_ERRORS[case]
    with pytest.raises(InputFileError) as e:
        build(tmp_path)
    assert e.value.path == str(tmp_path / name)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


def test_json_lines_odd_values_are_quarantined_not_crashing(tmp_path):
    lines = [REVIEW,
             '{"user_id": "u3", "item_id": null, "timestamp": 1400000000}\n',  # no item
             '{"user_id": "u4", "item_id": ["a", "b"], "timestamp": 1400000000}\n',  # a list as id: kept as text
             '{"user_id": 17, "item_id": 5, "timestamp": 1400000001, "quantity": 2}\n',  # numbers as ids
             '{"user_id": "u5", "item_id": "a", "timestamp": {"$date": 1}}\n',  # an object as time
             '{"user_id": "u6", "item_id": "a", "timestamp": "1400000002", "price": "$1,299.99"}\n',
             '{"user_id": "u7", "item_id": "a", "price": [1]}\n']
    r = accounted(_events_file(tmp_path, "r.jsonl", "".join(lines), columns={
        "user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp", "price": "price"}))
    assert reasons_by_row(r) == {2: "missing_item_id", 5: "unparseable_timestamp", 7: "unparseable_price"}
    got = r.interactions.set_index("source_row")
    assert got.loc[4, "user_id"] == "17" and got.loc[4, "item_id"] == "5"
    assert got.loc[3, "item_id"] == "['a', 'b']" and got.loc[6, "price"] == 1299.99


HEADERLESS = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
NAMES = ["user_id", "item_id", "rating", "timestamp"]
HEADERLESS_ERRORS = {
    "no_names": (dict(data=HEADERLESS), "u.data", None, None, "header: false needs names"),
    "extra_field": (dict(data=HEADERLESS + "1\t2\t3\t4\t5\n", names=NAMES), "u.data", 3, "column 5",
                    "expected 4 fields, found 5"),
    "missing_field": (dict(data=HEADERLESS + "1\t2\t3\n7\t8\t9\t881250949\n", names=NAMES), "u.data", 3, "timestamp",
                      "expected 4 fields, found 3"),
    "whitespace_missing_field": (dict(data="1 2 3 881250949\n4  5\n", names=NAMES, delimiter="whitespace"), "u.data",
                                 2, "rating", "expected 4 fields, found 2"),
    "multi_char_cut": (dict(data="1::2::3::881250949\n4::5::6", names=NAMES), "u.data", 2, "timestamp", "truncated"),
    "non_utf8": (dict(data=b"1\t2\t3\t881250949\n1\tcaf\xe9\t3\t881250949\n", names=NAMES), "u.data", 2, "item_id",
                 "0xe9"),
}


@pytest.mark.parametrize("case", list(HEADERLESS_ERRORS))
def test_header_less_files_name_file_row_field(tmp_path, case):
    kw, name, row, field, words = HEADERLESS_ERRORS[case]
    kw = dict(kw)
    with pytest.raises(InputFileError) as e:
        _events_file(tmp_path, name, kw.pop("data"), header=False, **kw)
    assert e.value.path == str(tmp_path / name)
    assert (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)


def test_epoch_times_some_bad_rows_are_quarantined_the_rest_read(tmp_path):
    text = ("user_id,item_id,timestamp\nu,a,1400000000\nu,b,soon\nu,c,86400\nu,d,\nu,e,1400000000.5\n"
            "u,f,99999999999999999999\n")
    r = accounted(_events_file(tmp_path, "e.csv", text))
    # 86400 s is 1970-01-02 (out of range); 1e20 s is beyond what a timestamp can hold (unparseable)
    assert reasons_by_row(r) == {3: "unparseable_timestamp", 4: "timestamp_out_of_range",
                                 7: "unparseable_timestamp"}
    ts = r.interactions.set_index("item_id")["timestamp"]
    assert ts["e"] == pd.Timestamp(1_400_000_000_500_000_000) and pd.isna(ts["d"])


@pytest.mark.parametrize("store", ["int64", "timestamp_s_as_int"])
def test_parquet_epoch_integers_are_not_nanoseconds(tmp_path, store):
    values = [1_400_000_000, 1_400_000_100] if store == "int64" else [1_400_000_000_000, 1_400_000_100_000]
    pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"], "timestamp": values}).to_parquet(tmp_path / "e.parquet")
    r = accounted(_events_file(tmp_path, "e.parquet", (tmp_path / "e.parquet").read_bytes()))
    assert r.quarantine.empty and r.interactions["timestamp"].iloc[1] == pd.Timestamp("2014-05-13 16:55:00")


def test_every_time_implausible_stops_instead_of_quarantining_every_row(tmp_path):
    text = "user_id,item_id,timestamp\n" + "".join(f"u{i},a,{86400 * i}\n" for i in range(1, 50))
    with pytest.raises(InputFileError) as e:
        _events_file(tmp_path, "e.csv", text)
    assert e.value.field == "timestamp" and "1970-01-02" in str(e.value)
    assert "every time read is implausible" in str(e.value)
