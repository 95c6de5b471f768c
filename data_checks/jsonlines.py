"""JSON-lines files (``.json``, ``.jsonl``, ``.ndjson``, each optionally compressed): one object per line, or
one JSON array of objects. Values keep their JSON type (lists stay lists: a category path, ``also_buy``).

Row numbers are the line an object is on (blank lines counted), or for a JSON array the object's position
(1-based). Lines written as Python literals (single quotes, ``True``; Amazon's 2014 metadata dumps) are read
too. A column is a top-level key; ``a.b`` reaches into a nested object when there is no key ``a.b``.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Iterator

import pandas as pd

from data_checks.errors import InputFileError
from data_checks.text_files import RowNumbers, decode, read_bytes

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_MISSING = object()


def is_json_lines(path: Path) -> bool:
    """True for a name ending in a JSON suffix, optionally followed by .gz, .bz2 or .xz."""
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    return name.endswith(JSON_SUFFIXES)


def _value(record: dict, key: str) -> object:
    if key in record:
        return record[key]
    if "." in key:
        node: object = record
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node
    return _MISSING


def _parse(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        if line.lstrip().startswith("{"):
            try:
                return ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        raise


def _records(path: Path, text: str) -> Iterator[tuple[object, int]]:
    """Every object with its row (see module docstring), one at a time (a multi-GB review file is not held
    twice)."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            cut = exc.pos >= len(text.rstrip())
            raise InputFileError(path, ("the file ends inside the JSON array: it looks truncated" if cut else
                                        f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"),
                                 row=exc.lineno) from exc
        if not isinstance(data, list):
            raise InputFileError(path, "expected one JSON object per line or one array of objects")
        yield from zip(data, range(1, len(data) + 1))
        return
    start, lineno, n = 0, 0, len(text)
    while start < n:
        end = text.find("\n", start)
        end = n if end < 0 else end
        line, lineno, start = text[start:end], lineno + 1, end + 1
        if not line.strip():
            continue
        try:
            record = _parse(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            if end >= n:  # the last line, with no line break after it
                why = "the file ends inside this line: it looks truncated"
            else:
                detail = (f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError)
                          else "nested too deep")
                why = f"not valid JSON ({detail}); expected one JSON object per line"
            raise InputFileError(path, why, row=lineno) from exc
        yield record, lineno


def read_jsonl(path: str | Path, required: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    """The ``required`` columns of a JSON-lines file as object columns (one row per object; a key an object
    lacks is missing). Raises :class:`InputFileError` (file, row, field) for an unreadable file or line, a
    line that is not an object, no objects, or a required key that no object has."""
    path = Path(path)
    text = decode(path, read_bytes(path), encoding, lambda before, _: (before.count("\n") + 1, None))
    columns: dict[str, list[object]] = {c: [] for c in required}
    seen = dict.fromkeys(required, False)
    rows: list[int] = []
    keys: set[str] = set()  # of the first objects, for the message when a key is missing
    for record, row in _records(path, text):
        if not isinstance(record, dict):
            raise InputFileError(path, f"expected a JSON object, found {type(record).__name__}", row=row)
        if len(rows) < 100:
            keys.update(map(str, record))
        rows.append(row)
        for c, values in columns.items():
            v = _value(record, c)
            if v is _MISSING:
                values.append(None)
            else:
                seen[c] = True
                values.append(v)
    if not rows:
        raise InputFileError(path, "the file has no JSON objects")
    missing = [c for c, ok in seen.items() if not ok]
    if missing:
        raise InputFileError(path, f"missing required column: no object has the key; keys found "
                             f"{sorted(keys)[:40]}", field=missing[0])
    df = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})
    df.attrs["source_rows"] = RowNumbers(rows)
    return df
