"""Table metadata shown in the UI accepts whatever a shop's frames hold in a cell."""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestration.metadata import frame_table


def test_frame_table_takes_arrays_lists_and_numpy_scalars_in_cells():
    df = pd.DataFrame({
        "item_id": np.array([7, 8], dtype=np.int64),
        "category_path": [np.array(["produce", "fruit"]), np.array(["dairy"])],  # Parquet list columns read back
        "tags": [["a", "b"], []],
        "price": np.array([1.5, np.nan], dtype=np.float32),
        "seen": pd.to_datetime(["2024-01-01", None]),
    })
    records = frame_table(df).value.records
    assert [r.data["item_id"] for r in records] == [7, 8]
    assert records[0].data["category_path"] == "['produce' 'fruit']"
    assert records[1].data["category_path"] == "['dairy']"
    assert records[0].data["tags"] == "['a', 'b']"
    assert records[0].data["price"] == 1.5 and records[1].data["price"] is None
    assert records[1].data["seen"] is None and "2024-01-01" in str(records[0].data["seen"])
