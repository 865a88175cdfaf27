"""A throwaway PostgreSQL holding the first N lines of an audit log, for ``console_pages.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crest_proxy.audit.schema import RECORDS_TABLE, migrate
from tests.postgres_server import postgres_bin, started_server

_COLUMNS = "chain_id, seq, ts, tenant, action, direction, request_id, event, line, hash"


@contextmanager
def loaded_database(path: Path, rows: int) -> Iterator[str]:
    """A DSN of a fresh database holding ``rows`` lines of ``path`` (COPY, then ANALYZE)."""
    import psycopg

    if postgres_bin() is None:
        raise SystemExit("PostgreSQL binaries are not installed (Debian: apt-get install postgresql)")
    server, _ = started_server()
    try:
        dsn = server.create_database("console_bench")
        with psycopg.connect(dsn) as conn:
            migrate(conn)
            with conn.cursor() as cur, cur.copy(f"COPY {RECORDS_TABLE} ({_COLUMNS}) FROM STDIN") as copy:
                for seq, line in zip(range(rows), path.open("rb"), strict=False):
                    r = json.loads(line)
                    text = line.decode().rstrip("\n")
                    copy.write_row(("bench", seq, r["ts"], r["tenant"], r["action"], r["direction"],
                                    r["request_id"], None, text, r["hash"]))  # fmt: skip
            conn.commit()
            conn.execute(f"ANALYZE {RECORDS_TABLE}")
        yield dsn
    finally:
        server.remove()
