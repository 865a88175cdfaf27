"""The central audit store: every decision inserted into PostgreSQL, in batches, from a writer thread.

Each process writes its own hash chain, named by a ``chain_id`` (host, pid, start time and a random
suffix), with ``chain_id`` and ``seq`` inside each chained line, so ``audit verify --db`` checks every
replica's chain on its own. When the database cannot be reached, lines go to a local spool (``spool``)
and are replayed in order, from the writer thread, once it answers again; nothing is lost while the
spool's disk works. psycopg (the ``db`` extra) is imported only when this sink is used.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crest_proxy.audit.chain import GENESIS, link
from crest_proxy.audit.lock import FileLock
from crest_proxy.audit.queued import AuditStats, QueuedSink, log
from crest_proxy.audit.repair import repair_torn_tail
from crest_proxy.audit.schema import INSERT, migrate
from crest_proxy.audit.spool import Spool

_CHUNK = 500  # rows per INSERT batch when replaying the spool


def new_chain_id() -> str:
    """A chain id unique to this process: host, pid, start time, and a random suffix."""
    started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{socket.gethostname()}:{os.getpid()}:{started}:{uuid.uuid4().hex[:8]}"


def import_psycopg() -> Any:
    """psycopg, or an ImportError saying how to install it."""
    try:
        import psycopg
    except ImportError as exc:
        raise ImportError("--audit-db needs psycopg: pip install 'crest-proxy[db]'") from exc
    return psycopg


class PostgresAuditSink(QueuedSink):
    """Inserts hash-chained records into PostgreSQL; spools them locally while it is unreachable."""

    def __init__(
        self,
        dsn: str,
        spool: Path,
        *,
        chain_id: str | None = None,
        max_queue: int = 100_000,
        connect_timeout_s: float = 3.0,
        retry_s: float = 1.0,
    ) -> None:
        super().__init__("database", max_queue=max_queue)
        self.dsn, self.chain_id = dsn, chain_id or new_chain_id()
        self.spool = Spool(Path(spool))
        self._lock = FileLock(Path(spool))
        self._connect_timeout_s, self._retry_s = connect_timeout_s, retry_s
        self._tick_s = retry_s
        self._conn: Any = None
        self._next_try = 0.0
        self._seq, self.head = 0, GENESIS
        self.lost = self._spooled = self._replayed = self._torn = 0

    @property
    def stats(self) -> AuditStats:
        """Counters of spooled, replayed, torn and lost records."""
        return AuditStats(lost=self.lost, torn=self._torn, spooled=self._spooled, replayed=self._replayed)

    def problem(self) -> str | None:
        """Why records cannot be kept (database down AND spool failing), or None."""
        if (down := self.running_problem()) is not None:
            return down
        return f"the last write failed: {self.last_error}" if self.lost and self.last_error else None

    def detail(self) -> str:
        """One line for ``/readyz``: the chain, and whether records are being spooled."""
        state = f"spooling to {self.spool.path} ({self.last_error})" if self.spool.pending else "connected"
        return f"postgresql chain {self.chain_id}: {state}"

    # --- writer thread ---

    def _open(self) -> None:
        import_psycopg()
        self._lock.acquire()
        torn = repair_torn_tail(self.spool.path)
        if torn is not None:
            self._torn += 1
            log.warning("audit spool %s: cut off a torn last line (%d bytes)", self.spool.path, torn.bytes)
        self.spool.open()
        self._connect()
        if self.spool.pending:
            self._replay()  # what an earlier run could not deliver goes first

    def _write_batch(self, lines: list[str]) -> list[bool]:
        chained = [self._chain(line) for line in lines]
        if not self.spool.pending and self._insert(chained):
            return [True] * len(lines)
        try:
            self.spool.append([text for text, _ in chained])
        except OSError as exc:
            self.lost += len(lines)
            self.last_error = f"spool: {exc}"
            log.exception("audit spool %s: could not keep %d record(s)", self.spool.path, len(lines))
            return [False] * len(lines)
        self._spooled += len(lines)
        self._replay()
        return [True] * len(lines)

    def _idle_tick(self) -> None:
        if self.spool.pending:
            self._replay()

    def _close(self) -> None:
        if self.spool.pending:
            self._next_try = 0.0
            self._replay()  # a last try; what stays spooled is replayed by the next start
        if self._conn is not None:
            self._conn.close()
        self.spool.close()
        self._lock.release()
        log.info("audit chain %s closed; head %s", self.chain_id, self.head, extra={"chain": self.head})

    def _chain(self, line: str) -> tuple[str, tuple[Any, ...]]:
        """The chained line (``chain_id`` and ``seq`` inside it) and its row."""
        body = f'{line[:-1]},"chain_id":{json.dumps(self.chain_id)},"seq":{self._seq}}}'
        linked = link(body, self.head)
        self._seq, self.head = self._seq + 1, linked.hash
        return linked.text, row_of(linked.text.encode("ascii"))

    def _connected(self) -> bool:
        if self._conn is None and time.monotonic() >= self._next_try:
            self._connect()
        return self._conn is not None

    def _connect(self) -> None:
        psycopg = import_psycopg()
        try:
            # statement_timeout: a database that accepts connections but hangs must not stall the writer.
            conn = psycopg.connect(
                self.dsn,
                connect_timeout=max(2, int(self._connect_timeout_s)),
                options="-c statement_timeout=10s",
            )
            migrate(conn)
        except psycopg.Error as exc:
            self._down(exc)
            return
        self._conn, self.last_error = conn, None

    def _insert(self, rows: list[tuple[str, tuple[Any, ...]]]) -> bool:
        if not self._connected():
            return False
        psycopg = import_psycopg()
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.executemany(INSERT, [row for _, row in rows])
        except psycopg.Error as exc:
            self._down(exc)
            return False
        return True

    def _replay(self) -> None:
        """Insert spooled lines in order; stop at the first failure (the rest waits for the next try)."""
        for chunk, offset in self.spool.chunks(_CHUNK):
            if not self._insert([("", row) for row in self._rows_of(chunk)]):
                return
            self.spool.replayed_to = offset
            self._replayed += len(chunk)
        if not self.spool.pending:
            self.spool.emptied()
            log.info("audit spool %s replayed into the database", self.spool.path)

    def _rows_of(self, lines: list[bytes]) -> list[tuple[Any, ...]]:
        """Rows of spooled lines; a line that is not a chained record (damaged spool) is counted as lost."""
        rows = []
        for line in lines:
            try:
                rows.append(row_of(line))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                self.lost += 1
                log.error("audit spool %s: skipped a damaged line (%d bytes)", self.spool.path, len(line))
        return rows

    def _down(self, exc: Exception) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._next_try = None, time.monotonic() + self._retry_s
        error = f"database: {str(exc).strip() or type(exc).__name__}"
        if error != self.last_error:  # once per outage, not once per retry
            log.warning("audit %s; spooling to %s", error, self.spool.path)
        self.last_error = error


def row_of(line: bytes) -> tuple[Any, ...]:
    """The table row of one chained line (its columns read from the line itself)."""
    text = line.rstrip(b"\n").decode("ascii")
    r = json.loads(text)
    return (
        r["chain_id"], r["seq"], r["ts"], r.get("tenant"), r.get("action"), r.get("direction"),
        r.get("request_id"), r.get("event"), text, r["hash"],
    )  # fmt: skip
