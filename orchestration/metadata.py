"""Helpers that turn results into Dagster metadata shown in the UI."""
from __future__ import annotations

import base64

import dagster as dg
import pandas as pd


def png_md(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG shown inline in the UI (markdown with a data URL)."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def frame_preview(df: pd.DataFrame, n: int = 10) -> dg.MetadataValue:
    """The first ``n`` rows as a markdown table."""
    return dg.MetadataValue.md(markdown_table(df.head(n)))


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
