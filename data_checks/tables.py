"""Low-level reading of one tabular file (CSV, CSV.gz, TSV, Parquet, xlsx) into string-typed columns,
with structural errors turned into :class:`InputFileError` naming file, row and field.

Row numbers follow what a person sees: for text and spreadsheet files the header is row 1 and the
first record is row 2; for Parquet the first record is row 1.
"""
from __future__ import annotations

import csv
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
        row, field = _locate(raw[: exc.start].decode(encoding), raw.decode(encoding, errors="replace"), delimiter)
        raise InputFileError(
            path, f"byte {raw[exc.start]:#04x} is not valid {encoding}; set the source's encoding "
            "(e.g. latin-1) if the file uses another one", row=row, field=field,
        ) from exc
    text = text.lstrip("\ufeff")
    if "\x00" in text:  # the C parser would silently cut the field there
        row, field = _locate(text[: text.index("\x00")], text, delimiter)
        raise InputFileError(path, "a NUL character: the file is binary, or was zero-filled when a write was "
                             "cut short", row=row, field=field)
    try:
        df = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                         na_values=[""], engine="c")
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise InputFileError(
                path, f"expected {m.group(1)} fields, found {m.group(3)} (an unquoted delimiter or a broken line)",
                row=int(m.group(2)), field=f"column {int(m.group(1)) + 1}",
            ) from exc
        m = re.search(r"EOF inside string starting at row (\d+)", str(exc))
        if m:  # pandas counts lines from 0
            raise InputFileError(path, "a quoted field is never closed: the file looks truncated",
                                 row=int(m.group(1)) + 1) from exc
        raise InputFileError(path, f"cannot parse as delimited text ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputFileError(path, "the file is empty") from exc
    rows = _record_lines(path, text, delimiter)
    if rows is not None and len(rows) == len(df):
        df.attrs["source_rows"] = rows
    return df


def _locate(before: str, text: str, delimiter: str) -> tuple[int, str]:
    """Line and header field of the position where ``before`` (a prefix of ``text``) ends."""
    row = before.count("\n") + 1
    header = text[: text.find("\n")].split(delimiter)
    col = before[before.rfind("\n") + 1:].count(delimiter)
    return row, header[col].strip() if col < len(header) else f"column {col + 1}"


def _record_lines(path: Path, text: str, delimiter: str) -> "list[int] | None":
    """The 1-based line on which each data record starts (blank lines skipped, quoted line breaks
    followed), so row numbers stay right after them. Raises :class:`InputFileError` for a record with
    fewer fields than the header (pandas would silently fill the rest with missing values), naming
    a truncated last line as such. ``None`` if Python's csv module cannot follow the file."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a 1 MB field is data, not an error
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, [])
        starts: list[int] = []
        previous_end = reader.line_num
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record:
                continue
            if len(record) < len(header):
                truncated = reader.line_num == text.count("\n") + 1 and not text.endswith(("\n", "\r"))
                hint = ("the file ends inside this line: it looks truncated" if truncated
                        else "a missing delimiter or a broken line")
                raise InputFileError(path, f"expected {len(header)} fields, found {len(record)} ({hint})",
                                     row=start, field=header[len(record)].strip() or f"column {len(record) + 1}")
            starts.append(start)
        return starts
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(old_limit)


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


_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def numbers(values: pd.Series) -> pd.Series:
    """Parse numbers; unparseable text becomes NaN (and is quarantined by the cleaning rules).
    Numbers too large for a float (``1e400``, a thousand digits) become +-inf, i.e. out of range."""
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    missing = out.isna() & values.notna()
    if missing.any():
        text = values[missing].astype(str)
        huge = text[text.str.len().gt(300) | text.str.contains("e", case=False)]
        huge = huge[huge.map(lambda v: _NUMBER.match(v) is not None)]
        out[huge.index] = [float(v) for v in huge]
    return out


def timestamps(values: pd.Series, fmt: str | None = None) -> pd.Series:
    """Parse timestamps to naive UTC; unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    else:
        ts = pd.to_datetime(values, errors="coerce", format=fmt if fmt else "mixed", utc=True)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    # Parquet stores micro- or milliseconds: a year like 3000 fits there but not in nanoseconds; such
    # values become missing here (and the cleaning rules quarantine them as out of range).
    inside = ts.isna() | ((ts >= pd.Timestamp.min) & (ts <= pd.Timestamp.max))
    return ts.where(inside).astype("datetime64[ns]")


def unparsed(parsed: pd.Series, raw: pd.Series) -> pd.Series:
    """Raw text where parsing gave a missing value but the field was not blank (else missing)."""
    text = raw.astype("string").str.strip()
    bad = parsed.isna().to_numpy() & text.notna().to_numpy() & (text != "").fillna(False).to_numpy()
    return text.where(bad, pd.NA).str.slice(0, 200)
