"""The local spool of the database sink: chained lines waiting for PostgreSQL, replayed in order.

While the spool holds anything, new lines go behind it, so the database receives every chain in order.
The spool is an ordinary chained JSON Lines file (``audit verify`` reads it), truncated once every line in
it is in the database; a crash mid-replay replays from the start again, which the table's primary key
turns into no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from crest_proxy.audit.files import AppendOnlyFile

_READ = 1 << 20


class Spool:
    """Append lines; read them back in chunks from a replay offset; empty it when all are replayed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: AppendOnlyFile | None = None
        self.replayed_to = 0  # bytes of the spool already in the database

    def open(self) -> None:
        """Open (creating directories) for appending."""
        self._file = AppendOnlyFile(self.path)

    @property
    def pending(self) -> bool:
        """Whether lines are waiting to be replayed."""
        return self.size() > self.replayed_to

    def size(self) -> int:
        """Bytes in the spool."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, lines: list[str]) -> None:
        """Append chained lines (each ends with a newline); all or nothing (a failed write is cut off)."""
        if self._file is None:
            raise OSError(f"audit spool {self.path} is not open")
        good = self.size()
        try:
            self._file.write("".join(lines))
        except OSError:
            os.truncate(self.path, good)
            raise

    def chunks(self, lines_per_chunk: int) -> Iterator[tuple[list[bytes], int]]:
        """Unreplayed lines in order, a chunk at a time, each with the offset just after it."""
        with self.path.open("rb") as handle:
            handle.seek(self.replayed_to)
            offset, chunk, rest = self.replayed_to, [], b""
            while block := handle.read(_READ):
                *complete, rest = (rest + block).split(b"\n")
                for line in complete:
                    offset += len(line) + 1
                    chunk.append(line)
                    if len(chunk) >= lines_per_chunk:
                        yield chunk, offset
                        chunk = []
            if chunk:
                yield chunk, offset

    def emptied(self) -> None:
        """Everything was replayed: truncate (the writer thread is the only writer, under the lock)."""
        os.truncate(self.path, 0)
        self.replayed_to = 0

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
