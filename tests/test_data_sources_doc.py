"""Every YAML block in ``docs/data_sources.md``, and every ``raw_tables`` block in ``docs/data.md``, is a run config the
``raw_tables`` asset accepts, and reads a tiny file of the form it documents (so the documents cannot rot)."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_checks.sources import SourceSpec, read_source

DOC = Path(__file__).resolve().parent.parent / "docs" / "data_sources.md"
DATA_DOC = DOC.parent / "data.md"
T0 = 1_400_000_000


def blocks(doc: Path = DOC) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", doc.read_text(), flags=re.S)


def readme_blocks() -> list[str]:
    """``docs/data.md``'s yaml blocks that configure ``raw_tables`` (it has other yaml blocks too)."""
    return [b for b in blocks(DATA_DOC) if "raw_tables" in (yaml.safe_load(b).get("ops") or {})]


def _gz_lines(records: list[dict]) -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())


def _groceries(root: Path) -> None:
    (root / "data" / "groceries.csv").write_text("citrus fruit,semi-finished bread,margarine\n\nwhole milk\n")


def _amazon_2018(root: Path) -> None:
    (root / "data" / "Grocery_and_Gourmet_Food_5.json.gz").write_bytes(_gz_lines([
        {"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": T0},
        {"reviewerID": "A2", "asin": "B2", "overall": 3.0, "unixReviewTime": T0 + 9}]))
    (root / "data" / "meta_Grocery_and_Gourmet_Food.json.gz").write_bytes(_gz_lines([
        {"asin": "B1", "title": "Chips", "brand": "Lays", "category": ["Grocery", "Snacks"], "price": "$2.99"},
        {"asin": "B2", "title": "Tea", "category": ["Grocery", "Tea"], "price": "$1,002.00", "also_buy": ["B1"]}]))


def _amazon_2023(root: Path) -> None:
    (root / "data" / "Grocery_and_Gourmet_Food.jsonl.gz").write_bytes(_gz_lines([
        {"user_id": "U1", "parent_asin": "P1", "rating": 5, "timestamp": T0 * 1000},
        {"user_id": "U2", "parent_asin": "P2", "rating": 1, "timestamp": T0 * 1000 + 5}]))
    (root / "data" / "meta_Grocery_and_Gourmet_Food.jsonl.gz").write_bytes(_gz_lines([
        {"parent_asin": "P1", "title": "Chips", "store": "Lays", "categories": ["Grocery", "Snacks"], "price": 2.99},
        {"parent_asin": "P2", "title": "Tea", "store": None, "categories": [], "price": None,
         "details": {"Brand": "Tetley"}}]))


def _movielens(root: Path) -> None:
    folder = root / "data" / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(f"196\t1\t3\t{T0}\n186\t2\t3\t{T0 + 60}\n")
    genres = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_bytes(
        (f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{genres}\n"
         f"2|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/Title?Mis%E9rables|{genres}\n").encode("latin-1"))


def _instacart(root: Path) -> None:
    folder = root / "data" / "instacart"
    folder.mkdir()
    pd.DataFrame({"order_id": [1, 1, 2], "product_id": [10, 11, 10], "add_to_cart_order": [1, 2, 1],
                  "reordered": [0, 0, 1]}).to_parquet(folder / "order_products__train.parquet")
    pd.DataFrame({"product_id": [10, 11], "product_name": ["Banana", "Milk"], "aisle_id": [24, 84],
                  "department_id": [4, 16]}).to_parquet(folder / "products.parquet")
    pd.DataFrame({"aisle_id": [24, 84], "aisle": ["fresh fruits", "milk"]}).to_parquet(folder / "aisles.parquet")
    pd.DataFrame({"department_id": [4, 16], "department": ["produce", "dairy eggs"]}).to_parquet(
        folder / "departments.parquet")


# a tiny file of each documented form, keyed by the path the document gives
SAMPLES = {
    "data/groceries.csv": (_groceries, 4, 4),
    "data/Grocery_and_Gourmet_Food_5.json.gz": (_amazon_2018, 2, 2),
    "data/Grocery_and_Gourmet_Food.jsonl.gz": (_amazon_2023, 2, 2),
    "data/ml-100k/u.data": (_movielens, 2, 2),
    "data/instacart": (_instacart, 3, 2),
}


def _config(block: str) -> dict:
    run_config = yaml.safe_load(block)
    assert set(run_config) == {"ops"} and set(run_config["ops"]) == {"raw_tables"}
    assert set(run_config["ops"]["raw_tables"]) == {"config"}
    return run_config["ops"]["raw_tables"]["config"]


def test_the_document_has_a_block_for_every_form():
    kinds = [(_config(b)["kind"], _config(b).get("header")) for b in blocks()]
    assert ("baskets", None) in kinds and ("instacart", None) in kinds and ("events", False) in kinds
    assert any(_config(b)["path"].endswith(".json.gz") for b in blocks())
    assert {_config(b)["path"] for b in blocks()} == set(SAMPLES)


def test_the_data_doc_shows_a_basket_file_a_json_lines_export_and_the_instacart_folder():
    paths = {_config(b)["path"] for b in readme_blocks()}
    assert {"data/groceries.csv", "data/Grocery_and_Gourmet_Food_5.json.gz", "data/instacart"} <= paths


@pytest.mark.parametrize("block", blocks() + readme_blocks(),
                         ids=[f"doc{i}" for i in range(len(blocks()))] + [f"readme{i}" for i in range(len(readme_blocks()))])
def test_every_block_is_accepted_by_the_asset_and_reads_its_form(tmp_path, monkeypatch, block):
    from dagster._config import process_config

    from orchestration.assets.ingestion import SourceConfig, raw_tables

    config = _config(block)
    checked = process_config(raw_tables.op.config_schema.config_type, config)
    assert checked.success, [e.message for e in checked.errors]
    spec = SourceSpec(**SourceConfig(**config).model_dump(exclude={"landed_files", "landed_layout",
                                                                   "landed_columns"}))
    if config["path"] not in SAMPLES:  # a data.md example with made-up file names: the schema check above only
        return
    write, n_rows, n_items = SAMPLES[config["path"]]
    (tmp_path / "data").mkdir()
    write(tmp_path)
    monkeypatch.chdir(tmp_path)
    tables = read_source(spec)
    assert len(tables.interactions) == n_rows
    assert tables.interactions["item_id"].notna().all()
    if config.get("catalog_path") or config["kind"] == "instacart":
        assert len(tables.items) == n_items and tables.items["title"].notna().all()
    if "timestamp" in str(config.get("columns", {})) or config.get("header") is False:
        assert tables.interactions["timestamp"].min() == pd.Timestamp(T0, unit="s")
