"""Start-up repair of an audit file whose last line was cut short (a crash or ``kill -9`` mid-write).

Appending after a torn line would glue the next record onto it and lose both (issue 14). The torn bytes
are moved to ``.<log>.torn`` (appended, one fragment per line, so nothing is destroyed), the file is cut
back to its last complete line, and the caller writes a ``torn`` note so the repair is on the chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_WINDOW = 64 * 1024


@dataclass(frozen=True)
class TornTail:
    """What was cut off: how many bytes, and the side file that keeps them."""

    bytes: int
    kept_in: Path


def torn_path(log: Path) -> Path:
    """Where torn fragments of ``log`` are kept (hidden, so ``crest-audit.jsonl*`` does not take it in)."""
    return log.with_name(f".{log.name}.torn")


def repair_torn_tail(log: Path) -> TornTail | None:
    """Cut ``log`` back to its last complete line; None when it already ends with one (or is absent)."""
    try:
        fd = os.open(log, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        end = _last_line_end(fd, size)
        if end == size:
            return None
        fragment = os.pread(fd, size - end, end)
        kept = torn_path(log)
        with kept.open("ab") as side:  # kept before cutting: a crash in between loses nothing
            side.write(fragment + b"\n")
            side.flush()
            os.fsync(side.fileno())
        os.ftruncate(fd, end)
        os.fsync(fd)
        return TornTail(len(fragment), kept)
    finally:
        os.close(fd)


def _last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline of the file (0 when it has none)."""
    position = size
    while position > 0:
        start = max(0, position - _WINDOW)
        block = os.pread(fd, position - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0
