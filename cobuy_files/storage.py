"""Atomic file writes: a temporary name in the target folder, then ``os.replace``; a process killed
mid-write leaves the previous good file (or none), never a torn one.

Temporary files are hidden and named ``.<target name>.<host>.<pid>.<random>.tmp``, so no reader that opens
an exact output path (or lists outputs, e.g. the landing folder skips ``.*`` and ``*.tmp``) ever takes one
for an output. A writer killed mid-write (SIGKILL, OOM killer, power loss) cannot remove its own temporary
file; the next atomic write into the same folder does (``sweep_stale_temps``): a leftover whose writer ran
on this host and no longer exists is removed at once, any other leftover once it is older than
``STALE_TEMP_SECONDS`` (a writer on another host of a shared volume may still be running)."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

STALE_TEMP_SECONDS = 24 * 3600.0
HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
# ".<target>.<host>.<pid>.<random>.tmp": host and random part hold no dots, so the last three fields parse
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` looks like a temporary file of an atomic write (hidden, ``.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale_temp(path: Path, now: float | None = None, max_age: float = STALE_TEMP_SECONDS) -> bool:
    """A temporary file whose writer is gone: written on this host by a process that no longer exists,
    or (writer on another host, or a name without a writer) last modified more than ``max_age`` s ago."""
    if not is_temp_name(path.name):
        return False
    m = _TEMP_NAME.match(path.name)
    if m is not None and m["host"] == HOST:
        pid = int(m["pid"])
        return pid != os.getpid() and not _process_alive(pid)
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > max_age


def sweep_stale_temps(folder: str | Path, recursive: bool = False, max_age: float = STALE_TEMP_SECONDS
                      ) -> list[Path]:
    """Remove the temporary files killed writers left in ``folder`` (and its subfolders when
    ``recursive``); returns what was removed. Live writers' files are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = (Path(root, name) for root, _, names in os.walk(folder) for name in names) if recursive else \
        (p for p in folder.iterdir())
    removed = []
    now = time.time()
    for path in candidates:
        if is_temp_name(path.name) and path.is_file() and is_stale_temp(path, now, max_age):
            path.unlink(missing_ok=True)  # another sweeper may have been first
            removed.append(path)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.
    Leftovers of killed writers in the same folder are swept first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_copy(src: str | Path, dst: str | Path) -> Path:
    """Make ``dst`` an atomically replaced copy of ``src``: a hard link where the file system allows it
    (no bytes copied; outputs are only ever replaced, never rewritten in place, so the link keeps the
    content it was made with), else a full copy. Readers of ``dst`` see the old or the new file, never a mix."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return Path(dst)


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
    not carry one machine's absolute paths; ``sqlite:////abs/x.db`` becomes ``sqlite:///x.db``). Files of the
    running Python environment (e.g. the packaged text encoder) are named relative to the folder holding it,
    which is another checkout's when a benchmark runs from a git worktree."""
    text = json.dumps(result, indent=indent, default=float) + "\n"
    for root in dict.fromkeys([str(PROJECT_ROOT) + "/", str(Path(sys.prefix).parent) + "/"]):
        text = text.replace("sqlite:///" + root, "sqlite:///").replace(root, "")
    return write_text(text, path)


def write_bytes(data: bytes, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_pickle(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)
