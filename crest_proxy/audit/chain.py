"""Tamper evidence for the audit log: every line carries the hash of the line before it.

A line is the record's JSON with two members appended, always last and in this order::

    {...record...,"prev_hash":"<64 hex>","hash":"<64 hex>"}

``hash`` is the SHA-256 of the line without its ``hash`` member (``{...record...,"prev_hash":"…"}``,
the exact ASCII bytes written), so it covers the record and, through ``prev_hash``, every line before it.
The first line of a log has ``prev_hash`` = 64 zeros; the chain runs on across rotated files. Changing,
inserting, deleting or reordering a line breaks the chain at that line; cutting lines off the end, or
rewriting the whole chain from some line on, does not, so keep the head hash somewhere else too (the
proxy logs it at every rotation and shutdown).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_TAIL = re.compile(rb',"prev_hash":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"\}')
_TAIL_LEN = len(',"prev_hash":"","hash":""}') + 128
_HASH_AT_LINE_END = re.compile(rb',"hash":"([0-9a-f]{64})"\}\n')


@dataclass(frozen=True)
class Linked:
    """One chained line (newline included) and its hash."""

    text: str
    hash: str


def link(record_json: str, prev_hash: str) -> Linked:
    """Chain one record line (``record_to_json`` output, a JSON object) to ``prev_hash``."""
    body = f'{record_json[:-1]},"prev_hash":"{prev_hash}"}}'
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    return Linked(f'{body[:-1]},"hash":"{digest}"}}\n', digest)


def last_hash(path: Path) -> str | None:
    """The hash of the last chained line of ``path`` (None: no such file or no chained line)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        end = handle.seek(0, 2)
        window = 4096
        while True:  # read backwards in growing windows: records holding full content can be large
            start = max(0, end - window)
            handle.seek(start)
            found = list(_HASH_AT_LINE_END.finditer(handle.read(end - start)))
            if found:
                return found[-1].group(1).decode("ascii")
            if start == 0:
                return None
            window *= 4


@dataclass(frozen=True)
class Break:
    """Where the chain first breaks: file, 1-based line, the record's request id when readable, and why."""

    file: Path
    line: int
    request_id: str | None
    reason: str


@dataclass(frozen=True)
class Note:
    """A note about the log met while verifying: where, which event, and its fields."""

    file: Path
    line: int
    event: str
    fields: dict[str, Any]

    def describe(self) -> str:
        """One line for ``audit verify``."""
        f = self.fields
        if self.event == "gap":
            return (
                f"gap at {self.file}:{self.line}: {f.get('lost')} record(s) could not be written "
                f"between {f.get('first_lost')} and {f.get('last_lost')} ({f.get('reason')})"
            )
        where = f"{self.event} at {self.file}:{self.line}"
        if self.event == "reopen":
            return f"{where}: {f.get('reason')}; the chain continues from {f.get('prev_hash')}"
        return f"{where}: {f.get('bytes')} torn byte(s) cut off at start, kept in {f.get('kept_in')}"


@dataclass(frozen=True)
class Verification:
    """The result of checking lines in order: lines checked, the first break (if any), the anchor, notes."""

    lines: int
    first_break: Break | None
    anchor: str | None
    notes: tuple[Note, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every line checked links to the one before it (or a reopen note explains why not)."""
        return self.first_break is None

    @property
    def lost(self) -> int:
        """Records the gap notes say could not be written."""
        return sum(int(n.fields.get("lost") or 0) for n in self.notes if n.event == "gap")


def verify(files: Iterable[Path]) -> Verification:
    """Check every line of ``files`` (in the order given, oldest first) and report the first broken link."""
    return verify_lines(_file_lines(files))


def _file_lines(files: Iterable[Path]) -> Iterator[tuple[Path, int, bytes]]:
    for path in files:
        with Path(path).open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield Path(path), number, raw


def verify_lines(lines: Iterable[tuple[Path, int, bytes]]) -> Verification:
    """Check ``(source, number, raw line)`` in order: each line's hash, and its link to the one before."""
    expected: str | None = None
    anchor: str | None = None
    count = 0
    notes: list[Note] = []
    for source, number, raw in lines:
        count += 1
        prev, digest, reason = check_line(raw)
        note = _note(source, number, raw) if reason is None else None
        if note is not None:
            notes.append(note)
        resumed = note is not None and note.event == "reopen"  # a reopen says why the chain resumes elsewhere
        if reason is None and expected is not None and prev != expected and not resumed:
            reason = "prev_hash is not the previous line's hash (a line was removed or reordered)"
        if reason is not None:
            return Verification(count, Break(source, number, _request_id(raw), reason), anchor, tuple(notes))
        anchor = prev if anchor is None else anchor
        expected = digest
    return Verification(count, None, anchor, tuple(notes))


def _note(source: Path, number: int, raw: bytes) -> Note | None:
    """The note a line holds (cheap test first: records never have ``event`` near their start)."""
    if b',"event":"' not in raw[:64]:
        return None
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    event = fields.get("event") if isinstance(fields, dict) else None
    return Note(source, number, event, fields) if isinstance(event, str) else None


def check_line(raw: bytes) -> tuple[str, str, str | None]:
    """``(prev_hash, hash, problem)`` of one raw line; problem is None when the line's own hash is right."""
    if not raw.endswith(b"\n"):
        return "", "", "the line is cut short (no newline at the end of the file)"
    line = raw[:-1]
    tail = _TAIL.fullmatch(line[-_TAIL_LEN:]) if len(line) >= _TAIL_LEN else None
    if tail is None:
        return "", "", "the line has no prev_hash/hash members at its end (not chained)"
    prev, digest = tail.group(1).decode("ascii"), tail.group(2).decode("ascii")
    body = line[: len(line) - _TAIL_LEN] + b',"prev_hash":"' + tail.group(1) + b'"}'
    if hashlib.sha256(body).hexdigest() != digest:
        return prev, digest, "the line's content does not match its hash (it was changed)"
    return prev, digest, None


def _request_id(raw: bytes) -> str | None:
    try:
        value = json.loads(raw).get("request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
