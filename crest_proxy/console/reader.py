"""Pages of audit records for the console, newest first, from (rotated) log files.

A gigabyte of log must not make a page slow (issue 17), so files are read *backwards* in 1 MiB blocks from
the newest line: the first page touches only the end of the live file. A block that lacks one of the
filter's exact byte strings (``"tenant":"acme"``, a rule's quoted name, …) is skipped without being split
or parsed, and reading stops once a page is full, once lines are older than ``since``, or after
``SCAN_BUDGET`` bytes (the page then says so and its cursor continues the scan). The cursor names a file
by its inode, which survives rotation's rename, and a byte offset in it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from crest_proxy.audit.files import in_rotation_order, rotated_siblings
from crest_proxy.audit.query import AuditQuery, Found, _json_loads, _ts_key, is_decision
from crest_proxy.console.filters import FilterError, Page, RecordFilter

_BLOCK = 1 << 20
# Bytes one page may examine before it hands back a cursor (blocks skipped by the needles count 1/16, so a
# request id search crosses 4 GiB of log in one page).
SCAN_BUDGET = 256 << 20
# Records are stamped before they are queued, so a file is in time order only to within the queue's delay.
_SINCE_SLACK = timedelta(seconds=60)
# How long before its newest record a request's oldest may be: a stream screened for an hour is rare.
REQUEST_SPAN = timedelta(hours=2)


class RecordReader(Protocol):
    """Where the console reads decisions: log files (``FileReader``) or PostgreSQL (``DatabaseReader``)."""

    def page(self, wanted: RecordFilter, cursor: str | None, size: int) -> Page:
        """Up to ``size`` matching records, newest first, starting after ``cursor``."""

    def newest(self, wanted: RecordFilter, limit: int | None = None) -> Iterator[Found]:
        """Matching records, newest first (exports and the overview)."""

    def request(self, request_id: str) -> list[Found]:
        """Every record of one request, oldest first."""

    def overview_fields(self, wanted: RecordFilter, limit: int) -> Iterator[Mapping[str, Any]]:
        """The fields the overview counts of the newest ``limit`` matching records."""


class FileReader:
    """Reads live and rotated JSON Lines audit files; ``live`` paths bring their rotated siblings along."""

    def __init__(self, paths: Iterable[Path], *, live: bool = False) -> None:
        self._paths = tuple(Path(p) for p in paths)
        self._live = live

    def files(self) -> list[Path]:
        """The files to read, oldest first (rotated siblings of a live log are found on every call)."""
        found = list(self._paths)
        if self._live:
            found += [s for p in self._paths for s in rotated_siblings(p)]
        return [p for p in in_rotation_order(dict.fromkeys(found)) if p.is_file()]

    def page(self, wanted: RecordFilter, cursor: str | None, size: int) -> Page:
        """Up to ``size`` matching records, newest first, after ``cursor`` (``inode:offset``)."""
        shown: list[_Line] = []
        scan = _Scan(self.files(), wanted, SCAN_BUDGET)
        for item in scan.lines(_parse_cursor(cursor)):
            if wanted.request_id is not None and not shown:  # one request's records lie close together
                scan.stop_before(_timestamp(item.found.record.get("ts")) - REQUEST_SPAN)
            if len(shown) == size:  # one more exists: the page is full and has a successor
                return Page(tuple(x.found.record for x in shown), shown[-1].cursor, scan.read)
            shown.append(item)
        return Page(tuple(x.found.record for x in shown), scan.resume, scan.read)

    def newest(self, wanted: RecordFilter, limit: int | None = None) -> Iterator[Found]:
        """Matching records, newest first, with no scan budget (exports, the overview)."""
        for count, item in enumerate(_Scan(self.files(), wanted, None).lines(None), start=1):
            yield item.found
            if limit is not None and count >= limit:
                return

    def overview_fields(self, wanted: RecordFilter, limit: int) -> Iterator[Mapping[str, Any]]:
        """The newest ``limit`` matching records (whole: a file line is parsed anyway)."""
        return (found.record for found in self.newest(wanted, limit))

    def request(self, request_id: str) -> list[Found]:
        """Every decision record of ``request_id``, oldest first.

        Read backwards like a page: a request's records are written within its lifetime, so once the
        newest is found the scan stops ``REQUEST_SPAN`` before it, instead of reading the whole log.
        """
        scan = _Scan(self.files(), RecordFilter(request_id=request_id), None)
        found: list[Found] = []
        for item in scan.lines(None):
            if not found:
                scan.stop_before(_timestamp(item.found.record.get("ts")) - REQUEST_SPAN)
            found.append(item.found)
        return found[::-1]


@dataclass(frozen=True)
class _Line:
    inode: int
    offset: int
    found: Found

    @property
    def cursor(self) -> str:
        """The cursor of the page that follows this line."""
        return f"{self.inode}:{self.offset}"


class _Scan:
    """One backwards pass over the files; ``resume`` is set when the byte budget stopped it."""

    def __init__(self, files: list[Path], wanted: RecordFilter, budget: int | None) -> None:
        self._files, self._wanted, self._budget = files, wanted, budget
        self._needles = _needles(wanted)
        self._oldest = _ts_key(wanted.since - _SINCE_SLACK) if wanted.since else None
        self.read = self.spent = 0
        self.resume: str | None = None

    def stop_before(self, when: datetime) -> None:
        """End the scan at lines older than ``when`` (less the clock slack)."""
        self._oldest = _ts_key(when - _SINCE_SLACK)

    def lines(self, cursor: tuple[int, int] | None) -> Iterator[_Line]:
        """Matching lines, newest first, from ``cursor`` (None: the newest line)."""
        loads = _json_loads()
        for path, end in _files_from(self._files, cursor):
            inode = _inode(path)
            for base, block in _blocks_backwards(path, end):
                if self._budget is not None and self.spent >= self._budget:
                    self.resume = f"{inode}:{base + len(block)}"
                    return
                if self._oldest is not None and _older(_last_line(block), self._oldest):
                    return  # even the block's newest line is too old: so is everything before it
                self.read += len(block)
                # A block the needles rule out costs a memchr pass, not a parse: it counts for 1/16.
                self.spent += len(block) if _may_match(block, self._needles) else len(block) // 16
                for offset, line in _block_lines(block, base, self._needles):
                    if self._oldest is not None and _older(line, self._oldest):
                        return  # older lines, and older files, are older still
                    record = _parse(loads, line)
                    if record is not None and self._wanted.matches(record):
                        yield _Line(inode, offset, Found(line, record))


def _last_line(block: bytes) -> bytes:
    return block[block.rfind(b"\n", 0, len(block) - 1) + 1 :]


def _timestamp(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.max.replace(tzinfo=timezone.utc)  # unreadable: read on to the start of the log
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _parse(loads: Any, line: bytes) -> dict[str, Any] | None:
    try:
        record = loads(line)
    except ValueError:
        return None
    return record if is_decision(record) else None


def _older(line: bytes, oldest: bytes) -> bool:
    stamp = line[7:36]  # {"ts":"2026-11-22T07:28:54.002+00:00"
    return line.startswith(b'{"ts":"') and stamp.endswith(b"+00:00") and stamp < oldest


def _needles(wanted: RecordFilter) -> tuple[bytes, ...]:
    """Byte strings every matching line contains (the writer escapes to ASCII with fixed separators)."""
    extra = []
    if wanted.rule is not None:
        extra.append(json.dumps(wanted.rule, ensure_ascii=True).encode("ascii"))
    if wanted.language is not None:
        extra.append(json.dumps(wanted.language, ensure_ascii=True)[1:-1].encode("ascii"))
    return (*AuditQuery(wanted.tenant, wanted.action, wanted.direction, wanted.request_id).needles(), *extra)


def _parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    if not cursor:
        return None
    inode, _, offset = cursor.partition(":")
    if not (inode.isdigit() and offset.isdigit()):
        raise FilterError(f"cursor: {cursor!r} is not a page cursor; start again from the first page")
    return int(inode), int(offset)


def _files_from(files: list[Path], cursor: tuple[int, int] | None) -> Iterator[tuple[Path, int | None]]:
    """The files newest first, with where to start reading each (None: at its end)."""
    newest_first = list(reversed(files))
    if cursor is None:
        yield from ((p, None) for p in newest_first)
        return
    inodes = [_inode(p) for p in newest_first]
    if cursor[0] not in inodes:
        return  # the file is gone (deleted by retention): nothing older to show
    at = inodes.index(cursor[0])
    yield newest_first[at], cursor[1]
    yield from ((p, None) for p in newest_first[at + 1 :])


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def _blocks_backwards(path: Path, end: int | None) -> Iterator[tuple[int, bytes]]:
    """(offset, block of whole lines) of ``path`` before ``end``, last block first."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        pos = size if end is None else min(end, size)
        tail = b""  # the end of a line whose start is in an earlier block
        while pos > 0:
            start = max(0, pos - _BLOCK)
            handle.seek(start)
            block, base = handle.read(pos - start) + tail, start
            pos = start
            if start > 0:
                cut = block.find(b"\n") + 1
                if cut == 0:  # one line longer than a block: keep reading backwards
                    tail = block
                    continue
                tail, block, base = block[:cut], block[cut:], start + cut
            yield base, block


def _may_match(block: bytes, needles: tuple[bytes, ...]) -> bool:
    return bool(block) and all(n in block for n in needles)


def _block_lines(block: bytes, base: int, needles: tuple[bytes, ...]) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of the lines of ``block`` holding every needle, last first; a block lacking one
    of them is skipped whole, at memchr speed."""
    if not _may_match(block, needles):
        return
    lines = block.split(b"\n")
    offsets, at = [], base
    for line in lines:
        offsets.append(at)
        at += len(line) + 1
    for offset, line in zip(reversed(offsets), reversed(lines), strict=True):
        if line and all(n in line for n in needles):
            yield offset, line
