"""Audit log rotation, the hash chain and ``crest-proxy audit verify | query | stats``."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from crest_proxy.audit.chain import GENESIS, verify
from crest_proxy.audit.files import in_rotation_order, rotated_siblings
from crest_proxy.audit.query import AuditQuery, find, parse_since, summarise
from crest_proxy.audit.sink import JsonlAuditSink
from crest_proxy.cli import main
from crest_proxy.types import AuditRecord
from tests.support.records import make_record

T0 = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)


def record(n: int, **changes: Any) -> AuditRecord:
    defaults: dict[str, Any] = {
        "ts": (T0 + timedelta(minutes=n)).isoformat(timespec="milliseconds"),
        "model": "gpt-4o-mini",
        "rules": (),
        "latency_ms": 1.0,
        "upstream_status": 200,
        "language": "en",
        "content": f"record {n}: ünïcode \u2028 and a newline\n",
    }
    return make_record(n, **{**defaults, **changes})


async def write_all(path: Path, records: list[AuditRecord], **sink_options: Any) -> JsonlAuditSink:
    sink = JsonlAuditSink(path, **sink_options)
    await sink.start()
    for r in records:
        await sink.write(r)
    await sink.aclose()
    return sink


def lines_of(*paths: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines()]


# --- the chain ------------------------------------------------------------------------------------------


async def test_every_line_links_to_the_one_before(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await write_all(path, [record(i) for i in range(5)])
    rows = lines_of(path)
    assert rows[0]["prev_hash"] == GENESIS
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    assert list(rows[0])[-2:] == ["prev_hash", "hash"]  # the record's own fields come first, unchanged
    assert rows[3]["content"] == "record 3: ünïcode \u2028 and a newline\n"
    result = verify([path])
    assert (result.ok, result.lines, result.anchor) == (True, 5, GENESIS)


async def test_a_restarted_writer_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = await write_all(path, [record(0), record(1)])
    second = JsonlAuditSink(path)
    await second.start()
    assert second.head == first.head  # picked up from the file's last line
    await second.write(record(2))
    await second.aclose()
    assert verify([path]).ok and len(lines_of(path)) == 3


def tamper(path: Path, edit: Any) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


@pytest.mark.parametrize(
    ("edit", "line", "request_id", "reason"),
    [
        (
            lambda ls: [*ls[:2], ls[2].replace('"action":"allow"', '"action":"block"'), *ls[3:]],
            3,
            "req-2",
            "changed",
        ),
        (lambda ls: [*ls[:2], *ls[3:]], 3, "req-3", "removed or reordered"),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, "req-2", "removed or reordered"),
        (lambda ls: [*ls[:4], ls[4][:-30]], 5, None, "cut short"),
        (lambda ls: [*ls[:1], '{"request_id":"forged"}\n', *ls[1:]], 2, "forged", "not chained"),
    ],
    ids=["edited", "deleted", "swapped", "truncated", "inserted"],
)
async def test_verify_reports_the_first_broken_link(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Any,
    line: int,
    request_id: str | None,
    reason: str,
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_all(path, [record(i) for i in range(5)])
    assert main(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out == "ok: 5 lines in 1 file, chained from the start of the log\n"
    tamper(path, edit)
    result = verify([path])
    assert result.first_break is not None
    assert (result.first_break.line, result.first_break.request_id) == (line, request_id)
    assert reason in result.first_break.reason
    assert main(["audit", "verify", str(path)]) == 1
    assert f"BROKEN {path}:{line} (request_id {request_id or '?'})" in capsys.readouterr().err


class FlakyFile:
    """A real file whose second write fails (a disk that hiccups once)."""

    def __init__(self, path: Path) -> None:
        self.inner, self.writes = path.open("a", encoding="utf-8"), 0

    def write(self, data: str) -> int:
        self.writes += 1
        if self.writes == 2:
            raise OSError("I/O error")
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


async def test_a_write_that_fails_once_is_retried_with_the_same_links(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, opener=lambda p: FlakyFile(p))  # type: ignore[arg-type,return-value]
    await sink.start()
    for i in range(3):
        await sink.write(record(i))
        await asyncio.to_thread(sink.flush_sync)  # one batch per record
    await sink.aclose()
    assert sink.lost == 0  # the hiccup was retried: nothing lost, nothing counted
    assert [r["request_id"] for r in lines_of(path)] == ["req-0", "req-1", "req-2"]
    assert verify([path]).ok


# --- rotation -------------------------------------------------------------------------------------------


async def test_rotation_by_size_with_concurrent_writers_keeps_every_record_exactly_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, max_bytes=4000)
    await sink.start()

    async def writer(task: int) -> None:
        for i in range(25):
            await sink.write(record(task * 100 + i))
            if i % 5 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(t) for t in range(20)))
    await sink.aclose()
    rotated = rotated_siblings(path)
    assert len(rotated) >= 50  # ~500 records of ~480 bytes, 4 KB per file
    files = [*rotated, path]
    assert all(f.stat().st_size <= 4000 for f in files)
    ids = [r["request_id"] for r in lines_of(*files)]
    assert sorted(ids) == sorted(f"req-{t * 100 + i}" for t in range(20) for i in range(25))  # once each
    shuffled = random.Random(1).sample(files, len(files))
    assert in_rotation_order(shuffled) == files
    assert verify(in_rotation_order(shuffled)).ok  # one chain across every file


async def test_rotation_by_age_and_the_chain_survives_a_restart_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, max_age_s=0.2)
    await sink.start()
    await sink.write(record(0))
    await asyncio.to_thread(sink.flush_sync)
    await asyncio.sleep(0.3)
    await sink.write(record(1))  # the file is older than 0.2 s: rotated before this record
    await sink.aclose()
    (rotated,) = rotated_siblings(path)
    assert [r["request_id"] for r in lines_of(rotated)] == ["req-0"]
    assert [r["request_id"] for r in lines_of(path)] == ["req-1"]
    path.rename(tmp_path / "moved.jsonl")  # the live file just rotated: empty on restart
    await write_all(path, [record(2)])
    assert lines_of(path)[0]["prev_hash"] == lines_of(rotated)[-1]["hash"]  # continued from the sibling


# --- query and stats ------------------------------------------------------------------------------------


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    rows = [
        record(
            i,
            tenant="acme" if i % 3 else "globex",
            action="block" if i % 4 == 0 else "allow",
            rules=("email",) * (i % 2),
        )
        for i in range(120)
    ]
    rows.append(record(200, tenant="acme", extra={"tenant": "globex"}))  # passes the byte prefilter only
    asyncio.run(write_all(path, rows, max_bytes=20_000))
    return path


def all_files(path: Path) -> list[Path]:
    return [path, *rotated_siblings(path)]  # deliberately out of order


def test_query_filters_exactly(log: Path) -> None:
    files = all_files(log)
    globex = [f.record["request_id"] for f in find(files, AuditQuery(tenant="globex"))]
    assert globex == [f"req-{i}" for i in range(0, 120, 3)]  # oldest first across rotated files
    blocked_acme = list(find(files, AuditQuery(tenant="acme", action="block")))
    assert [f.record["request_id"] for f in blocked_acme] == [
        f"req-{i}" for i in range(120) if i % 4 == 0 and i % 3
    ]
    assert [f.record["request_id"] for f in find(files, AuditQuery(request_id="req-7"))] == ["req-7"]
    recent = find(files, AuditQuery(since=T0 + timedelta(minutes=118)))
    assert [f.record["request_id"] for f in recent] == ["req-118", "req-119", "req-200"]


def test_query_cli_prints_rows_or_raw_lines(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(f) for f in all_files(log)]
    assert main(["audit", "query", *files, "--tenant", "globex", "--action", "block", "--limit", "2"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split("\t") == [
        "ts",
        "request_id",
        "tenant",
        "direction",
        "action",
        "score",
        "rules",
        "language",
    ]
    assert [r.split("\t")[1:5] for r in rows] == [
        ["req-0", "globex", "inbound", "block"],
        ["req-12", "globex", "inbound", "block"],
    ]
    assert main(["audit", "query", *files, "--request-id", "req-5", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["request_id"] == "req-5" and line in log.read_text() + "".join(
        p.read_text() for p in rotated_siblings(log)
    )


def test_stats_counts_and_blocked_rate_per_bucket(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = summarise(find(all_files(log), AuditQuery()), bucket="hour")
    assert summary.records == 121
    assert dict(summary.tenants) == {"acme": 81, "globex": 40}
    assert dict(summary.actions) == {"allow": 91, "block": 30}
    assert dict(summary.rules) == {"email": 60}
    assert [(b.start, b.decisions, b.blocked) for b in summary.buckets] == [
        ("2026-11-22T07", 60, 15),
        ("2026-11-22T08", 60, 15),
        ("2026-11-22T10", 1, 0),
    ]
    assert main(["audit", "stats", *map(str, all_files(log)), "--tenant", "globex", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 40 and data["actions"] == {"allow": 30, "block": 10}
    assert data["buckets"][0] == {
        "start": "2026-11-22T07",
        "decisions": 20,
        "blocked": 5,
        "blocked_rate": 0.25,
    }


def test_since_accepts_dates_times_and_relative_ages() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    assert parse_since("2026-11-22") == datetime(2026, 11, 22, tzinfo=timezone.utc)
    assert parse_since("2026-11-22T07:30+02:00") == datetime(2026, 11, 22, 5, 30, tzinfo=timezone.utc)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    with pytest.raises(ValueError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["audit", "verify", str(missing)]) == 2
    assert f"no such file: {missing}" in capsys.readouterr().err
    missing.write_text("")
    assert main(["audit", "query", str(missing), "--since", "yesterday"]) == 2
    assert "use an ISO date" in capsys.readouterr().err
