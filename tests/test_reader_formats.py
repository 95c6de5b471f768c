"""The formats public datasets and shops bring, as downloaded, read through ``read_source``: basket-per-line
files, JSON-lines reviews and catalogs, header-less delimited files, the delimiter and timestamp rules, and
the Instacart folder in either published form. Tiny files written by the tests."""
from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_checks.cleaning import clean
from data_checks.errors import InputFileError
from data_checks.sources import SourceSpec, read_source
from data_checks.tables import prices, read_table
from data_checks.text_files import WHITESPACE, sniff_delimiter
from data_checks.times import from_epoch, parse_times, unit_for_magnitude

GROCERIES = ("citrus fruit,semi-finished bread,margarine,ready soups\n"
             "tropical fruit,yogurt,coffee\n"
             "\n"
             "whole milk\n"
             "pip fruit, yogurt ,cream cheese ,meat spreads,\n")
T0 = 1_400_000_000  # 2014-05-13 16:53:20 UTC


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def baskets_of(tables) -> dict[str, list[str]]:
    i = tables.interactions
    return {b: list(g["item_id"]) for b, g in i.groupby("basket_id", sort=False)}


# ----------------------------------------------------------------- kind: baskets
@pytest.mark.parametrize("suffix,compress", [(".csv", None), (".csv.gz", gzip.compress), (".txt", None),
                                             ("", bz2.compress)])
def test_baskets_groceries_form(tmp_path, suffix, compress):
    data = GROCERIES.encode()
    path = write(tmp_path / f"groceries{suffix}", compress(data) if compress else data)
    t = read_source(SourceSpec("baskets", str(path)))
    assert t.source == "baskets"
    assert baskets_of(t) == {"1": ["citrus fruit", "semi-finished bread", "margarine", "ready soups"],
                             "2": ["tropical fruit", "yogurt", "coffee"], "4": ["whole milk"],
                             "5": ["pip fruit", "yogurt", "cream cheese", "meat spreads"]}
    i = t.interactions
    assert i["user_id"].isna().all() and i["timestamp"].isna().all() and (i["quantity"] == 1).all()
    assert i["source_row"].tolist() == [1, 1, 1, 1, 2, 2, 2, 4, 5, 5, 5, 5]
    r = clean(t, now=pd.Timestamp("2025-01-01"))
    assert r.quarantine.empty and len(r.interactions) == 12 and len(r.items) == 11


def test_baskets_whitespace_quotes_header_and_catalog(tmp_path):
    fimi = write(tmp_path / "retail.dat", "0 1 2 \n3 4\n\n  5\t6 7\n")  # FIMI: trailing blanks, tabs
    assert baskets_of(read_source(SourceSpec("baskets", str(fimi)))) == {"1": ["0", "1", "2"], "2": ["3", "4"],
                                                                         "4": ["5", "6", "7"]}
    quoted = write(tmp_path / "q.csv", 'items\n"milk, 1 l",bread\nbread;rye,"jam"\n')
    cat = write(tmp_path / "cat.csv", "sku,name,dept\n\"milk, 1 l\",Milk,Dairy > Milk\nbread,Bread,Bakery\n")
    t = read_source(SourceSpec("baskets", str(quoted), header=True, catalog_path=str(cat), catalog_delimiter=",",
                               catalog_columns={"item_id": "sku", "title": "name", "category": "dept"}))
    assert baskets_of(t) == {"2": ["milk, 1 l", "bread"], "3": ["bread;rye", "jam"]}
    assert t.items.set_index("item_id").loc["milk, 1 l", "category_path"] == ["Dairy", "Milk"]
    r = clean(t, now=pd.Timestamp("2025-01-01"))
    assert dict(zip(r.quarantine["source_row"], r.quarantine["reason"])) == {3: "item_not_in_catalog"}


def test_baskets_sniffed_semicolons_and_given_delimiter_wins(tmp_path):
    path = write(tmp_path / "b.txt", "a;b;c\nb;c\nd e;f\n")
    assert baskets_of(read_source(SourceSpec("baskets", str(path))))["3"] == ["d e", "f"]
    assert baskets_of(read_source(SourceSpec("baskets", str(path), delimiter=" ")))["3"] == ["d", "e;f"]


def test_baskets_millions_of_lines_fast(tmp_path):
    """Many lines read in linear time (50k lines here: well under a second on a shared 2-core machine)."""
    rng = np.random.default_rng(0)
    lines = [",".join(f"item{j}" for j in rng.integers(0, 500, rng.integers(1, 8))) for _ in range(50_000)]
    path = write(tmp_path / "big.csv", "\n".join(lines) + "\n")
    import time

    start = time.perf_counter()
    t = read_source(SourceSpec("baskets", str(path)))
    assert time.perf_counter() - start < 5.0
    assert t.interactions["basket_id"].nunique() == 50_000
    assert len(t.interactions) == sum(len(line.split(",")) for line in lines)


# ----------------------------------------------------------------- events: JSON lines
AMAZON_REVIEWS = [
    {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "reviewText": "Great, \"crunchy\"", "unixReviewTime": T0},
    {"reviewerID": "A2", "asin": "B02", "overall": 4.0, "unixReviewTime": T0 + 86_400, "style": {"Size:": "L"}},
    {"reviewerID": "A1", "asin": "B03", "overall": 1.0, "unixReviewTime": T0 + 2 * 86_400},
]
AMAZON_META = [
    {"asin": "B01", "title": "Chips", "brand": "Lays", "category": ["Grocery", "Snacks", "Chips"],
     "price": "$12.99", "also_buy": ["B02", "B03"]},
    {"asin": "B02", "title": "Salsa", "category": ["Grocery", "Sauces"], "price": "$1,299.00"},
    {"asin": "B03", "title": "Tea", "category": [], "price": "$5.00 - $9.00", "brand": None},
]
REVIEW_COLUMNS = {"user_id": "reviewerID", "item_id": "asin", "timestamp": "unixReviewTime"}
META_COLUMNS = {"item_id": "asin", "title": "title", "brand": "brand", "category": "category", "price": "price"}


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.mark.parametrize("name", ["reviews.json.gz", "reviews.jsonl", "reviews.ndjson.gz", "reviews.json"])
def test_amazon_reviews_and_metadata(tmp_path, name):
    text = jsonl(AMAZON_REVIEWS)
    path = write(tmp_path / name, gzip.compress(text.encode()) if name.endswith(".gz") else text)
    meta = write(tmp_path / "meta.json.gz", gzip.compress(jsonl(AMAZON_META).encode()))
    t = read_source(SourceSpec("events", str(path), columns=REVIEW_COLUMNS, catalog_path=str(meta),
                               catalog_columns=META_COLUMNS))
    i = t.interactions
    assert list(i["user_id"]) == ["A1", "A2", "A1"] and list(i["item_id"]) == ["B01", "B02", "B03"]
    assert list(i["timestamp"]) == [pd.Timestamp(T0, unit="s") + pd.Timedelta(days=d) for d in range(3)]
    assert i["source_row"].tolist() == [1, 2, 3]
    items = t.items.set_index("item_id")
    assert items.loc["B01", "category"] == "Grocery > Snacks > Chips"
    assert items.loc["B01", "category_path"] == ["Grocery", "Snacks", "Chips"]
    assert pd.isna(items.loc["B03", "category"]) and items.loc["B03", "category_path"] is None
    assert items["price"].tolist()[:2] == [12.99, 1299.0] and np.isnan(items.loc["B03", "price"])
    r = clean(t, now=pd.Timestamp("2025-01-01"))
    assert r.quarantine.empty and r.items.set_index("item_id").loc["B02", "category_path"] == ["Grocery", "Sauces"]


def test_amazon_2023_epoch_milliseconds_array_and_python_literals(tmp_path):
    ms = [{"user_id": "U1", "parent_asin": "P1", "rating": 5, "timestamp": T0 * 1000 + 923},
          {"user_id": "U2", "parent_asin": "P2", "timestamp": str(T0 * 1000)}]
    path = write(tmp_path / "Grocery.jsonl", jsonl(ms))
    cols = {"user_id": "user_id", "item_id": "parent_asin", "timestamp": "timestamp"}
    i = read_source(SourceSpec("events", str(path), columns=cols)).interactions
    assert list(i["timestamp"]) == [pd.Timestamp(T0 * 1000 + 923, unit="ms"), pd.Timestamp(T0, unit="s")]
    array = write(tmp_path / "all.json", json.dumps(ms, indent=2))  # one JSON array, pretty-printed
    assert read_source(SourceSpec("events", str(array), columns=cols)).interactions["source_row"].tolist() == [1, 2]
    # Amazon's 2014 metadata is written as Python literals; categories is a list of paths
    meta = write(tmp_path / "meta.json", "{'asin': 'P1', 'title': 'Chips', 'categories': [['Grocery', 'Snacks']], "
                                         "'salesRank': {'Grocery': 12}, 'details': {'Brand': 'Lays'}}\n")
    items = read_source(SourceSpec("events", str(path), columns=cols, catalog_path=str(meta), catalog_columns={
        "item_id": "asin", "title": "title", "category": "categories", "brand": "details.Brand"})).items
    assert items["category_path"].iloc[0] == ["Grocery", "Snacks"] and items["brand"].iloc[0] == "Lays"


# ----------------------------------------------------------------- header-less and the delimiter rule
U_DATA = f"196\t242\t3\t{T0}\n186\t302\t3\t{T0 + 60}\n\n22\t377\t1\t{T0 + 120}\n"
U_NAMES = ["user_id", "item_id", "rating", "timestamp"]


def test_movielens_u_data_header_less_no_suffix(tmp_path):
    path = write(tmp_path / "u.data", U_DATA)
    t = read_source(SourceSpec("events", str(path), header=False, names=U_NAMES))
    i = t.interactions
    assert list(i["user_id"]) == ["196", "186", "22"] and list(i["item_id"]) == ["242", "302", "377"]
    assert list(i["timestamp"]) == [pd.Timestamp(T0 + s, unit="s") for s in (0, 60, 120)]
    assert i["source_row"].tolist() == [1, 2, 4], "the first line is row 1; blank lines counted"
    with pytest.raises(InputFileError, match="set header: false and names") as e:
        read_source(SourceSpec("events", str(path)))
    assert e.value.field == "user_id" and e.value.row == 1


@pytest.mark.parametrize("name,text,spec", [
    ("ratings.dat", f"1::1193::5::{T0}\n1::661::3::{T0 + 1}\n", {}),  # MovieLens 1M
    ("r.txt", f"1|1193|5|{T0}\n1|661|3|{T0 + 1}\n", {}),
    ("r", f"1   1193  5  {T0}\n1 661 3    {T0 + 1}\n", {}),  # aligned with spaces
    ("r.tsv", f"1\t1193\t5\t{T0}\n1\t661\t3\t{T0 + 1}\n", {}),
    ("r.csv", f"1;1193;5;{T0}\n1;661;3;{T0 + 1}\n", {"delimiter": ";"}),
    ("r.csv", f"1 1193 5 {T0}\n1  661 3 {T0 + 1}\n", {"delimiter": "whitespace"}),
    ("r.data", f"1\t1193\t5\t{T0}\n1\t661\t3\t{T0 + 1}\n", {"delimiter": "\\t"}),  # '\t' in single-quoted YAML
])
def test_delimiter_rule(tmp_path, name, text, spec):
    path = write(tmp_path / name, text)
    i = read_source(SourceSpec("events", str(path), header=False, names=U_NAMES, **spec)).interactions
    assert list(i["item_id"]) == ["1193", "661"] and i["timestamp"].iloc[1] == pd.Timestamp(T0 + 1, unit="s")


def test_tsv_with_header_reads_as_tab_and_a_given_delimiter_wins(tmp_path):
    path = write(tmp_path / "events.tsv", "user_id\titem_id\ttimestamp\nu1\ta,b\t2024-01-01\n")
    assert read_source(SourceSpec("events", str(path))).interactions["item_id"].tolist() == ["a,b"]
    with pytest.raises(InputFileError, match=r"'\\t'"):
        read_source(SourceSpec("events", str(path), delimiter=","))


def test_sniffing():
    assert sniff_delimiter("a,b;c\nd,e;f\n") == ","
    assert sniff_delimiter("a b;c\nd e;f\n") == ";"
    assert sniff_delimiter("a  b c\nd e   f\n") == WHITESPACE
    assert sniff_delimiter('"x,1"|2\n"y"|3\n') == "|"
    assert sniff_delimiter("one\ntwo\n") == ","
    assert sniff_delimiter("a,b\nc\nd,e,f\n", ragged=True) == ","
    assert sniff_delimiter("1 2 3\n4\n", ragged=True) == WHITESPACE
    assert sniff_delimiter("whole milk\tbread\nyogurt\tsoda pop\tjam\nice cream\n", ragged=True) == "\t"


def test_events_with_basket_lines_points_at_kind_baskets(tmp_path):
    path = write(tmp_path / "groceries.csv", GROCERIES)
    with pytest.raises(InputFileError, match="set kind: baskets") as e:
        read_source(SourceSpec("events", str(path), columns={"item_id": "citrus fruit"}))
    assert e.value.row == 5 and "expected 4 fields, found 5" in str(e.value)


# ----------------------------------------------------------------- timestamps
def test_unit_rule_boundaries():
    assert [unit_for_magnitude(v) for v in (0, 1.7e9, 9.99e10, 1e11, 1.7e12, 1.7e15, 1.7e18)] == \
        ["s", "s", "s", "ms", "ms", "us", "ns"]
    exact = from_epoch(pd.Series([T0, T0 * 1.0, 1.5]), "s")
    assert list(exact) == [pd.Timestamp(T0, unit="s")] * 2 + [pd.Timestamp(1_500_000_000, unit="ns")]
    assert from_epoch(pd.Series([1e30, np.inf, np.nan]), "s").isna().all()


@pytest.mark.parametrize("values,unit,expected", [
    (pd.Series([T0, T0 + 1]), None, [T0, T0 + 1]),  # int64 (CSV read as typed, Parquet)
    (pd.Series([str(T0 * 1000), str((T0 + 1) * 1000)]), None, [T0, T0 + 1]),  # digit strings, ms
    (pd.Series([T0 * 10**9, (T0 + 1) * 10**9], dtype="int64"), None, [T0, T0 + 1]),  # Parquet int64 ns
    (pd.Series([str(T0), "not a time", str(T0 + 1)]), None, [T0, None, T0 + 1]),  # one bad value: quarantined
    (pd.Series([str(T0), "", str(T0 + 1)]), "s", [T0, None, T0 + 1]),
    (pd.Series(["2014-05-13T16:53:20Z", "2014-05-13 18:53:21+02:00"]), None, [T0, T0 + 1]),
])
def test_timestamp_rule(values, unit, expected):
    got = parse_times(values, unit=unit).values
    want = [pd.Timestamp(v, unit="s") if v is not None else pd.NaT for v in expected]
    assert [g if pd.notna(g) else pd.NaT for g in got] == want


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
@pytest.mark.parametrize("scale", [1, 1000])
def test_epoch_times_in_every_format(tmp_path, fmt, scale):
    df = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "timestamp": [T0 * scale, (T0 + 7) * scale]})
    path = tmp_path / f"e.{fmt}"
    {"csv": lambda: df.to_csv(path, index=False), "parquet": lambda: df.to_parquet(path),
     "json": lambda: df.to_json(path, orient="records", lines=True)}[fmt]()
    for spec in ({}, {"timestamp_unit": "s" if scale == 1 else "ms"}, {"timestamp_format": "%s"} if scale == 1 else {}):
        ts = read_source(SourceSpec("events", str(path), **spec)).interactions["timestamp"]
        assert list(ts) == [pd.Timestamp(T0, unit="s"), pd.Timestamp(T0 + 7, unit="s")]


@pytest.mark.parametrize("values,spec,words", [
    ([T0 * 1000, T0 * 1000 + 5], {"timestamp_unit": "s"}, "set timestamp_unit: ms"),
    ([T0 * 1000, T0 * 1000 + 5], {"timestamp_format": "%s"}, "set timestamp_unit: ms"),
    ([T0, T0 + 5], {"timestamp_unit": "ms"}, "set timestamp_unit: s"),
    ([20240101, 20240102], {}, "timestamp_format: '%Y%m%d'"),
    (["1970-01-01", "1970-01-02"], {}, "1970-01-01 00:00:00 to 1970-01-02"),
    (["2100-01-01", "2200-01-02"], {}, "none between 1990-01-01 and today"),
    (["soon", "later"], {}, "none of the 2 values could be read"),
    (["2024-01-01", "2024-01-02"], {"timestamp_format": "%Q"}, "not a usable strptime pattern"),
    ([T0, T0], {"timestamp_unit": "h"}, "timestamp_unit 'h' is not one of"),
])
def test_implausible_times_stop_naming_column_range_and_unit(tmp_path, values, spec, words):
    path = tmp_path / "e.csv"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "when": values}).to_csv(path, index=False)
    with pytest.raises(InputFileError) as e:
        read_source(SourceSpec("events", str(path), columns={"user_id": "user_id", "item_id": "item_id",
                                                             "timestamp": "when"}, **spec))
    assert e.value.field == "when" and e.value.path == str(path)
    assert words in str(e.value)


# ----------------------------------------------------------------- prices
def test_prices_with_currency_and_thousands():
    got = prices(pd.Series(["$12.99", "1,299.00", "EUR 1.299,00", "12,99 €", "£1,000", " 7 ", "$5 - $9", "1,5",
                            "free", None, 3], dtype=object))
    assert got[:6].tolist() == [12.99, 1299.0, 1299.0, 12.99, 1000.0, 7.0] and got[10] == 3.0
    assert got[6:10].isna().all()


# ----------------------------------------------------------------- Instacart as published
def _instacart_tables() -> dict[str, pd.DataFrame]:
    return {
        "order_products__prior": pd.DataFrame({"order_id": [1, 1, 2], "product_id": [10, 11, 10],
                                               "add_to_cart_order": [1, 2, 1], "reordered": [0, 0, 1]}),
        "order_products__train": pd.DataFrame({"order_id": [3], "product_id": [12], "add_to_cart_order": [1],
                                               "reordered": [0]}),
        "products": pd.DataFrame({"product_id": [10, 11, 12], "product_name": ["Banana", "Milk", "Bread"],
                                  "aisle_id": [24, 84, 112], "department_id": [4, 16, 3]}),
        "aisles": pd.DataFrame({"aisle_id": [24, 84, 112], "aisle": ["fresh fruits", "milk", "bread"]}),
        "departments": pd.DataFrame({"department_id": [4, 16, 3], "department": ["produce", "dairy eggs", "bakery"]}),
    }


@pytest.mark.parametrize("form", [".parquet", ".csv.gz", ".csv", "mixed"])
def test_instacart_folder_in_every_published_form(tmp_path, form):
    for k, (stem, df) in enumerate(_instacart_tables().items()):
        suffix = form if form != "mixed" else (".parquet", ".csv.gz", ".csv")[k % 3]
        path = tmp_path / f"{stem}{suffix}"
        if suffix == ".parquet":
            df.to_parquet(path)
        elif suffix == ".csv.gz":
            path.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
        else:
            df.to_csv(path, index=False)
    t = read_source(SourceSpec("instacart", str(tmp_path)))
    i = t.interactions.sort_values(["basket_id", "item_id"])
    assert list(zip(i["basket_id"], i["item_id"])) == [("1", "10"), ("1", "11"), ("2", "10"), ("3", "12")]
    assert i["user_id"].isna().all(), "no orders table: baskets without customers"
    items = t.items.set_index("item_id")
    assert items.loc["10", "category"] == "produce / fresh fruits"
    assert items.loc["11", "category_path"] == ["dairy eggs", "milk"]


def test_instacart_truncated_csv_gz_table_says_truncated(tmp_path):
    for stem, df in _instacart_tables().items():
        df.to_csv(tmp_path / f"{stem}.csv", index=False)
    (tmp_path / "order_products__prior.csv").unlink()
    big = pd.concat([_instacart_tables()["order_products__prior"]] * 200).to_csv(index=False).encode()
    data = gzip.compress(big)
    write(tmp_path / "order_products__prior.csv.gz", data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated") as e:
        read_source(SourceSpec("instacart", str(tmp_path)))
    assert e.value.path == str(tmp_path / "order_products__prior.csv.gz")


def test_read_table_header_less_ragged_rows_named(tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\t4\n5\t6\t7")  # cut inside the last line
    with pytest.raises(InputFileError) as e:
        read_table(path, ["a"], header=False, names=["a", "b", "c", "d"])
    assert (e.value.row, e.value.field) == (2, "d") and "truncated" in str(e.value)


def _instacart_folder(tmp: Path, form: str = ".parquet") -> None:
    for stem, df in _instacart_tables().items():
        path = tmp / f"{stem}{form}"
        if form == ".parquet":
            df.to_parquet(path)
        else:
            path.write_bytes(gzip.compress(df.to_csv(index=False).encode()))


def _corrupt_parquet(tmp: Path) -> Path:
    _instacart_folder(tmp)
    path = tmp / "order_products__prior.parquet"
    path.write_bytes(path.read_bytes()[:40])
    return path


def _products_without_names(tmp: Path) -> Path:
    _instacart_folder(tmp)
    _instacart_tables()["products"].drop(columns=["product_name"]).to_parquet(tmp / "products.parquet")
    return tmp / "products.parquet"


def _no_products(tmp: Path) -> Path:
    _instacart_folder(tmp)
    (tmp / "products.parquet").unlink()
    return tmp / "products.csv"


def _latin1_in_csv_gz(tmp: Path) -> Path:
    _instacart_folder(tmp, ".csv.gz")
    (tmp / "products.csv.gz").write_bytes(gzip.compress(b"product_id,product_name\n10,Banana\n11,Caf\xe9\n"))
    return tmp / "products.csv.gz"


@pytest.mark.parametrize("build,row,field,words", [
    (_corrupt_parquet, None, None, "not a readable Parquet file"),
    (_products_without_names, None, "product_name", "missing required column"),
    (_no_products, None, None, "products.csv, products.csv.gz or products.parquet"),
    (_latin1_in_csv_gz, 3, "product_name", "0xe9"),
])
def test_instacart_published_forms_errors_name_file_row_field(tmp_path, build, row, field, words):
    path = build(tmp_path)
    with pytest.raises(InputFileError) as e:
        read_source(SourceSpec("instacart", str(tmp_path)))
    assert e.value.path == str(path) and (e.value.row, e.value.field) == (row, field)
    assert words in str(e.value)
