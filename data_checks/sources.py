"""One entry point that reads any supported source from a flat, typed spec (what config holds)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from data_checks.errors import InputFileError
from data_checks.readers import (
    BasketsSource,
    CatalogFile,
    EventsSource,
    InstacartSource,
    LightGCNSource,
    OnlineRetailSource,
    RawTables,
    read_baskets,
    read_events,
    read_instacart,
    read_lightgcn,
    read_online_retail,
)

SourceKind = Literal["synthetic", "online_retail", "lightgcn", "events", "baskets", "instacart"]
TimestampUnit = Literal["s", "ms", "us", "ns"]
SOURCE_KINDS: tuple[str, ...] = SourceKind.__args__  # type: ignore[attr-defined]


@dataclass
class SourceSpec:
    """``path``: the file (online_retail, events, baskets) or folder (lightgcn, instacart).

    ``delimiter``: None reads ``.tsv`` as tab, ``.csv`` as comma and sniffs any other file; ``whitespace``
    means runs of spaces and tabs (:mod:`data_checks.text_files`). ``header``: None means the kind's default
    (events: the first line names the fields; baskets: no header); ``header: false`` needs ``names``.
    ``timestamp_unit``/``timestamp_format``: :mod:`data_checks.times`. ``catalog_*``: the same for the catalog
    file (its delimiter defaults to ``delimiter``). See ``docs/data_sources.md``.
    """

    kind: SourceKind = "synthetic"
    path: str = ""
    catalog_path: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    catalog_columns: dict[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    encoding: str = "utf-8"
    timestamp_format: str | None = None
    timestamp_unit: TimestampUnit | None = None
    header: bool | None = None
    names: list[str] = field(default_factory=list)
    catalog_delimiter: str | None = None
    catalog_header: bool = True
    catalog_names: list[str] = field(default_factory=list)
    synthetic_seed: int = 7
    synthetic_users: int = 600
    synthetic_baskets_only: bool = False  # the synthetic shop's baskets without customers or time


def read_source(spec: SourceSpec) -> RawTables:
    if spec.kind == "synthetic":
        from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

        return generate_shop(SyntheticShopConfig(seed=spec.synthetic_seed, n_users=spec.synthetic_users,
                                                 baskets_only=spec.synthetic_baskets_only)).tables
    if not spec.path:
        raise InputFileError("(no path)", f"source kind {spec.kind!r} needs a path: set path to the "
                             + ("folder" if spec.kind in ("lightgcn", "instacart") else "file"))
    if spec.kind == "online_retail":
        return read_online_retail(OnlineRetailSource(spec.path, spec.delimiter, spec.encoding))
    if spec.kind == "lightgcn":
        return read_lightgcn(LightGCNSource(spec.path))
    if spec.kind == "instacart":
        return read_instacart(InstacartSource(spec.path))
    if spec.kind == "baskets":
        return read_baskets(BasketsSource(spec.path, spec.delimiter, spec.encoding, bool(spec.header),
                                          catalog=_catalog(spec)))
    if spec.kind == "events":
        kwargs = {}
        if spec.columns:
            kwargs["columns"] = spec.columns
        if spec.catalog_columns:
            kwargs["catalog_columns"] = spec.catalog_columns
        return read_events(EventsSource(
            spec.path, catalog_path=spec.catalog_path, delimiter=spec.delimiter, encoding=spec.encoding,
            timestamp_format=spec.timestamp_format, timestamp_unit=spec.timestamp_unit,
            header=spec.header is not False, names=list(spec.names) or None, catalog_delimiter=spec.catalog_delimiter,
            catalog_header=spec.catalog_header, catalog_names=list(spec.catalog_names) or None, **kwargs))
    raise InputFileError(spec.path, f"unknown source kind {spec.kind!r}: set kind to one of {list(SOURCE_KINDS)}")


def _catalog(spec: SourceSpec) -> CatalogFile | None:
    if not spec.catalog_path:
        return None
    columns = dict(spec.catalog_columns) or {"item_id": "item_id", "title": "title"}
    return CatalogFile(spec.catalog_path, columns, spec.catalog_delimiter or spec.delimiter, spec.encoding,
                       spec.catalog_header, list(spec.catalog_names) or None)
