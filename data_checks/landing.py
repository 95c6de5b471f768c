"""The landing folder: new interaction files (one per day or month) dropped beside the main source.

Landed files are CSV/CSV.gz/TSV/Parquet either in the canonical interactions layout (``user_id``,
``item_id``, ``timestamp``, ``basket_id``, ``quantity``, ``price``; any but ``item_id`` may be left out)
or in a source's own layout (``online_retail``, or ``events`` with a column mapping). They are read by the
same readers as the main source and validated by the same cleaning rules (:func:`data_checks.cleaning.clean`),
so bad rows are quarantined with reasons, file and row named.

Files whose names start with ``.`` or end in ``.tmp``/``.part``/``.partial`` are ignored: a writer that
lands a file atomically (temporary name, then rename) is never read half-written.
"""
from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

import pandas as pd

from data_checks.cleaning import CleaningRules, CleanResult, clean
from data_checks.errors import InputFileError
from data_checks.readers import RawTables
from data_checks.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, OPTIONAL_INTERACTION_COLUMNS, conform, empty_frame
from data_checks.sources import SourceSpec, read_source
from data_checks.tables import file_format
from cobuy_files.storage import atomic_path

LandedLayout = Literal["canonical", "online_retail", "events"]
CANONICAL_FIELDS = ["user_id", "item_id", "timestamp", "basket_id", "quantity", "price"]
_PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", "~")


@dataclass(frozen=True)
class LandedFile:
    """One landed file and a content fingerprint (sha256 of its bytes)."""

    path: str
    name: str  # relative to the landing folder
    size: int
    mtime_ns: int
    sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_landed(folder: str | Path, pattern: str = "*", known: Optional[dict[str, LandedFile]] = None
                ) -> list[LandedFile]:
    """Landed data files in ``folder`` (recursively) whose relative path matches the glob ``pattern``,
    sorted by name. ``known``: earlier listings by name; a file with unchanged size and mtime keeps its
    fingerprint instead of being hashed again. A missing folder is an empty landing."""
    root = Path(folder)
    if not root.is_dir():
        return []
    known = known or {}
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(name).parts) or name.endswith(_PARTIAL_SUFFIXES):
            continue
        if not fnmatch.fnmatch(name, pattern):
            continue
        try:
            file_format(path)
        except InputFileError:
            continue  # not a data file (README, checksum list, ...)
        st = path.stat()
        prev = known.get(name)
        sha = prev.sha256 if prev and (prev.size, prev.mtime_ns) == (st.st_size, st.st_mtime_ns) else _sha256(path)
        out.append(LandedFile(str(path.resolve()), name, st.st_size, st.st_mtime_ns, sha))
    return out


def landed_fingerprint(files: list[LandedFile]) -> str:
    """One id for a set of landed files' contents (order-free): the same data gives the same id."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        h.update(f"{f.name}\0{f.sha256}\n".encode())
    return h.hexdigest()[:32]


def _header(path: Path, delimiter: str, encoding: str) -> list[str]:
    fmt = file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    sep = "\t" if fmt == "tsv" else delimiter
    try:
        return [str(c).strip() for c in pd.read_csv(path, sep=sep, nrows=0, encoding=encoding).columns]
    except Exception as exc:  # empty or undecodable: let the reader raise its precise error
        raise InputFileError(path, f"cannot read the header ({exc})") from exc


def read_landed(paths: list[str], layout: LandedLayout = "canonical", columns: Optional[dict[str, str]] = None,
                delimiter: str = ",", encoding: str = "utf-8", timestamp_format: Optional[str] = None,
                source: Optional[str] = None) -> RawTables:
    """Read landed files into one set of raw canonical tables (rows keep their file and row number).

    ``layout``: ``canonical`` (the interaction columns by their canonical names), ``online_retail`` or
    ``events`` (``columns`` maps canonical names to the files'). ``source``: the name the tables carry
    (it picks the cleaning rules; default: the layout's). Raises :class:`InputFileError` naming the file
    for a structural problem (missing ``item_id`` column, unreadable file)."""
    parts = []
    for p in paths:
        path = Path(p)
        if layout == "canonical":
            header = _header(path, delimiter, encoding)
            mapping = {c: c for c in CANONICAL_FIELDS if c in header}
            if "item_id" not in mapping:
                raise InputFileError(path, f"missing required column; found columns {header}", row=1,
                                     field="item_id")
            spec = SourceSpec(kind="events", path=str(path), columns=mapping, delimiter=delimiter,
                              encoding=encoding, timestamp_format=timestamp_format)
        else:
            spec = SourceSpec(kind=layout, path=str(path), columns=dict(columns or {}), delimiter=delimiter,
                              encoding=encoding, timestamp_format=timestamp_format)
        parts.append(read_source(spec))
    name = source or ("events" if layout == "canonical" else layout)
    if not parts:
        return RawTables(empty_frame(INTERACTION_COLUMNS), empty_frame(ITEM_COLUMNS), name)
    inter = pd.concat([t.interactions for t in parts], ignore_index=True)
    items = pd.concat([t.items for t in parts if len(t.items)], ignore_index=True) if any(
        len(t.items) for t in parts) else parts[0].items
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS), items, name)


def append_landed(base: RawTables, landed: RawTables) -> RawTables:
    """The main source's tables with the landed rows appended (the main source's catalog and name, and so
    its cleaning rules, are kept; a landed catalog adds items the main one lacks)."""
    inter = pd.concat([base.interactions, landed.interactions], ignore_index=True)
    items = base.items
    if len(landed.items) and len(base.items):
        extra = landed.items[~landed.items["item_id"].isin(base.items["item_id"])]
        items = pd.concat([base.items, extra], ignore_index=True)
    return RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS), items, base.source)


def clean_landed(paths: list[str], layout: LandedLayout = "canonical", source: Optional[str] = None,
                 columns: Optional[dict[str, str]] = None, now: Optional[pd.Timestamp] = None,
                 prepare: Optional[Callable[[RawTables], RawTables]] = None) -> CleanResult:
    """Read and validate landed files with the cleaning rules of ``source`` (the main source's kind, so
    landed Online Retail months lose their cancellations like the main file does). ``prepare``: applied to
    the raw tables before cleaning, as ingestion does (e.g. pseudonymising user ids)."""
    raw = read_landed(paths, layout, columns=columns, source=source)
    if prepare is not None:
        raw = prepare(raw)
    return clean(raw, CleaningRules.for_source(raw.source), now=now)


def land_by_period(rows: pd.DataFrame, folder: str | Path, timestamp_column: str = "timestamp", freq: str = "M",
                   prefix: str = "interactions", fmt: Literal["parquet", "csv"] = "parquet") -> list[Path]:
    """Write ``rows`` (any layout with a parseable ``timestamp_column``) as one file per period
    (``freq``: ``M`` month, ``D`` day) named ``<prefix>-<period>.<fmt>``, each atomically; returns the
    paths in time order. Used to simulate data arriving in a landing folder (tests, replays)."""
    ts = pd.to_datetime(rows[timestamp_column], errors="coerce")
    if ts.isna().any():
        bad = int(ts.isna().to_numpy().argmax())
        raise ValueError(f"row {bad}: {timestamp_column}={rows[timestamp_column].iloc[bad]!r} is not a timestamp")
    period = ts.dt.to_period(freq)
    out = []
    for p in sorted(period.unique()):
        path = Path(folder) / f"{prefix}-{p}.{fmt}"
        part = rows[(period == p).to_numpy()]
        with atomic_path(path) as tmp:
            if fmt == "parquet":
                part.to_parquet(tmp, index=False)
            else:
                part.to_csv(tmp, index=False)
        out.append(path)
    return out
