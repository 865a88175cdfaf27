"""Audit you can trust (issue 14): failed writes, torn lines, deleted files, two writers, fsync."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crest_proxy.audit.chain import verify
from crest_proxy.audit.files import AppendOnlyFile
from crest_proxy.audit.jsonl import JsonlAuditSink
from crest_proxy.audit.lock import AuditLogLocked, FileLock
from crest_proxy.audit.query import AuditQuery, find
from crest_proxy.types import AuditRecord

FAST = (0.0, 0.0)  # retry without waiting: the tests control when the disk heals


def record(n: int) -> AuditRecord:
    return AuditRecord(
        ts=f"2026-11-22T07:00:{n % 60:02d}.000+00:00", request_id=f"req-{n}", tenant="acme",
        direction="inbound", endpoint="chat.completions", model="m", action="allow", score=0.1,
        threshold=0.5, rules=(), latency_ms=1.0, upstream_status=200, text_sha256=None,
    )  # fmt: skip


class Disk:
    """Decides whether the next write fails: ``broken`` (until healed) or the next ``fail_next`` writes."""

    def __init__(self) -> None:
        self.broken = False
        self.fail_next = 0
        self.failures = 0

    def opener(self, path: Path) -> AppendOnlyFile:
        return FlakyFile(path, self)

    def should_fail(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.broken


class FlakyFile(AppendOnlyFile):
    """A real file whose failing writes first write half their bytes (what a filling disk does)."""

    def __init__(self, path: Path, disk: Disk) -> None:
        super().__init__(path)
        self.disk = disk

    def write(self, text: str) -> int:
        if self.disk.should_fail():
            self.disk.failures += 1
            os.write(self.fileno(), text[: len(text) // 2].encode("ascii"))
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


def lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "a torn line remains"
    return [json.loads(line) for line in raw.splitlines()]


async def write_each(sink: JsonlAuditSink, numbers: range) -> None:
    for n in numbers:
        await sink.write(record(n))
        await asyncio.to_thread(sink.flush_sync)  # one batch per record


async def test_a_partial_write_is_cut_off_and_retried_with_the_same_links(tmp_path: Path) -> None:
    disk, path = Disk(), tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, opener=disk.opener, retry_delays_s=FAST)
    await sink.start()
    await write_each(sink, range(2))
    disk.fail_next = 2  # two failed attempts (each leaving half a line behind), the third succeeds
    await write_each(sink, range(2, 5))
    await sink.aclose()
    assert disk.failures == 2
    assert [r["request_id"] for r in lines(path)] == [f"req-{n}" for n in range(5)]
    assert (sink.lost, sink.stats.gaps) == (0, 0)
    result = verify([path])
    assert result.ok and result.notes == ()


async def test_a_lasting_failure_leaves_an_explicit_gap_and_an_exact_count(tmp_path: Path) -> None:
    disk, path = Disk(), tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, opener=disk.opener, retry_delays_s=FAST)
    await sink.start()
    await write_each(sink, range(2))
    disk.broken = True
    await write_each(sink, range(2, 5))
    assert await sink.write_confirmed(record(5)) is False
    assert sink.problem() == "the last write failed: [Errno 28] No space left on device"
    disk.broken = False
    assert await sink.write_confirmed(record(6)) is True
    await write_each(sink, range(7, 8))
    await sink.aclose()

    written = lines(path)
    assert [r.get("request_id", r.get("event")) for r in written] == [
        "req-0",
        "req-1",
        "gap",
        "req-6",
        "req-7",
    ]
    gap = written[2]
    assert (gap["lost"], gap["reason"]) == (4, "[Errno 28] No space left on device")
    assert gap["first_lost"] <= gap["last_lost"]
    assert (sink.lost, sink.stats.gaps, sink.last_error) == (4, 1, None)
    result = verify([path])
    assert result.ok and result.lost == 4  # loss is on the chain, not a break in it
    assert [f.record["request_id"] for f in find([path], AuditQuery())] == [
        "req-0",
        "req-1",
        "req-6",
        "req-7",
    ]


def test_audit_verify_reports_the_gap_and_still_passes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    disk = Disk()

    async def scenario() -> None:
        sink = JsonlAuditSink(path, opener=disk.opener, retry_delays_s=FAST)
        await sink.start()
        disk.broken = True
        await write_each(sink, range(3))
        disk.broken = False
        await write_each(sink, range(3, 4))
        await sink.aclose()

    asyncio.run(scenario())
    done = cli("audit", "verify", str(path))
    assert done.returncode == 0, done.stderr
    assert "gap at" in done.stdout and "3 record(s) could not be written" in done.stdout
    assert done.stdout.rstrip().endswith("3 record(s) lost in explicit gaps")


async def test_a_torn_last_line_is_cut_off_kept_aside_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = JsonlAuditSink(path)
    await first.start()
    await write_each(first, range(3))
    await first.aclose()
    fragment = b'{"ts":"2026-11-22T07:00:09.000+00:00","request_id":"req-torn","ten'
    with path.open("ab") as handle:  # what kill -9 in the middle of a write leaves
        handle.write(fragment)

    second = JsonlAuditSink(path)
    await second.start()
    await write_each(second, range(3, 5))
    await second.aclose()

    written = lines(path)
    assert [r.get("request_id", r.get("event")) for r in written] == [
        "req-0",
        "req-1",
        "req-2",
        "torn",
        "req-3",
        "req-4",
    ]
    assert written[3]["bytes"] == len(fragment)
    assert (tmp_path / ".audit.jsonl.torn").read_bytes() == fragment + b"\n"
    assert second.stats.torn == 1
    assert verify([path]).ok
    assert sorted(tmp_path.glob("audit.jsonl*")) == [path]  # the side files stay out of `audit verify …*`


async def test_a_log_that_is_only_a_torn_line_starts_a_fresh_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ts":"2026-11-22T07:00')
    sink = JsonlAuditSink(path)
    await sink.start()
    await write_each(sink, range(1))
    await sink.aclose()
    assert [r.get("event", r.get("request_id")) for r in lines(path)] == ["torn", "req-0"]
    assert verify([path]).anchor == "0" * 64


async def test_a_deleted_log_is_reopened_and_the_chain_continues_with_a_note(tmp_path: Path) -> None:
    path, moved = tmp_path / "audit.jsonl", tmp_path / "moved.jsonl"
    sink = JsonlAuditSink(path)
    await sink.start()
    await write_each(sink, range(2))
    path.rename(moved)  # gone from its name, as `rm` or a careless logrotate would leave it
    await write_each(sink, range(2, 4))
    await sink.aclose()

    assert sink.stats.reopened == 1
    reopened = lines(path)
    assert [r.get("event", r.get("request_id")) for r in reopened] == ["reopen", "req-2", "req-3"]
    assert reopened[0]["previous_head"] == lines(moved)[-1]["hash"]
    assert verify([moved, path]).ok  # one unbroken chain across the two files
    alone = verify([path])
    assert alone.ok and [n.event for n in alone.notes] == ["reopen"]


async def test_a_replaced_log_is_reopened_and_only_the_note_may_resume_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    await sink.start()
    await write_each(sink, range(3))
    stale = tmp_path / "restored.jsonl"
    stale.write_bytes(path.read_bytes().splitlines(keepends=True)[0])  # an old backup put back in place
    stale.replace(path)
    await write_each(sink, range(3, 5))
    await sink.aclose()

    assert sink.stats.reopened == 1
    result = verify([path])
    assert result.ok and [(n.event, n.line) for n in result.notes] == [("reopen", 2)]
    # Anything else that resumes elsewhere is still a break: drop a record after the note.
    kept = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(kept[:2] + kept[3:]))
    assert not verify([path]).ok


async def test_a_second_writer_on_the_same_file_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = JsonlAuditSink(path), JsonlAuditSink(path)
    await first.start()
    with pytest.raises(AuditLogLocked) as refused:
        await second.start()
    assert str(refused.value) == (
        f"audit log {path} is in use by another process (pid {os.getpid()}); "
        "give each crest-proxy its own --audit-log (or stop the other one)"
    )
    await first.aclose()
    await second.start()  # free again once the first writer is gone
    await write_each(second, range(1))
    await second.aclose()
    assert verify([path]).ok


def test_a_second_serve_on_the_same_audit_log_fails_at_start_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    holder = FileLock(path)
    holder.acquire()  # as a running crest-proxy holds it
    try:
        done = cli("serve", "--audit-log", str(path), "--policies", str(tmp_path), "--port", "0")
    finally:
        holder.release()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"crest-proxy: audit log {path} is in use by another process (pid {os.getpid()}); "
        "give each crest-proxy its own --audit-log (or stop the other one)"
    ]


@pytest.mark.parametrize("mode", ["never", "batch", "always"])
async def test_fsync_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = JsonlAuditSink(tmp_path / "audit.jsonl", fsync=mode)
    await sink.start()
    await asyncio.gather(*(sink.write(record(n)) for n in range(20)))
    await asyncio.to_thread(sink.flush_sync)
    await sink.aclose()
    expected = {"never": range(0, 1), "batch": range(1, 21), "always": range(20, 21)}[mode]
    assert len(synced) in expected


async def test_write_confirmed_returns_once_the_line_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    await sink.start()
    assert await sink.write_confirmed(record(1)) is True
    assert lines(path)[-1]["request_id"] == "req-1"  # read without flushing: it is already there
    await sink.aclose()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crest_proxy", *args], capture_output=True, text=True, timeout=120
    )


def test_serve_flags_become_audit_settings() -> None:
    from crest_proxy.cli import build_parser
    from crest_proxy.cli.flags import settings_from
    from crest_proxy.errors import ConfigError
    from crest_proxy.settings import ServerSettings

    argv = ["serve", "--audit-db", "postgresql://db/audit", "--no-audit-log", "--audit-fsync", "batch"]
    settings = settings_from(ServerSettings, build_parser().parse_args(argv))
    assert (settings.audit_db, settings.audit_file, settings.audit_fsync) == (
        "postgresql://db/audit",
        False,
        "batch",
    )
    with pytest.raises(ConfigError) as refused:
        ServerSettings(audit_file=False)
    assert refused.value.problems == ["audit_file: False needs audit_db (records must go somewhere)"]


async def test_a_record_cannot_pass_itself_off_as_a_note(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    await sink.start()
    forged = dataclasses.replace(record(1), content=',"event":"reopen"', extra={"event": "reopen"})
    await sink.write(forged)
    await write_each(sink, range(2, 4))
    await sink.aclose()
    assert verify([path]).notes == ()
    assert [f.record["request_id"] for f in find([path], AuditQuery())] == ["req-1", "req-2", "req-3"]
    kept = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(kept[0] + kept[2])  # a line removed after the "reopen"-looking record: still a break
    assert not verify([path]).ok
