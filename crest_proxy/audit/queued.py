"""The writer thread shared by the file and database sinks: the event loop only enqueues lines.

A caller that must know its record is written (a stream's last record before ``[DONE]``, a fail-closed
tenant's request) uses ``write_confirmed``: it waits until the writer thread has written the batch holding
the record (and synced it, as the sink's durability says), or reports that it could not be written.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from crest_proxy.audit.record import record_to_json
from crest_proxy.types import AuditRecord

_BATCH = 1000  # lines per write: one syscall (or one INSERT round trip) per burst, bounded memory
log = logging.getLogger("crest_proxy.audit.sink")
_T = TypeVar("_T")


@dataclass(frozen=True)
class AuditStats:
    """What happened to a sink's records: the counters ``/metrics`` exports and ``/readyz`` reads."""

    lost: int = 0  # records that could not be written anywhere (each is also in a gap note)
    gaps: int = 0  # gap notes written (each names how many records it stands for)
    torn: int = 0  # torn last lines repaired at start
    reopened: int = 0  # times the file was found deleted or replaced and reopened
    spooled: int = 0  # records written to the local spool while the database was down
    replayed: int = 0  # spooled records later inserted into the database


class Entry(NamedTuple):
    """One queued line and, for confirmed writes, who to tell whether it was written."""

    line: str
    done: Callable[[bool], None] | None


class _Stop:
    """Queue sentinel: the writer thread ends after writing everything queued before it."""


class QueuedSink:
    """Queues record lines for one writer thread; subclasses say how a batch is written."""

    def __init__(self, name: str, *, max_queue: int = 100_000) -> None:
        self._name = name
        self._queue: queue.Queue[Entry | _Stop] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._blocked_puts = 0  # writes waiting in a thread for room in a full queue
        self._idle = threading.Condition()
        self.last_error: str | None = None  # why the last write failed (cleared by the next good one)

    # --- to be provided by subclasses (writer thread unless said otherwise) ---

    def _open(self) -> None:
        """Open the destination (runs in a worker thread before the writer starts)."""
        raise NotImplementedError

    def _write_batch(self, lines: list[str]) -> list[bool]:
        """Write ``lines`` in order; whether each one was written."""
        raise NotImplementedError

    def _idle_tick(self) -> None:
        """Called when the queue has been empty for ``_tick_s`` (retry work)."""

    def _close(self) -> None:
        """Release the destination after the last batch."""

    _tick_s: float | None = None

    # --- the event loop's side ---

    async def start(self) -> None:
        """Open the destination and start the writer thread."""
        if self._thread is not None:
            return
        await asyncio.to_thread(self._open)
        self._thread = threading.Thread(target=self._run, name=f"crest-audit:{self._name}", daemon=True)
        self._thread.start()

    async def write(self, record: AuditRecord) -> None:
        """Queue ``record``; when the queue is full, wait for room in a worker thread (nothing is dropped)."""
        await self._enqueue(Entry(record_to_json(record), None))

    async def write_confirmed(self, record: AuditRecord, timeout_s: float = 5.0) -> bool:
        """Queue ``record`` and wait until it is written: True if it was, False if it failed or timed out."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        await self._enqueue(Entry(record_to_json(record), _settler(loop, future)))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return False

    async def _enqueue(self, entry: Entry) -> None:
        if self._closed or self._thread is None:
            raise RuntimeError("audit sink is closed" if self._closed else "audit sink not started")
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            with self._idle:
                self._blocked_puts += 1
            # Shielded: cancelling the caller must not cancel a put still waiting for an executor thread, or
            # the count would never drop and aclose would wait forever. The record is written either way.
            await asyncio.shield(asyncio.to_thread(self._put_blocking, entry))

    def _put_blocking(self, entry: Entry) -> None:
        try:
            self._queue.put(entry)
        finally:
            with self._idle:
                self._blocked_puts -= 1
                self._idle.notify_all()

    async def aclose(self) -> None:
        """Write everything queued so far and close; later writes raise RuntimeError."""
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

    def flush_sync(self) -> None:
        """Block until every record queued so far is handled (for signal handlers and tests, not the loop)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def running_problem(self) -> str | None:
        """Why nothing can be written because the sink itself is down, or None."""
        if self._closed:
            return "the audit log is closed"
        if self._thread is None or not self._thread.is_alive():
            return "the audit writer is not running"
        return None

    # --- writer thread ---

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = self._next_batch()
            if batch is None:
                self._guarded(self._idle_tick)
                continue
            entries = [item for item in batch if isinstance(item, Entry)]
            stop = len(entries) < len(batch)
            self._handle(entries)
            for _ in batch:
                self._queue.task_done()
        self._guarded(self._close)

    def _handle(self, entries: list[Entry]) -> None:
        if not entries:
            return
        written = self._guarded(lambda: self._write_batch([e.line for e in entries]))
        for entry, ok in zip(entries, written or [False] * len(entries), strict=True):
            if entry.done is not None:
                entry.done(ok)

    def _guarded(self, step: Callable[[], _T]) -> _T | None:
        # A bug in a sink must not kill the writer thread: writes would then hang until the queue is full.
        try:
            return step()
        except Exception:
            log.exception("audit sink %s: writer step failed", self._name)
            return None

    def _next_batch(self) -> list[Entry | _Stop] | None:
        try:
            batch = [self._queue.get(timeout=self._tick_s)]
        except queue.Empty:
            return None
        while len(batch) < _BATCH and not isinstance(batch[-1], _Stop):
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch


def _settler(loop: asyncio.AbstractEventLoop, future: asyncio.Future[bool]) -> Callable[[bool], None]:
    """A thread-safe callback that settles ``future`` on ``loop`` (a closed loop is ignored)."""

    def settle(ok: bool) -> None:
        if not future.done():
            future.set_result(ok)

    def done(ok: bool) -> None:
        with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, ok)

    return done
