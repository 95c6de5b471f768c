"""Real servers on loopback for the integration tests: a throwaway PostgreSQL cluster.

The cluster lives in a temporary folder (data, unix socket and log), listens on 127.0.0.1 on a free
port with ``trust`` authentication, runs with fsync off (nothing in it outlives the session) and is
stopped in teardown. Postgres refuses to run as root, so under root the cluster is initialised and run
as the ``postgres`` system user (Debian's package creates it). Where the binaries are missing or the
server cannot start, the tests that need it skip with the reason.

Use: ``from tests.services import postgres  # noqa: F401`` in a test module, then
``postgres.create_database("name")`` returns a SQLAlchemy-style URL.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USER = "cobuy"


def _bin_dir() -> Path | None:
    """The folder holding initdb/pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running cluster: ``url(db)`` for clients, ``create_database`` for a fresh database per test."""

    host: str
    port: int
    user: str = USER
    databases: list[str] = field(default_factory=list)

    def url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres"):
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=db)
        conn.autocommit = True
        return conn

    def create_database(self, prefix: str) -> str:
        """A new, empty database named ``<prefix>_<random>``; returns its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.databases.append(name)
        return name


def _run(cmd: list[str], as_user: str | None, **kw) -> subprocess.CompletedProcess:
    if as_user:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session, or a skip naming why there is none."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 is not installed (install the 'production' extra: make install)")
    bins = _bin_dir()
    if bins is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; on Debian: apt-get install postgresql "
                    "(.ci/run does this when it runs as root)")
    as_user = None
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as "
                        "(Postgres refuses to run as root)")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to drop privileges for Postgres")
        as_user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="cobuy-pg-"))
    data, log = root / "data", root / "server.log"
    if as_user:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    started = False
    try:
        init = _run([str(bins / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                     "--no-sync"], as_user, timeout=120)
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr.strip()[-500:]}")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB")
        start = _run([str(bins / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60",
                      "start"], as_user, timeout=90)
        if start.returncode != 0:
            tail = log.read_text()[-800:] if log.exists() else ""
            pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-300:]} {tail}")
        started = True
        yield PostgresServer("127.0.0.1", port)
    finally:
        if started:
            _run([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_user, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
