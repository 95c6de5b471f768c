"""One entry point that reads any supported source from a flat, typed spec (what config holds)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from data_checks.readers import (
    EventsSource,
    InstacartSource,
    LightGCNSource,
    OnlineRetailSource,
    RawTables,
    read_events,
    read_instacart,
    read_lightgcn,
    read_online_retail,
)

SourceKind = Literal["synthetic", "online_retail", "lightgcn", "events", "instacart"]


@dataclass
class SourceSpec:
    """``path``: the file (online_retail, events) or folder (lightgcn, instacart)."""

    kind: SourceKind = "synthetic"
    path: str = ""
    catalog_path: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    catalog_columns: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    encoding: str = "utf-8"
    timestamp_format: str | None = None
    synthetic_seed: int = 7
    synthetic_users: int = 600
    synthetic_baskets_only: bool = False  # the synthetic shop's baskets without customers or time


def read_source(spec: SourceSpec) -> RawTables:
    if spec.kind == "synthetic":
        from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

        return generate_shop(SyntheticShopConfig(seed=spec.synthetic_seed, n_users=spec.synthetic_users,
                                                 baskets_only=spec.synthetic_baskets_only)).tables
    if not spec.path:
        raise ValueError(f"source kind {spec.kind!r} needs a path")
    if spec.kind == "online_retail":
        return read_online_retail(OnlineRetailSource(spec.path, spec.delimiter, spec.encoding))
    if spec.kind == "lightgcn":
        return read_lightgcn(LightGCNSource(spec.path))
    if spec.kind == "instacart":
        return read_instacart(InstacartSource(spec.path))
    if spec.kind == "events":
        kwargs = {}
        if spec.columns:
            kwargs["columns"] = spec.columns
        if spec.catalog_columns:
            kwargs["catalog_columns"] = spec.catalog_columns
        return read_events(EventsSource(spec.path, catalog_path=spec.catalog_path, delimiter=spec.delimiter,
                                        encoding=spec.encoding, timestamp_format=spec.timestamp_format, **kwargs))
    raise ValueError(f"unknown source kind {spec.kind!r}")
