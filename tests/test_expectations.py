"""Great Expectations suites pass on clean tables and catch what cleaning must prevent."""
import pandas as pd

from data_checks.expectations import validate_tables


def test_suites_pass_on_clean_tables_and_write_data_docs(shop_clean, tmp_path):
    rep = validate_tables(shop_clean.interactions, shop_clean.items, docs_dir=tmp_path / "docs")
    assert rep.success, rep.to_frame()[~rep.to_frame()["success"]]
    assert (tmp_path / "docs" / "index.html").exists()
    assert len(list((tmp_path / "docs" / "validations").rglob("*.html"))) == 2


def test_suites_catch_bad_rows(shop_clean):
    bad = shop_clean.interactions.copy()
    bad.loc[0, "quantity"] = -3.0
    bad.loc[1, "item_id"] = "NOT-IN-CATALOG"
    bad = pd.concat([bad, bad.iloc[[5]]], ignore_index=True)
    rep = validate_tables(bad, shop_clean.items)
    failed = {(r.expectation, r.column) for r in rep.failed()}
    assert not rep.success
    assert ("expect_column_values_to_be_between", "quantity") in failed
    assert ("expect_column_values_to_be_in_set", "item_id") in failed
    assert any(e == "expect_compound_columns_to_be_unique" for e, _ in failed)
