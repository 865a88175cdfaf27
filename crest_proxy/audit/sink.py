"""Audit sinks: where every screening decision is recorded (a JSON Lines file, PostgreSQL, or memory)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from crest_proxy.audit.jsonl import FSYNC_MODES, JsonlAuditSink
from crest_proxy.audit.queued import AuditStats
from crest_proxy.audit.record import AUDIT_MODES, AuditContent, content_for_audit, record_to_json, sha256_hex
from crest_proxy.types import AuditRecord

__all__ = [
    "AUDIT_MODES",
    "FSYNC_MODES",
    "AuditContent",
    "AuditSink",
    "AuditStats",
    "JsonlAuditSink",
    "MemoryAuditSink",
    "content_for_audit",
    "record_to_json",
    "sha256_hex",
    "write_confirmed",
]


@runtime_checkable
class AuditSink(Protocol):
    """Receives audit records; implementations must not block the event loop."""

    async def write(self, record: AuditRecord) -> None:
        """Record one decision."""
        ...

    async def aclose(self) -> None:
        """Flush everything written so far and release resources; idempotent."""
        ...


async def write_confirmed(sink: AuditSink, record: AuditRecord, timeout_s: float = 5.0) -> bool:
    """Write ``record`` and wait until the sink has written it (sinks that cannot tell: once queued)."""
    confirmed: Any = getattr(sink, "write_confirmed", None)
    if confirmed is None:
        await sink.write(record)
        return True
    return bool(await confirmed(record, timeout_s))


def audit_problem(sink: Any) -> str | None:
    """Why ``sink`` cannot write records now (None: it can, or it cannot tell)."""
    check = getattr(sink, "problem", None)
    return check() if callable(check) else None


class MemoryAuditSink:
    """Keeps records in ``.records`` (tests, and the LiteLLM plugin when no file is configured)."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.closed = False

    async def start(self) -> None:
        """Nothing to open."""

    async def write(self, record: AuditRecord) -> None:
        """Append ``record``."""
        if self.closed:
            raise RuntimeError("audit sink is closed")
        self.records.append(record)

    async def aclose(self) -> None:
        """Refuse further writes."""
        self.closed = True
