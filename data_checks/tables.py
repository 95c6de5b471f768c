"""Low-level reading of one tabular file (CSV, CSV.gz, TSV, Parquet, xlsx) into string-typed columns,
with structural errors turned into :class:`InputFileError` naming file, row and field.

Row numbers follow what a person sees: for text and spreadsheet files the header is row 1 and the
first record is row 2; for Parquet the first record is row 1.
"""
from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import pandas as pd

from data_checks.errors import InputFileError

_OTHER_DELIMITERS = [";", "\t", "|", ","]


def file_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in ((".csv.gz", "csv"), (".tsv.gz", "tsv"), (".csv", "csv"), (".tsv", "tsv"),
                        (".txt", "csv"), (".parquet", "parquet"), (".pq", "parquet"), (".xlsx", "xlsx"),
                        (".xls", "xlsx")):
        if name.endswith(suffix):
            return fmt
    raise InputFileError(path, "unknown file type: expected .csv, .csv.gz, .tsv, .parquet or .xlsx")


def first_data_row(path: Path) -> int:
    """Row number of the first record (see module docstring)."""
    return 1 if file_format(path) == "parquet" else 2


def read_table(
    path: str | Path,
    required: list[str],
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a whole file; columns as strings (CSV) or as stored (Parquet, xlsx).

    Raises :class:`InputFileError` for a missing or empty file, undecodable bytes, a ragged row,
    a missing required column (with a hint when the delimiter looks wrong), or a header without data.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file not found")
    fmt = file_format(path)
    if fmt in ("csv", "tsv"):
        df = _read_text(path, delimiter or ("\t" if fmt == "tsv" else ","), encoding)
    elif fmt == "parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputFileError(path, f"not a readable Parquet file ({exc})") from exc
    else:
        try:
            df = pd.read_excel(path, dtype=object, engine="openpyxl")
        except Exception as exc:
            raise InputFileError(path, f"not a readable xlsx file ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1:
            header = df.columns[0]
            used = [d for d in _OTHER_DELIMITERS if d in header and d != delimiter]
            if used:
                hint = f"; the header looks delimited by {used[0]!r}: set the delimiter in the source config"
        raise InputFileError(
            path,
            f"missing required column; found columns {list(df.columns)}{hint}",
            row=1 if fmt != "parquet" else None,
            field=missing[0],
        )
    if len(df) == 0:
        raise InputFileError(path, "the file has a header but no data rows", row=first_data_row(path))
    return df


def _read_text(path: Path, delimiter: str, encoding: str) -> pd.DataFrame:
    try:
        raw = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise InputFileError(path, f"cannot decompress ({exc}); the file may be truncated") from exc
    if not raw.strip():
        raise InputFileError(path, "the file is empty")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        row = raw.count(b"\n", 0, exc.start) + 1
        header = raw[: raw.find(b"\n")].decode(encoding, errors="replace").split(delimiter)
        col = raw.count(delimiter.encode(), line_start, exc.start)
        field = header[col].strip() if col < len(header) else f"column {col + 1}"
        raise InputFileError(
            path, f"byte {raw[exc.start]:#04x} is not valid {encoding}; set the source's encoding "
            "(e.g. latin-1) if the file uses another one", row=row, field=field,
        ) from exc
    text = text.lstrip("\ufeff")
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                           na_values=[""], engine="c")
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise InputFileError(
                path, f"expected {m.group(1)} fields, found {m.group(3)} (an unquoted delimiter or a broken line)",
                row=int(m.group(2)), field=f"column {int(m.group(1)) + 1}",
            ) from exc
        raise InputFileError(path, f"cannot parse as delimited text ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputFileError(path, "the file is empty") from exc


def id_strings(values: pd.Series) -> pd.Series:
    """Normalise identifiers to strings: ``17850.0`` -> ``"17850"``, whitespace stripped, blanks missing."""
    def one(v: object) -> object:
        if v is None or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None
    return values.map(one).astype("string")


def numbers(values: pd.Series) -> pd.Series:
    """Parse numbers; unparseable text becomes NaN (and is quarantined by the cleaning rules)."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def timestamps(values: pd.Series, fmt: str | None = None) -> pd.Series:
    """Parse timestamps to naive UTC; unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    else:
        ts = pd.to_datetime(values, errors="coerce", format=fmt if fmt else "mixed", utc=True)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[ns]")


def unparsed(parsed: pd.Series, raw: pd.Series) -> pd.Series:
    """Raw text where parsing gave a missing value but the field was not blank (else missing)."""
    text = raw.astype("string").str.strip()
    bad = parsed.isna().to_numpy() & text.notna().to_numpy() & (text != "").fillna(False).to_numpy()
    return text.where(bad, pd.NA).str.slice(0, 200)
