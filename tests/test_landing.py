"""Landing folder: listing (partial files ignored, fingerprints), reading in canonical and source layouts,
validation with quarantine, and appending to the main source."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from data_checks.errors import InputFileError
from data_checks.landing import (
    append_landed,
    clean_landed,
    land_by_period,
    landed_fingerprint,
    list_landed,
    read_landed,
)
from data_checks.readers import RawTables


def canonical(n: int, month: str = "2024-01", item: str = "a") -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i % 3}" for i in range(n)], "item_id": [f"{item}{i % 4}" for i in range(n)],
                         "timestamp": pd.date_range(f"{month}-01", periods=n, freq="h"),
                         "basket_id": [f"{month}-b{i // 2}" for i in range(n)], "quantity": 1.0, "price": 2.5})


def test_list_ignores_partial_and_foreign_files_and_fingerprints_content(tmp_path: Path):
    paths = land_by_period(pd.concat([canonical(10, "2024-01"), canonical(10, "2024-02")]), tmp_path)
    assert [p.name for p in paths] == ["interactions-2024-01.parquet", "interactions-2024-02.parquet"]
    (tmp_path / ".interactions-2024-03.parquet.abc.tmp").write_bytes(b"half")
    (tmp_path / "interactions-2024-04.csv.part").write_text("item_id\nx\n")
    (tmp_path / "README.md").write_text("notes")
    files = list_landed(tmp_path)
    assert [f.name for f in files] == ["interactions-2024-01.parquet", "interactions-2024-02.parquet"]
    assert [f.name for f in list_landed(tmp_path, "*-02.*")] == ["interactions-2024-02.parquet"]
    assert list_landed(tmp_path / "missing") == []
    key = landed_fingerprint(files)
    assert landed_fingerprint(list(reversed(files))) == key
    # a rewritten file (new mtime) is hashed again: same name, new content, new fingerprint
    canonical(10, "2024-02", item="z").to_parquet(paths[1], index=False)
    again = list_landed(tmp_path, known={f.name: f for f in files})
    assert landed_fingerprint(again) != key


def test_cached_fingerprint_reused_when_file_unchanged(tmp_path: Path):
    land_by_period(canonical(5), tmp_path)
    first = list_landed(tmp_path)
    fake = {first[0].name: first[0].__class__(**{**first[0].__dict__, "sha256": "cached"})}
    assert list_landed(tmp_path, known=fake)[0].sha256 == "cached"


def test_canonical_csv_without_user_column_and_quarantine(tmp_path: Path):
    df = canonical(6).drop(columns=["user_id"])
    df.loc[2, "quantity"] = -1.0  # a return
    df.loc[4, "item_id"] = None
    path = tmp_path / "day.csv"
    df.to_csv(path, index=False)
    result = clean_landed([str(path)])
    assert len(result.interactions) == 4 and result.interactions["user_id"].isna().all()
    q = result.quarantine.set_index("source_row")["reason"].to_dict()
    assert q == {4: "non_positive_quantity", 6: "missing_item_id"}  # CSV rows: header is row 1
    assert set(result.quarantine["source_file"]) == {str(path)}


def test_canonical_file_without_item_column_names_the_file(tmp_path: Path):
    path = tmp_path / "bad.csv"
    canonical(3).rename(columns={"item_id": "sku"}).to_csv(path, index=False)
    with pytest.raises(InputFileError, match="item_id"):
        read_landed([str(path)])


def test_online_retail_layout_follows_its_cleaning_rules(tmp_path: Path):
    raw = pd.DataFrame({"InvoiceNo": ["1", "1", "C2"], "StockCode": ["A", "POST", "A"],
                        "Description": ["x", "postage", "x"], "Quantity": [2, 1, -2],
                        "InvoiceDate": ["2011-01-03 10:00:00"] * 3, "UnitPrice": [1.0, 5.0, 1.0],
                        "CustomerID": ["17850", "17850", "17850"], "Country": ["UK"] * 3})
    path = tmp_path / "2011-01.csv"
    raw.to_csv(path, index=False)
    result = clean_landed([str(path)], layout="online_retail", source="online_retail")
    assert list(result.interactions["item_id"]) == ["A"]
    assert sorted(result.quarantine["reason"]) == ["cancellation", "non_product_code"]


def test_append_keeps_main_source_and_catalog(tmp_path: Path):
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

    base = generate_shop(SyntheticShopConfig(n_users=40, n_months=2)).tables
    month = canonical(8, "2024-03", item="SKU0000")
    path = land_by_period(month, tmp_path)[0]
    both = append_landed(base, read_landed([str(path)]))
    assert both.source == "synthetic" and len(both.items) == len(base.items)
    assert len(both.interactions) == len(base.interactions) + 8
    assert (both.interactions["source_file"] == str(path)).sum() == 8
    assert isinstance(both, RawTables)
    assert os.path.basename(both.interactions["source_file"].iloc[-1]) == path.name


def test_ingestion_appends_landed_files_and_validation_quarantines_their_bad_rows(tmp_path: Path):
    import dagster as dg

    from orchestration.assets import ingestion, validation
    from orchestration.definitions import build_resources

    month = canonical(12, "2024-07", item="SKU0000")
    month.loc[3, "price"] = 0.0
    path = land_by_period(month, tmp_path / "landing")[0]
    assets = dg.load_assets_from_modules([ingestion, validation])
    checks = dg.load_asset_checks_from_modules([ingestion, validation])
    cfg = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 40,
                                             "landed_files": [str(path)]}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*assets, *checks], resources=build_resources(str(tmp_path / "data")),
                                run_config=cfg, instance=instance)
    assert result.success
    clean = result.output_for_node("validated_tables", "validated_interactions")
    quarantine = result.output_for_node("validated_tables", "quarantine")
    assert (clean["source_file"] == str(path)).sum() == 8
    bad = quarantine[quarantine["source_file"] == str(path)].set_index("source_row")["reason"].to_dict()
    # Parquet rows count from 1; SKU00000 is not in the shop's catalog (its ids start at SKU00001)
    assert bad == {1: "item_not_in_catalog", 4: "non_positive_price", 5: "item_not_in_catalog",
                   9: "item_not_in_catalog"}
    raw_meta = [e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                if e.event_specific_data.materialization.asset_key.to_user_string() == "raw_interactions"][0]
    assert raw_meta["landed_files"].value == 1 and raw_meta["landed_rows"].value == 12
