"""The console over the central store: the same filters and pages from PostgreSQL as from files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from crest_proxy.audit.database import PostgresAuditSink
from crest_proxy.console.app import console_routes
from crest_proxy.console.dbreader import DatabaseReader
from crest_proxy.console.filters import FilterError, parse_filter
from crest_proxy.console.reader import FileReader
from tests.postgres_server import postgres_bin, started_server
from tests.support.servers import serve
from tests.test_console import HOSTILE, KEY, record, write_log

pytest.importorskip("psycopg", reason="the db extra (psycopg) is not installed")
pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="PostgreSQL binaries (Debian package postgresql) are not installed"
)
RECORDS = [record(n) for n in range(120)] + [HOSTILE]
FILTERS = [
    {}, {"tenant": "beta"}, {"action": "block"}, {"language": "de", "direction": "inbound"},
    {"rule": "email", "max_score": "0.2"}, {"min_score": "0.5"}, {"request_id": "req-7"},
    {"since": "2026-11-22T08:00", "until": "2026-11-22T08:30"},
]  # fmt: skip


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding ``RECORDS`` as the proxy's PostgreSQL sink writes them."""
    import asyncio

    server, _ = started_server()
    try:
        dsn = server.create_database("console")
        spool = tmp_path_factory.mktemp("spool") / "spool.jsonl"

        async def fill() -> None:
            sink = PostgresAuditSink(dsn, spool, chain_id="replica-a")
            await sink.start()
            for r in RECORDS:
                await sink.write(r)
            await sink.aclose()

        asyncio.run(fill())
        yield dsn
    finally:
        server.remove()


def all_pages(reader: DatabaseReader | FileReader, params: dict[str, str], size: int) -> list[str]:
    ids, cursor = [], None
    while True:
        page = reader.page(parse_filter(params), cursor, size)
        ids += [r["request_id"] for r in page.records]
        if not (cursor := page.next_cursor):
            return ids


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "all")
def test_keyset_pages_match_the_file_readers(dsn: str, tmp_path: Path, params: dict[str, str]) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, RECORDS)
    from_db = all_pages(DatabaseReader(dsn), params, 7)
    assert from_db == all_pages(FileReader([path]), params, 7)
    assert from_db == [
        r["request_id"] for r in (x.record for x in DatabaseReader(dsn).newest(parse_filter(params)))
    ]
    assert from_db  # every filter above matches something


def test_a_request_and_its_chain_status_from_the_database(dsn: str) -> None:
    found = DatabaseReader(dsn).request("req-hostile")
    assert len(found) == 1 and found[0].record["tenant"] == HOSTILE.tenant
    app = Starlette(routes=console_routes(DatabaseReader(dsn), KEY))
    with serve(app) as base, httpx.Client(base_url=base) as client:
        client.post("/console/login", data={"key": KEY})
        html = client.get("/console/requests/req-hostile").text
        assert "line hash matches" in html and "<script>" not in html


def test_filters_on_the_line_examine_a_bounded_window_per_page(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crest_proxy.console import dbreader

    monkeypatch.setattr(dbreader, "SCAN_ROWS", 10)
    reader, cursor, pages, found = DatabaseReader(dsn), None, 0, []
    while True:
        page = reader.page(parse_filter({"language": "de", "max_score": "0.1"}), cursor, 50)
        pages, found = pages + 1, found + [r["request_id"] for r in page.records]
        if not (cursor := page.next_cursor):
            break
    assert pages == 13 and found == [f"req-{n}" for n in (20, 15, 10, 5, 0)]


def test_the_overview_counts_the_same_from_the_database(dsn: str, tmp_path: Path) -> None:
    from crest_proxy.console.overview import summarise

    path = tmp_path / "audit.jsonl"
    write_log(path, RECORDS)
    for params in ({"since": "2026-11-22"}, {"since": "2026-11-22T08:00", "tenant": "acme"}):
        wanted = parse_filter(params)
        from_db = summarise(DatabaseReader(dsn).overview_fields(wanted, 1000))
        assert from_db == summarise(FileReader([path]).overview_fields(wanted, 1000))
        assert from_db.records and from_db.top_rules and from_db.latency_ms["p90"] > 0


def test_a_forged_cursor_is_a_filter_error(dsn: str) -> None:
    with pytest.raises(FilterError, match="cursor"):
        DatabaseReader(dsn).page(parse_filter({}), "2026-11-22|x", 5)


def test_pages_use_the_indexes(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table: make the planner show what it can use
        plan = conn.execute(
            "EXPLAIN SELECT line FROM crest_audit_records WHERE event IS NULL AND tenant = 'beta' "
            "ORDER BY ts DESC, chain_id DESC, seq DESC LIMIT 51"
        ).fetchall()
    assert "crest_audit_tenant_ts" in " ".join(row[0] for row in plan)
