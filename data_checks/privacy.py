"""Customer ids pseudonymised at ingestion with a keyed hash (HMAC-SHA256).

A pseudonym is ``u_`` + the first 16 hex digits (64 bits) of HMAC-SHA256(key, id). The same key gives
the same pseudonym in every run (so models, splits and scores line up across runs); without the key
nobody can recompute it, not even for a guessed id: an unkeyed hash of a 5-digit customer number is
undone by hashing all 100,000 candidates. 64 bits keep collisions negligible (about n^2 / 2^65:
3e-8 for a million customers) and are checked anyway.

The shop, holding the key, can still find a customer's rows: ``pseudonymize_id(customer_id, key)``.

Key sources (see the README): production passes the secret from the environment
(``COBUY_PSEUDONYM_KEY`` through ``dg.EnvVar``); the embedded local set-up generates a random key
once per install and keeps it in a file readable by its owner only (``load_or_create_key``).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

import pandas as pd

from data_checks.readers import RawTables

PREFIX = "u_"
HEX_DIGITS = 16
MIN_SECRET_CHARS = 16
KEY_ENV = "COBUY_PSEUDONYM_KEY"


class PseudonymKeyError(ValueError):
    """No usable pseudonymisation key: says where the key was looked for and how to provide one."""


def key_from_secret(secret: str | None, source: str = KEY_ENV) -> bytes:
    """The HMAC key for a secret given as text; refuses missing or short secrets."""
    if not secret or len(secret.strip()) < MIN_SECRET_CHARS:
        raise PseudonymKeyError(
            f"{source} must hold a secret of at least {MIN_SECRET_CHARS} characters (e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`); customer ids cannot be pseudonymised "
            "without it")
    return secret.strip().encode()


def load_or_create_key(path: str | Path) -> bytes:
    """The key stored at ``path``, created (32 random bytes, hex, mode 0600) if there is none.

    Creation is race-free: the key is written to a private temporary file and linked into place, so
    two processes starting at once end up with the same key. A key file that group or others may
    read is refused, as ssh refuses such private keys.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race: use its key
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PseudonymKeyError(f"pseudonymisation key file {path} is readable by others (mode {mode:04o}); "
                                f"run `chmod 600 {path}`")
    return key_from_secret(path.read_text(), source=f"key file {path}")


def pseudonymize_id(value: str, key: bytes) -> str:
    """One id's pseudonym: ``u_`` + 16 hex digits of HMAC-SHA256(key, id)."""
    return PREFIX + hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:HEX_DIGITS]


def pseudonymize_ids(values: pd.Series, key: bytes) -> pd.Series:
    """Pseudonyms for a column of ids (missing stays missing), hashing each distinct id once.

    Shape: ``(n,)`` in, ``(n,)`` out (string dtype). Raises ``ValueError`` on a collision.
    """
    distinct = pd.unique(values.dropna().astype(str))
    mapping = {v: pseudonymize_id(v, key) for v in distinct}
    if len(set(mapping.values())) != len(mapping):
        raise ValueError(f"pseudonym collision among {len(mapping):,} ids; lengthen HEX_DIGITS")
    return values.astype("string").map(mapping, na_action="ignore").astype("string")


def pseudonymize_tables(raw: RawTables, key: bytes) -> RawTables:
    """The same tables with ``user_id`` replaced by pseudonyms; nothing else changes."""
    inter = raw.interactions.copy()
    inter["user_id"] = pseudonymize_ids(inter["user_id"], key)
    inter.attrs = dict(raw.interactions.attrs)
    return RawTables(inter, raw.items, raw.source)
