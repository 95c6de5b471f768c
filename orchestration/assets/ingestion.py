"""Raw data in: any supported source read into the canonical tables, unvalidated."""

from typing import Optional

import dagster as dg

from data_checks.sources import SourceKind, SourceSpec, read_source
from orchestration.metadata import frame_preview

GROUP = "ingestion"


class SourceConfig(dg.Config):
    """Which data to read. ``path``: a file (online_retail, events) or a folder (lightgcn, instacart);
    ``columns``/``catalog_columns`` map canonical names to the file's (events only)."""

    kind: SourceKind = "synthetic"
    path: str = ""
    catalog_path: Optional[str] = None
    columns: dict[str, str] = {}
    catalog_columns: dict[str, str] = {}
    delimiter: str = ","
    encoding: str = "utf-8"
    timestamp_format: Optional[str] = None
    synthetic_seed: int = 7
    synthetic_users: int = 600


@dg.multi_asset(
    outs={
        "raw_interactions": dg.AssetOut(description="Interactions in the canonical schema, as read (unvalidated)."),
        "raw_items": dg.AssetOut(description="The source's catalog as read; empty when the source has none."),
    },
    group_name=GROUP,
)
def raw_tables(context: dg.AssetExecutionContext, config: SourceConfig):
    """Read the configured source; structural problems stop here with file, row and field named."""
    tables = read_source(SourceSpec(**config.model_dump()))
    for df in (tables.interactions, tables.items):
        df.attrs["source"] = tables.source  # travels with the Parquet file; picks the cleaning rules
    context.log.info(f"read {len(tables.interactions):,} interactions and {len(tables.items):,} catalog rows "
                     f"from {config.kind} {config.path}")
    yield dg.Output(tables.interactions, output_name="raw_interactions", metadata={
        "source": tables.source, "path": config.path, "rows": len(tables.interactions),
        "preview": frame_preview(tables.interactions)})
    yield dg.Output(tables.items, output_name="raw_items", metadata={"rows": len(tables.items)})
