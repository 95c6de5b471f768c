"""Errors for input that cannot be read at all (as opposed to bad rows, which are quarantined)."""
from __future__ import annotations

from pathlib import Path


class InputFileError(ValueError):
    """A file that cannot be read. Names the file, the row and the field so a person can fix it.

    ``row`` is the 1-based line number in the file (the header is line 1); ``None`` when the problem
    concerns the file as a whole.
    """

    def __init__(self, path: str | Path, message: str, row: int | None = None, field: str | None = None):
        self.path = str(path)
        self.row = row
        self.field = field
        self.reason = message
        where = [f"file {self.path}"]
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(", ".join(where) + ": " + message)
