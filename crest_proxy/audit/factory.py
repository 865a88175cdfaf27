"""The audit sink the server settings ask for: the JSONL file, the database, or both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crest_proxy.audit.fanout import FanOutAuditSink
from crest_proxy.audit.jsonl import JsonlAuditSink

DEFAULT_SPOOL = Path("crest-audit.spool.jsonl")


def spool_for(log: Path | None, spool: Path | None) -> Path:
    """Where the database sink spools: as given, else beside the audit file, else the working directory."""
    if spool is not None:
        return spool
    # Not ``<log>.spool``: ``audit verify crest-audit.jsonl*`` would take the spool's chain for the log's.
    return DEFAULT_SPOOL if log is None else log.with_name(f"{log.stem}.spool{log.suffix or '.jsonl'}")


def build_sink(
    log: Path | None,
    *,
    db: str | None = None,
    spool: Path | None = None,
    fsync: str = "never",
    max_bytes: int | None = None,
    max_age_s: float | None = None,
) -> Any:
    """An unstarted sink: the file (``log``), the database (``db``), or both fanned out."""
    sinks: list[Any] = []
    if log is not None:
        sinks.append(JsonlAuditSink(log, max_bytes=max_bytes, max_age_s=max_age_s, fsync=fsync))
    if db is not None:
        from crest_proxy.audit.database import PostgresAuditSink

        sinks.append(PostgresAuditSink(db, spool_for(log, spool)))
    if not sinks:
        raise ValueError("no audit destination: give an audit log file, a database, or both")
    return sinks[0] if len(sinks) == 1 else FanOutAuditSink(sinks)
