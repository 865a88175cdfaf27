"""How fast the audit sinks take records: the JSONL file per ``--audit-fsync`` mode, and PostgreSQL.

Usage: ``python benchmarks/audit_sinks.py [--records 20000] [--postgres]``. ``--postgres`` starts a
throwaway PostgreSQL (Debian's ``postgresql`` package, as the tests do) and also times the database
sink, connected and while spooling (server stopped) plus the replay. Records are written by 64
concurrent tasks; the time runs until every record is written. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crest_proxy.audit.jsonl import JsonlAuditSink  # noqa: E402
from crest_proxy.types import AuditRecord  # noqa: E402


def record(n: int) -> AuditRecord:
    """A typical decision record."""
    return AuditRecord(
        ts="2026-12-01T15:00:00.000+00:00", request_id=f"req_{n:032x}", tenant=f"tenant-{n % 10}",
        direction="inbound", endpoint="chat.completions", model="gpt-4o-mini", action="allow", score=0.01,
        threshold=0.5, rules=(), latency_ms=3.2, upstream_status=200, text_sha256="ab" * 32, language="en",
    )  # fmt: skip


async def timed(sink: Any, records: int) -> float:
    """Seconds to write ``records`` through ``sink`` from 64 tasks, until all are written."""
    await sink.start()
    began = time.perf_counter()

    async def task(offset: int) -> None:
        for n in range(offset, records, 64):
            await sink.write(record(n))

    await asyncio.gather(*(task(i) for i in range(64)))
    await asyncio.to_thread(sink.flush_sync)
    elapsed = time.perf_counter() - began
    await sink.aclose()
    return elapsed


async def postgres_rows(records: int, workdir: Path) -> list[tuple[str, int, float]]:
    """The database sink, connected; then spooling while the server is down, and the replay."""
    from crest_proxy.audit.database import PostgresAuditSink
    from tests.postgres_server import started_server

    server, startup = started_server()
    try:
        dsn = server.create_database("bench")
        connected = await timed(PostgresAuditSink(dsn, workdir / "s1.jsonl"), records)
        rows = [("postgres (connected)", records, connected)]
        server.stop()
        down = PostgresAuditSink(dsn, workdir / "s2.jsonl", connect_timeout_s=1)
        rows.append(("postgres down: spooling", records, await timed(down, records)))
        server.start()
        replay = PostgresAuditSink(dsn, workdir / "s2.jsonl")
        began = time.perf_counter()
        await replay.start()  # replays the spool before it returns
        rows.append(("postgres back: replay of the spool", records, time.perf_counter() - began))
        await replay.aclose()
        print(f"(PostgreSQL initdb + start: {startup:.1f} s)")
        return rows
    finally:
        server.remove()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for mode in ("never", "batch", "always"):
            count = args.records // 10 if mode == "always" else args.records  # one fsync each: slow
            sink = JsonlAuditSink(workdir / f"{mode}.jsonl", fsync=mode)
            rows.append((f"jsonl, --audit-fsync {mode}", count, await timed(sink, count)))
        if args.postgres:
            rows += await postgres_rows(args.records, workdir)
    print("\n| sink (64 concurrent writers) | records | seconds | records/s |")
    print("|---|---:|---:|---:|")
    for name, count, seconds in rows:
        print(f"| {name} | {count:,} | {seconds:.2f} | {count / seconds:,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
