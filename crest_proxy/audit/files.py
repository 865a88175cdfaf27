"""Audit log files: rotation by size and age, rotated-file names, and the order files are read back in.

A rotated file keeps the live file's name plus a UTC timestamp, ``crest-audit.jsonl.20261122T071651.538123Z``,
so rotated files sort by name in the order they were written; the live file comes after all of them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("crest_proxy.audit.sink")
_SUFFIX = re.compile(r"\.(\d{8}T\d{6}\.\d{6}Z)(?:-(\d+))?$")


def rotated_name(path: Path, when: datetime) -> Path:
    """A free name for ``path`` rotated at ``when``."""
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    candidate = path.with_name(f"{path.name}.{stamp}")
    n = 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{stamp}-{n}")
    return candidate


def rotated_siblings(path: Path) -> list[Path]:
    """The rotated files of the live file ``path``, oldest first."""
    if not path.parent.is_dir():
        return []
    found = [
        p for p in path.parent.glob(f"{glob_escape(path.name)}.*") if _SUFFIX.search(p.name[len(path.name) :])
    ]
    return sorted(found, key=_rotation_key)


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters quoted."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def in_rotation_order(paths: Iterable[Path]) -> list[Path]:
    """``paths`` oldest first: rotated files by timestamp, then live files (whatever order they came in)."""
    return sorted((Path(p) for p in paths), key=_rotation_key)


def _rotation_key(path: Path) -> tuple[int, str, int, str]:
    match = _SUFFIX.search(path.name)
    if match is None:
        return (1, "", 0, path.name)
    return (0, match.group(1), int(match.group(2) or 0), path.name)


class Appendable(Protocol):
    """What the writer needs of an open audit file (the seam tests use to simulate broken disks)."""

    def write(self, text: str, /) -> int:
        """Append ``text``."""
        ...

    def flush(self) -> None:
        """Hand buffered bytes to the OS."""
        ...

    def close(self) -> None:
        """Close the file."""
        ...


class RotatingFile:
    """The live audit file, as the writer thread sees it: append, and rotate when it is too big or old."""

    def __init__(
        self,
        path: Path,
        opener: Callable[[Path], Appendable],
        *,
        max_bytes: int | None = None,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._opener = opener
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._clock = clock
        self._file: Appendable | None = None
        self._identity: tuple[int, int] | None = None  # (inode, device) of the open file
        self._size = 0
        self._born = 0.0

    def open(self) -> None:
        """Open (creating directories) for appending; size and age continue those of an existing file."""
        self._set_file(self._opener(self.path))
        self._size = self.path.stat().st_size if self.path.is_file() else 0
        born = _first_record_time(self.path) if self._size else None
        self._born = born if born is not None else self._clock()

    @property
    def is_open(self) -> bool:
        """Whether a file is open (a failed reopen leaves none; the next write tries again)."""
        return self._file is not None

    def _set_file(self, file: Appendable) -> None:
        self._file = file
        fd = _fileno(file)
        # The open file's identity cannot change: read once, so each batch costs one stat, not two.
        self._identity = None if fd is None else _identity(os.fstat(fd))

    def replaced(self) -> bool:
        """Whether the path no longer names the open file (deleted, or another file moved in)."""
        if self._file is None or self._identity is None:
            return False  # nothing open, or a test double: nothing on disk to compare with
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        return _identity(on_disk) != self._identity

    def reopen(self) -> None:
        """Close and open the path again (after it was deleted or replaced)."""
        self.close()
        self.open()

    def undo_partial(self) -> None:
        """Cut the file back to the bytes known written, removing what a failed write left behind."""
        fd = _fileno(self._file)
        if fd is not None:
            os.ftruncate(fd, self._size)

    def sync(self) -> None:
        """Ask the OS to put what was written on the disk (``fsync``)."""
        fd = _fileno(self._file)
        if fd is not None:
            os.fsync(fd)

    def due(self, pending: int, incoming: int) -> bool:
        """Whether to rotate before writing ``incoming`` more bytes after ``pending`` unwritten ones."""
        used = self._size + pending
        if used == 0:
            return False  # never rotate out an empty file
        too_big = self._max_bytes is not None and used + incoming > self._max_bytes
        too_old = self._max_age_s is not None and self._clock() - self._born >= self._max_age_s
        return too_big or too_old

    def write(self, text: str) -> None:
        """Append ``text`` (ASCII lines) and flush it to the OS."""
        if self._file is None:
            raise OSError(f"audit log {self.path} is not open")
        self._file.write(text)
        self._file.flush()
        self._size += len(text)  # ASCII: characters are bytes

    def rotate(self) -> Path | None:
        """Close, rename with a timestamp, reopen empty; returns the rotated file (None: rename failed)."""
        self.close()
        target: Path | None = rotated_name(self.path, datetime.now(timezone.utc))
        try:
            self.path.rename(target)  # type: ignore[arg-type]
        except OSError:
            log.exception("audit log %s: rotation failed; appending to it instead", self.path)
            target = None
        self._set_file(self._opener(self.path))  # an OSError here is the caller's: it counts the lost lines
        self._size = self.path.stat().st_size if self.path.is_file() else 0
        self._born = self._clock()
        return target

    def close(self) -> None:
        """Close the file (errors are logged)."""
        file, self._file, self._identity = self._file, None, None
        if file is not None:
            try:
                file.close()
            except OSError:
                log.exception("audit log %s: close failed", self.path)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_ino, stat.st_dev


def _first_record_time(path: Path) -> float | None:
    """The ``ts`` of the file's first record as a Unix time (None when unreadable)."""
    try:
        with path.open("rb") as handle:
            first = json.loads(handle.readline())
        return datetime.fromisoformat(first["ts"]).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return None


class AppendOnlyFile:
    """An unbuffered append-only file: a failed write leaves nothing in a buffer to reappear later.

    A buffered file keeps the bytes of a failed ``flush`` and writes them with the next one, after lines
    written since, so their hash links come out stale (issue 14); here a write either reaches the OS or
    raises, and ``RotatingFile.undo_partial`` removes any part of it that did.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, text: str) -> int:
        """Append all of ``text`` (ASCII) or raise ``OSError``."""
        view = memoryview(text.encode("ascii"))
        while view:
            view = view[os.write(self._fd, view) :]
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def fileno(self) -> int:
        """The file descriptor."""
        return self._fd

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _fileno(file: Any) -> int | None:
    """The descriptor of a real file, None for a test double without one."""
    try:
        fd = file.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None
