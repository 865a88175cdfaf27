"""The audit console: a small server-rendered web app over the audit log or the central store (issue 17)."""

from __future__ import annotations

from pathlib import Path

from crest_proxy.console.reader import FileReader, RecordReader


def reader_for(
    audit_logs: list[Path] | None = None, dsn: str | None = None, *, live: bool = False
) -> RecordReader:
    """A reader of PostgreSQL (``dsn``) or of ``audit_logs`` (``live``: also their rotated siblings)."""
    if dsn:
        from crest_proxy.console.dbreader import DatabaseReader

        return DatabaseReader(dsn)
    return FileReader(audit_logs or [], live=live)
