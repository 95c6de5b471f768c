"""Low-level reading of one tabular file (delimited text of any suffix, optionally compressed; Parquet;
xlsx; JSON lines) into columns, with structural errors turned into :class:`InputFileError` naming file, row
and field; and the parsing of ids, numbers and prices.

Row numbers follow what a person sees: for text and spreadsheet files with a header, the header is row 1
and the first record is row 2; in a header-less text file the first line is row 1; for Parquet the first
record is row 1; for JSON lines, the line the object is on.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data_checks.errors import InputFileError
from data_checks.jsonlines import is_json_lines, read_jsonl
from data_checks.text_files import (
    WHITESPACE,
    RowNumbers,
    decode,
    peek_text,
    read_bytes,
    resolve_delimiter,
    split_fields,
)

_OTHER_DELIMITERS = [";", "\t", "|", ","]
_LOOKS_NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def file_format(path: Path) -> str:
    """The format a landing folder accepts by suffix; raises :class:`InputFileError` for others (README,
    checksums). Readers use :func:`source_format`, which reads any other suffix as delimited text."""
    name = path.name.lower()
    for suffix, fmt in ((".csv.gz", "csv"), (".tsv.gz", "tsv"), (".csv", "csv"), (".tsv", "tsv"),
                        (".txt", "csv"), (".parquet", "parquet"), (".pq", "parquet"), (".xlsx", "xlsx"),
                        (".xls", "xlsx")):
        if name.endswith(suffix):
            return fmt
    raise InputFileError(path, "unknown file type: expected .csv, .csv.gz, .tsv, .parquet or .xlsx")


def source_format(path: Path) -> str:
    """How a reader reads ``path``: ``parquet``, ``xlsx``, ``jsonl`` (.json, .jsonl, .ndjson, optionally
    compressed) or ``text`` (delimited text: .csv, .tsv, .txt, .dat, no suffix, anything else)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".xlsx", ".xls")):
        return "xlsx"
    if is_json_lines(path):
        return "jsonl"
    return "text"


def first_data_row(path: Path, header: bool = True) -> int:
    """Row number of the first record (see module docstring)."""
    return 1 if source_format(path) in ("parquet", "jsonl") or not header else 2


def read_table(
    path: str | Path,
    required: list[str],
    delimiter: str | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a whole file; columns as strings (delimited text), as stored (Parquet, xlsx) or as JSON values.

    ``delimiter``: see :mod:`data_checks.text_files` (None: by suffix, else sniffed). ``header=False``:
    the text file has no header line and ``names`` names its fields (one per field); ``names`` with a
    header replaces the file's names. ``df.attrs["source_rows"]`` (a :class:`RowNumbers`) holds each
    record's row where the format has lines (text, JSON lines).

    Raises :class:`InputFileError` for a missing or empty file, undecodable bytes, a ragged row, a missing
    required column (with a hint when the delimiter or the header looks wrong), or a header without data.
    """
    path = Path(path)
    fmt = source_format(path)
    if not path.exists():
        raise InputFileError(path, "file not found")
    if fmt == "text":
        if not header and not names:
            raise InputFileError(path, "header: false needs names: one name per field, in the file's order "
                                 "(e.g. names: [user_id, item_id, rating, timestamp])")
        df = _read_text(path, delimiter, encoding, header, list(names) if names else None)
    elif fmt == "jsonl":
        df = read_jsonl(path, required, encoding)
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
        raise InputFileError(path, f"missing required column; found columns {list(df.columns)}"
                             f"{_header_hint(list(df.columns), df.attrs.get('delimiter', delimiter), header)}",
                             row=1 if fmt in ("text", "xlsx") and header else None, field=missing[0])
    if len(df) == 0:
        raise InputFileError(path, "the file has a header but no data rows", row=first_data_row(path, header))
    return df


def _header_hint(columns: list[str], delimiter: str | None, header: bool) -> str:
    """Why the required columns may be missing: another delimiter, or a first row that is data."""
    if len(columns) == 1:
        used = [d for d in _OTHER_DELIMITERS if d in columns[0] and d != delimiter]
        if used:
            return f"; the header looks delimited by {used[0]!r}: set the delimiter in the source config"
    if header and columns and all(_LOOKS_NUMERIC.match(c) for c in columns):
        return ("; the first row looks like data, not a header: set header: false and names: [...] (one name "
                "per field)")
    return ""


def _locator(delimiter: str, header: bool, names: list[str] | None):
    """Row and field of a position in the text (for decode errors)."""
    def locate(before: str, text: str) -> tuple[int, str]:
        row = before.count("\n") + 1
        line = before[before.rfind("\n") + 1:]
        col = len(split_fields(line, delimiter)) - 1 if line else 0
        fields = names or (split_fields(text[: text.find("\n")], delimiter) if header else [])
        return row, fields[col].strip() if col < len(fields) else f"column {col + 1}"
    return locate


def _read_text(path: Path, delimiter: str | None, encoding: str, header: bool, names: list[str] | None
               ) -> pd.DataFrame:
    raw = read_bytes(path)
    delimiter = resolve_delimiter(path, delimiter, peek_text(raw, encoding) if delimiter is None else "")
    text = decode(path, raw, encoding, _locator(delimiter, header, names))
    if delimiter == WHITESPACE or len(delimiter) > 1:
        df = _read_split(path, text, delimiter, header, names)
    else:
        df = _read_csv(path, text, delimiter, header, names)
    df.attrs["delimiter"] = delimiter
    return df


def _read_csv(path: Path, text: str, delimiter: str, header: bool, names: list[str] | None) -> pd.DataFrame:
    try:
        extra = {"names": names, "index_col": False} if names else {}
        df = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, na_values=[""],
                         engine="c", header=0 if header else None, **extra)
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
    rows = _record_lines(path, text, delimiter, header, names)
    if rows is None or len(rows) != len(df):
        rows = np.arange(len(df), dtype=np.int64) + (2 if header else 1)
    df.attrs["source_rows"] = RowNumbers(rows)
    return df


def _read_split(path: Path, text: str, delimiter: str, header: bool, names: list[str] | None) -> pd.DataFrame:
    """Text split on runs of whitespace or on a multi-character delimiter (``::``); no quoting."""
    columns = names
    records: list[list[str]] = []
    rows: list[int] = []
    first = header
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split() if delimiter == WHITESPACE else [p.strip() for p in line.split(delimiter)]
        if first:
            first = False
            columns = columns or parts
            continue
        assert columns is not None
        if len(parts) != len(columns):
            cut = lineno == len(lines) and len(parts) < len(columns)
            hint = "the file ends inside this line: it looks truncated" if cut else "a missing or extra field"
            field = columns[len(parts)] if len(parts) < len(columns) else f"column {len(columns) + 1}"
            raise InputFileError(path, f"expected {len(columns)} fields, found {len(parts)} ({hint})", row=lineno,
                                 field=field)
        records.append(parts)
        rows.append(lineno)
    df = pd.DataFrame(records, columns=columns, dtype=object) if records else pd.DataFrame(columns=columns)
    df = df.replace("", None)
    df.attrs["source_rows"] = RowNumbers(rows)
    return df


def _record_lines(path: Path, text: str, delimiter: str, header: bool = True,
                  names: list[str] | None = None) -> "np.ndarray | None":
    """The 1-based line on which each data record starts (blank lines skipped, quoted line breaks
    followed), so row numbers stay right after them. Raises :class:`InputFileError` for a record with
    fewer fields than the header or ``names`` (pandas would silently fill the rest with missing values),
    naming a truncated last line as such. ``None`` if Python's csv module cannot follow the file."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a 1 MB field is data, not an error
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        columns = next(reader, []) if header else []
        if names:
            columns = names
        starts: list[int] = []
        previous_end = reader.line_num
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record:
                continue
            if len(record) < len(columns):
                truncated = reader.line_num == text.count("\n") + 1 and not text.endswith(("\n", "\r"))
                hint = ("the file ends inside this line: it looks truncated" if truncated
                        else "a missing delimiter or a broken line")
                raise InputFileError(path, f"expected {len(columns)} fields, found {len(record)} ({hint})",
                                     row=start, field=columns[len(record)].strip() or f"column {len(record) + 1}")
            starts.append(start)
        return np.asarray(starts, dtype=np.int64)
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(old_limit)


def id_strings(values: pd.Series) -> pd.Series:
    """Normalise identifiers to strings: ``17850.0`` -> ``"17850"``, whitespace stripped, blanks missing.
    Columns of integers, or of ASCII text only (the usual case), are converted whole-column; others value by
    value."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype(str).astype("string")
    fast = trimmed_text(values, blanks_missing=True)
    if fast is not None:
        return fast

    def one(v: object) -> object:
        if v is None or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None
    return values.map(one).astype("string")


# what Python's str.strip() removes from ASCII text: space, \t \n \v \f \r and the separators \x1c-\x1f
_ASCII_EDGE_SPACE = r"^[\t\n\x0b\x0c\r\x1c-\x1f ]+|[\t\n\x0b\x0c\r\x1c-\x1f ]+$"


def trimmed_text(values: pd.Series, blanks_missing: bool) -> pd.Series | None:
    """A column holding only ASCII text (or missing values) stripped as ``str.strip`` would, whole-column with
    Arrow's kernels, as pandas ``string`` (blanks missing when ``blanks_missing``); None for any other column (the
    caller then goes value by value)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
        return None
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return None
    text = pa.array(values.to_numpy(dtype=object), pa.string(), from_pandas=True)
    if pc.all(pc.string_is_ascii(text)).as_py() is False:
        return None
    text = pc.replace_substring_regex(text, _ASCII_EDGE_SPACE, "")
    if blanks_missing:
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return pd.Series(text.to_numpy(zero_copy_only=False), index=values.index, dtype="string")


_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _scalars(values: pd.Series) -> pd.Series:
    """Object columns (JSON) with lists, objects and booleans replaced by their JSON text, which no number
    parser accepts (so they end as unparsed values)."""
    if values.dtype != object:
        return values
    import json

    def one(v: object) -> object:
        if isinstance(v, bool) or isinstance(v, (list, dict, tuple)):
            return json.dumps(v, default=str)
        return v
    return values.map(one)


def numbers(values: pd.Series) -> pd.Series:
    """Parse numbers; unparseable text becomes NaN (and is quarantined by the cleaning rules).
    Numbers too large for a float (``1e400``, a thousand digits) become +-inf, i.e. out of range."""
    values = _scalars(values)
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    missing = out.isna() & values.notna()
    if missing.any():
        text = values[missing].astype(str)
        huge = text[text.str.len().gt(300) | text.str.contains("e", case=False)]
        huge = huge[huge.map(lambda v: _NUMBER.match(v) is not None)]
        out[huge.index] = [float(v) for v in huge]
    return out


_CURRENCY = r"(?:US\$|[A-Z]{3}|[$€£¥₹₩¢]|Rs\.?)"
_MONEY = re.compile(rf"^\s*(?P<pre>{_CURRENCY})?\s*(?P<num>[+-]?[\d.,' \u00a0\u202f]*\d)\s*(?P<post>{_CURRENCY})?\s*$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_THOUSANDS_DOT = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$")
_THOUSANDS_SPACE = re.compile(r"^[+-]?\d{1,3}([' \u00a0\u202f]\d{3})+([.,]\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d{1,2}$")


def _money(text: str) -> float:
    """One price as written in a shop's export: ``$12.99``, ``1,299.00``, ``EUR 1.299,00``, ``12,99 €``,
    ``1 299``; NaN for anything else (a range like ``$5 - $9``, words)."""
    m = _MONEY.match(text)
    if m is None:
        return float("nan")
    num, sign = m.group("num"), bool(m.group("pre") or m.group("post"))
    if _THOUSANDS_COMMA.match(num):
        num = num.replace(",", "")
    elif _THOUSANDS_DOT.match(num) and (sign or "," in num):
        num = num.replace(".", "").replace(",", ".")
    elif _THOUSANDS_SPACE.match(num):
        num = re.sub(r"[' \u00a0\u202f]", "", num).replace(",", ".")
    elif sign and _DECIMAL_COMMA.match(num):  # a decimal comma only where a currency makes it a price
        num = num.replace(",", ".")
    try:
        return float(num)
    except ValueError:
        return float("nan")


def prices(values: pd.Series) -> pd.Series:
    """Parse prices: what :func:`numbers` reads, plus a currency sign or code and thousands separators
    (see ``_money``). Unparseable text becomes NaN."""
    out = numbers(values)
    missing = out.isna() & values.notna()
    if missing.any():
        text = _scalars(values[missing]).astype(str)
        out[text.index] = [_money(v) for v in text]
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
    """Raw text where parsing gave a missing value but the field was not blank (else missing). Only the values
    that did not parse are turned into text."""
    out = pd.Series(pd.NA, index=raw.index, dtype="string")
    failed = parsed.isna().to_numpy() & raw.notna().to_numpy()
    if failed.any():
        text = raw[failed].astype("string").str.strip()
        bad = text.notna() & (text != "").fillna(False)
        out[text.index[bad.to_numpy(dtype=bool)]] = text[bad].str.slice(0, 200)
    return out
