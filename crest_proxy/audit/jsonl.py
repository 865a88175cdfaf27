"""The JSON Lines audit file: hash-chained, rotated, locked, repaired, and honest about what it lost.

Issue 14's audit faults, and what this writer does about each:
- a failed write (disk full, read-only, EIO) is retried a few times with the same links (the file is cut
  back to its last good byte first); if it still fails the records are counted as lost and, at the next
  successful write, a ``gap`` note (how many, first/last time, why) is chained in where they belong;
- a torn last line (``kill -9`` mid-write) is moved to ``.<log>.torn`` at start and noted (``torn``);
- a log deleted or replaced while serving is noticed before the next write, reopened and noted
  (``reopen``, with the head the chain continues from);
- a second process on the same file is refused at start (``lock``);
- ``fsync``: ``never`` (the OS decides), ``batch`` (once per written batch), ``always`` (every record).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from crest_proxy.audit.chain import GENESIS, last_hash, link
from crest_proxy.audit.files import Appendable, AppendOnlyFile, RotatingFile, rotated_siblings
from crest_proxy.audit.lock import FileLock
from crest_proxy.audit.queued import AuditStats, QueuedSink, log
from crest_proxy.audit.record import note_json, utc_now
from crest_proxy.audit.repair import repair_torn_tail

FSYNC_MODES = ("never", "batch", "always")
_RETRY_DELAYS_S = (0.02, 0.1)  # a write is tried 1 + len(...) times before its records count as lost
_PROBE_S = 0.5  # while writes fail, how often the writer tries again on its own
_LINK_CHARS = len(link("{}", GENESIS).text) - len("{}")  # what chaining adds to a record's line


@dataclass(frozen=True)
class _Gap:
    """Records lost since the last good write: the note that will stand in for them."""

    count: int
    first: str
    last: str
    reason: str

    def note(self) -> str:
        return note_json(
            "gap", lost=self.count, first_lost=self.first, last_lost=self.last, reason=self.reason
        )


class JsonlAuditSink(QueuedSink):
    """Appends hash-chained records to a JSON Lines file from a background thread."""

    def __init__(
        self,
        path: Path,
        *,
        max_queue: int = 100_000,
        opener: Callable[[Path], Appendable] | None = None,
        max_bytes: int | None = None,
        max_age_s: float | None = None,
        chain: bool = True,
        fsync: str = "never",
        retry_delays_s: tuple[float, ...] = _RETRY_DELAYS_S,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync {fsync!r}: use one of {', '.join(FSYNC_MODES)}")
        super().__init__(Path(path).name, max_queue=max_queue)
        self._tick_s = _PROBE_S
        self.path = Path(path)
        # The opener is the seam tests use to simulate slow or broken disks.
        self._file = RotatingFile(
            self.path, opener or AppendOnlyFile, max_bytes=max_bytes, max_age_s=max_age_s
        )
        self._lock = FileLock(self.path)
        self._chain, self._fsync, self._retry_delays = chain, fsync, retry_delays_s
        self.head = GENESIS  # hash of the last line written: where the chain continues
        self._notes: list[str] = []  # notes to write ahead of the next records
        self._gap: _Gap | None = None
        self._dirty = False  # a failed write may have left bytes that could not be cut off yet
        self.lost = 0
        self._gaps = self._torn = self._reopened = 0

    @property
    def stats(self) -> AuditStats:
        """Counters of lost, gap, torn and reopened records."""
        return AuditStats(lost=self.lost, gaps=self._gaps, torn=self._torn, reopened=self._reopened)

    def problem(self) -> str | None:
        """Why records cannot be written right now (for readiness and fail-closed tenants), or None."""
        if (down := self.running_problem()) is not None:
            return down
        if self.last_error is not None:
            return f"the last write failed: {self.last_error}"
        return None

    # --- opening and closing ---

    def _open(self) -> None:
        self._lock.acquire()  # AuditLogLocked: another process writes this file
        try:
            self._repair()
            # Continue the chain from the last line written, in this file or the newest rotated one.
            newest = [self.path, *reversed(rotated_siblings(self.path))]
            self.head = next((h for h in map(last_hash, newest) if h is not None), GENESIS)
            self._file.open()
        except BaseException:
            self._lock.release()
            raise

    def _repair(self) -> None:
        torn = repair_torn_tail(self.path)
        if torn is None:
            return
        self._torn += 1
        log.warning(
            "audit log %s: cut off a torn last line (%d bytes kept in %s)",
            self.path,
            torn.bytes,
            torn.kept_in,
        )
        self._notes.append(note_json("torn", bytes=torn.bytes, kept_in=torn.kept_in.name))

    def _close(self) -> None:
        if self._gap is not None or self._notes:
            self._append([], probe=True)  # a last try to put the pending gap note on the chain
        if self._gap is not None:
            log.error(
                "audit log %s: closed with %d lost record(s) not noted on the chain",
                self.path,
                self._gap.count,
            )
        self._file.close()
        self._lock.release()
        log.info("audit log %s closed; chain head %s", self.path, self.head, extra={"chain": self.head})

    # --- writer thread ---

    def _write_batch(self, lines: list[str]) -> list[bool]:
        self._reopen_if_replaced()
        if self._fsync == "always":
            return [ok for line in lines for ok in self._write_lines([line])]
        return self._write_lines(lines)

    def _write_lines(self, lines: list[str]) -> list[bool]:
        """Append ``lines``, rotating in between when the file is due, so no record is split."""
        results: list[bool] = []
        chunk: list[str] = []
        size = 0
        for line in lines:
            incoming = len(line) + _LINK_CHARS
            if self._file.due(size, incoming):
                results += self._append(chunk)
                self._rotate()
                chunk, size = [], 0
            chunk.append(line)
            size += incoming
        return results + self._append(chunk)

    def _idle_tick(self) -> None:
        # While broken, probe now and then (writing the pending gap note), so the sink notices the disk came
        # back even when fail-closed tenants are refused and nothing else is written.
        if self.last_error is not None:
            self._reopen_if_replaced()
            self._append([], probe=True)

    def _append(self, records: list[str], *, probe: bool = False) -> list[bool]:
        """Chain the pending notes and ``records`` to the head and append them, retrying a failed write."""
        if not records and not probe:
            return []
        notes = [*self._notes, *([self._gap.note()] if self._gap else [])]
        text, head = self._linked([*notes, *records])
        error: OSError | None = None
        for delay in (0.0, *self._retry_delays):
            if delay:  # sleep(0) is still a system call and a GIL hand-off, on every batch
                time.sleep(delay)
            if (error := self._try_write(text)) is None:
                self._written(head, gap=self._gap is not None)
                return [True] * len(records)
        assert error is not None
        self._count_loss(len(records), error)
        return [False] * len(records)

    def _linked(self, lines: list[str]) -> tuple[str, str]:
        if not self._chain:
            return "".join(f"{line}\n" for line in lines), self.head
        texts, head = [], self.head
        for line in lines:
            linked = link(line, head)
            texts.append(linked.text)
            head = linked.hash
        return "".join(texts), head

    def _try_write(self, text: str) -> OSError | None:
        try:
            if not self._file.is_open:
                self._file.open()
            if self._dirty:
                self._file.undo_partial()
                self._dirty = False
            self._file.write(text)
        except OSError as exc:
            self._dirty = True
            with suppress(OSError):  # cut off what the failed write left, so a retry links correctly
                self._file.undo_partial()
                self._dirty = False
            return exc
        return None

    def _written(self, head: str, *, gap: bool) -> None:
        self.head, self.last_error = head, None
        self._notes.clear()
        if gap:
            self._gaps, self._gap = self._gaps + 1, None
        if self._fsync != "never":
            try:
                self._file.sync()
            except OSError as exc:  # written to the OS but maybe not to the disk: say so, lose nothing
                self.last_error = f"fsync: {exc}"
                log.exception("audit log %s: fsync failed", self.path)

    def _count_loss(self, count: int, error: OSError) -> None:
        self.lost += count
        self.last_error = str(error) or type(error).__name__
        now = utc_now()
        gap = self._gap
        self._gap = _Gap(count + (gap.count if gap else 0), gap.first if gap else now, now, self.last_error)
        log.error("audit log %s: could not write %d record(s): %s", self.path, count, self.last_error)

    def _reopen_if_replaced(self) -> None:
        if not self._file.replaced():
            return
        self._reopened += 1
        log.warning("audit log %s was deleted or replaced; reopening it", self.path)
        with suppress(OSError):  # a failure shows at the write that follows
            self._file.reopen()
        self._notes.append(
            note_json(
                "reopen", reason="the log file was deleted or replaced while serving", previous_head=self.head
            )
        )

    def _rotate(self) -> None:
        try:
            rotated = self._file.rotate()
        except OSError as exc:
            self.last_error = str(exc) or type(exc).__name__
            log.exception("audit log %s: could not reopen after rotation", self.path)
            return
        log.info("audit log rotated to %s; chain head %s", rotated, self.head, extra={"chain": self.head})
