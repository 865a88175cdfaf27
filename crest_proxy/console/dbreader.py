"""Pages of audit records for the console from the central PostgreSQL store (``audit/schema.py``).

Keyset pagination on ``(ts, chain_id, seq)``, newest first: a page is an indexed range read whatever its
depth (``OFFSET`` would re-read every skipped row), so page 10,000 of a million-row table costs what page
one does. Tenant, action, direction and request id use their indexed columns; language, rule and score are
read from the stored line (``line::jsonb``) on the rows those leave.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from crest_proxy.audit.dbread import _rows, find_in_db
from crest_proxy.audit.query import AuditQuery, Found
from crest_proxy.audit.schema import RECORDS_TABLE
from crest_proxy.console.filters import FilterError, Page, RecordFilter

_COLUMNS = ("tenant", "action", "direction", "request_id")
_NEWEST = "ORDER BY ts DESC, chain_id DESC, seq DESC"
SCAN_ROWS = 50_000  # rows one page may examine for filters on the line (about 1 s of jsonb parsing)


class DatabaseReader:
    """Reads decision records from PostgreSQL (psycopg, the ``db`` extra)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def page(self, wanted: RecordFilter, cursor: str | None, size: int) -> Page:
        """Up to ``size`` matching records, newest first, after ``cursor`` (``ts|chain_id|seq``).

        Filters on the stored line (language, rule, score) examine at most ``SCAN_ROWS`` rows a page:
        a filter that matches nothing must not read the whole table; the cursor then resumes the scan.
        """
        where, params = _conditions(wanted)
        if cursor:
            where.append("(ts, chain_id, seq) < (%s, %s, %s)")
            params += _parse_cursor(cursor)
        window = f"SELECT ts, chain_id, seq, line FROM {RECORDS_TABLE} WHERE {' AND '.join(where)} {_NEWEST}"
        on_line, line_params = _line_conditions(wanted)
        if not on_line:
            rows = list(_rows(self._dsn, f"{window} LIMIT {int(size) + 1}", params))
            return _page(rows, size, None)
        scanned = f"SELECT * FROM ({window} LIMIT {SCAN_ROWS}) s"
        sql = f"{scanned} WHERE {' AND '.join(on_line)} {_NEWEST} LIMIT {int(size) + 1}"
        rows = list(_rows(self._dsn, sql, params + line_params))
        if len(rows) > size:
            return _page(rows, size, None)
        return _page(rows, size, self._resume(window, params))

    def _resume(self, window: str, params: list[Any]) -> str | None:
        """Where the next scan starts when this one examined its ``SCAN_ROWS`` (None: it saw them all)."""
        sql = (
            f"WITH s AS MATERIALIZED ({window} LIMIT {SCAN_ROWS}) "
            "SELECT (SELECT count(*) FROM s), ts, chain_id, seq FROM s ORDER BY ts, chain_id, seq LIMIT 1"
        )
        found = list(_rows(self._dsn, sql, params))
        if not found or found[0][0] < SCAN_ROWS:
            return None
        _, ts, chain, seq = found[0]
        return _cursor(ts, chain, seq)

    def newest(self, wanted: RecordFilter, limit: int | None = None) -> Iterator[Found]:
        """Matching records, newest first (a server-side cursor streams them)."""
        where, params = _conditions(wanted)
        on_line, line_params = _line_conditions(wanted)
        sql = f"SELECT line FROM {RECORDS_TABLE} WHERE {' AND '.join(where + on_line)} {_NEWEST}"
        params += line_params
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for (line,) in _rows(self._dsn, sql, params):
            yield Found(line.encode("ascii"), json.loads(line))

    def overview_fields(self, wanted: RecordFilter, limit: int) -> Iterator[Mapping[str, Any]]:
        """The overview's fields of the newest ``limit`` matching records, picked out by PostgreSQL.

        Only six small fields cross the wire instead of whole lines parsed again in Python.
        """
        where, params = _conditions(wanted)
        on_line, line_params = _line_conditions(wanted)
        sql = (
            "SELECT ts, action, tenant, line::jsonb->>'language', line::jsonb->'rules', "
            f"line::jsonb->'latency_ms' FROM {RECORDS_TABLE} WHERE {' AND '.join(where + on_line)} "
            f"{_NEWEST} LIMIT {int(limit)}"
        )
        for ts, action, tenant, language, rules, latency in _rows(self._dsn, sql, params + line_params):
            yield {"ts": ts.astimezone(timezone.utc).isoformat(), "action": action, "tenant": tenant,
                   "language": language, "rules": rules, "latency_ms": latency}  # fmt: skip

    def request(self, request_id: str) -> list[Found]:
        """Every decision record of ``request_id``, oldest first (its indexed column)."""
        return list(find_in_db(self._dsn, AuditQuery(request_id=request_id)))


def _page(rows: list[tuple[Any, ...]], size: int, resume: str | None) -> Page:
    shown = rows[:size]
    following = _cursor(*shown[-1][:3]) if len(rows) > size else resume
    scanned = SCAN_ROWS if resume else 0
    return Page(tuple(json.loads(line) for *_, line in shown), following, scanned_rows=scanned)


def _cursor(ts: datetime, chain: str, seq: int) -> str:
    return f"{ts.isoformat()}|{chain}|{seq}"


def _conditions(wanted: RecordFilter) -> tuple[list[str], list[Any]]:
    """The conditions on indexed columns."""
    where, params = ["event IS NULL"], []
    for column in _COLUMNS:
        value = getattr(wanted, column)
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    for column, op, value in (("ts", ">=", wanted.since), ("ts", "<", wanted.until)):
        if value is not None:
            where.append(f"{column} {op} %s")
            params.append(value)
    return where, params


def _line_conditions(wanted: RecordFilter) -> tuple[list[str], list[Any]]:
    """The conditions read from the stored line (no index: bounded by ``SCAN_ROWS``)."""
    where: list[str] = []
    params: list[Any] = []
    if wanted.language is not None:
        where.append("%s = ANY(string_to_array(line::jsonb->>'language', ','))")
        params.append(wanted.language)
    if wanted.rule is not None:
        where.append("(line::jsonb->'rules') ? %s")
        params.append(wanted.rule)
    for op, value in ((">=", wanted.min_score), ("<=", wanted.max_score)):
        if value is not None:
            where.append(
                f"jsonb_typeof(line::jsonb->'score') = 'number' AND (line::jsonb->>'score')::float8 {op} %s"
            )
            params.append(value)
    return where, params


def _parse_cursor(cursor: str) -> list[Any]:
    parts = cursor.split("|")
    try:
        ts, chain, seq = datetime.fromisoformat(parts[0]), parts[1], int(parts[2])
    except (ValueError, IndexError):
        raise FilterError(
            f"cursor: {cursor!r} is not a page cursor; start again from the first page"
        ) from None
    return [ts, chain, seq]
