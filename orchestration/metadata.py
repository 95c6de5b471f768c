"""Helpers that turn results into Dagster metadata shown in the UI."""
from __future__ import annotations

import base64

import dagster as dg
import numpy as np
import pandas as pd


def png_md(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG shown inline in the UI (markdown with a data URL)."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def frame_preview(df: pd.DataFrame, n: int = 10) -> dg.MetadataValue:
    """The first ``n`` rows as Dagster table metadata (shown as a table in the UI; see :func:`frame_table`)."""
    return frame_table(df, n)


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    if df.empty:
        return "_(empty)_"
    cols = [str(c) for c in df.columns]

    def cell(v: object) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")[:80]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _column_type(dtype: object) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"i": "int", "u": "int", "f": "float", "b": "bool", "M": "datetime"}.get(kind, "string")


def _cell(v: object) -> object:
    """A value Dagster's table metadata accepts (str, int, float, bool or None)."""
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.generic):  # numpy scalars (a datetime64 or bytes comes back as text)
        item = v.item()
        return item if isinstance(item, (bool, int, float, str)) else str(item)[:200]
    return str(v)[:200]  # anything else, lists and arrays in a cell included (a catalog's category path)


def frame_table(df: pd.DataFrame, n: int = 10, descriptions: "dict[str, str] | None" = None) -> dg.MetadataValue:
    """The first ``n`` rows as Dagster table metadata (``MetadataValue.table`` with a schema: column names, types
    and, from ``descriptions``, what each column means), which the UI shows as a table, not behind a link."""
    descriptions = descriptions or {}
    head = df.head(n)
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), _column_type(head[c].dtype),
                                                    description=descriptions.get(str(c)))
                                     for c in head.columns])
    records = [dg.TableRecord({str(c): _cell(v) for c, v in zip(head.columns, row)})
               for row in head.itertuples(index=False)]
    return dg.MetadataValue.table(records=records, schema=schema)
