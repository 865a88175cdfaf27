"""Audit records as JSON lines, the JSONL sink's thread and queue, and what content a record may keep."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from crest_proxy.audit.sink import (
    AuditContent,
    AuditSink,
    JsonlAuditSink,
    MemoryAuditSink,
    content_for_audit,
    record_to_json,
)
from tests.support.records import make_record
from tests.support.waiting import wait_for_async


def read_lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes().decode("utf-8")
    assert raw.endswith("\n")
    return [json.loads(line) for line in raw.split("\n")[:-1]]


# --- record_to_json ------------------------------------------------------------------------------------


def test_record_to_json_keeps_every_field_in_declaration_order() -> None:
    record = make_record(extra={"b": 1, "nested": {"x": [1, 2]}, "upstream_error": None})
    data = json.loads(record_to_json(record))
    assert list(data) == [
        "ts",
        "request_id",
        "tenant",
        "direction",
        "endpoint",
        "model",
        "action",
        "score",
        "threshold",
        "rules",
        "latency_ms",
        "upstream_status",
        "text_sha256",
        "texts",
        "windows",
        "language",
        "error",
        "content",
        "extra",
        "client_request_id",
    ]
    assert data["rules"] == ["pii", "email"]  # tuples become lists
    assert data["upstream_status"] is None and data["content"] is None  # None fields are kept
    assert data["extra"] == {"b": 1, "nested": {"x": [1, 2]}, "upstream_error": None}
    assert record_to_json(record) == record_to_json(make_record(extra=dict(record.extra)))  # stable


@pytest.mark.parametrize(
    "content",
    [
        'line one\n{"forged": "record"}\nline three',
        "carriage\rreturn and tab\t and nul\x00 and escape\x1b",
        "separators\u2028and\u2029here",
        "next line\x85vertical\x0bform feed\x0cfile sep\x1c",
        "multilingual: 日本語 العربية हिन्दी 🙂",
    ],
)
def test_content_cannot_break_the_line(content: str) -> None:
    line = record_to_json(make_record(content=content, extra={"k": content}))
    assert line.isascii()
    assert len(line.splitlines()) == 1
    assert "\n" not in line and "\u2028" not in line and "\u2029" not in line
    data = json.loads(line)
    assert (data["content"], data["extra"]["k"]) == (content, content)


def test_record_to_json_is_strict_json_for_odd_values() -> None:
    record = make_record(score=float("nan"), extra={"path": Path("/x"), "inf": float("inf"), 3: "int key"})
    data = json.loads(record_to_json(record), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["score"] == "nan"
    assert data["extra"] == {"path": "/x", "inf": "inf", "3": "int key"}


# --- content_for_audit ---------------------------------------------------------------------------------

TEXT = "ünïcode prompt"
SHA = hashlib.sha256(TEXT.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    ("mode", "redacted", "expected"),
    [
        ("none", "r", AuditContent(None, None)),
        ("hash", "r", AuditContent(SHA, None)),
        ("redacted", "[REDACTED] prompt", AuditContent(SHA, "[REDACTED] prompt")),
        ("redacted", None, AuditContent(SHA, TEXT)),
        ("full", "[REDACTED] prompt", AuditContent(SHA, TEXT)),
    ],
)
def test_content_for_audit(mode: str, redacted: str | None, expected: AuditContent) -> None:
    assert content_for_audit(mode, TEXT, redacted) == expected


def test_content_for_audit_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="audit content mode"):
        content_for_audit("everything", TEXT, None)


# --- MemoryAuditSink -----------------------------------------------------------------------------------


async def test_memory_sink_keeps_records_and_refuses_after_close() -> None:
    sink = MemoryAuditSink()
    assert isinstance(sink, AuditSink)
    await sink.write(make_record(1))
    await sink.write(make_record(2))
    await sink.aclose()
    await sink.aclose()  # idempotent
    assert [r.request_id for r in sink.records] == ["req-1", "req-2"]
    with pytest.raises(RuntimeError):
        await sink.write(make_record(3))


# --- JsonlAuditSink ------------------------------------------------------------------------------------


async def test_jsonl_sink_appends_lines_and_creates_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "audit.jsonl"
    sink = JsonlAuditSink(path)
    assert isinstance(sink, AuditSink)
    await sink.start()
    await sink.write(make_record(1, content="a\nb"))
    await sink.aclose()
    again = JsonlAuditSink(path)
    await again.start()
    await again.write(make_record(2))
    await again.aclose()
    assert [r["request_id"] for r in read_lines(path)] == ["req-1", "req-2"]  # appended, not truncated
    assert read_lines(path)[0]["content"] == "a\nb"


async def test_jsonl_sink_writes_thousands_of_concurrent_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    await sink.start()

    async def writer(task: int) -> None:
        for i in range(40):
            await sink.write(make_record(task * 1000 + i, content=f"task {task}\nrecord {i}\u2028"))
            if i % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(t) for t in range(50)))
    await sink.aclose()
    records = read_lines(path)
    assert len(records) == 2000
    assert len({r["request_id"] for r in records}) == 2000


async def test_flush_sync_puts_everything_queued_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    await sink.start()
    for i in range(300):
        await sink.write(make_record(i))
    await asyncio.to_thread(sink.flush_sync)  # blocks, so never on the loop itself
    assert len(read_lines(path)) == 300
    await sink.aclose()
    sink.flush_sync()  # after close: returns at once
    assert len(read_lines(path)) == 300


async def test_writes_after_close_raise_and_close_is_idempotent(tmp_path: Path) -> None:
    sink = JsonlAuditSink(tmp_path / "a.jsonl")
    await sink.start()
    await sink.write(make_record(1))
    await asyncio.gather(sink.aclose(), sink.aclose())
    await sink.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write(make_record(2))
    assert len(read_lines(tmp_path / "a.jsonl")) == 1


async def test_write_before_start_is_refused(tmp_path: Path) -> None:
    sink = JsonlAuditSink(tmp_path / "a.jsonl")
    with pytest.raises(RuntimeError, match="not started"):
        await sink.write(make_record())
    await sink.aclose()  # closing a never-started sink is harmless
    assert not (tmp_path / "a.jsonl").exists()


class SlowFile:
    """A real file whose every flush waits until the test opens a gate (a stuck disk)."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        self.inner, self.gate, self.flushes = path.open("a", encoding="utf-8"), gate, 0

    def write(self, data: str) -> int:
        return self.inner.write(data)

    def flush(self) -> None:
        self.gate.wait(timeout=10)
        self.flushes += 1
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


async def test_a_busy_writer_never_blocks_the_loop_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    gate = threading.Event()
    # A small queue: writers must wait for room in a thread while the writer stalls on its first flush.
    sink = JsonlAuditSink(path, max_queue=50, opener=lambda p: SlowFile(p, gate))
    await sink.start()
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    writers = asyncio.gather(*(sink.write(make_record(i)) for i in range(500)))
    # The disk is stuck and the queue is full, yet the loop keeps ticking and writers are merely waiting.
    await wait_for_async(lambda: ticks >= 10, what="the event loop to tick while the disk is stuck")
    assert not writers.done()
    gate.set()
    await writers
    await sink.aclose()
    beat.cancel()
    records = read_lines(path)
    assert sorted(int(r["request_id"].split("-")[1]) for r in records) == list(range(500))


async def test_a_cancelled_waiting_write_is_still_written_before_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    gate = threading.Event()
    sink = JsonlAuditSink(path, max_queue=1, opener=lambda p: SlowFile(p, gate))
    await sink.start()
    # More waiting writes than the default executor has threads, so some wait for a thread when cancelled.
    count = 60
    waiting = [asyncio.create_task(sink.write(make_record(i))) for i in range(count)]
    await wait_for_async(lambda: sink._blocked_puts > 0, what="writes waiting in threads for room")
    for task in waiting:
        task.cancel()
    gate.set()
    await asyncio.wait_for(sink.aclose(), timeout=20)
    # Cancelling a waiting write does not take back its record, and close does not hang on it.
    assert sorted(r["request_id"] for r in read_lines(path)) == sorted(f"req-{i}" for i in range(count))


async def test_disk_errors_are_counted_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class BrokenFile:
        def write(self, data: str) -> int:
            raise OSError("disk full")

        def flush(self) -> None: ...

        def close(self) -> None: ...

    sink = JsonlAuditSink(tmp_path / "a.jsonl", opener=lambda p: BrokenFile())  # type: ignore[arg-type,return-value]
    await sink.start()
    for i in range(3):
        await sink.write(make_record(i))
    await asyncio.to_thread(sink.flush_sync)  # must not hang on a broken disk
    await sink.aclose()
    assert sink.lost == 3
    assert "could not write" in caplog.text
