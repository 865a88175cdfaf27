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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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
class Verification:
    """The result of checking files in order: lines checked, the first break (if any), the anchor."""

    lines: int
    first_break: Break | None
    anchor: str | None

    @property
    def ok(self) -> bool:
        """True when every line checked links to the one before it."""
        return self.first_break is None


def verify(files: Iterable[Path]) -> Verification:
    """Check every line of ``files`` (in the order given, oldest first) and report the first broken link."""
    expected: str | None = None
    anchor: str | None = None
    count = 0
    for path in files:
        with Path(path).open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                count += 1
                prev, digest, reason = check_line(raw)
                if reason is None and expected is not None and prev != expected:
                    reason = "prev_hash is not the previous line's hash (a line was removed or reordered)"
                if reason is not None:
                    return Verification(count, Break(Path(path), number, _request_id(raw), reason), anchor)
                anchor = prev if anchor is None else anchor
                expected = digest
    return Verification(count, None, anchor)


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
