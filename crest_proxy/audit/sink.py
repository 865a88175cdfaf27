"""Audit sinks: where every screening decision is recorded (an append-only JSON Lines file, or memory)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from crest_proxy.audit.chain import GENESIS, last_hash, link
from crest_proxy.audit.files import RotatingFile, rotated_siblings
from crest_proxy.types import AuditRecord

AUDIT_MODES = ("none", "hash", "redacted", "full")
_BATCH = 1000  # lines per write+flush: one syscall per burst, bounded memory
_log = logging.getLogger(__name__)


@runtime_checkable
class AuditSink(Protocol):
    """Receives audit records; implementations must not block the event loop."""

    async def write(self, record: AuditRecord) -> None:
        """Record one decision."""
        ...

    async def aclose(self) -> None:
        """Flush everything written so far and release resources; idempotent."""
        ...


# --- what goes into a record -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditContent:
    """The hash and (policy permitting) the text an audit record keeps of the screened content."""

    sha256: str | None
    content: str | None


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_for_audit(mode: str, original: str, redacted: str | None) -> AuditContent:
    """What the audit mode (none | hash | redacted | full) lets a record keep of ``original``."""
    if mode not in AUDIT_MODES:
        raise ValueError(f"unknown audit content mode {mode!r}; expected one of {', '.join(AUDIT_MODES)}")
    if mode == "none":
        return AuditContent(None, None)
    digest = sha256_hex(original)
    if mode == "hash":
        return AuditContent(digest, None)
    if mode == "redacted":
        return AuditContent(digest, original if redacted is None else redacted)
    return AuditContent(digest, original)


def record_to_json(record: AuditRecord) -> str:
    """One line of JSON for ``record``: fields in declaration order, ASCII only, no raw line breaks."""
    # ensure_ascii escapes every non-ASCII character, so U+2028/U+2029 and U+0085 (line breaks to JS and
    # to str.splitlines) cannot split a line, and json escapes control characters such as "\n".
    data = {f.name: _jsonable(getattr(record, f.name)) for f in dataclasses.fields(record)}
    return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    """``value`` made strict JSON: tuples as lists, NaN/inf as strings, unknown objects as ``str()``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


# --- sinks ---------------------------------------------------------------------------------------------


class MemoryAuditSink:
    """Keeps records in ``.records`` (tests, and the LiteLLM plugin when no file is configured)."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.closed = False

    async def start(self) -> None:
        """Nothing to open."""

    async def write(self, record: AuditRecord) -> None:
        """Append ``record``."""
        if self.closed:
            raise RuntimeError("audit sink is closed")
        self.records.append(record)

    async def aclose(self) -> None:
        """Refuse further writes."""
        self.closed = True


def _open_for_append(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8", newline="\n")


class _Stop:
    """Queue sentinel: the writer thread ends after writing everything queued before it."""


class JsonlAuditSink:
    """Appends records to a JSON Lines file from a background thread; the event loop only enqueues.

    Lines are hash-chained (``audit_chain``) and the file is rotated past ``max_bytes`` or ``max_age_s``
    (``audit_files``); both happen in the writer thread, between writes, so no record is lost or split.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_queue: int = 100_000,
        opener: Callable[[Path], IO[str]] | None = None,
        max_bytes: int | None = None,
        max_age_s: float | None = None,
        chain: bool = True,
    ) -> None:
        self.path = Path(path)
        self._opener = opener or _open_for_append  # the seam tests use to simulate slow or broken disks
        self._queue: queue.Queue[str | _Stop] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._file = RotatingFile(self.path, self._opener, max_bytes=max_bytes, max_age_s=max_age_s)
        self._chain = chain
        self.head = GENESIS  # hash of the last line written: where the chain continues
        self.last_error: str | None = None  # why the last write failed (cleared by the next good one)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._blocked_puts = 0  # writes waiting in a thread for room in a full queue
        self._idle = threading.Condition()
        self.lost = 0  # lines that could not be written (disk errors); they are logged

    async def start(self) -> None:
        """Open the file (creating parent directories) and start the writer thread."""
        if self._thread is not None:
            return
        await asyncio.to_thread(self._open)
        self._thread = threading.Thread(target=self._run, name=f"crest-audit:{self.path.name}", daemon=True)
        self._thread.start()

    async def write(self, record: AuditRecord) -> None:
        """Queue ``record``; when the queue is full, wait for room in a worker thread (nothing is dropped)."""
        if self._closed or self._thread is None:
            raise RuntimeError("audit sink is closed" if self._closed else "audit sink not started")
        line = record_to_json(record)
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            with self._idle:
                self._blocked_puts += 1
            # Shielded: cancelling the caller must not cancel a put still waiting for an executor thread, or
            # the count would never drop and aclose would wait forever. The record is written either way.
            await asyncio.shield(asyncio.to_thread(self._put_blocking, line))

    def _put_blocking(self, line: str) -> None:
        # Runs in a worker thread; the count drops only once the line is really queued, so aclose can wait
        # for it.
        try:
            self._queue.put(line)
        finally:
            with self._idle:
                self._blocked_puts -= 1
                self._idle.notify_all()

    async def aclose(self) -> None:
        """Write everything queued so far, flush and close the file; later writes raise RuntimeError."""
        self._closed = True
        if self._thread is None:
            return
        # One finisher however many callers: concurrent acloses must not each hold a worker thread.
        if self._closing is None:
            self._closing = asyncio.ensure_future(asyncio.to_thread(self._finish, self._thread))
        await asyncio.shield(self._closing)

    def _finish(self, writer: threading.Thread) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._blocked_puts == 0)
        self._queue.put(_Stop())
        writer.join()

    def _open(self) -> None:
        # Continue the chain from the last line written, in this file or (just rotated) the newest sibling.
        newest = [self.path, *reversed(rotated_siblings(self.path))]
        self.head = next((h for h in map(last_hash, newest) if h is not None), GENESIS)
        self._file.open()

    def problem(self) -> str | None:
        """Why records cannot be written right now (for readiness), or None."""
        if self._closed:
            return "the audit log is closed"
        if self._thread is None or not self._thread.is_alive():
            return "the audit writer is not running"
        if self.last_error is not None:
            return f"the last write failed: {self.last_error}"
        target = self.path if self.path.exists() else self.path.parent
        return None if os.access(target, os.W_OK) else f"{target} is not writable"

    def flush_sync(self) -> None:
        """Block until every record queued so far is on disk (for signal handlers and tests, not the loop)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    # --- writer thread ---

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = self._next_batch()
            lines = [item for item in batch if isinstance(item, str)]
            stop = len(lines) < len(batch)
            self._write_lines(lines)
            for _ in batch:
                self._queue.task_done()
        self._close_file()

    def _next_batch(self) -> list[str | _Stop]:
        batch = [self._queue.get()]
        while len(batch) < _BATCH and not isinstance(batch[-1], _Stop):
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_lines(self, lines: list[str]) -> None:
        """Chain ``lines`` and append them, rotating in between when the file is due (writer thread)."""
        pending: list[str] = []
        size, head = 0, self.head
        for line in lines:
            text, linked = self._link(line, head)
            if self._file.due(size, len(text)):
                self._append(pending, head)
                self._rotate()
                pending, size = [], 0
                text, linked = self._link(line, self.head)  # self.head: the last line really written
            pending.append(text)
            size, head = size + len(text), linked
        self._append(pending, head)

    def _link(self, line: str, head: str) -> tuple[str, str]:
        if not self._chain:
            return f"{line}\n", head
        linked = link(line, head)
        return linked.text, linked.hash

    def _append(self, texts: list[str], head: str) -> None:
        if not texts:
            return
        try:
            self._file.write("".join(texts))
        except OSError as exc:
            # The writer keeps consuming so that writes and flush_sync never hang on a broken disk; the chain
            # goes on from the last line that was written, so the loss shows as a count and a log, not a gap.
            self.lost += len(texts)
            self.last_error = str(exc) or type(exc).__name__
            _log.exception("audit log %s: could not write %d record(s)", self.path, len(texts))
            return
        self.head, self.last_error = head, None

    def _rotate(self) -> None:
        try:
            rotated = self._file.rotate()
        except OSError as exc:
            self.last_error = str(exc) or type(exc).__name__
            _log.exception("audit log %s: could not reopen after rotation", self.path)
            return
        _log.info("audit log rotated to %s; chain head %s", rotated, self.head, extra={"chain": self.head})

    def _close_file(self) -> None:
        self._file.close()
        _log.info("audit log %s closed; chain head %s", self.path, self.head, extra={"chain": self.head})
