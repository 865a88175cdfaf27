"""Reading the central audit store back: the same records, summaries and chain checks as from files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crest_proxy.audit.database import import_psycopg
from crest_proxy.audit.query import AuditQuery, Found
from crest_proxy.audit.schema import RECORDS_TABLE

_FETCH = 5000  # rows per round trip of the server-side cursor


def find_in_db(dsn: str, query: AuditQuery) -> Iterator[Found]:
    """Matching decision records, oldest first (ties in chain order), as ``find`` yields them from files."""
    where, params = _conditions(query)
    sql = f"SELECT line FROM {RECORDS_TABLE} WHERE {' AND '.join(where)} ORDER BY ts, chain_id, seq"
    for (line,) in _rows(dsn, sql, params):
        yield Found(line.encode("ascii"), json.loads(line))


def chain_ids(dsn: str) -> list[str]:
    """Every chain (replica run) in the store, in the order each started."""
    sql = f"SELECT chain_id FROM {RECORDS_TABLE} GROUP BY chain_id ORDER BY min(ts), chain_id"
    return [chain for (chain,) in _rows(dsn, sql, [])]


def chain_lines(dsn: str, chain_id: str) -> Iterator[tuple[Path, int, bytes]]:
    """One chain's lines in ``seq`` order, as ``verify_lines`` takes them (source ``chain <id>``, seq)."""
    sql = f"SELECT seq, line FROM {RECORDS_TABLE} WHERE chain_id = %s ORDER BY seq"
    source = Path(f"chain {chain_id}")
    for seq, line in _rows(dsn, sql, [chain_id]):
        yield source, int(seq), line.encode("ascii") + b"\n"


def _conditions(query: AuditQuery) -> tuple[list[str], list[Any]]:
    where, params = ["event IS NULL"], []
    for column in ("tenant", "action", "direction", "request_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if query.since is not None:
        where.append("ts >= %s")
        params.append(query.since)
    return where, params


def _rows(dsn: str, sql: str, params: list[Any]) -> Iterator[tuple[Any, ...]]:
    psycopg = import_psycopg()
    with psycopg.connect(dsn) as conn, conn.transaction(), conn.cursor(name="crest_audit_read") as cur:
        cur.itersize = _FETCH
        cur.execute(sql, params)
        yield from cur
