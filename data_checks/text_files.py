"""The bytes and text of a downloaded file: decompression (by content, not only by suffix), decoding with
the failing row named, and the delimiter rule.

Delimiter rule (also in ``docs/data_sources.md``): a delimiter given in the config always wins
(``whitespace`` means runs of spaces and tabs; ``tab`` or a literal ``\\t`` mean a tab); otherwise ``.tsv``
means tab and ``.csv`` comma; any other file is sniffed from its first 100 non-blank lines (see
:func:`sniff_delimiter`).
"""
from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from data_checks.errors import InputFileError

WHITESPACE = "whitespace"
# what a config may write for "runs of spaces and tabs"
WHITESPACE_NAMES = frozenset({WHITESPACE, r"\s+", "\\s+"})
# tried in this order; the first that fits wins
CANDIDATES = ("\t", ",", ";", "|", "::")
SNIFF_LINES = 100

Locate = Callable[[str, str], "tuple[int | None, str | None]"]


class RowNumbers:
    """The row each record of a frame was read from (int64, one per record), kept in ``df.attrs["source_rows"]``.
    Compared by identity and never deep-copied, so pandas can carry it through operations cheaply and
    ``pd.concat`` of frames that hold it does not fail on comparing arrays (it simply drops it)."""

    __slots__ = ("values",)

    def __init__(self, values: "list[int] | np.ndarray"):
        self.values = np.asarray(values, dtype=np.int64)

    def __deepcopy__(self, memo: dict) -> "RowNumbers":
        return self

    def __len__(self) -> int:
        return len(self.values)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they are gzip, bzip2 or xz (recognised by their first bytes,
    whatever the suffix). Raises :class:`InputFileError` for a missing, empty, truncated or zipped file."""
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.is_dir():
        raise InputFileError(path, "is a folder: point path at the file")
    try:
        raw = path.read_bytes()
    except OSError as exc:  # permissions, a file that vanished, an I/O error
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    for magic, opener, name in ((b"\x1f\x8b", gzip.decompress, "gzip"), (b"BZh", bz2.decompress, "bzip2"),
                                (b"\xfd7zXZ\x00", lzma.decompress, "xz")):
        if raw.startswith(magic):
            try:
                raw = opener(raw)
            except EOFError as exc:
                raise InputFileError(path, f"the {name} data ends early: the file is truncated (download it again)"
                                     ) from exc
            except (OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
                raise InputFileError(path, f"cannot decompress as {name} ({exc}); the file is corrupt or truncated"
                                     ) from exc
            break
    if raw.startswith(b"PK\x03\x04"):
        raise InputFileError(path, "a zip archive: unpack it and point path at the file inside")
    if not raw.strip():
        raise InputFileError(path, "the file is empty")
    return raw


def peek_text(raw: bytes, encoding: str, n: int = 65536) -> str:
    """The first ``n`` bytes as text for sniffing (bad bytes replaced; empty for an unknown encoding, which
    :func:`decode` then reports)."""
    try:
        return raw[:n].decode(encoding, errors="replace")
    except LookupError:
        return ""


def decode(path: Path, raw: bytes, encoding: str, locate: Locate) -> str:
    """``raw`` as text. Undecodable bytes and NUL characters raise :class:`InputFileError` at the row and field
    ``locate(text_before, whole_text)`` names. A leading byte-order mark is dropped."""
    try:
        text = raw.decode(encoding)
    except LookupError as exc:
        raise InputFileError(path, f"unknown encoding {encoding!r}: set encoding to e.g. utf-8 or latin-1") from exc
    except UnicodeDecodeError as exc:
        row, field = locate(raw[: exc.start].decode(encoding, errors="replace"), raw.decode(encoding, errors="replace"))
        raise InputFileError(
            path, f"byte {raw[exc.start]:#04x} is not valid {encoding}; set the source's encoding "
            "(e.g. latin-1) if the file uses another one", row=row, field=field,
        ) from exc
    text = text.lstrip("\ufeff")
    if "\x00" in text:  # parsers would silently cut the field there
        row, field = locate(text[: text.index("\x00")], text)
        raise InputFileError(path, "a NUL character: the file is binary, or was zero-filled when a write was "
                             "cut short", row=row, field=field)
    return text


def sample_lines(text: str, n: int = SNIFF_LINES) -> list[str]:
    """The first ``n`` non-blank lines (line ends removed)."""
    out: list[str] = []
    start = 0
    while len(out) < n and start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].rstrip("\r")
        if line.strip():
            out.append(line)
        start = end + 1
    return out


def split_fields(line: str, delimiter: str) -> list[str]:
    """One line's fields (quotes honoured for one-character delimiters)."""
    if delimiter == WHITESPACE:
        return line.split()
    if len(delimiter) == 1:
        try:
            return next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            return line.split(delimiter)
    return line.split(delimiter)


def sniff_delimiter(text: str, ragged: bool = False) -> str:
    """The delimiter of a file with an unknown suffix, from its first lines.

    Records (``ragged=False``): the first of :data:`CANDIDATES` that splits every sampled line into the same
    number (two or more) of fields; else runs of whitespace if they do; else the candidate that gives most
    lines the commonest field count; else ``,`` (one column).
    Baskets (``ragged=True``, lines of different lengths): of ``,`` ``;`` ``|`` ``::``, the one found on most
    lines (ties: that order); if none occurs, tab when more lines hold a tab than hold spaces but no tab, else
    runs of whitespace (so items containing spaces need one of those delimiters, or a tab).
    """
    lines = sample_lines(text)
    if not lines:
        return ","
    if ragged:
        marks = [d for d in CANDIDATES if d != "\t"]
        hits = Counter({d: sum(d in line for line in lines) for d in marks})
        best = max(marks, key=lambda d: (hits[d], -marks.index(d)))
        if hits[best]:
            return best
        tabs = sum("\t" in line for line in lines)
        spaces_only = sum(" " in line.strip() and "\t" not in line for line in lines)
        if tabs > spaces_only:
            return "\t"
        return WHITESPACE if tabs or spaces_only else ","
    shares: dict[str, float] = {}
    for d in (*CANDIDATES, WHITESPACE):
        counts = Counter(len(split_fields(line, d)) for line in lines)
        width, n = counts.most_common(1)[0]
        if width >= 2 and n == len(lines):
            return d
        if width >= 2:
            shares[d] = n / len(lines)
    return max(shares, key=lambda d: shares[d]) if shares else ","


def resolve_delimiter(path: Path, delimiter: str | None, text: str, ragged: bool = False) -> str:
    """The delimiter rule (module docstring): given, else by suffix, else sniffed."""
    if delimiter:
        if delimiter in WHITESPACE_NAMES:
            return WHITESPACE
        return {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)  # '\t' in single-quoted YAML stays two chars
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    if name.endswith(".tsv"):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return sniff_delimiter(text, ragged)
