"""The canonical tables every reader produces and every model consumes.

``interactions``: one row per (user or anonymous basket, item) event.
``items``: the catalog; every field but ``item_id`` may be missing.
``quarantine``: rows that did not make it into the clean tables, with a machine-readable reason.
"""
from __future__ import annotations

import pandas as pd

INTERACTION_COLUMNS: dict[str, str] = {
    "user_id": "string",  # missing for anonymous baskets (usable for basket analysis only)
    "item_id": "string",
    "timestamp": "datetime64[ns]",  # naive, read as UTC
    "basket_id": "string",
    "quantity": "float64",
    "price": "float64",
    "source_row": "int64",  # 1-based data row in the source file (header excluded)
}
# Optional columns a reader may add; kept through validation when present.
OPTIONAL_INTERACTION_COLUMNS: dict[str, str] = {
    "fixed_split": "string",  # "train"/"test" for sources that ship their own split
    "country": "string",
    "title": "string",  # item description as written on the transaction row (Online Retail)
    "source_file": "string",
    # raw text of values that failed to parse (set by readers, dropped by cleaning)
    "unparsed_quantity": "string",
    "unparsed_price": "string",
    "unparsed_timestamp": "string",
}
UNPARSED_COLUMNS = ["unparsed_quantity", "unparsed_price", "unparsed_timestamp"]
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "title": "string",
    "category": "string",
    "brand": "string",
    "price": "float64",
}
OPTIONAL_ITEM_COLUMNS: dict[str, str] = {
    "n_titles": "int64",  # how many distinct descriptions the source used for this item
    # the category's levels, broad to fine (a list of str, or None): Instacart [department, aisle], a JSON
    # catalog's category list; ``category`` holds the same path as one string
    "category_path": "object",
    "source_row": "int64",
    "source_file": "string",
}
QUARANTINE_COLUMNS: dict[str, str] = {
    "table": "string",  # "interactions" or "items"
    "source_file": "string",
    "source_row": "int64",
    "reason": "string",  # machine-readable code, see data_checks.rules.REASONS
    "detail": "string",  # human-readable explanation
    "record": "string",  # the offending row as JSON
}


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """An empty DataFrame with the given columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def conform(df: pd.DataFrame, required: dict[str, str], optional: dict[str, str]) -> pd.DataFrame:
    """Return ``df`` with required columns (added as missing when absent) and optional columns
    (only when present) in canonical order and dtypes; other columns are dropped."""
    out = {}
    n = len(df)
    for col, dtype in {**required, **optional}.items():
        if col in df.columns:
            out[col] = df[col].astype(dtype) if str(df[col].dtype) != dtype else df[col]
        elif col in required:
            out[col] = pd.Series([None] * n, dtype=dtype, index=df.index) if dtype != "int64" else pd.Series(
                range(1, n + 1), dtype="int64", index=df.index
            )
    return pd.DataFrame(out, index=df.index).reset_index(drop=True)
