"""Raw data in: any supported source read into the canonical tables, unvalidated."""

from typing import Optional

import dagster as dg

from data_checks.landing import LandedLayout, append_landed, read_landed
from data_checks.privacy import pseudonymize_tables
from data_checks.sources import SourceKind, SourceSpec, read_source
from orchestration.metadata import frame_preview
from orchestration.resources import Pseudonymizer

GROUP = "ingestion"


class SourceConfig(dg.Config):
    """Which data to read (``data_checks.sources.SourceSpec``; examples in ``docs/data_sources.md``). ``path``: a
    file (online_retail, events, baskets) or a folder (lightgcn, instacart); ``columns``/``catalog_columns`` map
    canonical names to the file's. ``delimiter`` unset: by suffix (.tsv tab, .csv comma), else sniffed;
    ``whitespace`` for runs of spaces. ``header: false`` with ``names`` for a file without a header line.
    ``timestamp_unit`` (s, ms) declares epoch numbers (else detected by magnitude).
    ``landed_files``: files from the landing folder appended to the source (the drift sensor lists them in
    its run request), in ``landed_layout`` (``canonical`` columns, or a source's layout; ``landed_columns``
    maps canonical names to the files' for ``events``)."""

    kind: SourceKind = "synthetic"
    path: str = ""
    catalog_path: Optional[str] = None
    columns: dict[str, str] = {}
    catalog_columns: dict[str, str] = {}
    delimiter: Optional[str] = None
    encoding: str = "utf-8"
    timestamp_format: Optional[str] = None
    timestamp_unit: Optional[str] = None  # s, ms, us or ns (checked by the reader)
    header: Optional[bool] = None
    names: list[str] = []
    catalog_delimiter: Optional[str] = None
    catalog_header: bool = True
    catalog_names: list[str] = []
    synthetic_seed: int = 7
    synthetic_users: int = 600
    synthetic_baskets_only: bool = False  # the synthetic shop without customers or time (basket-only data)
    landed_files: list[str] = []
    landed_layout: LandedLayout = "canonical"
    landed_columns: dict[str, str] = {}


@dg.multi_asset(
    outs={
        "raw_interactions": dg.AssetOut(description="Interactions in the canonical schema, as read (unvalidated)."),
        "raw_items": dg.AssetOut(description="The source's catalog as read; empty when the source has none."),
    },
    group_name=GROUP,
)
def raw_tables(context: dg.AssetExecutionContext, config: SourceConfig, pseudonymizer: Pseudonymizer):
    """Read the configured source; structural problems stop here with file, row and field named.
    Customer ids are pseudonymised here, before anything is stored: no later asset sees a raw id."""
    landed = ("landed_files", "landed_layout", "landed_columns")
    tables = read_source(SourceSpec(**config.model_dump(exclude=set(landed))))
    n_source = len(tables.interactions)
    if config.landed_files:
        tables = append_landed(tables, read_landed(config.landed_files, config.landed_layout,
                                                   columns=config.landed_columns or None, source=tables.source))
    tables = pseudonymize_tables(tables, pseudonymizer.key())
    for df in (tables.interactions, tables.items):
        df.attrs["source"] = tables.source  # travels with the Parquet file; picks the cleaning rules
    landed_note = (f" ({len(tables.interactions) - n_source:,} rows from {len(config.landed_files)} landed files)"
                   if config.landed_files else "")
    context.log.info(f"read {len(tables.interactions):,} interactions and {len(tables.items):,} catalog rows "
                     f"from {config.kind} {config.path}{landed_note}")
    yield dg.Output(tables.interactions, output_name="raw_interactions", metadata={
        "source": tables.source, "path": config.path, "rows": len(tables.interactions),
        "landed_files": len(config.landed_files), "landed_rows": len(tables.interactions) - n_source,
        "user_ids": "pseudonymised (HMAC-SHA256, keyed)",
        "preview": frame_preview(tables.interactions)})
    yield dg.Output(tables.items, output_name="raw_items", metadata={"rows": len(tables.items)})
