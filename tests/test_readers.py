"""Readers on small files the tests write, plus the real files where present."""
import gzip

import numpy as np
import pandas as pd
import pytest

from data_checks.errors import InputFileError
from data_checks.readers import (
    EventsSource,
    InstacartSource,
    LightGCNSource,
    OnlineRetailSource,
    read_events,
    read_instacart,
    read_lightgcn,
    read_online_retail,
)
from tests.conftest import GOWALLA, need

RETAIL_ROWS = [
    ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "2010-12-01 08:26:00", "2.55", "17850", "United Kingdom"],
    ["536365", "71053", "WHITE METAL LANTERN", "6", "2010-12-01 08:26:00", "3.39", "17850", "United Kingdom"],
    ["C536379", "D", "Discount", "-1", "2010-12-01 09:41:00", "27.5", "14527", "United Kingdom"],
    ["536414", "22139", "", "56", "2010-12-01 11:52:00", "0", "", "United Kingdom"],
]
HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def retail_frame() -> pd.DataFrame:
    return pd.DataFrame(RETAIL_ROWS, columns=HEADER)


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet", "xlsx"])
def test_online_retail_every_format(tmp_path, fmt):
    df = retail_frame()
    path = tmp_path / f"retail.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    elif fmt == "parquet":
        # as a user would save it from pandas: typed columns
        typed = df.assign(Quantity=df["Quantity"].astype(int), UnitPrice=df["UnitPrice"].astype(float),
                          InvoiceDate=pd.to_datetime(df["InvoiceDate"]),
                          CustomerID=pd.to_numeric(df["CustomerID"]).astype(float))
        typed.to_parquet(path)
    else:
        typed = df.assign(Quantity=df["Quantity"].astype(int), UnitPrice=df["UnitPrice"].astype(float),
                          InvoiceDate=pd.to_datetime(df["InvoiceDate"]),
                          CustomerID=pd.to_numeric(df["CustomerID"]))
        typed.to_excel(path, index=False)
    t = read_online_retail(OnlineRetailSource(str(path)))
    i = t.interactions
    assert list(i["user_id"].astype(object).where(i["user_id"].notna(), None)) == ["17850", "17850", "14527", None]
    assert list(i["item_id"]) == ["85123A", "71053", "D", "22139"]
    assert list(i["basket_id"]) == ["536365", "536365", "C536379", "536414"]
    assert i["quantity"].tolist() == [6, 6, -1, 56]
    assert i["timestamp"].iloc[0] == pd.Timestamp("2010-12-01 08:26:00")
    first = 1 if fmt == "parquet" else 2
    assert i["source_row"].tolist() == list(range(first, first + 4))
    assert t.source == "online_retail"


def test_online_retail_real_file(online_retail_raw):
    i = online_retail_raw.interactions
    assert len(i) == 541_909
    assert i["basket_id"].nunique() == 25_900
    assert i["item_id"].nunique() == 4_070
    assert i["user_id"].isna().sum() == 135_080
    assert i["user_id"].nunique() == 4_372


def test_lightgcn_format(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1 2\n1 2 3\n2 0\n")
    (tmp_path / "test.txt").write_text("0 3\n1 0 1\n2\n")
    t = read_lightgcn(LightGCNSource(str(tmp_path)))
    i = t.interactions
    assert (i["fixed_split"] == "train").sum() == 6 and (i["fixed_split"] == "test").sum() == 3
    assert set(zip(i["user_id"], i["item_id"], i["fixed_split"])) >= {("0", "3", "test"), ("1", "2", "train")}


def test_lightgcn_bad_id_names_row(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n1 2 x3\n")
    (tmp_path / "test.txt").write_text("0 3\n")
    with pytest.raises(InputFileError) as e:
        read_lightgcn(LightGCNSource(str(tmp_path)))
    assert e.value.row == 2 and "train.txt" in str(e.value) and e.value.field == "item 2"


def test_gowalla_real_split():
    t = read_lightgcn(LightGCNSource(str(need(GOWALLA))))
    i = t.interactions
    assert (i["fixed_split"] == "train").sum() == 810_128
    assert (i["fixed_split"] == "test").sum() == 217_242
    assert i["user_id"].nunique() == 29_858
    assert len(t.items) == 40_981


def test_events_with_mapping_and_catalog(tmp_path):
    pd.DataFrame({"customer": ["a", "a", "b"], "sku": ["x", "y", "x"], "when": ["2024-01-01", "2024-01-02", "2024-01-03"],
                  "order": ["o1", "o2", "o3"], "qty": ["1", "two", "3"]}).to_csv(tmp_path / "ev.csv", index=False)
    pd.DataFrame({"sku": ["x", "y"], "name": ["Mug", "Plate"], "dept": ["Kitchen", "Kitchen"]}).to_parquet(tmp_path / "cat.parquet")
    t = read_events(EventsSource(
        path=str(tmp_path / "ev.csv"),
        columns={"user_id": "customer", "item_id": "sku", "timestamp": "when", "basket_id": "order", "quantity": "qty"},
        catalog_path=str(tmp_path / "cat.parquet"),
        catalog_columns={"item_id": "sku", "title": "name", "category": "dept"}))
    assert list(t.interactions["user_id"]) == ["a", "a", "b"]
    assert np.isnan(t.interactions["quantity"].iloc[1])
    assert t.interactions["unparsed_quantity"].iloc[1] == "two"
    assert list(t.items["title"]) == ["Mug", "Plate"] and list(t.items["category"]) == ["Kitchen", "Kitchen"]


def test_instacart_layout(tmp_path):
    (tmp_path / "order_products__prior.csv").write_text(
        "order_id,product_id,add_to_cart_order,reordered\n1,10,1,0\n1,11,2,0\n2,10,1,1\n")
    (tmp_path / "order_products__train.csv").write_text("order_id,product_id,add_to_cart_order,reordered\n3,12,1,0\n")
    (tmp_path / "orders.csv").write_text(
        "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
        "1,7,prior,1,2,8,\n2,7,prior,2,3,9,5.0\n3,8,train,1,1,10,\n")
    (tmp_path / "products.csv").write_text(
        "product_id,product_name,aisle_id,department_id\n10,Banana,24,4\n11,Milk,84,16\n12,Bread,112,3\n")
    (tmp_path / "aisles.csv").write_text("aisle_id,aisle\n24,fresh fruits\n84,milk\n112,bread\n")
    (tmp_path / "departments.csv").write_text("department_id,department\n4,produce\n16,dairy eggs\n3,bakery\n")
    t = read_instacart(InstacartSource(str(tmp_path)))
    i = t.interactions.sort_values(["basket_id", "item_id"])
    assert list(i["basket_id"]) == ["1", "1", "2", "3"]
    assert list(i["user_id"]) == ["7", "7", "7", "8"]
    ts = i.drop_duplicates("basket_id").set_index("basket_id")["timestamp"]
    assert ts["2"] - ts["1"] == pd.Timedelta(days=5, hours=1)
    cats = t.items.set_index("item_id")["category"]
    assert cats["10"] == "produce / fresh fruits" and cats["12"] == "bakery / bread"


# ----------------------------------------------------------------- unreadable input
def test_missing_required_column_names_field(tmp_path):
    p = tmp_path / "r.csv"
    retail_frame().drop(columns=["Quantity"]).to_csv(p, index=False)
    with pytest.raises(InputFileError) as e:
        read_online_retail(OnlineRetailSource(str(p)))
    assert e.value.field == "Quantity" and e.value.row == 1 and str(p) in str(e.value)


def test_wrong_delimiter_is_named(tmp_path):
    p = tmp_path / "r.csv"
    retail_frame().to_csv(p, index=False, sep=";")
    with pytest.raises(InputFileError) as e:
        read_online_retail(OnlineRetailSource(str(p)))
    assert "';'" in str(e.value) and e.value.row == 1 and e.value.field == "InvoiceNo"


def test_non_utf8_names_row_and_field(tmp_path):
    p = tmp_path / "r.csv"
    text = retail_frame().to_csv(index=False)
    raw = text.encode().replace(b"WHITE METAL LANTERN", b"WHITE M\xe9TAL LANTERN")
    p.write_bytes(raw)
    with pytest.raises(InputFileError) as e:
        read_online_retail(OnlineRetailSource(str(p)))
    assert e.value.row == 3 and e.value.field == "Description" and "0xe9" in str(e.value)
    # and the remedy works
    t = read_online_retail(OnlineRetailSource(str(p), encoding="latin-1"))
    assert t.interactions.shape[0] == 4


@pytest.mark.parametrize("content,row", [(b"", None), (b"   \n", None)])
def test_empty_file(tmp_path, content, row):
    p = tmp_path / "r.csv"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match="empty") as e:
        read_online_retail(OnlineRetailSource(str(p)))
    assert e.value.row is row


def test_header_only(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(",".join(HEADER) + "\n")
    with pytest.raises(InputFileError, match="no data rows") as e:
        read_online_retail(OnlineRetailSource(str(p)))
    assert e.value.row == 2


def test_ragged_row_names_line(tmp_path):
    p = tmp_path / "r.csv"
    lines = [",".join(HEADER)] + [",".join(r) for r in RETAIL_ROWS]
    lines[2] += ",extra"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as e:
        read_online_retail(OnlineRetailSource(str(p)))
    assert e.value.row == 3


def test_truncated_gzip(tmp_path):
    p = tmp_path / "r.csv.gz"
    full = gzip.compress(retail_frame().to_csv(index=False).encode() * 50)
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        read_online_retail(OnlineRetailSource(str(p)))


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_online_retail(OnlineRetailSource(str(tmp_path / "nope.csv")))
