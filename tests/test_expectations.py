"""Great Expectations decide: row-level suites on the rows as read send rows to quarantine (the detail names the
expectation), table-level suites fail and block on their own, catalog text and time are checked."""
import numpy as np
import pandas as pd
import pytest

from data_checks.catalog_text import MARKUP_PATTERN
from data_checks.cleaning import CleaningRules, clean
from data_checks.expectations import GxSession, validate_tables
from data_checks.readers import RawTables

NOW = pd.Timestamp("2025-01-01")
AMAZON_FRAGMENT = '<span class="a-size-medium a-color-secondary"'


def _rows(n: int, timestamps=None, quantity=None, items=None) -> pd.DataFrame:
    """``n`` clean-looking purchase rows: 5 users, 10 items, one basket per row."""
    return pd.DataFrame({
        "user_id": pd.array([f"u{i % 5}" for i in range(n)], dtype="string"),
        "item_id": pd.array(items if items is not None else [f"i{i % 10}" for i in range(n)], dtype="string"),
        "timestamp": (pd.to_datetime(timestamps) if timestamps is not None
                      else pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h")),
        "basket_id": pd.array([f"b{i}" for i in range(n)], dtype="string"),
        "quantity": np.ones(n) if quantity is None else np.asarray(quantity, dtype=float),
        "price": np.full(n, 2.5),
        "source_row": np.arange(2, n + 2, dtype=np.int64),
    })


def _catalog(titles: list) -> pd.DataFrame:
    return pd.DataFrame({"item_id": pd.array([f"i{i}" for i in range(len(titles))], dtype="string"),
                         "title": pd.array(titles, dtype="string")})


def _run(inter: pd.DataFrame, items: pd.DataFrame, docs=None):
    session = GxSession(docs)
    result = clean(RawTables(inter, items, "events"), CleaningRules(), now=NOW, gx=session)
    report = validate_tables(result.interactions, result.items, raw_interactions=inter, session=session)
    return result, report


def test_dirty_shop_row_suite_fails_tables_pass_and_data_docs_show_every_suite(shop, tmp_path):
    session = GxSession(tmp_path / "docs")
    result = clean(shop.tables, gx=session)
    report = validate_tables(result.interactions, result.items, raw_interactions=shop.tables.interactions,
                             session=session)
    suites = report.suites()
    assert suites["interactions_as_read_rows"] is False  # the shop's planted dirt fails row-level expectations
    assert suites["interactions_as_read"] and suites["interactions_clean"] and suites["items_clean"]
    assert report.success and not report.blocking_failures()
    failed_rows = {r.reason for r in report.failed() if r.level == "row"}
    assert {"duplicate_row", "non_positive_quantity", "non_positive_price", "missing_item_id"} <= failed_rows
    # each failed row-level expectation's count is exactly what went to quarantine with its reason (first reason)
    by_reason = result.quarantine.groupby("reason").size()
    assert sum(r.unexpected_count for r in report.failed() if r.reason == "missing_item_id") == by_reason["missing_item_id"]
    assert (tmp_path / "docs" / "index.html").exists()
    pages = {p.parent.parent.parent.name for p in (tmp_path / "docs" / "validations").rglob("*.html")}
    assert pages == set(suites)


def test_rows_failing_an_expectation_are_quarantined_with_it_named():
    inter = _rows(40, quantity=[1.0] * 37 + [-2.0, 0.0, 2e6])
    inter.loc[5, "item_id"] = "not-sold-here"
    inter.loc[6, ["user_id", "basket_id"]] = pd.NA
    result, report = _run(inter, _catalog([f"Product {i}" for i in range(10)]))
    q = result.quarantine.set_index("source_row")
    assert q.loc[39, "reason"] == "non_positive_quantity" and q.loc[40, "reason"] == "non_positive_quantity"
    assert "[expectation expect_column_values_to_be_between(column=quantity, min_value=0.0, strict_min=True)]" in \
        q.loc[39, "detail"]
    assert q.loc[41, "reason"] == "quantity_out_of_range"
    assert "max_value=100000.0" in q.loc[41, "detail"]
    assert q.loc[7, "reason"] == "item_not_in_catalog"
    assert q.loc[8, "reason"] == "missing_user_and_basket"
    assert q.loc[8, "detail"].endswith(
        "[expectation expect_column_values_to_not_be_null(column=user_id, row_condition='basket_id is null')]")
    assert "expect_column_values_to_be_in_set(column=item_id" in q.loc[7, "detail"]
    row_results = {(r.expectation, r.column, r.reason): r for r in result.expectations}
    failed = row_results[("expect_column_values_to_be_between", "quantity", "non_positive_quantity")]
    assert not failed.success and failed.unexpected_count == 2
    assert len(result.interactions) + len(result.quarantine) == 40 and len(result.quarantine) == 5
    assert report.success  # 4 bad rows of 40 is the quarantine policy's business, not a table-level failure


def test_duplicates_keep_the_first_copy_gx_marks_every_copy():
    inter = _rows(30)
    inter = pd.concat([inter, inter.iloc[[3, 3, 8]]], ignore_index=True)
    inter["source_row"] = np.arange(2, len(inter) + 2)
    result, _ = _run(inter, _catalog([f"Product {i}" for i in range(10)]))
    dup = [r for r in result.expectations if r.reason == "duplicate_row"][0]
    assert dup.unexpected_count == 5  # GX: all three copies of row 3 and both of row 8
    q = result.quarantine
    assert sorted(q["source_row"]) == [32, 33, 34] and set(q["reason"]) == {"duplicate_row"}
    assert "rule" not in q["detail"].iloc[0] and "expect_compound_columns_to_be_unique" in q["detail"].iloc[0]


def test_table_level_suite_fails_on_its_own_and_blocks():
    # every row is fine on its own, but all of them are on one instant: no row is quarantined, the run blocks
    inter = _rows(40, timestamps=["2024-03-01 12:00:00"] * 40)
    result, report = _run(inter, _catalog([f"Product {i}" for i in range(10)]))
    assert len(result.quarantine) == 0
    assert not report.success
    (fail,) = report.blocking_failures()
    assert (fail.expectation, fail.column) == ("expect_column_most_common_value_share_to_be_between", "timestamp")
    assert fail.observed_value == 1.0 and "one single instant" in fail.meaning
    # and a table left with no clean row fails its row count
    _, report = _run(_rows(30, quantity=[-1.0] * 30), _catalog([f"Product {i}" for i in range(10)]))
    assert ("expect_table_row_count_to_be_between", "interactions_clean") in {
        (r.expectation, r.suite) for r in report.blocking_failures()}


def test_html_title_catalog_is_blocked():
    titles = [AMAZON_FRAGMENT] * 93 + [f"Stainless steel kettle {i}" for i in range(7)]
    inter = _rows(200, items=[f"i{i % 100}" for i in range(200)])
    _, report = _run(inter, _catalog(titles))
    assert not report.success
    failed = {(r.expectation, r.column): r for r in report.blocking_failures()}
    assert set(failed) == {("expect_column_values_to_not_match_regex", "title"),
                           ("expect_column_most_common_value_share_to_be_between", "title")}
    assert failed[("expect_column_values_to_not_match_regex", "title")].unexpected_percent == pytest.approx(93.0)
    assert failed[("expect_column_most_common_value_share_to_be_between", "title")].observed_value == pytest.approx(0.93)
    # the same catalog with product names passes
    _, report = _run(inter, _catalog([f"Stainless steel kettle {i}" for i in range(100)]))
    assert report.success


@pytest.mark.parametrize("text, markup", [
    (AMAZON_FRAGMENT, True), ("<br>", True), ("Mug</b>", True), ("<img src='x.jpg'/>", True),
    ("Screws < 5 mm", False), ("A<B cable", False), ("Salt & Pepper &amp; Co", False), ("Cable <3m>", False)])
def test_markup_pattern(text, markup):
    import re

    assert bool(re.search(MARKUP_PATTERN, text)) is markup


def test_misparsed_time_is_caught():
    # epoch seconds read as nanoseconds: every row lands on 1970-01-01, a few microseconds apart
    ns = pd.to_datetime(np.arange(1_700_000_000, 1_700_000_040), unit="ns")
    result, report = _run(_rows(40, timestamps=ns), _catalog([f"Product {i}" for i in range(10)]))
    assert set(result.quarantine["reason"]) == {"timestamp_out_of_range"} and len(result.interactions) == 0
    fails = {(r.suite, r.expectation, r.column): r for r in report.blocking_failures()}
    time_check = fails[("interactions_as_read", "expect_column_values_to_be_between", "timestamp")]
    assert time_check.unexpected_count == 40 and "mis-parsed" in time_check.meaning
