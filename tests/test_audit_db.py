"""The central audit store (issue 15) against a real PostgreSQL: writes, schema, outage spool and replay,
two replicas at once, and ``audit query|stats|verify --db`` giving what they give on files."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from crest_proxy.audit.chain import verify
from crest_proxy.audit.database import PostgresAuditSink
from crest_proxy.audit.jsonl import JsonlAuditSink
from crest_proxy.audit.lock import AuditLogLocked
from crest_proxy.cli import main
from crest_proxy.types import AuditRecord
from tests.postgres_server import PostgresServer, postgres_bin, started_server
from tests.support.harness import running_proxy
from tests.test_audit_server import Safe

psycopg = pytest.importorskip("psycopg", reason="the db extra (psycopg) is not installed")
pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="PostgreSQL binaries (Debian package postgresql) are not installed"
)
_names = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the module (initdb + start: about 3 s)."""
    running, _seconds = started_server()
    try:
        yield running
    finally:
        running.remove()


@pytest.fixture
def dsn(server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return server.create_database(f"audit_{next(_names)}")


def record(n: int, *, tenant: str = "acme", action: str = "allow") -> AuditRecord:
    return AuditRecord(
        ts=f"2026-11-22T07:{n // 60 % 60:02d}:{n % 60:02d}.000+00:00", request_id=f"req-{n}", tenant=tenant,
        direction="inbound" if n % 2 else "outbound", endpoint="chat.completions", model="m", action=action,
        score=0.5, threshold=0.5, rules=("email",) if n % 3 == 0 else (), latency_ms=1.0, upstream_status=200,
        text_sha256=None, language="en",
    )  # fmt: skip


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def wait_for(condition: Callable[[], bool], state: Callable[[], str] = str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in time: {state()}"
        time.sleep(0.02)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crest_proxy", "audit", *args], capture_output=True, text=True, timeout=120
    )


async def test_records_are_inserted_with_schema_indexes_and_a_chain(dsn: str, tmp_path: Path) -> None:
    sink = PostgresAuditSink(dsn, tmp_path / "spool.jsonl", chain_id="replica-a")
    await sink.start()
    for n in range(50):
        await sink.write(record(n))
    assert await sink.write_confirmed(record(50)) is True
    await sink.aclose()

    assert rows(dsn, "SELECT version FROM crest_audit_schema_version") == [(1,)]
    seqs = rows(
        dsn, "SELECT seq, request_id FROM crest_audit_records WHERE chain_id = 'replica-a' ORDER BY seq"
    )
    assert seqs == [(n, f"req-{n}") for n in range(51)]
    indexes = {
        name
        for (name,) in rows(dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'crest_audit_records'")
    }
    assert {
        "crest_audit_ts",
        "crest_audit_tenant_ts",
        "crest_audit_action_ts",
        "crest_audit_request_id",
    } <= indexes
    assert (sink.stats.spooled, sink.stats.lost) == (0, 0)
    assert not (tmp_path / "spool.jsonl").read_bytes()


async def test_start_up_migrates_once_however_many_replicas_start(dsn: str, tmp_path: Path) -> None:
    sinks = [PostgresAuditSink(dsn, tmp_path / f"spool-{i}.jsonl") for i in range(3)]
    await asyncio.gather(*(s.start() for s in sinks))  # concurrent migrations serialise on an advisory lock
    await asyncio.gather(*(s.aclose() for s in sinks))
    assert rows(dsn, "SELECT version FROM crest_audit_schema_version") == [(1,)]


async def test_an_outage_spools_and_replays_in_order(server: PostgresServer, tmp_path: Path) -> None:
    dsn = server.create_database(f"audit_{next(_names)}")
    spool = tmp_path / "spool.jsonl"
    sink = PostgresAuditSink(dsn, spool, chain_id="replica-a", retry_s=0.2)
    await sink.start()
    for n in range(5):
        await sink.write(record(n))
    await asyncio.to_thread(sink.flush_sync)
    server.stop()
    try:
        for n in range(5, 15):
            assert await sink.write_confirmed(record(n)) is True  # kept: in the spool, not the database
        assert sink.stats.spooled == 10
        assert sink.problem() is None and "spooling" in sink.detail()
        assert verify([spool]).ok  # the spool is a chained file in its own right
    finally:
        server.start()
    wait_for(lambda: sink.stats.replayed >= 10, lambda: f"{sink.stats} {sink.last_error}")  # on its own
    await sink.write(record(15))
    await sink.aclose()

    got = rows(dsn, "SELECT seq, request_id FROM crest_audit_records ORDER BY seq")
    assert got == [(n, f"req-{n}") for n in range(16)]
    assert (sink.stats.spooled, sink.stats.replayed, sink.stats.lost) == (10, 10, 0)
    assert not spool.read_bytes()
    assert cli("verify", "--db", dsn).returncode == 0


async def test_a_database_down_at_start_is_caught_up_by_the_next_run(dsn: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    down = PostgresAuditSink(
        "postgresql://crest@127.0.0.1:1/none", spool, chain_id="run-1", connect_timeout_s=1
    )
    await down.start()  # the database is unreachable: start-up still succeeds, records are spooled
    for n in range(3):
        await down.write(record(n))
    await down.aclose()
    assert down.stats.spooled == 3 and spool.read_bytes().count(b"\n") == 3

    up = PostgresAuditSink(dsn, spool, chain_id="run-2")
    await up.start()  # replays run-1's spool before anything new
    await up.write(record(3))
    await up.aclose()
    assert rows(dsn, "SELECT chain_id, seq FROM crest_audit_records ORDER BY chain_id, seq") == [
        ("run-1", 0), ("run-1", 1), ("run-1", 2), ("run-2", 0),
    ]  # fmt: skip
    assert up.stats.replayed == 3


async def test_two_replicas_write_at_once_each_on_its_own_chain(dsn: str, tmp_path: Path) -> None:
    a = PostgresAuditSink(dsn, tmp_path / "a.jsonl")
    b = PostgresAuditSink(dsn, tmp_path / "b.jsonl")
    assert a.chain_id != b.chain_id
    await asyncio.gather(a.start(), b.start())
    await asyncio.gather(*(s.write(record(n)) for n in range(300) for s in (a, b) if n % 2 == (s is b)))
    await asyncio.gather(a.aclose(), b.aclose())

    counts = dict(rows(dsn, "SELECT chain_id, count(*) FROM crest_audit_records GROUP BY chain_id"))
    assert counts == {a.chain_id: 150, b.chain_id: 150}
    done = cli("verify", "--db", dsn)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        f"ok: 150 lines in chain {c}, chained from the start of the log" for c in (a.chain_id, b.chain_id)
    )


async def test_one_spool_cannot_be_shared_by_two_replicas(dsn: str, tmp_path: Path) -> None:
    a = PostgresAuditSink(dsn, tmp_path / "spool.jsonl")
    await a.start()
    with pytest.raises(AuditLogLocked):
        await PostgresAuditSink(dsn, tmp_path / "spool.jsonl").start()
    await a.aclose()


async def test_verify_db_finds_a_changed_row(dsn: str, tmp_path: Path) -> None:
    sink = PostgresAuditSink(dsn, tmp_path / "spool.jsonl", chain_id="replica-a")
    await sink.start()
    for n in range(5):
        await sink.write(record(n))
    await sink.aclose()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE crest_audit_records SET line = replace(line, '\"allow\"', '\"block\"') WHERE seq = 2"
        )
    done = cli("verify", "--db", dsn)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "BROKEN chain replica-a:2 (request_id req-2): "
        "the line's content does not match its hash (it was changed)"
    )


async def test_query_and_stats_give_the_same_output_from_the_database_as_from_files(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    file_sink, db_sink = JsonlAuditSink(log), PostgresAuditSink(dsn, tmp_path / "spool.jsonl")
    await file_sink.start()
    await db_sink.start()
    for n in range(120):
        r = record(n, tenant=("acme", "globex")[n % 2], action=("allow", "block", "redact")[n % 3])
        await file_sink.write(r)
        await db_sink.write(r)
    await asyncio.gather(file_sink.aclose(), db_sink.aclose())

    for args in (
        ["query"],
        ["query", "--tenant", "globex", "--action", "block"],
        ["query", "--request-id", "req-7"],
        ["query", "--since", "2026-11-22T07:01:00", "--limit", "5"],
        ["stats"],
        ["stats", "--json", "--bucket", "minute", "--tenant", "acme"],
    ):
        from_files, from_db = in_process(capsys, *args, str(log)), in_process(capsys, *args, "--db", dsn)
        assert from_db == from_files, args
        assert from_db.strip()
    # --json prints the lines as stored: the database's also name their chain and place in it.
    (line,) = in_process(capsys, "query", "--json", "--request-id", "req-7", "--db", dsn).splitlines()
    assert json.loads(line)["chain_id"] == db_sink.chain_id and json.loads(line)["seq"] == 7


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``crest-proxy audit ARGS`` run in this process (13 runs: a subprocess each would take seconds)."""
    assert main(["audit", *args]) == 0
    return capsys.readouterr().out


def test_files_or_db_one_of_them(tmp_path: Path) -> None:
    done = cli("query")
    assert done.returncode == 2 and "give audit log files or --db DSN" in done.stderr


def test_the_proxy_writes_every_decision_to_the_file_and_the_database(dsn: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    with running_proxy(tmp_path, Safe(), audit_db=dsn, audit_spool=spool, detect_language=False) as h:  # type: ignore[arg-type]
        answer = h.post(
            "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        )
        file_records = h.records()
        ready = httpx.get(f"{h.proxy_url}/readyz").json()["checks"]["audit"]
        metrics = httpx.get(f"{h.proxy_url}/metrics").text
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    in_db = rows(
        dsn, f"SELECT direction FROM crest_audit_records WHERE request_id = '{request_id}' ORDER BY seq"
    )
    assert in_db == [("inbound",), ("outbound",)]
    assert [r["direction"] for r in file_records if r["request_id"] == request_id] == ["inbound", "outbound"]
    assert ready["ok"] and "postgresql chain" in ready["detail"] and "connected" in ready["detail"]
    assert "crest_audit_spooled_records_total 0.0" in metrics


async def test_a_damaged_spool_line_is_counted_and_the_rest_replayed(dsn: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    down = PostgresAuditSink(
        "postgresql://crest@127.0.0.1:1/none", spool, chain_id="run-1", connect_timeout_s=1
    )
    await down.start()
    for n in range(2):
        await down.write(record(n))
    await down.aclose()
    with spool.open("ab") as handle:
        handle.write(b"not a record\n")  # a damaged disk block, or a hand edit

    up = PostgresAuditSink(dsn, spool, chain_id="run-2")
    await up.start()
    await up.aclose()
    assert rows(dsn, "SELECT seq FROM crest_audit_records WHERE chain_id = 'run-1' ORDER BY seq") == [
        (0,),
        (1,),
    ]
    assert (up.stats.replayed, up.stats.lost) == (3, 1)
    assert not spool.read_bytes()
