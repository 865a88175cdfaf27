"""The PostgreSQL schema of the central audit store, and its migrations (applied in order at start).

One row per chained line: the line exactly as chained (so ``audit verify --db`` checks the same bytes it
would in a file), the replica's ``chain_id`` and the line's ``seq`` in that chain (the primary key, which
also makes replaying a spool twice harmless), and the columns queries filter on, each indexed.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION_TABLE = "crest_audit_schema_version"
RECORDS_TABLE = "crest_audit_records"
_MIGRATION_LOCK = 0x43524553  # pg_advisory_xact_lock key: replicas starting together migrate one at a time

# Each migration: (version, statements). Append new versions; never edit an applied one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            f"""CREATE TABLE {RECORDS_TABLE} (
                chain_id text NOT NULL,
                seq bigint NOT NULL,
                ts timestamptz NOT NULL,
                tenant text,
                action text,
                direction text,
                request_id text,
                event text,
                line text NOT NULL,
                hash char(64) NOT NULL,
                PRIMARY KEY (chain_id, seq)
            )""",
            f"CREATE INDEX crest_audit_ts ON {RECORDS_TABLE} (ts)",
            f"CREATE INDEX crest_audit_tenant_ts ON {RECORDS_TABLE} (tenant, ts)",
            f"CREATE INDEX crest_audit_action_ts ON {RECORDS_TABLE} (action, ts)",
            f"CREATE INDEX crest_audit_request_id ON {RECORDS_TABLE} (request_id)",
        ),
    ),
)
LATEST = MIGRATIONS[-1][0]

INSERT = (
    f"INSERT INTO {RECORDS_TABLE} "
    "(chain_id, seq, ts, tenant, action, direction, request_id, event, line, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (chain_id, seq) DO NOTHING"
)


def migrate(conn: Any) -> int:
    """Bring the schema to ``LATEST`` (one transaction, serialised across replicas); the version now."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA_VERSION_TABLE}")
        current = int(cur.fetchone()[0])
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                cur.execute(statement)
            cur.execute(f"INSERT INTO {SCHEMA_VERSION_TABLE} (version) VALUES (%s)", (version,))
            current = version
    return current
