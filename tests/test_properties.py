"""Property-based tests (hypothesis) on every reader and on the validation step (cleaning).

For any generated file or frame: reading either stops with :class:`InputFileError` (naming the file)
or succeeds; cleaning never raises, and rows in = clean + quarantined. Where the test wrote the file
with a proper CSV writer, the reader must also return exactly the records written (no row dropped).

Deterministic: ``derandomize=True`` (the examples are a fixed function of the test) and no example
database. The default profile ``cobuy`` keeps this file under a minute on a 2-core machine; the
profile ``cobuy-large`` (``COBUY_HYPOTHESIS_PROFILE=cobuy-large``) runs ten times as many. With
``COBUY_HYPOTHESIS_REPORT=1`` the counts of generated cases (and how each ended) are written to
``benchmarks/results/hypothesis-cases.json``; they are always printed at the end of the module.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_checks.cleaning import clean
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
from data_checks.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, OPTIONAL_INTERACTION_COLUMNS, conform
from tests.test_readers import HEADER

pytestmark = pytest.mark.heavy(39)  # seconds on 2 quiet cores: make test starts the heaviest files first

ROOT = Path(__file__).resolve().parent.parent
_COMMON = dict(derandomize=True, database=None, deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("cobuy", max_examples=40, **_COMMON)
settings.register_profile("cobuy-large", max_examples=400, **_COMMON)
PROFILE = os.environ.get("COBUY_HYPOTHESIS_PROFILE", "cobuy")
NOW = pd.Timestamp("2025-01-01")

CASES: dict[str, Counter] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def report_cases(request):
    """Print how many generated cases ran (and how they ended); write them as JSON when asked."""
    start = time.perf_counter()
    yield
    total = sum(sum(c.values()) for c in CASES.values())
    summary = {name: dict(c) for name, c in sorted(CASES.items())}
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nhypothesis ({PROFILE}): {total} generated cases ran: {json.dumps(summary)}")
    if os.environ.get("COBUY_HYPOTHESIS_REPORT"):
        out = ROOT / "benchmarks" / "results" / "hypothesis-cases.json"
        out.write_text(json.dumps({
            "profile": PROFILE, "max_examples_per_test": settings.get_profile(PROFILE).max_examples,
            "total_cases": total, "by_test": summary, "wall_s": round(time.perf_counter() - start, 1),
            "loadavg": os.getloadavg(), "machine": platform.platform(), "cpus": os.cpu_count()}, indent=2) + "\n")


def outcome(test: str, path: Path | None, run: Callable[[], RawTables], expected_rows: int | None = None,
            cleaned: bool = True) -> None:
    """Read (``run``), then clean (unless ``cleaned`` is False: cleaning of any frame has its own test below,
    and it is the slow half); the only exception allowed out is InputFileError naming the file."""
    try:
        raw = run()
    except InputFileError as exc:
        if path is not None:
            assert str(path.parent) in exc.path, (exc.path, path)
        CASES[test]["stopped: InputFileError"] += 1
        return
    n_in = len(raw.interactions)
    if expected_rows is not None:
        assert n_in == expected_rows, "the reader dropped or invented rows"
    if not cleaned:
        CASES[test]["read"] += 1
        return
    r = clean(raw, now=NOW)
    q_inter = int((r.quarantine["table"] == "interactions").sum())
    assert len(r.interactions) + q_inter == n_in
    if len(raw.items):
        assert len(r.items) + int((r.quarantine["table"] == "items").sum()) == len(raw.items)
    CASES[test]["read and cleaned"] += 1


# ----------------------------------------------------------------- value strategies
ODD = "/\\\"',;\t\n\r \x07\x1b\u00e9\u00fc\u2028🛒.~-_"
odd_text = st.text(alphabet=st.sampled_from(list(ODD) + list("abcXYZ0123456789")), max_size=12)
number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["NaN", "nan", "inf", "-inf", "1e400", "-0", "0", "1,5", "0x10", "", " 7 ", "9" * 400]),
)
date_text = st.one_of(
    st.datetimes(min_value=pd.Timestamp("1000-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2200-01-01").to_pydatetime()).map(str),
    st.sampled_from(["3000-01-01", "9999-12-31 23:59:59", "0001-01-01", "1989-12-31", "2011-13-45", "yesterday",
                     "2024-01-01T10:00:00+05:00", "", "12/31/2010 08:26"]),
)
id_text = st.one_of(st.integers(0, 99999).map(str), odd_text, st.just(""), st.sampled_from(["POST", "C536379"]))


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")  # so a lone \r in a value is quoted
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


RETAIL_CELLS = {"InvoiceNo": id_text, "StockCode": id_text, "Description": odd_text, "Quantity": number_text,
                "InvoiceDate": date_text, "UnitPrice": number_text, "CustomerID": id_text, "Country": odd_text}


@st.composite
def retail_csv(draw):
    """Online Retail rows with every kind of value, sometimes a column missing or extra, sometimes
    another delimiter than the configured one."""
    header = list(HEADER)
    dropped = draw(st.sampled_from([None] * 3 * len(HEADER) + HEADER))  # now and then a missing column
    if dropped:
        header.remove(dropped)
    if draw(st.booleans()):
        header.append("Extra")
    n = draw(st.integers(0, 12))
    rows = [[draw(RETAIL_CELLS.get(h, odd_text)) for h in header] for _ in range(n)]
    delimiter = draw(st.sampled_from([",", ",", ",", ";", "\t", "|"]))
    return header, rows, delimiter


@settings(parent=settings.get_profile(PROFILE))
@given(retail_csv(), st.sampled_from([True] * 4 + [False]), st.booleans())
def test_online_retail_csv_any_content(spec, configured_right, gz):
    header, rows, delimiter = spec
    configured = delimiter if configured_right else ("," if delimiter != "," else ";")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("r.csv.gz" if gz else "r.csv")
        data = csv_text(header, rows, delimiter).encode()
        import gzip

        path.write_bytes(gzip.compress(data) if gz else data)
        outcome("online_retail_csv", path, lambda: read_online_retail(OnlineRetailSource(str(path), configured)),
                expected_rows=len(rows) if configured == delimiter else None)


@settings(parent=settings.get_profile(PROFILE))
@given(st.binary(max_size=400), st.sampled_from([b"", ",".join(HEADER).encode() + b"\n"]))
def test_online_retail_arbitrary_bytes(data, prefix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.csv"
        path.write_bytes(prefix + data)
        outcome("online_retail_bytes", path, lambda: read_online_retail(OnlineRetailSource(str(path))))


def typed_column(kind: str, n: int):
    """A homogeneous column of ``n`` values of one Parquet type, with missing and extreme values."""
    if kind == "float":
        return st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n)
    if kind == "int":
        return st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)
    if kind == "time":
        return st.lists(st.one_of(st.none(), st.datetimes(min_value=pd.Timestamp("0001-01-02").to_pydatetime())),
                        min_size=n, max_size=n)
    if kind == "bool":
        return st.lists(st.booleans(), min_size=n, max_size=n)
    return st.lists(st.one_of(st.none(), odd_text, number_text, date_text), min_size=n, max_size=n)


@st.composite
def typed_frame(draw, columns: list[str]):
    import pyarrow as pa

    n = draw(st.integers(1, 10))  # header-only files are in tests/test_bad_input.py
    arrays, names = [], []
    dropped = draw(st.sampled_from([None] * 3 * len(columns) + columns))  # now and then a missing column
    for c in columns:
        if c == dropped:
            continue
        kind = draw(st.sampled_from(["str", "str", "float", "int", "time", "bool"]))
        values = draw(typed_column(kind, n))
        arrays.append(pa.array(values, type=pa.timestamp("us") if kind == "time" else None))
        names.append(c)
    return pa.table(arrays, names=names) if names else pa.table({"unrelated": pa.array([1] * n)})


@settings(parent=settings.get_profile(PROFILE))
@given(typed_frame(HEADER))
def test_online_retail_parquet_any_types(table):
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.parquet"
        pq.write_table(table, path)
        outcome("online_retail_parquet", path, lambda: read_online_retail(OnlineRetailSource(str(path))),
                expected_rows=table.num_rows)


@settings(parent=settings.get_profile(PROFILE), max_examples=max(5, settings.get_profile(PROFILE).max_examples // 8))
@given(retail_csv())
def test_online_retail_xlsx(spec):
    """Spreadsheets cannot hold control characters; the rest is as in CSV (fewer cases: openpyxl is slow)."""
    header, rows, _ = spec
    clean_rows = [["".join(ch for ch in v if ch >= " " or ch in "\t\n") for v in r] for r in rows]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.xlsx"
        pd.DataFrame(clean_rows, columns=header).to_excel(path, index=False)
        outcome("online_retail_xlsx", path, lambda: read_online_retail(OnlineRetailSource(str(path))))


EVENT_CELLS = {"customer": id_text, "sku": id_text, "when": date_text, "order": id_text, "qty": number_text,
               "amount": number_text}


@st.composite
def events_files(draw):
    cols = draw(st.lists(st.sampled_from(list(EVENT_CELLS)), min_size=1, max_size=6, unique=True))
    if draw(st.integers(0, 4)) and "sku" not in cols:
        cols.append("sku")
    rows = [[draw(EVENT_CELLS[c]) for c in cols] for _ in range(draw(st.integers(1, 10)))]
    canon = {"customer": "user_id", "sku": "item_id", "when": "timestamp", "order": "basket_id", "qty": "quantity",
             "amount": "price"}
    mapped = draw(st.lists(st.sampled_from(cols), unique=True))  # mostly columns the file has
    if draw(st.integers(0, 9)) == 0:
        mapped = draw(st.lists(st.sampled_from(list(EVENT_CELLS)), unique=True, max_size=6))
    elif "sku" in cols and "sku" not in mapped:
        mapped.append("sku")
    mapping = {canon[c]: c for c in mapped}
    catalog = None
    if draw(st.booleans()):
        catalog = [[draw(id_text), draw(odd_text), draw(number_text)] for _ in range(draw(st.integers(1, 6)))]
    return cols, rows, mapping, catalog


@settings(parent=settings.get_profile(PROFILE))
@given(events_files())
def test_events_and_catalog_any_content(spec):
    cols, rows, mapping, catalog = spec
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.csv"
        path.write_text(csv_text(cols, rows))
        cat_path = None
        if catalog is not None:
            cat_path = Path(d) / "catalog.csv"
            cat_path.write_text(csv_text(["sku", "name", "amount"], catalog))
        src = EventsSource(str(path), columns=mapping, catalog_path=str(cat_path) if cat_path else None,
                           catalog_columns={"item_id": "sku", "title": "name", "price": "amount"})
        outcome("events_csv", path, lambda: read_events(src), expected_rows=len(rows))


good_token = st.integers(0, 30).map(lambda v: str(v).encode())
bad_token = st.one_of(st.integers(0, 2**64).map(lambda v: str(v).encode()),
                      st.sampled_from([b"-1", b"x", b"\xe9", b"1.5", b"--2", b"+3", b"1_0", b"\x00"]))
# mostly well-formed lines, now and then a bad token (a bad token stops the read)
lightgcn_line = st.integers(0, 19).flatmap(
    lambda k: st.lists(st.one_of(good_token, bad_token), max_size=6) if k == 0
    else st.lists(good_token, min_size=1 if k == 1 else 2, max_size=6))
lightgcn_lines = st.lists(lightgcn_line, min_size=1, max_size=8)


@settings(parent=settings.get_profile(PROFILE))
@given(lightgcn_lines, lightgcn_lines, st.one_of(st.none(), st.lists(st.tuples(odd_text, st.integers(0, 30)),
                                                                     min_size=1, max_size=8)))
def test_lightgcn_any_lines(train, test, item_list):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for name, lines in (("train.txt", train), ("test.txt", test)):
            (folder / name).write_bytes(b"".join(b" ".join(t) + b"\n" for t in lines))
        if item_list is not None:
            (folder / "item_list.txt").write_text(csv_text(["org_id", "remap_id"],
                                                           [[o, str(r)] for o, r in item_list], " "))
        n = sum(len(t) - 1 for t in train + test if len(t) > 1)
        outcome("lightgcn", folder / "train.txt", lambda: read_lightgcn(LightGCNSource(d)), expected_rows=n)


@st.composite
def instacart_folder(draw):
    small_id = st.one_of(st.integers(1, 6).map(str), id_text)
    ops = [[draw(small_id), draw(small_id), "1", "0"] for _ in range(draw(st.integers(1, 10)))]
    orders = None
    if draw(st.booleans()):
        ids = draw(st.lists(st.integers(1, 8), min_size=1, max_size=6, unique=True))
        if draw(st.integers(0, 9)) == 0:
            ids.append(ids[0])  # now and then an order listed twice (stops the read)
        orders = [[str(i), draw(small_id), "prior", draw(number_text), "1", draw(number_text), draw(number_text)]
                  for i in ids]
    products = [[draw(small_id), draw(odd_text), draw(small_id), draw(small_id)] for _ in range(draw(st.integers(1, 6)))]
    return ops, orders, products


@settings(parent=settings.get_profile(PROFILE))
@given(instacart_folder(), st.lists(st.sampled_from([".csv", ".csv", ".csv.gz"]), min_size=3, max_size=3))
def test_instacart_any_content(spec, suffixes):
    """Each table as .csv or .csv.gz (the folder may mix them, as a partial re-download leaves it)."""
    import gzip

    ops, orders, products = spec

    def put(path: Path, text: str) -> None:
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        put(folder / f"order_products__prior{suffixes[0]}",
            csv_text(["order_id", "product_id", "add_to_cart_order", "reordered"], ops))
        if orders is not None:
            put(folder / f"orders{suffixes[1]}", csv_text(
                ["order_id", "user_id", "eval_set", "order_number", "order_dow", "order_hour_of_day",
                 "days_since_prior_order"], orders))
        put(folder / f"products{suffixes[2]}", csv_text(["product_id", "product_name", "aisle_id", "department_id"],
                                                        products))
        outcome("instacart", folder / "products.csv", lambda: read_instacart(InstacartSource(d)),
                expected_rows=len(ops))


# ----------------------------------------------------------------- formats as downloaded (issue 17)
SAFE = "abcdefghijklmnopqrstuvwxyzABC0123456789-_.()&'/"
safe_item = st.text(alphabet=st.sampled_from(list(SAFE) + [" "]), min_size=1, max_size=10).filter(
    lambda v: v.strip() != "")
basket_item = st.one_of(safe_item, safe_item, safe_item, odd_text)


@settings(parent=settings.get_profile(PROFILE))
@given(st.lists(st.lists(basket_item, max_size=6), min_size=1, max_size=10),
       st.sampled_from([",", ",", ";", "\t", "|"]), st.booleans(), st.booleans())
def test_baskets_any_lines(baskets, delimiter, given_delimiter, gz):
    """Any basket file reads or stops with InputFileError; with plain items (no delimiter, quote or line break
    inside), every item of every non-blank line is a row, its basket the line number."""
    plain = all(set(i) <= set(SAFE + " ") for b in baskets for i in b)
    text = "\n".join(delimiter.join(b) for b in baskets) + "\n"
    expected = [(str(n), i.strip()) for n, b in enumerate(baskets, start=1) for i in b if i.strip()]
    with tempfile.TemporaryDirectory() as d:
        import gzip

        path = Path(d) / ("b.csv.gz" if gz else "b.txt")
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
        from data_checks.sources import SourceSpec, read_source

        spec = SourceSpec("baskets", str(path), delimiter=delimiter if given_delimiter or gz else None)
        # sniffing sees the delimiter when it occurs at all (items without spaces or other delimiters)
        exact = plain and (spec.delimiter is not None or (any(len(b) > 1 for b in baskets)
                                                          and not any(" " in i for b in baskets for i in b)))
        outcome("baskets", path, lambda: read_source(spec), expected_rows=len(expected) if exact else None,
                cleaned=False)
        if exact and expected:
            got = read_source(spec).interactions
            assert list(zip(got["basket_id"], got["item_id"])) == expected


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), odd_text,
              number_text, date_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner,
                                                                            max_size=2)),
    max_leaves=6)
JSON_KEYS = ["reviewerID", "asin", "unixReviewTime", "overall", "price", "category"]


@st.composite
def json_lines_file(draw):
    # mostly well-formed reviews (a customer, an item, a plausible epoch time), with any key now and then
    # missing or holding any JSON value
    base = st.fixed_dictionaries({"reviewerID": id_text, "asin": id_text, "category": st.lists(odd_text, max_size=3),
                                  "unixReviewTime": st.integers(946_684_800, 1_700_000_000), "price": number_text})
    records = [{**draw(base), **draw(st.dictionaries(st.sampled_from(JSON_KEYS), json_value, max_size=2))}
               for _ in range(draw(st.integers(1, 8)))]
    for r in records:
        for key in draw(st.lists(st.sampled_from(JSON_KEYS), max_size=2)):
            r.pop(key, None)
    lines = [json.dumps(r) for r in records]
    garbage = draw(st.sampled_from([None] * 8 + ["{oops", "[1, 2]", "null", '"text"', "{'asin': 'py literal'}"]))
    if garbage is not None:
        lines.insert(draw(st.integers(0, len(lines))), garbage)
    blank = draw(st.booleans())
    return records, ("\n\n" if blank else "\n").join(lines) + "\n", garbage


@settings(parent=settings.get_profile(PROFILE))
@given(json_lines_file(), json_lines_file(), st.sampled_from([".jsonl", ".json.gz", ".ndjson"]), st.booleans())
def test_json_lines_any_records(events, catalog, suffix, with_catalog):
    """Any JSON-lines file (values of every JSON type, now and then a bad line) reads or stops with
    InputFileError; without a bad line, one row per object."""
    records, text, garbage = events
    with tempfile.TemporaryDirectory() as d:
        import gzip

        from data_checks.sources import SourceSpec, read_source

        path = Path(d) / f"reviews{suffix}"
        path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
        cat = Path(d) / "meta.jsonl"
        cat.write_text(catalog[1])
        spec = SourceSpec("events", str(path), columns={"user_id": "reviewerID", "item_id": "asin",
                                                        "timestamp": "unixReviewTime", "price": "price"},
                          catalog_path=str(cat) if with_catalog else None,
                          catalog_columns={"item_id": "asin", "category": "category", "price": "price"})
        sound = garbage is None or garbage.startswith("{'")
        outcome("json_lines", path, lambda: read_source(spec),
                expected_rows=len(records) + (garbage is not None) if sound else None, cleaned=False)


@settings(parent=settings.get_profile(PROFILE))
@given(st.lists(st.tuples(st.text(alphabet=st.sampled_from(list(SAFE[:-3])), min_size=1, max_size=8),
                          st.text(alphabet=st.sampled_from(list(SAFE[:-3])), min_size=1, max_size=8),
                          st.integers(946_684_800, 1_700_000_000)), min_size=1, max_size=10),
       st.sampled_from(["\t", ",", ";", "|", "::", " ", "  "]), st.sampled_from(["s", "ms"]),
       st.sampled_from(["u.data", "ratings.dat", "r.txt", "r"]))
def test_header_less_files_any_delimiter_sniffed(rows, delimiter, unit, name):
    """A header-less file with no telling suffix: the delimiter is sniffed, the epoch unit detected, every
    row read with its values."""
    scale = 1000 if unit == "ms" else 1
    text = "".join(delimiter.join([u, i, str(t * scale)]) + "\n" for u, i, t in rows)
    with tempfile.TemporaryDirectory() as d:
        from data_checks.sources import SourceSpec, read_source

        path = Path(d) / name
        path.write_text(text)
        t = read_source(SourceSpec("events", str(path), header=False, names=["user_id", "item_id", "timestamp"]))
        CASES["header_less_sniffed"]["read"] += 1
        got = t.interactions
        assert list(got["user_id"]) == [u for u, _, _ in rows] and list(got["item_id"]) == [i for _, i, _ in rows]
        assert list(got["timestamp"]) == [pd.Timestamp(ts, unit="s") for _, _, ts in rows]
        assert got["source_row"].tolist() == list(range(1, len(rows) + 1))


@settings(parent=settings.get_profile(PROFILE))
@given(st.lists(st.datetimes(min_value=pd.Timestamp("1990-01-02").to_pydatetime(),
                             max_value=pd.Timestamp("2024-12-31").to_pydatetime()), min_size=1, max_size=8),
       st.sampled_from(["s", "ms"]), st.sampled_from(["int", "str"]), st.sampled_from(["csv", "json", "parquet"]),
       st.booleans())
def test_epoch_times_round_trip(times, unit, kind, fmt, declared):
    """Epoch seconds or milliseconds, as integers or digit strings, in CSV, JSON lines or Parquet, detected by
    magnitude or declared, read back as the same times (to the unit's resolution)."""
    stamps = [pd.Timestamp(t).floor("s" if unit == "s" else "ms") for t in times]
    epoch = [int(t.value // (10**9 if unit == "s" else 10**6)) for t in stamps]
    values = epoch if kind == "int" else [str(v) for v in epoch]
    df = pd.DataFrame({"user_id": ["u"] * len(values), "item_id": [f"i{k}" for k in range(len(values))],
                       "timestamp": values})
    with tempfile.TemporaryDirectory() as d:
        from data_checks.sources import SourceSpec, read_source

        path = Path(d) / {"csv": "e.csv", "json": "e.jsonl", "parquet": "e.parquet"}[fmt]
        {"csv": lambda: df.to_csv(path, index=False), "parquet": lambda: df.to_parquet(path),
         "json": lambda: df.to_json(path, orient="records", lines=True)}[fmt]()
        got = read_source(SourceSpec("events", str(path), timestamp_unit=unit if declared else None)).interactions
        CASES["epoch_round_trip"]["read"] += 1
        assert list(got["timestamp"]) == stamps


@settings(parent=settings.get_profile(PROFILE))
@given(st.lists(st.lists(safe_item, min_size=3, max_size=3), min_size=5, max_size=30),
       st.sampled_from(["gzip", "bz2", "xz"]), st.floats(0.05, 0.95), st.sampled_from(["events", "baskets", "json"]))
def test_compressed_files_cut_short_say_truncated(rows, codec, keep, kind):
    """A compressed file cut anywhere after its first bytes stops with InputFileError saying it is truncated
    (or corrupt), never a raw exception and never a partial read."""
    import bz2
    import gzip
    import lzma

    text = (csv_text(["user_id", "item_id", "timestamp"], rows) if kind != "json"
            else "".join(json.dumps({"user_id": a, "item_id": b}) + "\n" for a, b, _ in rows))
    data = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[codec](text.encode())
    cut = max(6, int(len(data) * keep))
    with tempfile.TemporaryDirectory() as d:
        from data_checks.sources import SourceSpec, read_source

        suffix = {"gzip": ".gz", "bz2": ".bz2", "xz": ".xz"}[codec]
        path = Path(d) / (("e.jsonl" if kind == "json" else "e.csv") + suffix)
        path.write_bytes(data[:cut])
        with pytest.raises(InputFileError) as e:
            read_source(SourceSpec("baskets" if kind == "baskets" else "events", str(path)))
        CASES["compressed_cut_short"]["stopped: InputFileError"] += 1
        assert e.value.path == str(path)
        assert "truncated" in str(e.value) or "corrupt" in str(e.value)


# ----------------------------------------------------------------- the validation step on generated frames
maybe_id = st.one_of(st.none(), id_text)
maybe_number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
maybe_time = st.one_of(st.none(), st.datetimes(min_value=pd.Timestamp("1678-01-01").to_pydatetime(),
                                               max_value=pd.Timestamp("2262-01-01").to_pydatetime()))


@st.composite
def raw_tables(draw):
    n = draw(st.integers(0, 15))
    pool = draw(st.lists(maybe_id, min_size=1, max_size=5))  # a small pool so duplicates occur
    pick = st.one_of(st.sampled_from(pool), maybe_id)
    inter = pd.DataFrame({
        "user_id": pd.array([draw(pick) for _ in range(n)], dtype="string"),
        "item_id": pd.array([draw(pick) for _ in range(n)], dtype="string"),
        "timestamp": pd.to_datetime(pd.Series([draw(maybe_time) for _ in range(n)], dtype=object)),
        "basket_id": pd.array([draw(pick) for _ in range(n)], dtype="string"),
        "quantity": pd.array([draw(maybe_number) for _ in range(n)], dtype="float64"),
        "price": pd.array([draw(maybe_number) for _ in range(n)], dtype="float64"),
        "source_row": np.arange(n) + 2,
        "title": pd.array([draw(st.one_of(st.none(), odd_text)) for _ in range(n)], dtype="string"),
        "source_file": "generated.csv",
    })
    for col in ("unparsed_quantity", "unparsed_price", "unparsed_timestamp"):
        if draw(st.booleans()):
            inter[col] = pd.array([draw(st.one_of(st.none(), number_text, date_text)) for _ in range(n)],
                                  dtype="string")
    items = pd.DataFrame(columns=list(ITEM_COLUMNS))
    if draw(st.booleans()):
        m = draw(st.integers(0, 8))
        items = pd.DataFrame({"item_id": pd.array([draw(pick) for _ in range(m)], dtype="string"),
                              "title": pd.array([draw(st.one_of(st.none(), odd_text)) for _ in range(m)],
                                                dtype="string"),
                              "price": pd.array([draw(maybe_number) for _ in range(m)], dtype="float64"),
                              "source_row": np.arange(m) + 2})
    source = draw(st.sampled_from(["online_retail", "events", "baskets", "lightgcn", "instacart", "synthetic"]))
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                     conform(items, ITEM_COLUMNS, {"source_row": "int64"}), source)


# the profile's own number of cases (was 3x): each case runs the cleaning rules as Great Expectations suites
@settings(parent=settings.get_profile(PROFILE))
@given(raw_tables())
def test_cleaning_any_frame(raw):
    outcome("cleaning", None, lambda: raw, expected_rows=len(raw.interactions))
