"""Atomic file writes: a temporary name in the target folder, then ``os.replace``; a process killed
mid-write leaves the previous good file (or none), never a torn one."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_pickle(obj: Any, path: str | Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_result_json(result: dict, path: str | Path, indent: int = 2) -> Path:
    """Write a benchmark result atomically, naming files relative to the project root (committed JSON must
    not carry one machine's absolute paths; ``sqlite:////abs/x.db`` becomes ``sqlite:///x.db``)."""
    text = json.dumps(result, indent=indent, default=float) + "\n"
    root = str(PROJECT_ROOT) + "/"
    return write_text(text.replace("sqlite:///" + root, "sqlite:///").replace(root, ""), path)


def write_bytes(data: bytes, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_pickle(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)
