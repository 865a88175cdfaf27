"""A real, throwaway PostgreSQL server for the audit store tests (Debian's ``postgresql`` package).

initdb into a fresh directory, then ``pg_ctl start`` on a free loopback port with its socket in that
directory. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user
(the package creates it) through ``runuser``. Tests skip, saying why, only where the binaries are absent.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One initdb'd cluster: start, stop (to simulate an outage), and a DSN per database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="crest-pg-"))
        self.data = self.root / "data"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        """Create the cluster (trust authentication on loopback: a test server only)."""
        self._run("initdb", "-D", str(self.data), "-U", "crest", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop at once (``-m fast``: connections are cut, as in an outage)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL for ``database``."""
        return f"postgresql://crest@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def started_server() -> tuple[PostgresServer, float]:
    """A running server and the seconds it took to initdb and start."""
    bindir = postgres_bin()
    assert bindir is not None
    began = time.perf_counter()
    server = PostgresServer(bindir)
    server.init()
    server.start()
    return server, time.perf_counter() - began
